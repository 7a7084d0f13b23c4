// Package integration runs the ustack daemon for real: each test makes a
// network namespace of its own, starts `ustack run` on tun0 inside it, and
// points kernel clients (curl, ping, Go's net package, raw sockets, headless
// Chromium) at the stack's address 10.0.0.2. Every test names the behaviour
// ids of ../../shared/spec/behaviours.md it checks.
//
// Nothing here touches the namespace the tests start in: devices, addresses
// and packets live in namespaces the tests create and delete. The tests need
// root (to make namespaces); without it they skip, saying why.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ustack/internal/tools"
	"ustack/netns"
)

// ustackBin is the daemon built once by TestMain; skipReason says why the
// tests cannot run here ("" when they can).
var (
	ustackBin  string
	skipReason string
)

const (
	stackIP   = "10.0.0.2" // the stack's address (ustack run's default --addr)
	kernelIP  = "10.0.0.1" // the kernel's side of tun0 (default --tun-addr)
	startWait = 15 * time.Second
	stopWait  = 15 * time.Second
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if ok, why := netns.Available(); !ok {
		skipReason = why
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "ustack-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ustackBin = filepath.Join(dir, "ustack")
	// The daemon gets the race detector when the tests have it, so that
	// `go test -race` also checks the daemon under real traffic.
	args := []string{"build", "-o", ustackBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "ustack/cmd/ustack")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gocmd := "go"
	if _, err := exec.LookPath(gocmd); err != nil {
		gocmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.CommandContext(ctx, gocmd, args...)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: go %s: %v\n%s", strings.Join(args, " "), err, out)
		return 1
	}
	return m.Run()
}

// newNS makes a namespace for one test and deletes it when the test ends.
// It skips the test when namespaces cannot be made here.
func newNS(t *testing.T) *netns.NS {
	t.Helper()
	if skipReason != "" {
		t.Skip("integration tests need network namespaces: " + skipReason)
	}
	ns, err := netns.New("ustack-it")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Errorf("deleting namespace: %v", err)
		}
	})
	return ns
}

// syncBuffer collects a process's output while tests read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemon is one `ustack run` inside a test's namespace.
type daemon struct {
	t      *testing.T
	ns     *netns.NS
	ctl    string
	cmd    *exec.Cmd
	stderr *syncBuffer
	stdout *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, valid after done
	once   sync.Once     // stop's
}

// startDaemon runs `ustack run --ctl DIR/ctl.sock args...` in ns and waits
// until its control socket answers. The cleanup stops it with SIGTERM and
// fails the test unless it exits 0; its stderr is in every failure message
// through d.fatalf.
func startDaemon(t *testing.T, ns *netns.NS, args ...string) *daemon {
	t.Helper()
	d := launchDaemon(t, ns, "", args...)
	d.waitReady()
	return d
}

// startDaemonCtl is startDaemon with the control socket at ctl.
func startDaemonCtl(t *testing.T, ns *netns.NS, ctl string, args ...string) *daemon {
	t.Helper()
	d := launchDaemon(t, ns, ctl, args...)
	d.waitReady()
	return d
}

// launchDaemon starts the daemon without waiting for it; ctl "" means a
// fresh path in the test's temporary directory.
func launchDaemon(t *testing.T, ns *netns.NS, ctl string, args ...string) *daemon {
	t.Helper()
	if ctl == "" {
		ctl = filepath.Join(t.TempDir(), "ctl.sock")
	}
	d := &daemon{
		t:      t,
		ns:     ns,
		ctl:    ctl,
		stderr: &syncBuffer{},
		stdout: &syncBuffer{},
		done:   make(chan struct{}),
	}
	full := append([]string{"run", "--ctl", d.ctl}, args...)
	// `ip netns exec` execs the command in place, so the process we start
	// is the daemon itself: signals reach it, and it dies with the test.
	d.cmd = ns.Command(ustackBin, full...)
	d.cmd.Stdout = d.stdout
	d.cmd.Stderr = d.stderr
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting ustack run: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(d.stop)
	return d
}

