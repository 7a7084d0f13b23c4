package drill

import (
	"errors"
	"math"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// vnet is a userspace stack on a virtual clock, as vstack drives it. Its
// sockets are non-blocking; vstack gives them the blocking semantics of
// Linux system calls.
type vnet interface {
	// start creates the stack with the profile and config at virtual time
	// zero.
	start(p *Profile, c *Config) error
	close()
	// setClock moves the virtual clock to d since start.
	setClock(d time.Duration)
	// nextTimer is the earliest pending timer, as a time since start.
	nextTimer() (time.Duration, bool)
	// runTimers runs the timers due at the clock's current time.
	runTimers()
	inject(pkt []byte)
	// drain returns the packets the stack sent since the last drain, after
	// letting any asynchronous processing finish.
	drain() [][]byte
	// newSocket makes a TCP socket, or a UDP one when dgram.
	newSocket(dgram bool) (vsock, error)
	sysctl(name, value string) error
}

// Poll bits a vsock reports (Linux values, so they go straight to revents).
const (
	evIn  = unix.POLLIN
	evOut = unix.POLLOUT
	evErr = unix.POLLERR
	evHup = unix.POLLHUP
)

// pollEvents translates a stack's readiness mask m into poll bits, given
// the stack's bits for readable, writable, error and hang-up.
func pollEvents[M ~uint8 | ~uint64](m, in, out, err, hup M) int16 {
	var ev int16
	if m&in != 0 {
		ev |= evIn
	}
	if m&out != 0 {
		ev |= evOut
	}
	if m&err != 0 {
		ev |= evErr
	}
	if m&hup != 0 {
		ev |= evHup
	}
	return ev
}

// vsock is a non-blocking socket of a vnet. Errors are syscall.Errno, or
// *Unsupported.
type vsock interface {
	Bind(addr netip.AddrPort) error
	Listen(backlog int) error
	// Connect starts a connection and returns EINPROGRESS (or an error).
	Connect(addr netip.AddrPort) error
	// Accept returns EAGAIN when no connection is waiting.
	Accept() (vsock, error)
	// Read returns EAGAIN when there is nothing to read, 0 at EOF.
	Read(p []byte) (int, error)
	// Write returns EAGAIN when the send buffer is full.
	Write(p []byte) (int, error)
	// SendMore is Write with MSG_MORE.
	SendMore(p []byte) (int, error)
	// SendTo sends one datagram to to (a UDP socket).
	SendTo(p []byte, to netip.AddrPort) (int, error)
	// Peek is Read with MSG_PEEK.
	Peek(p []byte) (int, error)
	// Closing is FIN-WAIT-1, CLOSING or LAST-ACK, also after Close.
	Closing() bool
	// Readable is whether a blocking read of n bytes returns now
	// (SO_RCVLOWAT).
	Readable(n int) bool
	Shutdown(how int) error
	Close() error
	// Events is the poll mask: evIn | evOut | evErr | evHup.
	Events() int16
	// SockError returns and clears the pending error (SO_ERROR).
	SockError() syscall.Errno
	// InQ is the number of bytes ready to read (SIOCINQ).
	InQ() int
	SetOption(level, name, val int) error
	SetLinger(on bool, secs int) error
	// GetLinger is getsockopt(SO_LINGER): l_onoff and l_linger.
	GetLinger() (on bool, secs int, err error)
	GetOption(level, name int) (int, error)
}

// vstack is the Backend of a userspace stack on a virtual clock.
type vstack struct {
	name string
	net  vnet
	cfg  *Config

	now      time.Duration
	queue    []Captured
	captured int // packets captured so far

	socks map[int]*vsocket
	next  int // next handle

	pending *pendingCall
	done    *Result
}

// vsocket is a socket in vstack's table.
type vsocket struct {
	so       vsock
	nonblock bool
	dgram    bool // UDP: a read takes one datagram
}

// pendingCall is a blocked call: retry is tried again after every change in
// the stack until it reports done.
type pendingCall struct {
	retry func() (Result, bool)
	// deadline, when set, is when the call gives up (poll's timeout); it
	// counts as a timer for Wait.
	deadline    time.Duration
	hasDeadline bool
}

func newVstack(name string, n vnet) *vstack {
	return &vstack{name: name, net: n, socks: map[int]*vsocket{}, next: 3}
}

func (v *vstack) Name() string  { return v.name }
func (v *vstack) Virtual() bool { return true }

func (v *vstack) Start(p *Profile, c *Config) error {
	v.cfg = c
	return v.net.start(p, c)
}

func (v *vstack) Close() error {
	for _, s := range v.socks {
		s.so.Close()
	}
	v.net.close()
	return nil
}

func (v *vstack) Now() time.Duration { return v.now }

// maxSteps bounds one Wait, so a timer that keeps rearming itself at the
// same instant cannot spin forever.
const maxSteps = 1_000_000

// Wait runs the stack's timers in order up to until, stopping after the
// first step that produced a packet or finished the blocked call.
func (v *vstack) Wait(until time.Duration) {
	before, doneBefore := v.captured, v.done != nil
	for range maxSteps {
		target := until
		if next, ok := v.net.nextTimer(); ok && next < target {
			target = max(next, v.now)
		}
		if v.pending != nil && v.pending.hasDeadline && v.pending.deadline < target {
			target = max(v.pending.deadline, v.now)
		}
		v.now = target
		v.net.setClock(target)
		v.net.runTimers()
		v.afterChange()
		if v.captured > before || v.done != nil && !doneBefore || v.now >= until {
			return
		}
	}
}

// afterChange collects the packets the stack sent and retries the blocked
// call; every change of the stack's state goes through it.
func (v *vstack) afterChange() {
	v.collect()
	if v.pending != nil {
		if res, ok := v.pending.retry(); ok {
			res.At = v.now
			v.done = &res
			v.pending = nil
			v.collect() // the call may have sent something (a window update)
		}
	}
}

func (v *vstack) collect() {
	for _, p := range v.net.drain() {
		v.queue = append(v.queue, Captured{Data: p, At: v.now})
		v.captured++
	}
}

func (v *vstack) Inject(pkt []byte) error {
	v.net.inject(pkt)
	v.afterChange()
	return nil
}

func (v *vstack) Next() (Captured, bool) { return popCaptured(&v.queue) }

func (v *vstack) Finished() (Result, bool) {
	if v.done == nil {
		return Result{}, false
	}
	r := *v.done
	v.done = nil
	return r, true
}

func (v *vstack) Sysctl(name, value string) error { return v.net.sysctl(name, value) }

// Do runs one call. A call that would block on a blocking socket becomes the
// pending call.
func (v *vstack) Do(op *Op) (Result, bool, error) {
	if v.pending != nil {
		return Result{}, false, errors.New("a blocking call is still outstanding")
	}
	res, retry, err := v.call(op)
	if err != nil {
		return Result{}, false, err
	}
	defer v.afterChange()
	if retry == nil {
		v.collect()
		return res, false, nil
	}
	v.pending = retry
	return Result{}, true, nil
}

// call performs op; for a call that blocks it returns the pending call.
func (v *vstack) call(op *Op) (Result, *pendingCall, error) {
	if op.Name == "socket" {
		so, err := v.net.newSocket(op.Dgram)
		if err != nil {
			return Result{}, nil, err
		}
		h := v.next
		v.next++
		v.socks[h] = &vsocket{so: so, nonblock: op.Nonblock, dgram: op.Dgram}
		return Result{Ret: int64(h), Handle: h}, nil, nil
	}
	if op.Name == "poll" {
		return v.poll(op)
	}
	s := v.socks[op.FD]
	if s == nil {
		return errnoResult(unix.EBADF), nil, nil
	}
	so := s.so
	switch op.Name {
	case "bind":
		return v.result(0, so.Bind(v.cfg.BindAddr()))
	case "listen":
		return v.result(0, so.Listen(op.Backlog))
	case "connect":
		err := so.Connect(v.cfg.ConnectAddr())
		if err != unix.EINPROGRESS || s.nonblock {
			return v.result(0, err)
		}
		return Result{}, &pendingCall{retry: func() (Result, bool) {
			if so.Events()&(evOut|evErr|evHup) == 0 {
				return Result{}, false
			}
			if e := so.SockError(); e != 0 {
				return errnoResult(e), true
			}
			return Result{}, true
		}}, nil
	case "accept":
		try := func() (Result, bool) {
			c, err := so.Accept()
			if err == unix.EAGAIN {
				return errnoResult(unix.EAGAIN), false
			}
			if err != nil {
				return v.errResult(err), true
			}
			h := v.next
			v.next++
			v.socks[h] = &vsocket{so: c}
			return Result{Ret: int64(h), Handle: h}, true
		}
		return v.tryOrBlock(s, try)
	case "read", "recv", "recvfrom":
		if s.dgram {
			return v.recvDatagram(s, op)
		}
		if op.Name == "recvfrom" {
			return Result{}, nil, unsupported("recvfrom on a TCP socket")
		}
		if op.Flags&^(unix.MSG_DONTWAIT|unix.MSG_PEEK|unix.MSG_WAITALL) != 0 {
			return Result{}, nil, unsupported("%s flags %#x", op.Name, op.Flags)
		}
		buf := make([]byte, op.Count)
		read := so.Read
		if op.Flags&unix.MSG_PEEK != 0 {
			read = so.Peek
		}
		// A blocking read copies what is queued at once, and returns when
		// it has its target: min(count, SO_RCVLOWAT), or the whole count
		// with MSG_WAITALL (sock_rcvlowat). Short of it, it sleeps until
		// SO_RCVLOWAT bytes more are queued, or EOF or an error
		// (tcp_data_ready): the bytes it already took do not count.
		blocking := !s.nonblock && op.Flags&unix.MSG_DONTWAIT == 0
		peek := op.Flags&unix.MSG_PEEK != 0
		lowat := 1
		if v, err := so.GetOption(unix.SOL_SOCKET, unix.SO_RCVLOWAT); err == nil && v > 1 {
			lowat = v
		}
		target := min(op.Count, lowat)
		if op.Flags&unix.MSG_WAITALL != 0 && !peek {
			target = op.Count
		}
		got := 0
		try := func() (Result, bool) {
			if got > 0 && !so.Readable(math.MaxInt) {
				return Result{}, false // asleep until SO_RCVLOWAT more
			}
			for {
				n, err := read(buf[got:])
				got += n
				switch {
				case err == unix.EAGAIN && got >= target:
					return Result{Ret: int64(got)}, true
				case err == unix.EAGAIN && (!blocking || peek) && got > 0:
					return Result{Ret: int64(got)}, true
				case err == unix.EAGAIN:
					return errnoResult(unix.EAGAIN), false
				case err != nil && got > 0:
					return Result{Ret: int64(got)}, true
				case err != nil:
					return v.errResult(err), true
				case n == 0 || got >= target || peek || got == len(buf):
					return Result{Ret: int64(got)}, true
				}
			}
		}
		if op.Flags&unix.MSG_DONTWAIT != 0 {
			r, _ := try()
			return r, nil, nil
		}
		return v.tryOrBlock(s, try)
	case "sendto":
		if !s.dgram {
			return Result{}, nil, unsupported("sendto on a TCP socket")
		}
		return v.sendDatagram(s, op, v.cfg.ConnectAddr())
	case "write", "send":
		if s.dgram {
			return v.sendDatagram(s, op, netip.AddrPort{})
		}
		if op.Flags&^(unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL|unix.MSG_MORE) != 0 {
			return Result{}, nil, unsupported("%s flags %#x", op.Name, op.Flags)
		}
		write := so.Write
		if op.Flags&unix.MSG_MORE != 0 {
			write = so.SendMore
		}
		buf := make([]byte, op.Count)
		nonblock := s.nonblock || op.Flags&unix.MSG_DONTWAIT != 0
		sent := 0
		// A blocking write returns only when everything is queued (or an
		// error stops it), as Linux's tcp_sendmsg does.
		try := func() (Result, bool) {
			for sent < len(buf) {
				n, err := write(buf[sent:])
				sent += n
				if err == unix.EAGAIN {
					if nonblock && sent > 0 {
						return Result{Ret: int64(sent)}, true
					}
					return errnoResult(unix.EAGAIN), nonblock
				}
				if err != nil {
					if sent > 0 {
						return Result{Ret: int64(sent)}, true
					}
					return v.errResult(err), true
				}
				if n == 0 {
					break
				}
			}
			return Result{Ret: int64(sent)}, true
		}
		if r, ok := try(); ok {
			return r, nil, nil
		}
		return Result{}, &pendingCall{retry: try}, nil
	case "close":
		on, secs, lerr := so.GetLinger()
		err := so.Close()
		delete(v.socks, op.FD)
		if err != nil || lerr != nil || !on || secs <= 0 || !so.Closing() {
			return v.result(0, err)
		}
		// SO_LINGER with a time: close(2) waits, up to that time, for the
		// FIN to be sent and acknowledged (sk_stream_wait_close), then
		// returns 0 either way.
		pc := &pendingCall{deadline: v.now + time.Duration(secs)*time.Second, hasDeadline: true}
		pc.retry = func() (Result, bool) {
			return Result{}, !so.Closing() || v.now >= pc.deadline
		}
		return Result{}, pc, nil
	case "shutdown":
		return v.result(0, so.Shutdown(op.How))
	case "setsockopt":
		if op.Level == unix.SOL_SOCKET && op.OptName == unix.SO_LINGER {
			if op.Linger == nil {
				return errnoResult(unix.EINVAL), nil, nil
			}
			return v.result(0, so.SetLinger(op.Linger[0] != 0, op.Linger[1]))
		}
		return v.result(0, so.SetOption(op.Level, op.OptName, op.IntVal))
	case "getsockopt":
		if op.Level == unix.SOL_SOCKET && op.OptName == unix.SO_ERROR {
			return Result{Out: int64(so.SockError())}, nil, nil
		}
		if op.Level == unix.SOL_SOCKET && op.OptName == unix.SO_LINGER {
			on, secs, err := so.GetLinger()
			if err != nil {
				return v.errResultOrUnsupported(err)
			}
			return Result{Out: int64(boolInt(on)), Linger: &[2]int{boolInt(on), secs}}, nil, nil
		}
		val, err := so.GetOption(op.Level, op.OptName)
		if err != nil {
			return v.errResultOrUnsupported(err)
		}
		return Result{Out: int64(val)}, nil, nil
	case "fcntl":
		switch op.Cmd {
		case unix.F_GETFL:
			fl := int64(unix.O_RDWR)
			if s.nonblock {
				fl |= unix.O_NONBLOCK
			}
			return Result{Ret: fl}, nil, nil
		case unix.F_SETFL:
			s.nonblock = op.IntVal&unix.O_NONBLOCK != 0
			return Result{}, nil, nil
		}
		return Result{}, nil, unsupported("fcntl command %d", op.Cmd)
	case "ioctl":
		if op.Cmd == unix.SIOCINQ {
			return Result{Out: int64(so.InQ())}, nil, nil
		}
		return Result{}, nil, unsupported("ioctl request %#x", op.Cmd)
	}
	return Result{}, nil, unsupported("syscall %s()", op.Name)
}

// recvDatagram is read, recv or recvfrom on a UDP socket: one datagram
// (the rest of a longer one is lost, as Linux's udp_recvmsg does), or a
// pending ICMP error; a blocking socket waits for one.
func (v *vstack) recvDatagram(s *vsocket, op *Op) (Result, *pendingCall, error) {
	if op.Flags&^(unix.MSG_DONTWAIT|unix.MSG_PEEK) != 0 {
		return Result{}, nil, unsupported("%s flags %#x on a UDP socket", op.Name, op.Flags)
	}
	buf := make([]byte, op.Count)
	read := s.so.Read
	if op.Flags&unix.MSG_PEEK != 0 {
		read = s.so.Peek
	}
	try := func() (Result, bool) {
		n, err := read(buf)
		switch {
		case err == unix.EAGAIN:
			return errnoResult(unix.EAGAIN), false
		case err != nil:
			return v.errResult(err), true
		}
		return Result{Ret: int64(n)}, true
	}
	if op.Flags&unix.MSG_DONTWAIT != 0 {
		r, _ := try()
		return r, nil, nil
	}
	return v.tryOrBlock(s, try)
}

// sendDatagram is write, send or sendto on a UDP socket: one datagram of
// zeros, to to (the zero AddrPort: the connected peer).
func (v *vstack) sendDatagram(s *vsocket, op *Op, to netip.AddrPort) (Result, *pendingCall, error) {
	if op.Flags&^(unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL) != 0 {
		return Result{}, nil, unsupported("%s flags %#x on a UDP socket", op.Name, op.Flags)
	}
	n, err := s.so.SendTo(make([]byte, op.Count), to)
	if err != nil {
		return v.errResultOrUnsupported(err)
	}
	return Result{Ret: int64(n)}, nil, nil
}

// tryOrBlock runs try once; on a blocking socket a call that would block
// becomes the pending call.
func (v *vstack) tryOrBlock(s *vsocket, try func() (Result, bool)) (Result, *pendingCall, error) {
	if r, ok := try(); ok || s.nonblock {
		return r, nil, nil
	}
	return Result{}, &pendingCall{retry: try}, nil
}

func (v *vstack) poll(op *Op) (Result, *pendingCall, error) {
	check := func() (Result, bool) {
		res := Result{Revents: make([]int16, len(op.Poll))}
		for i, pf := range op.Poll {
			s := v.socks[pf.FD]
			if s == nil {
				res.Revents[i] = unix.POLLNVAL
			} else {
				res.Revents[i] = s.so.Events() & (pf.Events | evErr | evHup)
			}
			if res.Revents[i] != 0 {
				res.Ret++
			}
		}
		return res, res.Ret > 0
	}
	if r, ok := check(); ok || op.Timeout == 0 {
		return r, nil, nil
	}
	pc := &pendingCall{}
	if op.Timeout > 0 {
		pc.deadline = v.now + time.Duration(op.Timeout)*time.Millisecond
		pc.hasDeadline = true
	}
	pc.retry = func() (Result, bool) {
		r, ok := check()
		return r, ok || pc.hasDeadline && v.now >= pc.deadline
	}
	return Result{}, pc, nil
}

func (v *vstack) result(ret int64, err error) (Result, *pendingCall, error) {
	if err == nil {
		return Result{Ret: ret}, nil, nil
	}
	return v.errResultOrUnsupported(err)
}

func (v *vstack) errResultOrUnsupported(err error) (Result, *pendingCall, error) {
	var u *Unsupported
	if errors.As(err, &u) {
		return Result{}, nil, u
	}
	return v.errResult(err), nil, nil
}

// errResult turns a socket error into -1/errno; anything that is not an
// errno is reported as EIO so it shows up in the failure.
func (v *vstack) errResult(err error) Result {
	var e syscall.Errno
	if errors.As(err, &e) {
		return errnoResult(e)
	}
	return errnoResult(unix.EIO)
}
