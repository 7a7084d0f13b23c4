package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ustack/impair"
	"ustack/internal/tools"
	"ustack/netns"
	"ustack/stack"
	"ustack/tun"
)

// The lab's short timers: long enough to watch, short enough to wait for.
const (
	labFinTimeout = 3 * time.Second
	labTimeWait   = 2 * time.Second
)

// Env is the world of one experiment: its own network namespace with tun0
// (the kernel's side 10.0.0.1/24), a stack on it at 10.0.0.2 whose packets
// and transitions go to the timeline, and everything the experiment opened,
// closed again by close whatever happens.
type Env struct {
	// U and K are ustack's and the kernel's addresses for this run: IPv4,
	// or IPv6 for an experiment's -ipv6 run.
	U, K netip.Addr

	exp  *Experiment
	ctx  context.Context
	ns   *netns.NS
	dev  *tun.Device
	tap  *tapLink
	imp  *impair.Link
	st   *stack.Stack
	opts stack.Options
	tl   *Timeline

	checks []Check
	// execErrs: programs Exec could not run because they are missing, or
	// are not among the experiment's Tools (a bug in the experiment).
	execErrs []error

	mu       sync.Mutex
	cleanups []func() // run last first
	wg       sync.WaitGroup
}

// tapLink counts the packets the stack writes to the TUN device: none do
// on the loopback path (B16).
type tapLink struct {
	stack.Link
	out atomic.Int64
}

func (t *tapLink) WritePacket(b []byte) error {
	if _, ok := parseSegment(b); ok {
		t.out.Add(1)
	}
	return t.Link.WritePacket(b)
}

// newEnv builds the world for e. On error, the caller still calls close,
// which undoes whatever was made.
func newEnv(ctx context.Context, e *Experiment, tl *Timeline, x *Env) error {
	x.exp, x.ctx, x.tl = e, ctx, tl
	x.U, x.K = ustackAddr, kernelAddr
	if e.over6 {
		x.U, x.K = ustackAddr6, kernelAddr6
	}
	ns, err := netns.New("lab")
	if err != nil {
		return err
	}
	x.ns = ns
	// Safety first: the kernel in this namespace must not forward what
	// the stack sends to addresses other than its own (B14 dials one).
	out, err := ns.Run("cat", "/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) != "0" {
		return fmt.Errorf("net.ipv4.ip_forward is %q in the fresh namespace %s; refusing to run", strings.TrimSpace(out), ns.Name)
	}
	err = ns.Do(func() error {
		d, err := tun.Open(tun.Config{Name: "tun0", Addr: tunPrefix, Addr6: tunPrefix6, MTU: 1500})
		x.dev = d
		return err
	})
	if err != nil {
		return err
	}
	x.tap = &tapLink{Link: x.dev}
	var link stack.Link = x.tap
	if e.Impair != "" {
		spec, err := impair.Parse(e.Impair)
		if err != nil {
			return fmt.Errorf("impairment %q: %w", e.Impair, err)
		}
		if spec.Seed == 0 {
			spec.Seed = 1 // the same damage every run
		}
		x.imp = impair.New(x.tap, spec)
		link = x.imp
	}
	opts := stack.DefaultOptions()
	opts.Addr = ustackAddr
	opts.Addr6 = ustackAddr6
	opts.FinTimeout = labFinTimeout
	opts.TimeWait = labTimeWait
	if e.Options != nil {
		e.Options(&opts)
	}
	opts.Packet = tl.Packet
	opts.Trace = slogLogger(tl)
	x.opts = opts
	st, err := stack.New(link, opts)
	if err != nil {
		if x.imp != nil {
			x.imp.Close()
		} else {
			x.dev.Close()
		}
		return err
	}
	x.st = st
	return st.Start()
}

// close undoes everything: the experiment's cleanups (kernel sockets and
// processes, ustack sockets), then the stack and its link, then the
// namespace. It waits a bounded time for the experiment's goroutines.
func (x *Env) close() error {
	x.mu.Lock()
	cleanups := x.cleanups
	x.cleanups = nil
	x.mu.Unlock()
	var errs []error
	for i := len(cleanups) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if p := recover(); p != nil {
					errs = append(errs, fmt.Errorf("cleanup panicked: %v", p))
				}
			}()
			cleanups[i]()
		}()
	}
	if x.st != nil {
		x.st.Close() // closes the link: the impairment, the tap, the device
	} else if x.imp != nil {
		x.imp.Close()
	} else if x.dev != nil {
		x.dev.Close()
	}
	done := make(chan struct{})
	go func() { x.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		errs = append(errs, errors.New("an experiment goroutine did not finish within 5 s of teardown"))
	}
	if x.ns != nil {
		if err := x.ns.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Defer registers f to run at teardown (last registered, first run).
func (x *Env) Defer(f func()) {
	x.mu.Lock()
	x.cleanups = append(x.cleanups, f)
	x.mu.Unlock()
}

// Go runs f on a goroutine that teardown waits for.
func (x *Env) Go(f func()) {
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		f()
	}()
}