// exited reports whether the daemon has exited.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// waitReady polls `ustack ss --ctl` until it answers.
func (d *daemon) waitReady() {
	d.t.Helper()
	deadline := time.Now().Add(startWait)
	var last string
	for time.Now().Before(deadline) {
		if d.exited() {
			d.t.Fatalf("ustack run exited during startup (%v)\nstderr:\n%s", d.err, d.stderr)
		}
		out, err := d.ss()
		if err == nil {
			return
		}
		last = out
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("ustack run: control socket %s did not answer within %v (last ss: %s)\nstderr:\n%s", d.ctl, startWait, last, d.stderr)
}

// stop sends SIGTERM and checks that the daemon exits 0 in time. Only the
// first call does anything.
func (d *daemon) stop() {
	d.t.Helper()
	d.once.Do(d.stop1)
}

func (d *daemon) stop1() {
	d.t.Helper()
	if !d.exited() {
		d.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-d.done:
	case <-time.After(stopWait):
		d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("ustack run did not exit within %v of SIGTERM\nstderr:\n%s", stopWait, d.stderr)
		return
	}
	if d.err != nil {
		d.t.Errorf("ustack run exited with %v after SIGTERM, want status 0\nstderr:\n%s", d.err, d.stderr)
	}
}

// fatalf fails the test with the daemon's stderr appended.
func (d *daemon) fatalf(format string, args ...any) {
	d.t.Helper()
	d.t.Fatalf(format+"\n--- ustack run stderr:\n%s", append(args, d.stderr)...)
}

func (d *daemon) errorf(format string, args ...any) {
	d.t.Helper()
	d.t.Errorf(format+"\n--- ustack run stderr:\n%s", append(args, d.stderr)...)
}

// ustack runs the ustack binary (outside the namespace: ss and the like only
// talk to the control socket, a file) with a timeout.
func ustack(timeout time.Duration, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, ustackBin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// ss returns `ustack ss --ctl`'s output.
func (d *daemon) ss(extra ...string) (string, error) {
	out, errOut, err := ustack(10*time.Second, append([]string{"ss", "--ctl", d.ctl}, extra...)...)
	if err != nil {
		return out + errOut, fmt.Errorf("ustack ss: %v: %s", err, errOut)
	}
	return out, nil
}

// ssLine is one socket line of `ustack ss`.
type ssLine struct {
	State        string
	RecvQ, SendQ int
	Local, Peer  string
	Timer        string
}

// sockets parses `ustack ss`.
func (d *daemon) sockets() []ssLine {
	d.t.Helper()
	out, err := d.ss()
	if err != nil {
		d.fatalf("%v", err)
	}
	return parseSS(d.t, out)
}

func parseSS(t *testing.T, out string) []ssLine {
	t.Helper()
	var lines []ssLine
	sc := bufio.NewScanner(strings.NewReader(out))
	first := true
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if first {
			first = false
			if len(f) == 0 || f[0] != "State" {
				t.Fatalf("ustack ss: first line is not the header: %q", sc.Text())
			}
			continue
		}
		if len(f) == 0 {
			break // the counters follow an empty line with --stats
		}
		if len(f) < 5 {
			t.Fatalf("ustack ss: short line %q", sc.Text())
		}
		r, err1 := strconv.Atoi(f[1])
		s, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			t.Fatalf("ustack ss: bad queue sizes in %q", sc.Text())
		}
		lines = append(lines, ssLine{State: f[0], RecvQ: r, SendQ: s, Local: f[3], Peer: f[4], Timer: strings.Join(f[5:], " ")})
	}
	return lines
}

// counters returns the counters of `ustack ss --stats`.
func (d *daemon) counters() map[string]uint64 {
	d.t.Helper()
	out, err := d.ss("--stats")
	if err != nil {
		d.fatalf("%v", err)
	}
	_, stats, ok := strings.Cut(out, "\n\n")
	if !ok {
		d.fatalf("ustack ss --stats: no counters after the sockets:\n%s", out)
	}
	m := map[string]uint64{}
	for _, line := range strings.Split(strings.TrimSpace(stats), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			d.fatalf("ustack ss --stats: bad counter line %q", line)
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			d.fatalf("ustack ss --stats: bad counter line %q", line)
		}
		m[f[0]] = v
	}
	return m
}

// waitStderr waits until the daemon's stderr contains s.
func (d *daemon) waitStderr(s string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(d.stderr.String(), s) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return strings.Contains(d.stderr.String(), s)
}

// runIn runs a command inside the namespace with a timeout and returns its
// stdout and stderr.
func runIn(ns *netns.NS, timeout time.Duration, name string, args ...string) (string, string, error) {
	var o bytes.Buffer
	e, err := streamIn(ns, timeout, &o, name, args...)
	return o.String(), e, err
}

// streamIn runs a command inside the namespace with a timeout, its stdout
// going to stdout; it returns its stderr. A command still running at the
// timeout gets SIGTERM (so that a daemon that should have failed but started
// still removes what it made), then SIGKILL.
func streamIn(ns *netns.NS, timeout time.Duration, stdout io.Writer, name string, args ...string) (string, error) {
	cmd := ns.Command(name, args...)
	var e syncBuffer
	cmd.Stdout, cmd.Stderr = stdout, &e
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		return e.String(), err
	case <-time.After(timeout):
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-waitErr:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-waitErr
		}
		return e.String(), fmt.Errorf("%s %s: still running after %v, stopped", name, strings.Join(args, " "), timeout)
	}
}

// dialKernel opens a kernel TCP socket inside the namespace and connects it
// to addr: the socket is created on a thread in the namespace, and may be
// used from any goroutine afterwards.
func dialKernel(ns *netns.NS, addr string, timeout time.Duration) (*net.TCPConn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// needTool ends the test when a command is missing, saying so: it skips,
// or fails in CI (CI set, as .ci/run has it), where scripts/deps.sh has
// installed every tool and a missing one is a broken set-up. It returns
// the command's path.
func needTool(t *testing.T, name string) string {
	t.Helper()
	tools.Need(t, name)
	p, _ := exec.LookPath(name)
	return p
}

// missing ends a test that cannot run for want of something this machine
// lacks, as needTool does: a skip, or a failure in CI.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	tools.Lacking(t, format, args...)
}

// readAllTimeout reads c until EOF or an error, with a deadline.
func readAllTimeout(c net.Conn, timeout time.Duration) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return b, err
}

// echoThrough writes data to c and then half-closes it, while it reads
// what comes back until EOF: an echo's round trip. It returns what was
// read, the write's (or CloseWrite's) error and the read's.
func echoThrough(c *net.TCPConn, data []byte) (got []byte, werr, rerr error) {
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		done <- err
	}()
	got, rerr = io.ReadAll(c)
	return got, <-done, rerr
}
