package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{nil, 2, "", "Usage:"},
		{[]string{"help"}, 0, "ustack drill", ""},
		{[]string{"-h"}, 0, "ustack ss [--ctl PATH]", ""},
		{[]string{"frobnicate"}, 2, "", `ustack: unknown command "frobnicate"`},
		{[]string{"nc", "10.0.0.1"}, 2, "", "usage: ustack nc"},
		{[]string{"nc", "--ctl", "/nonexistent/x.sock", "10.0.0.1", "80"}, 1, "", "ustack nc: no daemon at /nonexistent/x.sock"},
		{[]string{"lab", "no-such-experiment"}, 2, "", `ustack lab: unknown experiment "no-such-experiment"`},
		{[]string{"drill"}, 2, "", "ustack drill: no script given"},
		{[]string{"ss", "--bogus"}, 2, "", "Usage: ustack ss"},
	} {
		var stdout, stderr bytes.Buffer
		code := dispatch(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%q: exit %d stdout %q stderr %q; want exit %d, %q, %q",
				tc.args, code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
}
