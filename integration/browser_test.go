package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// chromiumArgs are the flags for a headless Chromium that needs nothing but
// the page: no sandbox (we are root), no GPU, no QUIC (TCP only), no
// background traffic, a throwaway profile.
func chromiumArgs(profile string) []string {
	return []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--no-default-browser-check",
		"--user-data-dir=" + profile,
	}
}

// TestBrowserStatusPage: headless Chromium inside the namespace loads
// http://10.0.0.2/ (and http://[fd00::2]/) from ustack and renders the
// status page. The DOM holds
// the connections table with the browser's own connection in ESTAB (B10)
// and the counters table. A screenshot is written too, to
// $USTACK_SCREENSHOT if set (else the test's temporary directory).
func TestBrowserStatusPage(t *testing.T) {
	t.Parallel()
	chromium := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			chromium = p
			break
		}
	}
	if chromium == "" {
		missing(t, "chromium is not installed (apt-get install chromium; scripts/deps.sh test installs what the tests use)")
	}
	ns := newNS(t)
	d := startDaemon(t, ns)

	args := append(chromiumArgs(filepath.Join(t.TempDir(), "profile")), "--dump-dom", "http://"+stackIP+"/")
	out, errOut, err := runIn(ns, 90*time.Second, chromium, args...)
	if err != nil {
		d.fatalf("chromium --dump-dom: %v\nstderr:\n%s", err, errOut)
	}
	for _, want := range []string{`<table id="connections">`, `<table id="counters">`, "<h1>ustack</h1>", "tcp.passive_opens"} {
		if !strings.Contains(out, want) {
			d.errorf("rendered DOM lacks %q:\n%s\nchromium stderr:\n%s", want, out, errOut)
		}
	}
	// Chromium parses the table into tbody/tr/td; the browser's own
	// connection is a row with ESTAB, 10.0.0.2:80 and a peer on 10.0.0.1.
	row := regexp.MustCompile(`<tr><td>ESTAB</td><td class="num">\d+</td><td class="num">\d+</td><td>10\.0\.0\.2:80</td><td>10\.0\.0\.1:\d+</td>`)
	if !row.MatchString(out) {
		d.errorf("rendered DOM has no ESTAB row for a connection from 10.0.0.1 to 10.0.0.2:80:\n%s", out)
	}

	// The same page over IPv6: a browser that prefers IPv6 gets it, its
	// connection listed from fd00::1 to [fd00::2]:80 (B64).
	args = append(chromiumArgs(filepath.Join(t.TempDir(), "profile6")), "--dump-dom", "http://["+stackIP6+"]/")
	out, errOut, err = runIn(ns, 90*time.Second, chromium, args...)
	if err != nil {
		d.fatalf("chromium --dump-dom over IPv6: %v\nstderr:\n%s", err, errOut)
	}
	row6 := regexp.MustCompile(`<tr><td>ESTAB</td><td class="num">\d+</td><td class="num">\d+</td><td>\[fd00::2\]:80</td><td>\[fd00::1\]:\d+</td>`)
	if !row6.MatchString(out) {
		d.errorf("the page over IPv6 has no ESTAB row for a connection from fd00::1 to [fd00::2]:80:\n%s", out)
	}

	shot := os.Getenv("USTACK_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "ustack-status.png")
	}
	args = append(chromiumArgs(filepath.Join(t.TempDir(), "profile2")), "--screenshot="+shot, "--window-size=1000,700", "--hide-scrollbars", "http://"+stackIP+"/")
	if _, errOut, err := runIn(ns, 90*time.Second, chromium, args...); err != nil {
		d.fatalf("chromium --screenshot: %v\nstderr:\n%s", err, errOut)
	}
	fi, err := os.Stat(shot)
	if err != nil || fi.Size() < 1000 {
		d.fatalf("chromium --screenshot wrote no image at %s: %v", shot, err)
	}
	t.Logf("screenshot of the status page: %s (%d bytes)", shot, fi.Size())
}
