package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// exitCode is a finished command's exit status (-1 if it did not exit).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// TestRunUsageErrors: bad command lines are refused with a clear message and
// exit status 2, before anything on the system changes. They run inside a
// namespace anyway, so that a daemon that wrongly started would make its
// device there.
func TestRunUsageErrors(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	ctl := filepath.Join(t.TempDir(), "ctl.sock")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--serve", "frobnicate:9"}, `unknown service kind "frobnicate"`},
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"--serve", "echo:7", "--serve", "discard:7"}, "port 7 is already used"},
		{[]string{"--serve", "echo:0"}, "bad port"},
		{[]string{"--mtu", "10"}, "--mtu 10"},
		{[]string{"--mtu", "575"}, "--mtu 575: want 576..65535"}, // below what the stack takes
		{[]string{"--addr", "192.168.1.2"}, "outside"},
	} {
		args := append([]string{"run", "--ctl", ctl}, tc.args...)
		out, errOut, err := runIn(ns, 10*time.Second, ustackBin, args...)
		if code := exitCode(err); code != 2 {
			t.Errorf("ustack %s: exit %d (%v), want 2\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, err, out, errOut)
			continue
		}
		if !strings.Contains(errOut, tc.want) {
			t.Errorf("ustack %s: stderr lacks %q:\n%s", strings.Join(args, " "), tc.want, errOut)
		}
	}
	if out, _ := ns.Run("ip", "-o", "link", "show"); strings.Contains(out, "tun0") {
		t.Errorf("a refused command line left a device behind:\n%s", out)
	}
}

// TestRunWithoutCapNetAdmin: without CAP_NET_ADMIN (dropped with setpriv),
// or as an ordinary user, ustack run says what it needs.
func TestRunWithoutCapNetAdmin(t *testing.T) {
	t.Parallel()
	setpriv := needTool(t, "setpriv")
	ns := newNS(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"root without CAP_NET_ADMIN", []string{"--inh-caps=-all", "--bounding-set=-net_admin"}},
		{"user nobody", []string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"}},
	} {
		args := append(tc.args, ustackBin, "run", "--ctl", filepath.Join(dir, "ctl.sock"))
		out, errOut, err := runIn(ns, 10*time.Second, setpriv, args...)
		if err == nil {
			t.Errorf("%s: ustack run succeeded, want a failure\nstderr: %s", tc.name, errOut)
			continue
		}
		if code := exitCode(err); code <= 0 {
			t.Errorf("%s: %v, want a non-zero exit\nstderr: %s", tc.name, err, errOut)
		}
		const want = "ustack run: creating tun0 needs CAP_NET_ADMIN"
		if !strings.Contains(errOut, want) {
			t.Errorf("%s: stderr lacks %q:\nstdout: %s\nstderr: %s", tc.name, want, out, errOut)
		}
	}
	if out, _ := ns.Run("ip", "-o", "link", "show"); strings.Contains(out, "tun0") {
		t.Errorf("a failed start left a device behind:\n%s", out)
	}
}

// TestRunTunBusy: a second daemon on the tun0 the first one owns fails with
// a clear "busy" error and leaves the first one working.
func TestRunTunBusy(t *testing.T) {
	t.Parallel()
	needTool(t, "curl")
	ns := newNS(t)
	d := startDaemon(t, ns)
	ctl2 := filepath.Join(t.TempDir(), "ctl2.sock")
	_, errOut, err := runIn(ns, 10*time.Second, ustackBin, "run", "--ctl", ctl2, "--serve", "echo:7")
	if err == nil || exitCode(err) <= 0 {
		d.fatalf("second ustack run on tun0: %v, want a non-zero exit\nstderr: %s", err, errOut)
	}
	if !strings.Contains(errOut, "tun0 is busy") {
		d.errorf("second ustack run on tun0: stderr lacks %q:\n%s", "tun0 is busy", errOut)
	}
	// The same control socket is refused before anything is touched.
	_, errOut, err = runIn(ns, 10*time.Second, ustackBin, "run", "--ctl", d.ctl, "--tun", "tun1")
	if err == nil || exitCode(err) <= 0 || !strings.Contains(errOut, "another ustack daemon") {
		d.errorf("ustack run with the first daemon's --ctl: %v, want a non-zero exit and %q\nstderr: %s", err, "another ustack daemon", errOut)
	}
	// The first daemon still serves.
	out, errOut, err := runIn(ns, 30*time.Second, "curl", "-sS", "--max-time", "20", "http://"+stackIP+"/")
	if err != nil || !strings.Contains(out, `<table id="connections">`) {
		d.fatalf("the first daemon stopped serving after the second failed: %v %s\n%s", err, errOut, out)
	}
	if _, err := d.ss(); err != nil {
		d.fatalf("the first daemon's control socket stopped answering: %v", err)
	}
}

