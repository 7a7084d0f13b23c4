package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunFailedStartKeepsPcap: a start that fails once its capture is
// already being written (here tun0 is busy: another daemon owns it) leaves
// an existing --pcap file exactly as it was and no temporary file beside
// it: the capture replaces the file only once nothing else can fail.
func TestRunFailedStartKeepsPcap(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	d := startDaemon(t, ns)
	dir := t.TempDir()
	capture := filepath.Join(dir, "earlier.pcap")
	const earlier = "an earlier capture that a failed start must not truncate\n"
	if err := os.WriteFile(capture, []byte(earlier), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := runIn(ns, 10*time.Second, ustackBin, "run", "--ctl", filepath.Join(dir, "ctl2.sock"), "--pcap", capture)
	if code := exitCode(err); code != 1 || !strings.Contains(errOut, "tun0 is busy") {
		d.fatalf("second ustack run on tun0: exit %d (%v), stderr %q; want 1 and \"tun0 is busy\"", code, err, errOut)
	}
	if b, err := os.ReadFile(capture); err != nil || string(b) != earlier {
		t.Errorf("--pcap %s after a failed start: %q, %v; want it untouched (%q)", capture, b, err, earlier)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("after a failed start the directory holds %v, want only earlier.pcap", names)
	}
}
