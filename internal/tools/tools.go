// Package tools says whether the programs that ustack's tests, lab and
// benchmark run (nc, curl, tcpdump, ...) are installed, and what to say
// when one is not: "nc is not installed", never a verdict about the stack.
//
// The list of those programs and their Debian packages lives in
// scripts/deps.sh, which make demo, make test, make bench and .ci/run call
// to install them. The map here repeats the package of each tool that Go
// code asks about, for the messages; a test checks it against the script.
package tools

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// debian is the Debian package of each tool (as in scripts/deps.sh).
var debian = map[string]string{
	"ip":       "iproute2",
	"ss":       "iproute2",
	"tc":       "iproute2",
	"nc":       "netcat-openbsd",
	"curl":     "curl",
	"ping":     "iputils-ping",
	"python3":  "python3",
	"nft":      "nftables",
	"tcpdump":  "tcpdump",
	"tshark":   "tshark",
	"chromium": "chromium",
	"setpriv":  "util-linux",
	"wrk":      "wrk",
	"iperf3":   "iperf3",
	"socat":    "socat",
}

// Installed reports whether tool is a program on PATH (or, as an absolute
// path, an executable file).
func Installed(tool string) bool {
	_, err := exec.LookPath(tool)
	return err == nil
}

// Missing returns the tools among names that are not installed, in order.
func Missing(names ...string) []string {
	var out []string
	for _, n := range names {
		if !Installed(n) {
			out = append(out, n)
		}
	}
	return out
}

// NotInstalledError is why something could not run: tools it needs are
// not installed.
type NotInstalledError struct {
	Tools []string
}

func (e *NotInstalledError) Error() string {
	verb := "is"
	if len(e.Tools) > 1 {
		verb = "are"
	}
	s := fmt.Sprintf("%s %s not installed", list(e.Tools), verb)
	if pkgs := Packages(e.Tools...); len(pkgs) > 0 {
		s += fmt.Sprintf(" (apt-get install %s)", strings.Join(pkgs, " "))
	}
	return s
}

// Packages is the Debian packages of the tools, each once.
func Packages(tools ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range tools {
		if p := debian[filepath.Base(t)]; p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// list is "nc", "nc and curl", "nc, curl and tcpdump".
func list(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// Check returns a *NotInstalledError naming the tools among names that are
// missing, or nil when all are installed.
func Check(names ...string) error {
	if m := Missing(names...); len(m) > 0 {
		return &NotInstalledError{Tools: m}
	}
	return nil
}

// InCI reports whether this runs in CI (.ci/run sets CI=true), where
// scripts/deps.sh has installed every tool: a missing one there is a broken
// set-up, a failure, not a reason to skip.
func InCI() bool {
	switch os.Getenv("CI") {
	case "", "0", "false":
		return false
	}
	return true
}

// TB is what Need and Lacking use of a *testing.T.
type TB interface {
	Helper()
	Skip(args ...any)
	Fatal(args ...any)
}

// Need ends a test whose tools are not all installed, saying which: it
// skips outside CI and fails in CI.
func Need(t TB, names ...string) {
	t.Helper()
	if err := Check(names...); err != nil {
		Lacking(t, "%v; scripts/deps.sh test installs what the tests use", err)
	}
}

// Lacking ends a test that cannot run here for want of something the
// machine should have (a tool, a browser): it skips with the reason, or
// fails with it in CI.
func Lacking(t TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatal("CI: " + msg)
		return
	}
	t.Skip(msg)
}
