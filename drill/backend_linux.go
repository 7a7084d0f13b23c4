package drill

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"ustack/netns"
	"ustack/tun"
)

// NewLinux returns the backend for the Linux kernel: a network namespace
// made for the run, with a TUN device tun0 at the local address
// (192.168.0.1/16 by default) and a route to the remote one (192.0.2.1/24)
// through it. The kernel is the stack under test; the drill plays
// the peer by reading and writing tun0, as packetdrill does. Sockets are
// real (golang.org/x/sys/unix), created inside the namespace; time is real.
//
// Nothing is configured outside the namespace, and Close deletes it.
func NewLinux() Backend { return &linuxBackend{} }

type linuxBackend struct {
	cfg   *Config
	ns    *netns.NS
	dev   *tun.Device
	start time.Time

	mu     sync.Mutex
	queue  []Captured
	fds    map[int]bool // live sockets, closed at the end
	wake   chan struct{}
	reader sync.WaitGroup

	call *linuxCall // the blocked call
	// Notes are settings the namespace refused (recorded, not fatal;
	// RunScript reports them).
	Notes []string
	// cc is the congestion control every socket gets with TCP_CONGESTION
	// when the namespace refused it as its default (only the initial
	// namespace may default to a restricted algorithm such as cubic).
	cc string
}

// linuxCall is a system call running on its own locked OS thread.
type linuxCall struct {
	done chan struct{}
	res  Result
}

func (l *linuxBackend) Name() string  { return "linux" }
func (l *linuxBackend) Virtual() bool { return false }

// LinuxAvailable reports whether the Linux backend can run here.
func LinuxAvailable() (bool, string) {
	if ok, why := netns.Available(); !ok {
		return false, why
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return false, "no /dev/net/tun"
	}
	return true, ""
}

// sysctlPath maps net.ipv4.tcp_rmem to /proc/sys/net/ipv4/tcp_rmem.
func sysctlPath(name string) string {
	return "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
}

// writeSysctl writes a sysctl of the namespace: /proc/sys/net belongs to the
// network namespace of the thread that opens it.
func (l *linuxBackend) writeSysctl(name, value string) error {
	if !strings.HasPrefix(name, "net.") {
		return fmt.Errorf("%s is not a per-namespace (net.*) sysctl", name)
	}
	return l.ns.Do(func() error {
		return os.WriteFile(sysctlPath(name), []byte(value+"\n"), 0)
	})
}

func (l *linuxBackend) Start(p *Profile, c *Config) error {
	l.cfg = c
	if ok, why := LinuxAvailable(); !ok {
		return unsupported("linux backend not available: %s", why)
	}
	ns, err := netns.New("drill")
	if err != nil {
		return unsupported("linux backend not available: %v", err)
	}
	l.ns = ns
	l.fds = map[int]bool{}
	l.wake = make(chan struct{}, 1)
	// No IPv6 on tun0 unless the script is IPv6: its router
	// solicitations would only be noise.
	if !c.Wire6() {
		for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			l.writeSysctl(k, "1")
		}
	}
	for _, name := range p.Names() {
		if err := l.writeSysctl(name, p.Get(name)); err != nil {
			if p.Explicit(name) {
				return unsupported("sysctl %s=%s in a network namespace: %v", name, p.Get(name), err)
			}
			// Defaults a namespace cannot take are recorded, not fatal
			// (packetdrill.md §10). The congestion control is then set
			// on each socket instead, which root may do (accepted
			// sockets inherit it, tcp_ca_openreq_child).
			if name == "net.ipv4.tcp_congestion_control" {
				l.cc = p.Get(name)
				continue
			}
			l.Notes = append(l.Notes, fmt.Sprintf("%s=%s not set: %v", name, p.Get(name), err))
		}
	}
	tc := tun.Config{Name: "tun0", MTU: c.MTU}
	if c.Wire6() {
		tc.Addr6 = c.LocalPrefixed()
	} else {
		tc.Addr = c.LocalPrefixed()
	}
	err = ns.Do(func() error {
		d, err := tun.Open(tc)
		l.dev = d
		return err
	})
	if err != nil {
		return fmt.Errorf("linux: tun0: %w", err)
	}
	if !c.LocalPrefixed().Masked().Contains(c.Remote) {
		if _, err := ns.Run("ip", "route", "add", c.RemotePrefix.Masked().String(), "dev", "tun0"); err != nil {
			return fmt.Errorf("linux: route to %v: %w", c.RemotePrefix.Masked(), err)
		}
	}
	// No fq pacing on tun0 (packetdrill's defaults do the same).
	if _, err := exec.LookPath("tc"); err == nil {
		ns.Run("tc", "qdisc", "replace", "dev", "tun0", "root", "pfifo")
	}
	l.start = time.Now()
	l.reader.Add(1)
	go l.read()
	return nil
}

