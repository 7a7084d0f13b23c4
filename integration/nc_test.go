package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// worldDir is a fresh directory every local user may enter, holding a link
// to (or a copy of) the ustack binary: TestMain's directory is root's
// alone. It is removed when the test ends.
func worldDir(t *testing.T) (dir, bin string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ustack-world-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "ustack")
	if err := os.Link(ustackBin, bin); err != nil {
		b, err := os.ReadFile(ustackBin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, bin
}

// TestCtlPrivilege: the control socket is open to every local user (mode
// 0666) for the read-only ss, but `ustack nc`, which opens connections from
// the stack's address and listens on its ports, is refused to anyone but
// root and the daemon's own user (SO_PEERCRED). Nothing is opened for the
// refused caller.
func TestCtlPrivilege(t *testing.T) {
	t.Parallel()
	setpriv := needTool(t, "setpriv")
	ns := newNS(t)
	dir, bin := worldDir(t)
	d := startDaemonCtl(t, ns, filepath.Join(dir, "ctl.sock"), "--serve", "echo:7")
	ln := kernelListen(t, ns, kernelIP+":9000")

	asNobody := func(args ...string) (string, string, int) {
		full := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)
		out, errOut, err := runIn(ns, 10*time.Second, setpriv, full...)
		return out, errOut, exitCode(err)
	}
	out, errOut, code := asNobody("ss", "--ctl", d.ctl)
	if code != 0 || !strings.HasPrefix(out, "State") || !strings.Contains(out, "10.0.0.2:7") {
		d.fatalf("ustack ss as uid 65534: exit %d, stdout %q, stderr %q; want the socket list", code, out, errOut)
	}
	if out, errOut, code := asNobody("ss", "--ctl", d.ctl, "--stats"); code != 0 {
		d.fatalf("ustack ss --stats as uid 65534: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	const refused = "ustack nc: permission denied: only root may open connections through the daemon\n"
	for _, args := range [][]string{
		{"-N", kernelIP, "9000"},
		{"-l", "5555"},
		{"-p", "5556", "-N", stackIP, "5556"},
	} {
		out, errOut, code := asNobody(append([]string{"nc", "--ctl", d.ctl}, args...)...)
		if code != 1 || errOut != refused || out != "" {
			d.fatalf("ustack nc %s as uid 65534: exit %d, stdout %q, stderr %q; want exit 1 and %q",
				strings.Join(args, " "), code, out, errOut, refused)
		}
	}
	for _, l := range d.sockets() {
		if l.Local != "10.0.0.2:7" && l.Local != "["+stackIP6+"]:7" {
			d.fatalf("a refused ustack nc left a socket in the stack: %+v", l)
		}
	}
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(300 * time.Millisecond))
	if c, err := ln.Accept(); err == nil {
		c.Close()
		d.fatalf("a refused ustack nc connected to the kernel's listener")
	}
	ln.(*net.TCPListener).SetDeadline(time.Time{})

	// Root still may.
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
		c.Write([]byte("ok"))
	}()
	if out, errOut, code := d.nc("hi", 15*time.Second, "-N", kernelIP, "9000"); code != 0 || out != "ok" {
		d.fatalf("ustack nc as root: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestNCHalfClose: `ustack nc` keeps sending standard input after the
// peer's FIN, as OpenBSD nc does (B34): halfclose writes its greeting and
// shuts down writing at once, and still receives every byte nc sends after
// that. With -N nc shuts down writing at the end of input; without it, it
// closes when input ends, the peer having finished already. Either way it
// exits 0 once both directions are done.
func TestNCHalfClose(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	d := startDaemon(t, ns, "--serve", "halfclose:8084")
	const greeting = "hello from ustack halfclose\n"
	for _, tc := range []struct {
		args          []string
		before, after int // bytes written before and after the peer's FIN
	}{
		{[]string{"-N"}, 1000, 15000},
		{nil, 1500, 20000},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		args := append(append([]string{"nc", "--ctl", d.ctl}, tc.args...), stackIP, "8084")
		name := "ustack " + strings.Join(args, " ")
		cmd := exec.CommandContext(ctx, ustackBin, args...)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stdout, stderr syncBuffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()

		if _, err := stdin.Write(bytes.Repeat([]byte("a"), tc.before)); err != nil {
			d.fatalf("%s: writing its input: %v", name, err)
		}
		// The greeting, then halfclose's FIN: nc's socket is in CLOSE-WAIT.
		deadline := time.Now().Add(10 * time.Second)
		for !closeWaitTo(d, stackIP+":8084") || stdout.String() != greeting {
			select {
			case err := <-done:
				d.fatalf("%s exited (%v) at the peer's FIN with its input still open; stdout %q, stderr %q", name, err, stdout.String(), stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				d.fatalf("%s: no greeting and FIN from halfclose: stdout %q, stderr %q, sockets %+v", name, stdout.String(), stderr.String(), d.sockets())
			}
			time.Sleep(20 * time.Millisecond)
		}
		select {
		case err := <-done:
			d.fatalf("%s exited (%v) at the peer's FIN with its input still open; stderr %q", name, err, stderr.String())
		case <-time.After(300 * time.Millisecond):
		}
		if _, err := stdin.Write(bytes.Repeat([]byte("b"), tc.after)); err != nil {
			d.fatalf("%s: writing its input after the peer's FIN: %v", name, err)
		}
		stdin.Close()
		select {
		case err := <-done:
			if code := exitCode(err); code != 0 || stdout.String() != greeting || stderr.String() != "" {
				d.fatalf("%s: exit %d, stdout %q, stderr %q; want 0 and the greeting alone", name, code, stdout.String(), stderr.String())
			}
		case <-time.After(15 * time.Second):
			d.fatalf("%s still running 15 s after the end of its input (both directions done)", name)
		}
		want := fmt.Sprintf("halfclose: read %d bytes\n", tc.before+tc.after)
		if !d.waitStderr(want, 10*time.Second) {
			d.fatalf("%s: the daemon did not log %q", name, want)
		}
	}
}

// closeWaitTo reports whether the stack has a socket in CLOSE-WAIT whose
// peer is peer.
func closeWaitTo(d *daemon, peer string) bool {
	for _, l := range d.sockets() {
		if l.State == "CLOSE-WAIT" && l.Peer == peer {
			return true
		}
	}
	return false
}

// TestNCReset: closer closes with the client's bytes unread, so the stack
// answers with RST (B32); `ustack nc` says "connection reset by peer", like
// a read() = ECONNRESET, and exits 1, with or without -N.
func TestNCReset(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	d := startDaemon(t, ns, "--serve", "closer:8083")
	for _, args := range [][]string{{stackIP, "8083"}, {"-N", stackIP, "8083"}} {
		out, errOut, code := d.nc("data the closer never reads\n", 15*time.Second, args...)
		if want := "ustack nc: connection reset by peer\n"; code != 1 || errOut != want || out != "" {
			d.fatalf("ustack nc %s to closer: exit %d, stdout %q, stderr %q; want exit 1 and %q",
				strings.Join(args, " "), code, out, errOut, want)
		}
	}
}

// TestNCFlagsLikeNetcat: `ustack nc` takes netcat-openbsd's flags against
// the real daemon: -w in plain seconds, -q (quit after the end of input,
// implying -N), -v's message, and -z scanning an open and a closed port.
func TestNCFlagsLikeNetcat(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	d := startDaemon(t, ns, "--serve", "echo:7")
	out, errOut, code := d.nc("hello\n", 15*time.Second, "-v", "-w", "3", "-q", "5", stackIP, "7")
	if code != 0 || out != "hello\n" || !strings.Contains(errOut, "Connection to "+stackIP+" 7 port [tcp/") {
		d.fatalf("ustack nc -v -w 3 -q 5 %s 7: exit %d, stdout %q, stderr %q", stackIP, code, out, errOut)
	}
	out, errOut, code = d.nc("", 15*time.Second, "-zv", stackIP, "7-8")
	if code != 0 || out != "" || !strings.Contains(errOut, "Connection to "+stackIP+" 7 port") ||
		!strings.Contains(errOut, "connect to "+stackIP+" port 8 (tcp) failed: connection refused") {
		d.fatalf("ustack nc -zv %s 7-8: exit %d, stdout %q, stderr %q", stackIP, code, out, errOut)
	}
	if _, errOut, code := d.nc("", 5*time.Second, "-Y", stackIP, "7"); code != 2 || !strings.Contains(errOut, "usage: ustack nc") {
		d.fatalf("ustack nc -Y: exit %d, stderr %q; want 2 and the usage", code, errOut)
	}
}
