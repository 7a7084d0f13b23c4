package main

import "ustack/impair"

// --impair is parsed and applied by package impair; these names keep the
// flag code short.

type impairSpec = impair.Spec

const defaultImpairLimit = impair.DefaultLimit

func parseImpair(s string) (impairSpec, error) { return impair.Parse(s) }
