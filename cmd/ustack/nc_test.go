package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The client side of `ustack nc`, against a fake daemon whose nc op plays
// a script on the control connection (the integration tests run it
// against the real daemon).

// fakeNCDaemon serves a control socket whose nc op runs script on the
// hijacked connection, then closes it.
func fakeNCDaemon(t *testing.T, script func(c net.Conn, r *bufio.Reader)) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "nc.sock")
	ops := ctlOps(&fakeView{})
	ops["nc"] = func(s *ctlSession) (any, error) {
		c, r := s.Hijack()
		go func() {
			defer c.Close()
			script(c, r)
		}()
		return nil, nil
	}
	srv, err := listenCtl(path, ops, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return path
}

// ncRun runs the client in a goroutine with stdin from a pipe.
type ncRun struct {
	stdin          *io.PipeWriter
	stdout, stderr syncBuffer
	code           chan int
}

func startNC(args ...string) *ncRun {
	pr, pw := io.Pipe()
	r := &ncRun{stdin: pw, code: make(chan int, 1)}
	go func() { r.code <- runNC(args, pr, &r.stdout, &r.stderr) }()
	return r
}

// exit waits for the client's exit status.
func (r *ncRun) exit(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case c := <-r.code:
		return c
	case <-time.After(d):
		t.Fatalf("ustack nc still running after %v (stdout %q, stderr %q)", d, r.stdout.String(), r.stderr.String())
		return -1
	}
}

// running fails the test if the client exits within d.
func (r *ncRun) running(t *testing.T, d time.Duration, what string) {
	t.Helper()
	select {
	case c := <-r.code:
		t.Fatalf("ustack nc exited %d %s (stderr %q)", c, what, r.stderr.String())
	case <-time.After(d):
	}
}

// halfCloseScript is the halfclose service seen through the daemon: a
// greeting, the peer's FIN, then everything the client sends until its end.
func halfCloseScript(finSent chan<- struct{}, got chan<- int64) func(net.Conn, *bufio.Reader) {
	return func(c net.Conn, r *bufio.Reader) {
		writeFrame(c, frameUp, []byte("10.0.0.2:40000 10.0.0.2:8084"))
		writeFrame(c, frameData, []byte(halfCloseGreeting))
		writeFrame(c, frameFIN, nil)
		close(finSent)
		n, _ := io.Copy(io.Discard, r)
		got <- n
	}
}

// Standard input keeps flowing after the peer's FIN (B34); the client
// exits 0 once its input is sent, with -N after the daemon has passed on
// its end, without -N by closing.
func TestNCSendsAfterPeerFIN(t *testing.T) {
	for _, args := range [][]string{{"-N"}, nil} {
		finSent, got := make(chan struct{}), make(chan int64, 1)
		path := fakeNCDaemon(t, halfCloseScript(finSent, got))
		r := startNC(append(append([]string{"--ctl", path}, args...), "10.0.0.2", "8084")...)
		r.stdin.Write(bytes.Repeat([]byte("a"), 1000))
		<-finSent
		for deadline := time.Now().Add(5 * time.Second); r.stdout.String() != halfCloseGreeting; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%q: no greeting on stdout after 5 s: %q", args, r.stdout.String())
			}
		}
		r.running(t, 100*time.Millisecond, "at the peer's FIN with its input open")
		r.stdin.Write(bytes.Repeat([]byte("b"), 50000))
		r.stdin.Close()
		if code := r.exit(t, 5*time.Second); code != 0 || r.stderr.String() != "" || r.stdout.String() != halfCloseGreeting {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, r.stdout.String(), r.stderr.String())
		}
		select {
		case n := <-got:
			if n != 51000 {
				t.Errorf("%q: the daemon got %d bytes, want 51000", args, n)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%q: the daemon never saw the end of input", args)
		}
	}
}

// With -N the client waits, after its input and the peer's FIN, until the
// daemon has written everything: an error meanwhile is still reported.
func TestNCErrorAfterPeerFIN(t *testing.T) {
	path := fakeNCDaemon(t, func(c net.Conn, r *bufio.Reader) {
		writeFrame(c, frameUp, []byte("10.0.0.2:40000 10.0.0.2:8083"))
		writeFrame(c, frameFIN, nil)
		io.ReadFull(r, make([]byte, 3))
		writeFrame(c, frameErr, []byte("connection reset by peer"))
	})
	r := startNC("--ctl", path, "-N", "10.0.0.2", "8083")
	r.stdin.Write([]byte("abc"))
	if code := r.exit(t, 5*time.Second); code != 1 || r.stderr.String() != "ustack nc: connection reset by peer\n" {
		t.Errorf("exit %d, stderr %q; want 1 and connection reset by peer", code, r.stderr.String())
	}
	r.stdin.Close()
}

// nc -l returns at the peer's FIN even with its input open, as OpenBSD's
// nc -l does.
func TestNCListenEndsAtPeerFIN(t *testing.T) {
	path := fakeNCDaemon(t, func(c net.Conn, r *bufio.Reader) {
		writeFrame(c, frameUp, []byte("10.0.0.2:5555 10.0.0.1:40000"))
		writeFrame(c, frameData, []byte("hi\n"))
		writeFrame(c, frameFIN, nil)
		io.Copy(io.Discard, r)
	})
	r := startNC("--ctl", path, "-l", "5555")
	if code := r.exit(t, 5*time.Second); code != 0 || r.stdout.String() != "hi\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, r.stdout.String(), r.stderr.String())
	}
	r.stdin.Close()
}

// A daemon that ends the control connection while input is still flowing
// (it stopped) is an error, not a clean end.
func TestNCDaemonGoneAfterFIN(t *testing.T) {
	path := fakeNCDaemon(t, func(c net.Conn, r *bufio.Reader) {
		writeFrame(c, frameUp, []byte("10.0.0.2:40000 10.0.0.1:9000"))
		writeFrame(c, frameFIN, nil)
	})
	r := startNC("--ctl", path, "-N", "10.0.0.1", "9000")
	if code := r.exit(t, 5*time.Second); code != 1 || !strings.Contains(r.stderr.String(), "ustack nc: the daemon closed the control connection") {
		t.Errorf("exit %d, stderr %q", code, r.stderr.String())
	}
	r.stdin.Close()
}

// An op that fails before opening anything (nc with --engine gvisor)
// replies with a JSON error line, which the client prints like its own.
func TestNCOpError(t *testing.T) {
	path := ncCtl(t, func(*ctlSession) (any, error) { return nil, errors.New("nc is not available with --engine gvisor") })
	var stdout, stderr bytes.Buffer
	code := runNC([]string{"--ctl", path, "10.0.0.1", "80"}, strings.NewReader(""), &stdout, &stderr)
	if want := "ustack nc: nc is not available with --engine gvisor\n"; code != 1 || stderr.String() != want {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), want)
	}
}

// ncCtl serves a control socket whose "nc" op is op, in a directory short
// enough for a socket path, for the test's length; it returns the path.
func ncCtl(t *testing.T, op ctlOp) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "nc.sock")
	ops := ctlOps(&fakeView{})
	ops["nc"] = op
	srv, err := listenCtl(path, ops, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return path
}