// read captures what the kernel sends on tun0.
func (l *linuxBackend) read() {
	defer l.reader.Done()
	buf := make([]byte, 65536)
	for {
		n, err := l.dev.ReadPacket(buf)
		if err != nil {
			return
		}
		at := time.Since(l.start)
		l.mu.Lock()
		l.queue = append(l.queue, Captured{Data: append([]byte(nil), buf[:n]...), At: at})
		l.mu.Unlock()
		l.signal()
	}
}

func (l *linuxBackend) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Close releases blocked calls, closes every socket, the device and the
// namespace.
func (l *linuxBackend) Close() error {
	var errs []error
	l.mu.Lock()
	fds := l.fds
	l.fds = nil
	l.mu.Unlock()
	for fd := range fds {
		disconnect(fd) // wakes a blocked connect()
		unix.Shutdown(fd, unix.SHUT_RDWR)
		unix.Close(fd)
	}
	if l.dev != nil {
		errs = append(errs, l.dev.Close())
		l.reader.Wait()
	}
	if l.ns != nil {
		errs = append(errs, l.ns.Close())
	}
	return errors.Join(errs...)
}

// disconnect is connect(fd, AF_UNSPEC): it aborts a connection, waking a
// thread blocked in connect() (which shutdown and close do not).
func disconnect(fd int) {
	var sa [16]byte // sa_family 0 = AF_UNSPEC
	unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa[0])), uintptr(len(sa)))
}

func (l *linuxBackend) Now() time.Duration { return time.Since(l.start) }

func (l *linuxBackend) Wait(until time.Duration) {
	d := until - l.Now()
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	var done chan struct{}
	if l.call != nil {
		done = l.call.done
	}
	select {
	case <-l.wake:
	case <-done:
	case <-t.C:
	}
}

func (l *linuxBackend) Inject(pkt []byte) error { return l.dev.WritePacket(pkt) }

func (l *linuxBackend) Next() (Captured, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return popCaptured(&l.queue)
}

func (l *linuxBackend) Finished() (Result, bool) {
	if l.call == nil {
		return Result{}, false
	}
	select {
	case <-l.call.done:
		r := l.call.res
		l.call = nil
		return r, true
	default:
		return Result{}, false
	}
}

func (l *linuxBackend) Sysctl(name, value string) error {
	if err := l.writeSysctl(name, value); err != nil {
		return unsupported("sysctl %s=%s in a network namespace: %v", name, value, err)
	}
	return nil
}

