package drill

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCorpus runs every script of testdata/ on ustack and gVisor, and on
// Linux where namespaces and TUN are available (skipped otherwise), in each
// of packetdrill's three IP versions with run_all.py's options (a script
// named *-v4.pkt or *-v6.pkt runs only where that rule says). A script
// passes, or carries a `// divergence: STACK: reason` for the stack that
// differs; a declared divergence that does not occur fails too (the note
// is stale). ustack must run every script: a SKIP there is a failure.
func TestCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/*.pkt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in testdata: %v", err)
	}
	stacks := []string{"ustack", "gvisor"}
	if ok, why := LinuxAvailable(); ok {
		stacks = append(stacks, "linux")
	} else {
		t.Logf("linux column skipped: %s", why)
	}
	for _, v := range IPVersions {
		t.Run(v.String(), func(t *testing.T) {
			opts := Options{Timeout: 30 * time.Second, Args: SuiteArgs(v)}
			for _, stack := range stacks {
				t.Run(stack, func(t *testing.T) {
					for _, f := range files {
						if !RunsIn(f, v) {
							continue
						}
						name := strings.TrimSuffix(filepath.Base(f), ".pkt")
						t.Run(name, func(t *testing.T) { checkCorpusRun(t, f, stack, opts) })
					}
				})
			}
		})
	}
}

func checkCorpusRun(t *testing.T, f, stack string, opts Options) {
	rep := RunFile(f, stack, opts)
	// Real time on a shared machine: a failure in timing alone may be the
	// load, so Linux gets three more tries.
	for try := 1; try < 4 && stack == "linux" && rep.Outcome == Fail && rep.Timing; try++ {
		t.Logf("timing failure, retrying: %s", rep.Reason)
		rep = RunFile(f, stack, opts)
	}
	switch rep.Outcome {
	case Pass:
		if rep.Divergence != "" {
			t.Errorf("passes, but the script declares a divergence for %s (remove the note?): %s", stack, rep.Divergence)
		}
	case Diverged:
		t.Logf("documented divergence: %s\n%s", rep.Reason, rep.Detail)
	case Skip:
		if stack == "ustack" {
			t.Errorf("SKIP on ustack: %s", rep.Reason)
		} else {
			t.Logf("SKIP: %s", rep.Reason)
		}
	default:
		t.Errorf("%s\n%s", rep.Reason, rep.Detail)
	}
}

// Every script with a divergence note has its row in docs/divergences.md,
// and every row names a script that still carries one: the notes and the
// explanation cannot drift apart.
func TestDivergencesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/divergences.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if f := strings.Split(line, "|"); len(f) > 2 && strings.HasPrefix(strings.TrimSpace(f[1]), "b") {
			rows[strings.TrimSpace(f[1])] = true
		}
	}
	files, _ := filepath.Glob("testdata/*.pkt")
	noted := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "// divergence: gvisor:") {
			name := strings.TrimSuffix(filepath.Base(f), ".pkt")
			noted[name] = true
			if !rows[name] {
				t.Errorf("%s declares a gVisor divergence but docs/divergences.md has no row for it", name)
			}
		}
	}
	for name := range rows {
		if !noted[name] && !strings.Contains(name, ",") {
			if _, err := os.Stat(filepath.Join("testdata", name+".pkt")); err != nil {
				t.Errorf("docs/divergences.md has a row for %s, which is not in the corpus", name)
			} else if !skippedOnGVisor(string(doc), name) {
				t.Errorf("docs/divergences.md has a row for %s, which declares no divergence", name)
			}
		}
	}
}

// skippedOnGVisor reports whether the doc lists name among the scripts
// gVisor skips (a row of that table, not of the divergences).
func skippedOnGVisor(doc, name string) bool {
	i := strings.Index(doc, "## Skipped on gVisor")
	return i >= 0 && strings.Contains(doc[i:], "| "+name)
}
