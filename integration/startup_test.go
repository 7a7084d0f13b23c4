package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunFailedStartKeepsPcap: a start that fails (here --ctl names a
// regular file, which the daemon refuses to replace) leaves an existing
// --pcap file exactly as it was, and no device behind: the capture is
// created only once nothing else can fail.
func TestRunFailedStartKeepsPcap(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	dir := t.TempDir()
	capture := filepath.Join(dir, "earlier.pcap")
	const earlier = "an earlier capture that a failed start must not truncate\n"
	if err := os.WriteFile(capture, []byte(earlier), 0o644); err != nil {
		t.Fatal(err)
	}
	notSocket := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notSocket, []byte("not a socket\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := runIn(ns, 10*time.Second, ustackBin, "run", "--ctl", notSocket, "--pcap", capture)
	if code := exitCode(err); code != 1 || !strings.Contains(errOut, "exists and is not a socket") {
		t.Fatalf("ustack run --ctl REGULAR-FILE: exit %d (%v), stderr %q; want 1 and \"exists and is not a socket\"", code, err, errOut)
	}
	if b, err := os.ReadFile(capture); err != nil || string(b) != earlier {
		t.Errorf("--pcap %s after a failed start: %q, %v; want it untouched (%q)", capture, b, err, earlier)
	}
	if b, err := os.ReadFile(notSocket); err != nil || string(b) != "not a socket\n" {
		t.Errorf("--ctl %s after a failed start: %q, %v; want it untouched", notSocket, b, err)
	}
	if out, _ := ns.Run("ip", "-o", "link", "show"); strings.Contains(out, "tun0") {
		t.Errorf("a failed start left a device behind:\n%s", out)
	}
}
