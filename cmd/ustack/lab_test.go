package main

import (
	"bytes"
	"strings"
	"testing"

	"ustack/lab"
)

func TestLabList(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := cmdLab([]string{"--list"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != len(lab.Experiments()) {
		t.Errorf("%d lines for %d experiments:\n%s", len(lines), len(lab.Experiments()), stdout.String())
	}
	for _, want := range []string{"close-unread", "B32", "closed-port", "B01", "fin-wait-2-timeout"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("--list lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestLabUsage(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"nope"}, 2, `ustack lab: unknown experiment "nope" ("ustack lab --list" lists them)`},
		{[]string{"closed-port", "nope"}, 2, `unknown experiment "nope"`},
		{[]string{"--bogus"}, 2, "Usage: ustack lab [--list] [NAME...]"},
		{[]string{"-h"}, 0, "Usage: ustack lab"},
	} {
		var stdout, stderr bytes.Buffer
		code := cmdLab(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%q: exit %d stderr %q; want %d, %q", tc.args, code, stderr.String(), tc.code, tc.stderr)
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: stdout %q, want nothing (no experiment may run)", tc.args, stdout.String())
		}
	}
}