func (l *linuxBackend) Do(op *Op) (Result, bool, error) {
	if l.call != nil {
		return Result{}, false, errors.New("a blocking call is still outstanding")
	}
	if op.Name == "socket" {
		typ, proto := unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP
		if op.Dgram {
			typ, proto = unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP
		}
		if op.Nonblock {
			typ |= unix.SOCK_NONBLOCK
		}
		var fd int
		err := l.ns.Do(func() error {
			var err error
			fd, err = unix.Socket(l.cfg.Domain(), typ, proto)
			if err == nil && l.cc != "" && !op.Dgram {
				if cerr := unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, l.cc); cerr != nil {
					// Not built into this kernel: the namespace's default
					// stays, written down like the refused sysctl.
					l.Notes = append(l.Notes, fmt.Sprintf("TCP_CONGESTION %s: %v; sockets keep the namespace's default", l.cc, cerr))
					l.cc = ""
				}
			}
			return err
		})
		if err != nil {
			return errResult(err), false, nil
		}
		l.mu.Lock()
		l.fds[fd] = true
		l.mu.Unlock()
		return Result{Ret: int64(fd), Handle: fd}, false, nil
	}
	f, err := l.syscallFunc(op)
	if err != nil {
		return Result{}, false, err
	}
	if !l.mayBlock(op) {
		r := f()
		r.At = l.Now()
		return r, false, nil
	}
	c := &linuxCall{done: make(chan struct{})}
	tid := make(chan int, 1)
	go func() {
		// A locked thread, so that its state in /proc tells whether the
		// call sleeps in the kernel.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- unix.Gettid()
		r := f()
		r.At = l.Now()
		c.res = r
		close(c.done)
		l.signal()
	}()
	if blockedIn(<-tid, c.done) {
		l.call = c
		return Result{}, true, nil
	}
	return c.res, false, nil
}

// mayBlock reports whether op can sleep in the kernel. Calls that cannot
// run on the interpreter's goroutine: a thread per call costs time the
// script's timing would notice on a loaded machine.
func (l *linuxBackend) mayBlock(op *Op) bool {
	switch op.Name {
	case "accept", "connect", "read", "recv", "write", "send", "recvfrom", "sendto":
		if op.Flags&unix.MSG_DONTWAIT != 0 {
			return false
		}
		fl, err := unix.FcntlInt(uintptr(op.FD), unix.F_GETFL, 0)
		return err != nil || fl&unix.O_NONBLOCK == 0
	case "poll":
		return op.Timeout != 0
	case "close":
		// Lingering close blocks; plain close does not.
		lg, err := unix.GetsockoptLinger(op.FD, unix.SOL_SOCKET, unix.SO_LINGER)
		return err != nil || lg.Onoff != 0 && lg.Linger > 0
	}
	return false
}