// Expect records one check.
func (x *Env) Expect(id string, ok bool, want, got string) {
	x.mu.Lock()
	x.checks = append(x.checks, Check{ID: id, Want: want, Got: got, OK: ok})
	x.mu.Unlock()
}

// Checks returns the checks recorded so far.
func (x *Env) Checks() []Check {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]Check(nil), x.checks...)
}

// Kernel, Ustack and Lab add notes to the timeline.
func (x *Env) Kernel(format string, args ...any) { x.tl.Note("kernel", format, args...) }
func (x *Env) Ustack(format string, args ...any) { x.tl.Note("ustack", format, args...) }
func (x *Env) Lab(format string, args ...any)    { x.tl.Note("lab", format, args...) }

// Sleep waits d, or less if the experiment is cancelled.
func (x *Env) Sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-x.ctx.Done():
		return x.ctx.Err()
	}
}

// WaitFor polls cond every few milliseconds until it holds (true) or d
// passes or the experiment is cancelled (false).
func (x *Env) WaitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || x.ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitTransition waits up to d for a transition that match accepts.
func (x *Env) WaitTransition(d time.Duration, match func(Transition) bool) (Transition, bool) {
	var got Transition
	ok := x.WaitFor(d, func() bool {
		for _, tr := range x.tl.Transitions() {
			if match(tr) {
				got = tr
				return true
			}
		}
		return false
	})
	return got, ok
}

// WaitSegment waits up to d for a segment that match accepts.
func (x *Env) WaitSegment(d time.Duration, match func(Segment) bool) (Segment, bool) {
	var got Segment
	ok := x.WaitFor(d, func() bool {
		for _, s := range x.tl.Segments() {
			if match(s) {
				got = s
				return true
			}
		}
		return false
	})
	return got, ok
}

// SS records the stack's sockets, like ss -tan, and returns them.
func (x *Env) SS() []stack.SocketInfo {
	socks := x.st.Sockets()
	x.Ustack("ss:\n%s", formatSockets(socks))
	return socks
}

// KernelSS records the kernel's TCP sockets in the namespace (ss -tan)
// and returns them, one line each, separated by "; ".
func (x *Env) KernelSS() string {
	r := x.exec(5*time.Second, "", "ss", "-tanH")
	if r.Err != nil {
		x.Kernel("ss -tan failed: %v", r.Err)
		return ""
	}
	var rows [][]string
	for _, l := range strings.Split(r.Stdout, "\n") {
		if f := strings.Fields(l); len(f) >= 5 {
			rows = append(rows, f[:5])
		}
	}
	if len(rows) == 0 {
		x.Kernel("ss -tan:\n(no sockets)")
		return "no sockets"
	}
	var lines []string
	for _, r := range rows {
		lines = append(lines, strings.Join(r, " "))
	}
	rows = append([][]string{{"State", "Recv-Q", "Send-Q", "Local:Port", "Peer:Port"}}, rows...)
	x.Kernel("ss -tan:\n%s", formatTable(rows))
	return strings.Join(lines, "; ")
}

// execResult is what a kernel tool did.
type execResult struct {
	Stdout, Stderr string
	Code           int // exit status; -1 if it did not exit normally
	Err            error
	NotRun         bool // it was not started (Err says why)
	Took           time.Duration
}

// Exec runs a kernel tool inside the namespace with stdin, killing it
// after timeout, and puts the command and its outcome on the timeline.
func (x *Env) Exec(timeout time.Duration, stdin, name string, args ...string) execResult {
	x.Kernel("$ %s %s", name, strings.Join(args, " "))
	r := x.exec(timeout, stdin, name, args...)
	msg := strings.TrimSpace(r.Stderr)
	if msg == "" {
		msg = strings.TrimSpace(r.Stdout)
	}
	switch {
	case r.NotRun:
		x.Kernel("%s was not run: %v", name, r.Err)
	case r.Code >= 0 && msg != "":
		x.Kernel("%s exited with status %d: %s", name, r.Code, msg)
	case r.Code >= 0:
		x.Kernel("%s exited with status %d", name, r.Code)
	default:
		x.Kernel("%s did not finish: %v", name, r.Err)
	}
	return r
}