// TestRunCleansUp: after SIGTERM the daemon has removed the tun0 it created
// and its control socket, so the same command starts again at once.
func TestRunCleansUp(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	d := startDaemon(t, ns)
	if out, err := ns.Run("ip", "-o", "-4", "addr", "show", "tun0"); err != nil || !strings.Contains(out, kernelIP+"/24") {
		d.fatalf("tun0 does not carry %s/24 while the daemon runs: %v\n%s", kernelIP, err, out)
	}
	d.stop()
	if out, err := ns.Run("ip", "-o", "link", "show"); err != nil || strings.Contains(out, "tun0") {
		t.Errorf("tun0 is still there after the daemon exited (%v):\n%s", err, out)
	}
	if _, err := os.Lstat(d.ctl); err == nil {
		t.Errorf("control socket %s is still there after the daemon exited", d.ctl)
	}
	// Once more on the same names.
	d2 := startDaemonCtl(t, ns, d.ctl)
	if _, err := d2.ss(); err != nil {
		d2.fatalf("second daemon: %v", err)
	}
}

// TestRunAttachPersistentTun: --tun names a persistent TUN device that
// already exists (ip tuntap add): the daemon attaches to it, serves, and on
// exit leaves the device in place, as it found it.
func TestRunAttachPersistentTun(t *testing.T) {
	t.Parallel()
	needTool(t, "curl")
	ns := newNS(t)
	if _, err := ns.Run("ip", "tuntap", "add", "dev", "tun0", "mode", "tun"); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, ns)
	out, errOut, err := runIn(ns, 30*time.Second, "curl", "-sS", "--max-time", "20", "http://"+stackIP+"/")
	if err != nil || !strings.Contains(out, `<table id="connections">`) {
		d.fatalf("curl through an attached persistent tun0: %v %s\n%s", err, errOut, out)
	}
	d.stop()
	out, err = ns.Run("ip", "-o", "link", "show", "tun0")
	if err != nil {
		t.Fatalf("the persistent tun0 is gone after the daemon exited: %v", err)
	}
	if out, _ := ns.Run("ip", "-o", "-4", "addr", "show", "tun0"); strings.Contains(out, kernelIP) {
		t.Errorf("the daemon left its address on the persistent tun0 it attached to (it had none):\n%s", out)
	}
}

// TestRunSubnetTaken: when another interface in the namespace already has
// the kernel-side address (here a second, persistent TUN device holding
// 10.0.0.1/24 and its route), the kernel routes 10.0.0.2 there and no client
// could ever reach the stack. The daemon must refuse with a clear "already
// in use" error rather than run unreachable (issue 2: "address already
// used").
func TestRunSubnetTaken(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	for _, args := range [][]string{
		{"ip", "tuntap", "add", "dev", "other0", "mode", "tun"},
		{"ip", "addr", "add", kernelIP + "/24", "dev", "other0"},
		{"ip", "link", "set", "other0", "up"},
	} {
		if _, err := ns.Run(args[0], args[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	ctl := filepath.Join(t.TempDir(), "ctl.sock")
	_, errOut, err := runIn(ns, 5*time.Second, ustackBin, "run", "--ctl", ctl)
	if err == nil || exitCode(err) <= 0 {
		route, _ := ns.Run("ip", "route", "get", stackIP)
		t.Fatalf("ustack run started although %s/24 is already on other0 (the kernel routes %s via: %s); want a non-zero exit with an \"already in use\" error\nstderr:\n%s",
			kernelIP, stackIP, strings.TrimSpace(route), errOut)
	}
	if !strings.Contains(errOut, "already") {
		t.Errorf("ustack run with %s/24 already on other0: stderr lacks \"already\":\n%s", kernelIP, errOut)
	}
}