// blockedIn waits until the call on thread tid returns (false) or is seen
// sleeping in a system call (true), as packetdrill's is_thread_sleeping
// does. A thread parked by the Go scheduler sleeps in futex: that is not
// the call blocking.
func blockedIn(tid int, done chan struct{}) bool {
	dir := fmt.Sprintf("/proc/self/task/%d/", tid)
	deadline := time.Now().Add(2 * time.Second)
	seen := 0
	for {
		select {
		case <-done:
			return false
		default:
		}
		if sleepingInSyscall(dir) {
			seen++
			if seen >= 3 {
				return true
			}
		} else {
			seen = 0
		}
		if time.Now().After(deadline) {
			return true
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func sleepingInSyscall(dir string) bool {
	stat, err := os.ReadFile(dir + "stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 || i+2 >= len(stat) || stat[i+2] != 'S' {
		return false
	}
	sc, err := os.ReadFile(dir + "syscall")
	if err != nil {
		return false
	}
	f := strings.Fields(string(sc))
	if len(f) == 0 {
		return false
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil {
		return false
	}
	switch nr {
	case unix.SYS_FUTEX, unix.SYS_NANOSLEEP, unix.SYS_CLOCK_NANOSLEEP, unix.SYS_EPOLL_PWAIT, unix.SYS_EPOLL_WAIT, unix.SYS_SCHED_YIELD:
		return false // the Go runtime, not the call
	}
	return true
}

func errResult(err error) Result {
	var e unix.Errno
	if errors.As(err, &e) {
		return errnoResult(e)
	}
	return errnoResult(unix.EIO)
}

// syscallFunc returns the real system call for op.
func (l *linuxBackend) syscallFunc(op *Op) (func() Result, error) {
	fd := op.FD
	simple := func(err error) Result {
		if err != nil {
			return errResult(err)
		}
		return Result{}
	}
	// ret and out are the Result of a call that returns a value, as the
	// return value or as the value it stores (getsockopt, ioctl).
	ret := func(v int, err error) Result {
		if err != nil {
			return errResult(err)
		}
		return Result{Ret: int64(v)}
	}
	out := func(v int, err error) Result {
		if err != nil {
			return errResult(err)
		}
		return Result{Out: int64(v)}
	}
	switch op.Name {
	case "bind":
		return func() Result {
			return simple(unix.Bind(fd, l.sockaddr(l.cfg.BindAddr())))
		}, nil
	case "listen":
		return func() Result { return simple(unix.Listen(fd, op.Backlog)) }, nil
	case "connect":
		return func() Result {
			return simple(unix.Connect(fd, l.sockaddr(l.cfg.ConnectAddr())))
		}, nil
	case "accept":
		return func() Result {
			nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
			if err != nil {
				return errResult(err)
			}
			l.mu.Lock()
			if l.fds != nil {
				l.fds[nfd] = true
			}
			l.mu.Unlock()
			return Result{Ret: int64(nfd), Handle: nfd}
		}, nil
	case "read", "recv", "write", "send", "recvfrom", "sendto":
		buf := make([]byte, op.Count)
		return func() Result {
			switch op.Name {
			case "recvfrom":
				n, _, err := unix.Recvfrom(fd, buf, op.Flags)
				return ret(n, err)
			case "sendto":
				return ret(len(buf), unix.Sendto(fd, buf, op.Flags, l.sockaddr(l.cfg.ConnectAddr())))
			case "read":
				return ret(unix.Read(fd, buf))
			case "recv":
				n, _, err := unix.Recvfrom(fd, buf, op.Flags)
				return ret(n, err)
			case "write":
				return ret(unix.Write(fd, buf))
			default: // send
				return ret(unix.SendmsgN(fd, buf, nil, nil, op.Flags))
			}
		}, nil
	case "close":
		return func() Result {
			l.mu.Lock()
			delete(l.fds, fd)
			l.mu.Unlock()
			return simple(unix.Close(fd))
		}, nil
	case "shutdown":
		return func() Result { return simple(unix.Shutdown(fd, op.How)) }, nil
	case "setsockopt":
		if op.Linger != nil {
			return func() Result {
				return simple(unix.SetsockoptLinger(fd, op.Level, op.OptName, &unix.Linger{Onoff: int32(op.Linger[0]), Linger: int32(op.Linger[1])}))
			}, nil
		}
		return func() Result { return simple(unix.SetsockoptInt(fd, op.Level, op.OptName, op.IntVal)) }, nil
	case "getsockopt":
		if op.Level == unix.SOL_SOCKET && op.OptName == unix.SO_LINGER {
			return func() Result {
				lg, err := unix.GetsockoptLinger(fd, op.Level, op.OptName)
				if err != nil {
					return errResult(err)
				}
				return Result{Out: int64(lg.Onoff), Linger: &[2]int{int(lg.Onoff), int(lg.Linger)}}
			}, nil
		}
		return func() Result { return out(unix.GetsockoptInt(fd, op.Level, op.OptName)) }, nil
	case "fcntl":
		return func() Result { return ret(unix.FcntlInt(uintptr(fd), op.Cmd, op.IntVal)) }, nil
	case "ioctl":
		return func() Result { return out(unix.IoctlGetInt(fd, uint(op.Cmd))) }, nil
	case "poll":
		return func() Result {
			pfds := make([]unix.PollFd, len(op.Poll))
			for i, p := range op.Poll {
				pfds[i] = unix.PollFd{Fd: int32(p.FD), Events: p.Events}
			}
			n, err := unix.Poll(pfds, op.Timeout)
			if err != nil {
				return errResult(err)
			}
			r := Result{Ret: int64(n)}
			for _, p := range pfds {
				r.Revents = append(r.Revents, p.Revents)
			}
			return r
		}, nil
	}
	return nil, unsupported("syscall %s() on linux", op.Name)
}

func (l *linuxBackend) notes() []string { return l.Notes }

// sockaddr is a in the family of the run's sockets.
func (l *linuxBackend) sockaddr(a netip.AddrPort) unix.Sockaddr {
	if l.cfg.Domain() == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(a.Port()), Addr: a.Addr().As16()}
}
