package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"ustack/internal/tools"
	"ustack/netns"
)

// namespaceOf finds the namespace an experiment's output names.
var worldRE = regexp.MustCompile(`World: namespace (lab-[0-9a-f]+);`)

// checkGone fails if the namespace named in out still exists.
func checkGone(t *testing.T, out string) {
	t.Helper()
	m := worldRE.FindStringSubmatch(out)
	if m == nil {
		t.Errorf("the output names no namespace:\n%s", out)
		return
	}
	for _, dir := range []string{"/run/netns/", "/var/run/netns/"} {
		if _, err := os.Stat(dir + m[1]); err == nil {
			t.Errorf("namespace %s is still there after the experiment", m[1])
		}
	}
}

func needNetns(t *testing.T) {
	t.Helper()
	if ok, reason := netns.Available(); !ok {
		t.Skip(reason)
	}
}

// TestLab is `ustack lab` run in full: every experiment, against the real
// kernel in a namespace of its own, must MATCH, and leave no namespace.
func TestLab(t *testing.T) {
	needNetns(t)
	for _, e := range Experiments() {
		t.Run(e.Name, func(t *testing.T) {
			var out bytes.Buffer
			res := Run(context.Background(), e, &out)
			if len(res.Missing) > 0 {
				// Not the stack's fault: skip, or fail in CI.
				tools.Lacking(t, "%s could not run: %v", e.Name, res.Err)
			}
			if !res.Match {
				t.Errorf("%s: MISMATCH (err %v)\n%s", e.Name, res.Err, out.String())
			}
			if !strings.Contains(out.String(), "\nMATCH\n") && res.Match {
				t.Errorf("matched but the output does not say MATCH:\n%s", out.String())
			}
			checkGone(t, out.String())
		})
	}
}

// An experiment that panics is reported, and its namespace still goes.
func TestLabPanicCleansUp(t *testing.T) {
	needNetns(t)
	e := &Experiment{Name: "panics", IDs: []string{"B00"}, Title: "panics", Explain: "Watch for: nothing.",
		Run: func(x *Env) error {
			if _, err := x.Listen(ap(ustackAddr, 7), 1); err != nil {
				return err
			}
			x.Expect("B00", true, "something held", "")
			panic("on purpose")
		}}
	var out bytes.Buffer
	res := Run(context.Background(), e, &out)
	if res.Match || res.Err == nil || !strings.Contains(res.Err.Error(), "panic: on purpose") {
		t.Errorf("a panicking experiment: match %v, err %v", res.Match, res.Err)
	}
	if !strings.Contains(out.String(), "MISMATCH") {
		t.Errorf("output:\n%s", out.String())
	}
	checkGone(t, out.String())
}

// Cancelling (^C) stops a long experiment promptly and still cleans up.
func TestLabCancelCleansUp(t *testing.T) {
	needNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	res := Run(ctx, synTimeout, &out)
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("a cancelled syn-timeout took %v", took)
	}
	if res.Match {
		t.Errorf("a cancelled experiment matched:\n%s", out.String())
	}
	checkGone(t, out.String())
}

// An experiment whose tool is missing does not run, makes no namespace, and
// says that the tool is missing, not that the stack mismatched.
func TestLabToolMissing(t *testing.T) {
	ran := false
	e := &Experiment{Name: "needs-a-tool", IDs: []string{"B00"}, Title: "needs a tool", Explain: "Watch for: nothing.",
		Tools: []string{"ustack-no-such-tool"},
		Run: func(x *Env) error {
			ran = true
			return nil
		}}
	var out bytes.Buffer
	res := Run(context.Background(), e, &out)
	if ran || res.Match || len(res.Missing) != 1 || res.Missing[0] != "ustack-no-such-tool" {
		t.Errorf("ran %v, match %v, missing %q", ran, res.Match, res.Missing)
	}
	var nie *tools.NotInstalledError
	if !errors.As(res.Err, &nie) {
		t.Errorf("err %v, want a *tools.NotInstalledError", res.Err)
	}
	if s := out.String(); !strings.Contains(s, "NOT RUN: ustack-no-such-tool is not installed") ||
		strings.Contains(s, "MISMATCH") || strings.Contains(s, "World:") {
		t.Errorf("output:\n%s", s)
	}
}

// Exec runs only the programs an experiment lists in Tools, so that the
// check before it starts covers all of them; any other one is refused and
// the experiment does not match.
func TestLabExecUndeclared(t *testing.T) {
	needNetns(t)
	e := &Experiment{Name: "undeclared", IDs: []string{"B00"}, Title: "undeclared", Explain: "Watch for: nothing.",
		Run: func(x *Env) error {
			r := x.Exec(5*time.Second, "", "true")
			x.Expect("B00", true, "true ran", fmt.Sprint(r.Code))
			return nil
		}}
	var out bytes.Buffer
	res := Run(context.Background(), e, &out)
	if res.Match || res.Err == nil || !strings.Contains(res.Err.Error(), "runs true without listing it in its Tools") {
		t.Errorf("match %v, err %v\n%s", res.Match, res.Err, out.String())
	}
	checkGone(t, out.String())
}