func (x *Env) exec(timeout time.Duration, stdin, name string, args ...string) execResult {
	// Every program is declared in Tools, so that a missing one is found
	// before the experiment starts; this catches one that is not.
	var bad error
	if !slices.Contains(x.exp.Tools, name) {
		bad = fmt.Errorf("experiment %s runs %s without listing it in its Tools", x.exp.Name, name)
	} else if !tools.Installed(name) {
		bad = &tools.NotInstalledError{Tools: []string{name}}
	}
	if bad != nil {
		x.mu.Lock()
		x.execErrs = append(x.execErrs, bad)
		x.mu.Unlock()
		return execResult{Code: -1, Err: bad, NotRun: true}
	}
	ctx, cancel := context.WithTimeout(x.ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", x.ns.Name, name}, args...)...)
	cmd.WaitDelay = time.Second
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := execResult{Stdout: stdout.String(), Stderr: stderr.String(), Code: -1, Err: err, Took: time.Since(start)}
	if cmd.ProcessState != nil && cmd.ProcessState.Exited() {
		r.Code = cmd.ProcessState.ExitCode()
	}
	return r
}

// execErr is why Exec could not run a program, if it could not.
func (x *Env) execErr() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return errors.Join(x.execErrs...)
}

// KConn is a kernel socket in the namespace; what it does goes on the
// timeline as "kernel" notes.
type KConn struct {
	x    *Env
	c    *net.TCPConn
	name string // "" or a label for several clients
}

func (k *KConn) note(format string, args ...any) { k.noteAt(-1, format, args...) }

// noteAt notes a call that began at start (see Timeline.NoteAt); -1 is now.
func (k *KConn) noteAt(start time.Duration, format string, args ...any) {
	if k.name != "" {
		format = k.name + ": " + format
	}
	if start < 0 {
		k.x.Kernel(format, args...)
		return
	}
	k.x.tl.NoteAt(start, "kernel", format, args...)
}

// Local is the socket's address.
func (k *KConn) Local() netip.AddrPort { return addrPortOf(k.c.LocalAddr()) }

// KDial makes a kernel socket in the namespace and connects it to raddr
// (from laddr, if valid) within timeout. name labels it on the timeline.
func (x *Env) KDial(name string, laddr, raddr netip.AddrPort, timeout time.Duration) (*KConn, error) {
	k := &KConn{x: x, name: name}
	d := net.Dialer{Timeout: timeout}
	if laddr.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(laddr)
	}
	var c net.Conn
	start := time.Now()
	err := x.ns.Do(func() error {
		var err error
		c, err = d.DialContext(x.ctx, "tcp", raddr.String())
		return err
	})
	took := time.Since(start)
	if err != nil {
		if isTimeout(err) {
			k.note("connect(%s) gave up after %s (its own timeout): no answer", raddr, secs(took))
		} else {
			k.note("connect(%s) = %s after %s", raddr, errName(err), secs(took))
		}
		return nil, err
	}
	k.c = c.(*net.TCPConn)
	x.Defer(func() { k.c.Close() })
	k.note("connect(%s) = 0 from %s after %s", raddr, k.Local(), secs(took))
	return k, nil
}

// isTimeout reports a dial or read that ran out of time.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Write writes s and notes the outcome where the call began: before the
// segment it sends.
func (k *KConn) Write(s string) error {
	start := k.x.tl.Now()
	k.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	n, err := k.c.Write([]byte(s))
	if err != nil {
		k.noteAt(start, "write(%d bytes) = %s", len(s), errName(err))
		return err
	}
	k.noteAt(start, "write(%s) = %d", quote([]byte(s)), n)
	return nil
}

// Read does one read, waiting at most d, and notes the outcome.
func (k *KConn) Read(d time.Duration) ([]byte, error) {
	k.c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	n, err := k.c.Read(buf)
	switch {
	case err != nil && isTimeout(err):
		k.note("read() still blocked after %s: nothing arrived", secs(d))
	case err != nil:
		k.note("read() = %s", errName(err))
	default:
		k.note("read() = %d bytes %s", n, quote(buf[:n]))
	}
	return buf[:n], err
}

// ReadAll reads until EOF, an error, or d passes, noting each read.
func (k *KConn) ReadAll(d time.Duration) ([]byte, error) { return readAll(k.Read, d) }

// readAll calls read with what is left of d until it fails (EOF included)
// or d passes.
func readAll(read func(time.Duration) ([]byte, error), d time.Duration) ([]byte, error) {
	deadline := time.Now().Add(d)
	var all []byte
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return all, fmt.Errorf("no EOF within %s", secs(d))
		}
		b, err := read(left)
		all = append(all, b...)
		if err != nil {
			return all, err
		}
	}
}

// CloseWrite is shutdown(SHUT_WR).
func (k *KConn) CloseWrite() error {
	start := k.x.tl.Now()
	err := k.c.CloseWrite()
	k.noteAt(start, "shutdown(SHUT_WR) = %s", errName(err))
	return err
}

// Close closes the socket.
func (k *KConn) Close() error {
	start := k.x.tl.Now()
	err := k.c.Close()
	k.noteAt(start, "close() = %s", errName(err))
	return err
}

