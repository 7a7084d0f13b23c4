package tools

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// deps runs scripts/deps.sh with args.
func deps(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	out, err := exec.Command("bash", append([]string{"../../scripts/deps.sh"}, args...)...).Output()
	if err != nil {
		t.Fatalf("scripts/deps.sh %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// The packages here are scripts/deps.sh's, and every tool here is in one of
// its sets.
func TestPackagesMatchDeps(t *testing.T) {
	table := map[string]string{}
	for _, line := range strings.Split(deps(t, "--list"), "\n") {
		if f := strings.Fields(line); len(f) >= 3 {
			table[f[0]] = strings.Split(f[1], ",")[0]
		}
	}
	for tool, pkg := range debian {
		if got, ok := table[tool]; !ok {
			t.Errorf("%s (%s) is not in scripts/deps.sh's table", tool, pkg)
		} else if got != pkg {
			t.Errorf("%s: package %s here, %s in scripts/deps.sh", tool, pkg, got)
		}
	}
}

// The README's line for installing everything beforehand is the script's.
func TestREADMEInstallLine(t *testing.T) {
	want := "apt-get install -y --no-install-recommends " + strings.TrimSpace(deps(t, "--packages", "all"))
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), want) {
		t.Errorf("README.md does not have scripts/deps.sh's install line:\n    %s", want)
	}
}

func TestNotInstalledError(t *testing.T) {
	for _, tc := range []struct {
		tools []string
		want  string
	}{
		{[]string{"nc"}, "nc is not installed (apt-get install netcat-openbsd)"},
		{[]string{"ss", "ip", "curl"}, "ss, ip and curl are not installed (apt-get install iproute2 curl)"},
		{[]string{"frobnicate"}, "frobnicate is not installed"},
	} {
		if got := (&NotInstalledError{Tools: tc.tools}).Error(); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.tools, got, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	if err := Check("sh"); err != nil {
		t.Errorf("Check(sh): %v", err)
	}
	err := Check("sh", "ustack-no-such-tool")
	e, ok := err.(*NotInstalledError)
	if !ok || len(e.Tools) != 1 || e.Tools[0] != "ustack-no-such-tool" {
		t.Errorf("Check(sh, ustack-no-such-tool) = %v", err)
	}
}

// fakeTB records what Need does.
type fakeTB struct{ skipped, failed string }

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Skip(args ...any)  { f.skipped = fmt.Sprint(args...) }
func (f *fakeTB) Fatal(args ...any) { f.failed = fmt.Sprint(args...) }

// A missing tool skips the test, except in CI, where it fails it.
func TestNeed(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		var f fakeTB
		Need(&f, "sh", "ustack-no-such-tool")
		got, other := f.skipped, f.failed
		if ci != "" {
			got, other = f.failed, f.skipped
		}
		if !strings.Contains(got, "ustack-no-such-tool is not installed") || other != "" {
			t.Errorf("CI=%q: skipped %q, failed %q", ci, f.skipped, f.failed)
		}
		f = fakeTB{}
		Need(&f, "sh")
		if f.skipped != "" || f.failed != "" {
			t.Errorf("CI=%q, sh installed: skipped %q, failed %q", ci, f.skipped, f.failed)
		}
	}
}