// KListen makes a kernel listening socket in the namespace.
func (x *Env) KListen(addr netip.AddrPort) (*net.TCPListener, error) {
	var ln net.Listener
	err := x.ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", addr.String())
		return err
	})
	if err != nil {
		x.Kernel("listen(%s) = %s", addr, errName(err))
		return nil, err
	}
	x.Defer(func() { ln.Close() })
	x.Kernel("listen(%s) = 0", addr)
	return ln.(*net.TCPListener), nil
}

// UConn is a ustack connection; what the application does with it goes on
// the timeline as "ustack" notes.
type UConn struct {
	x *Env
	c *stack.Conn
}

// Listen makes a ustack listener with backlog.
func (x *Env) Listen(addr netip.AddrPort, backlog int) (*stack.Listener, error) {
	ln, err := x.st.ListenTCP(addr, backlog)
	if err != nil {
		x.Ustack("listen(%s, backlog %d) = %s", addr, backlog, errName(err))
		return nil, err
	}
	x.Defer(func() { ln.Close() })
	x.Ustack("listen(%s, backlog %d) = 0", addr, backlog)
	return ln, nil
}

// ConnectedPair listens on ustack's port, connects a kernel client to it
// and accepts the connection: the two ends of one established connection.
func (x *Env) ConnectedPair(port uint16) (*KConn, *UConn, error) {
	ln, err := x.Listen(ap(x.U, port), 8)
	if err != nil {
		return nil, nil, err
	}
	k, err := x.KDial("", netip.AddrPort{}, ap(x.U, port), 3*time.Second)
	if err != nil {
		return nil, nil, err
	}
	u, err := x.Accept(ln, 2*time.Second)
	if err != nil {
		return nil, nil, err
	}
	return k, u, nil
}

// Accept waits up to d for a connection on ln.
func (x *Env) Accept(ln *stack.Listener, d time.Duration) (*UConn, error) {
	type res struct {
		c   *stack.Conn
		err error
	}
	ch := make(chan res, 1)
	// AcceptTCP has no deadline; it returns when the listener closes at
	// teardown at the latest.
	x.Go(func() {
		c, err := ln.AcceptTCP()
		ch <- res{c, err}
	})
	select {
	case r := <-ch:
		if r.err != nil {
			x.Ustack("accept() = %s", errName(r.err))
			return nil, r.err
		}
		x.Defer(func() { r.c.Close() })
		x.Ustack("accept() = connection from %s", r.c.RemoteAddr())
		return &UConn{x: x, c: r.c}, nil
	case <-time.After(d):
		x.Ustack("accept() still blocked after %s", secs(d))
		return nil, fmt.Errorf("no connection to accept within %s", secs(d))
	case <-x.ctx.Done():
		return nil, x.ctx.Err()
	}
}

// Read does one read, waiting at most d.
func (u *UConn) Read(d time.Duration) ([]byte, error) {
	u.c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	n, err := u.c.Read(buf)
	switch {
	case err != nil && isTimeout(err):
		u.x.Ustack("read() still blocked after %s", secs(d))
	case err != nil:
		u.x.Ustack("read() = %s", errName(err))
	default:
		u.x.Ustack("read() = %d bytes %s", n, quote(buf[:n]))
	}
	return buf[:n], err
}

// ReadAll reads until EOF, an error, or d passes.
func (u *UConn) ReadAll(d time.Duration) ([]byte, error) { return readAll(u.Read, d) }

// Write writes s, noted where the call began.
func (u *UConn) Write(s string) error {
	start := u.x.tl.Now()
	u.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	n, err := u.c.Write([]byte(s))
	if err != nil {
		u.x.tl.NoteAt(start, "ustack", "write(%d bytes) = %s", len(s), errName(err))
		return err
	}
	u.x.tl.NoteAt(start, "ustack", "write(%s) = %d", quote([]byte(s)), n)
	return nil
}

// CloseWrite is shutdown(SHUT_WR).
func (u *UConn) CloseWrite() error {
	u.x.Ustack("shutdown(SHUT_WR)")
	return u.c.CloseWrite()
}

// Close closes the connection.
func (u *UConn) Close() error {
	u.x.Ustack("close()")
	return u.c.Close()
}

// Local and Remote are the connection's addresses.
func (u *UConn) Local() netip.AddrPort  { return addrPortOf(u.c.LocalAddr()) }
func (u *UConn) Remote() netip.AddrPort { return addrPortOf(u.c.RemoteAddr()) }

// addrPortOf is a TCP or UDP address as an AddrPort, IPv4 unmapped.
func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// slogLogger is the stack's trace logger, writing to the timeline.
func slogLogger(tl *Timeline) *slog.Logger { return slog.New(tl.Handler()) }
