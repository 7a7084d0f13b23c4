package stack

import (
	"net/netip"
	"syscall"
	"time"

	"ustack/hashtable"
)

// sockOpts are the per-socket options a listener hands to its children.
type sockOpts struct {
	nodelay   bool
	keepalive bool
	linger    int // seconds, -1 off
	// lingerTime is SO_LINGER's l_linger, kept while lingering is off as
	// Linux keeps sk_lingertime (sock_setsockopt): getsockopt reads it back.
	lingerTime int
	rcvBuf     int // 0: the stack's default
	sndBuf     int
	rcvLowat   int // SO_RCVLOWAT; 0 means 1
	tcp        tcpOpts

	// deferAccept is a listener's TCP_DEFER_ACCEPT as Linux keeps it
	// (rskq_defer_accept): the SYN|ACK retransmissions a bare ACK is
	// ignored for. Not inherited: an accepted socket reads 0.
	deferAccept int
}

// tcpOpts are the per-socket TCP options of tcp(7). A zero field means the
// stack-wide setting (Options, Linux's sysctl).
type tcpOpts struct {
	userMSS     int           // TCP_MAXSEG: caps the MSS we announce and use
	userTimeout time.Duration // TCP_USER_TIMEOUT: how long data may go unacknowledged
	linger2     time.Duration // TCP_LINGER2: an orphan's FIN-WAIT-2 time; <0 aborts
	keepIdle    time.Duration // TCP_KEEPIDLE
	keepIntvl   time.Duration // TCP_KEEPINTVL
	keepCnt     int           // TCP_KEEPCNT
	synCnt      int           // TCP_SYNCNT
	cork        bool          // TCP_CORK: hold partial segments
}

func (t *tcpOpts) keepaliveIdle(o *Options) time.Duration {
	return orDefault(t.keepIdle, o.KeepaliveIdle)
}
func (t *tcpOpts) keepaliveIntvl(o *Options) time.Duration {
	return orDefault(t.keepIntvl, o.KeepaliveIntvl)
}
func (t *tcpOpts) keepaliveProbes(o *Options) int { return orDefault(t.keepCnt, o.KeepaliveProbes) }
func (t *tcpOpts) synRetries(o *Options) int      { return orDefault(t.synCnt, o.SynRetries) }

// orDefault is the per-socket value unless it is zero (unset).
func orDefault[T comparable](v, def T) T {
	var zero T
	if v != zero {
		return v
	}
	return def
}

// goSockOpts are the defaults of Go's net package: TCP_NODELAY on.
var goSockOpts = sockOpts{nodelay: true, linger: -1}

// apply gives a new connection the options.
func (o sockOpts) apply(e *endpoint) {
	e.nodelay, e.keepalive, e.linger = o.nodelay, o.keepalive, o.linger
	e.tcpOpts = o.tcp
	// Never below what the buffers already hold (or was offered as window).
	if o.rcvBuf > 0 {
		e.rcvBuf.limit = max(o.rcvBuf+rcvSlack, e.rcvBuf.limit)
		if e.state == stateClosed || e.state == stateSynSent || e.state == stateListen {
			e.rcvBuf.limit = o.rcvBuf + rcvSlack
		}
	}
	if o.sndBuf > 0 {
		e.sndBuf.limit = max(o.sndBuf, e.sndBuf.Len())
	}
}

// SockOpt names a socket option of Socket.SetOption.
type SockOpt int

const (
	OptReuseAddr         SockOpt = iota // SO_REUSEADDR
	OptNoDelay                          // TCP_NODELAY
	OptKeepAlive                        // SO_KEEPALIVE
	OptLinger                           // SO_LINGER: seconds, -1 off
	OptRcvBuf                           // SO_RCVBUF, bytes (Linux doubles the value; so do we)
	OptSndBuf                           // SO_SNDBUF, bytes (doubled)
	OptMaxSeg                           // TCP_MAXSEG: 0 or 88..32767 bytes
	OptUserTimeout                      // TCP_USER_TIMEOUT: milliseconds, 0 off
	OptLinger2                          // TCP_LINGER2: seconds (capped at 120), 0 tcp_fin_timeout, <0 abort
	OptKeepIdle                         // TCP_KEEPIDLE: seconds, 1..32767
	OptKeepIntvl                        // TCP_KEEPINTVL: seconds, 1..32767
	OptKeepCnt                          // TCP_KEEPCNT: 1..127
	OptSynCnt                           // TCP_SYNCNT: SYN retransmissions, 1..127
	OptDeferAccept                      // TCP_DEFER_ACCEPT: seconds, rounded up to whole SYN|ACK retransmissions
	OptBindAddressNoPort                // IP_BIND_ADDRESS_NO_PORT: bind(port 0) leaves the port to connect()
	OptLocalPortRange                   // IP_LOCAL_PORT_RANGE: lo | hi<<16 narrows the ephemeral range; 0 each: the stack's
	OptCork                             // TCP_CORK: 1 holds partial segments until cleared (or the RTO passes)
	OptQuickAck                         // TCP_QUICKACK: 0 delays ACKs (interactive mode), 1 leaves it and sends one owed
	OptRcvLowat                         // SO_RCVLOWAT: bytes that make the socket readable (poll, blocking reads)
)

// Linux's bounds for the TCP options (include/net/tcp.h).
const (
	minUserMSS    = 88    // TCP_MIN_MSS
	maxUserMSS    = 32767 // MAX_TCP_WINDOW
	maxFinTimeout = 120 * time.Second
	maxKeepIdle   = 32767 // MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL (seconds)
	maxKeepCnt    = 127   // MAX_TCP_KEEPCNT, MAX_TCP_SYNCNT
)

// Events are poll(2)-style readiness bits.
type Events uint8

const (
	EventIn  Events = 1 << iota // readable: data, EOF, a connection to accept
	EventOut                    // writable
	EventErr                    // a pending error (SO_ERROR)
	EventHup                    // both directions finished
)

// Socket is a BSD-style, non-blocking socket for tools that need socket(2)
// semantics (the drill, `ustack nc`): every call returns at once, with a bare
// syscall.Errno such as EAGAIN or EINPROGRESS, and Changed tells when to look
// again. Go programs normally use Listen and Dial instead.
type Socket struct {
	s         *Stack
	opts      sockOpts
	reuseAddr bool
	owner     hashtable.OwnerID // bind-table entry, once bound
	addr      [4]byte
	port      uint16
	addrOnly  bool   // bound to an address, the port left to connect (IP_BIND_ADDRESS_NO_PORT)
	noPort    bool   // IP_BIND_ADDRESS_NO_PORT
	portRange uint32 // IP_LOCAL_PORT_RANGE
	l         *listener
	e         *endpoint
	ev        waiter
	closed    bool
}

// NewSocket returns an unbound socket with Linux's defaults (Nagle on).
func (s *Stack) NewSocket() *Socket {
	return &Socket{s: s, opts: sockOpts{linger: -1}, ev: newWaiter()}
}

// Linger reads SO_LINGER back as getsockopt(2) fills struct linger: whether
// lingering is on, and the time last set (0 if never), which survives
// turning lingering off.
func (so *Socket) Linger() (on bool, secs int, err error) {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.closed {
		return false, 0, syscall.EBADF
	}
	return so.opts.linger >= 0, so.opts.lingerTime, nil
}

// Option reads an option back, as getsockopt(2) returns it: 1 or 0 for
// the flags, the doubled sizes for the buffers, SO_LINGER's seconds (-1
// when off).
func (so *Socket) Option(opt SockOpt) (int, error) {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.closed {
		return 0, syscall.EBADF
	}
	b := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	switch opt {
	case OptReuseAddr:
		return b(so.reuseAddr), nil
	case OptBindAddressNoPort:
		return b(so.noPort), nil
	case OptLocalPortRange:
		return int(so.portRange), nil
	case OptNoDelay:
		return b(so.opts.nodelay), nil
	case OptKeepAlive:
		return b(so.opts.keepalive), nil
	case OptLinger:
		return so.opts.linger, nil
	case OptRcvBuf:
		if so.opts.rcvBuf > 0 {
			return so.opts.rcvBuf, nil
		}
		return s.opts.RecvBuffer, nil
	case OptSndBuf:
		if so.opts.sndBuf > 0 {
			return so.opts.sndBuf, nil
		}
		return s.opts.SendBuffer, nil
	case OptMaxSeg:
		// Linux do_tcp_getsockopt: user_mss before a connection exists
		// (CLOSE, LISTEN), else the current MSS without options,
		// TCP_MSS_DEFAULT until the handshake says otherwise.
		e := so.e
		if e == nil || e.state == stateClosed || e.state == stateListen {
			if so.opts.tcp.userMSS > 0 {
				return so.opts.tcp.userMSS, nil
			}
			if e == nil {
				return 536, nil
			}
		}
		return e.effMSS(), nil
	case OptUserTimeout:
		return int(so.opts.tcp.userTimeout / time.Millisecond), nil
	case OptLinger2:
		switch {
		case so.opts.tcp.linger2 < 0:
			return -1, nil
		case so.opts.tcp.linger2 == 0:
			return int(s.opts.FinTimeout / time.Second), nil
		}
		return int(so.opts.tcp.linger2 / time.Second), nil
	case OptKeepIdle:
		return int(so.opts.tcp.keepaliveIdle(&s.opts) / time.Second), nil
	case OptKeepIntvl:
		return int(so.opts.tcp.keepaliveIntvl(&s.opts) / time.Second), nil
	case OptKeepCnt:
		return so.opts.tcp.keepaliveProbes(&s.opts), nil
	case OptSynCnt:
		return so.opts.tcp.synRetries(&s.opts), nil
	case OptDeferAccept:
		return retransToSecs(so.opts.deferAccept), nil
	case OptCork:
		return b(so.opts.tcp.cork), nil
	case OptQuickAck:
		return b(so.e == nil || !so.e.pingpong), nil
	case OptRcvLowat:
		return max(so.opts.rcvLowat, 1), nil
	}
	return 0, syscall.ENOPROTOOPT
}

// SetOption sets a socket option.
func (so *Socket) SetOption(opt SockOpt, val int) error {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.closed {
		return syscall.EBADF
	}
	switch opt {
	case OptReuseAddr:
		so.reuseAddr = val != 0
		return nil
	case OptBindAddressNoPort:
		so.noPort = val != 0
		return nil
	case OptLocalPortRange:
		// Linux do_ip_setsockopt: both bounds set and crossed is EINVAL.
		lo, hi := uint16(val), uint16(uint32(val)>>16)
		if lo != 0 && hi != 0 && lo > hi {
			return syscall.EINVAL
		}
		so.portRange = uint32(val)
		return nil
	case OptNoDelay:
		so.opts.nodelay = val != 0
	case OptKeepAlive:
		so.opts.keepalive = val != 0
	case OptLinger:
		so.opts.linger = val
		if val >= 0 {
			so.opts.lingerTime = val
		}
	case OptRcvBuf:
		so.opts.rcvBuf = max(2*val, 2048)
	case OptSndBuf:
		so.opts.sndBuf = max(2*val, 4608)
	case OptMaxSeg:
		if val != 0 && (val < minUserMSS || val > maxUserMSS) {
			return syscall.EINVAL
		}
		so.opts.tcp.userMSS = val
	case OptUserTimeout:
		if val < 0 {
			return syscall.EINVAL
		}
		so.opts.tcp.userTimeout = time.Duration(val) * time.Millisecond
	case OptLinger2:
		switch {
		case val < 0:
			so.opts.tcp.linger2 = -1
		case val > int(maxFinTimeout/time.Second):
			so.opts.tcp.linger2 = maxFinTimeout
		default:
			so.opts.tcp.linger2 = time.Duration(val) * time.Second
		}
	case OptKeepIdle, OptKeepIntvl:
		if val < 1 || val > maxKeepIdle {
			return syscall.EINVAL
		}
		d := time.Duration(val) * time.Second
		if opt == OptKeepIdle {
			so.opts.tcp.keepIdle = d
		} else {
			so.opts.tcp.keepIntvl = d
		}
	case OptDeferAccept:
		so.opts.deferAccept = secsToRetrans(val)
	case OptCork:
		// Clearing it pushes what was held (__tcp_sock_set_cork); the
		// output below does.
		so.opts.tcp.cork = val != 0
	case OptRcvLowat:
		// Linux: a negative value means INT_MAX, and tcp_set_rcvlowat
		// caps it at half the largest receive buffer (tcp_rmem[2]).
		if val < 0 || val > s.opts.RecvBuffer/2 {
			val = s.opts.RecvBuffer / 2
		}
		so.opts.rcvLowat = val
		so.ev.notify()
	case OptQuickAck:
		// Linux __tcp_sock_set_quickack: 0 enters interactive (pingpong)
		// mode; 1 leaves it and sends an owed ACK once the data is read
		// or more than a segment is unacknowledged (tcp_cleanup_rbuf).
		// It acts on the connection, not on options it inherits.
		if e := so.e; e != nil {
			e.pingpong = val == 0
			ready := e.state == stateEstablished || e.state == stateCloseWait
			if val != 0 && ready && e.ackPending && (e.rcvBuf.Len() == 0 || e.unacked > e.rcvMSS) {
				e.sendACK(s.clock.Now())
				s.drainLoopLocked()
			}
		}
		return nil
	case OptKeepCnt, OptSynCnt:
		if val < 1 || val > maxKeepCnt {
			return syscall.EINVAL
		}
		if opt == OptKeepCnt {
			so.opts.tcp.keepCnt = val
		} else {
			so.opts.tcp.synCnt = val
		}
	default:
		return syscall.ENOPROTOOPT
	}
	if e := so.e; e != nil {
		so.opts.apply(e)
		if e.keepalive && e.state.synchronized() && !e.gone {
			e.armKeepalive(s.clock.Now())
		}
		e.output(s.clock.Now())
		s.drainLoopLocked()
	}
	if so.l != nil {
		so.l.child = so.opts
	}
	return nil
}

// Bind binds the socket to addr (port 0: an ephemeral port).
func (so *Socket) Bind(addr netip.AddrPort) error {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.closed {
		return syscall.EBADF
	}
	if so.owner != 0 || so.e != nil || so.addrOnly {
		return syscall.EINVAL
	}
	if addr.Port() == 0 && so.noPort {
		// IP_BIND_ADDRESS_NO_PORT: only the address now; connect()
		// picks the port knowing the destination (__inet_bind).
		a, err := s.localAddr(addr.Addr())
		if err != nil {
			return err
		}
		so.addr, so.addrOnly = a, true
		return nil
	}
	return so.bindLocked(addr)
}

// portBounds is the ephemeral range for this socket: the stack's, narrowed
// by IP_LOCAL_PORT_RANGE.
func (so *Socket) portBounds() (lo, hi uint16) {
	return so.s.bind.Range(uint16(so.portRange), uint16(so.portRange>>16))
}

func (so *Socket) bindLocked(addr netip.AddrPort) error {
	s := so.s
	a, err := s.localAddr(addr.Addr())
	if err != nil {
		return err
	}
	owner := s.newOwner()
	entry := hashtable.BindEntry{Owner: owner, Addr: a, ReuseAddr: so.reuseAddr}
	port := addr.Port()
	if port == 0 {
		lo, hi := so.portBounds()
		if port, err = s.bind.EphemeralBindIn(lo, hi, entry); err != nil {
			return err
		}
	} else if err := s.bind.Bind(entry, port); err != nil {
		return err
	}
	so.owner, so.addr, so.port = owner, a, port
	return nil
}

// Listen makes the socket a listener; an unbound socket gets an ephemeral
// port, as Linux's inet_autobind does.
func (so *Socket) Listen(backlog int) error {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case so.closed:
		return syscall.EBADF
	case so.e != nil:
		return syscall.EINVAL
	case so.l != nil:
		so.l.backlog = min(max(backlog, 0), s.opts.Somaxconn)
		return nil
	}
	if so.owner == 0 {
		// inet_autobind: a port now, even after IP_BIND_ADDRESS_NO_PORT.
		if err := so.bindLocked(addrPort(so.addr, 0)); err != nil {
			return err
		}
	}
	if err := s.bind.SetListening(so.owner, so.port); err != nil {
		return err
	}
	l := &listener{s: s, addr: so.addr, port: so.port, owner: so.owner,
		backlog: min(max(backlog, 0), s.opts.Somaxconn),
		synQ:    make(map[*endpoint]struct{}), ev: so.ev, child: so.opts}
	if !s.lis.Insert(so.addr, so.port, l) {
		return syscall.EADDRINUSE
	}
	so.l = l
	return nil
}

// Connect starts an active open and returns EINPROGRESS; the outcome shows
// in Events and SockError, as for a non-blocking connect(2).
func (so *Socket) Connect(addr netip.AddrPort) error {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case so.closed:
		return syscall.EBADF
	case s.closed:
		return syscall.ENETDOWN
	case so.l != nil:
		return syscall.EISCONN
	case so.e != nil:
		if so.e.state == stateSynSent || so.e.state == stateSynRecv {
			return syscall.EALREADY
		}
		return syscall.EISCONN
	}
	if addr.Addr().IsUnspecified() {
		addr = netip.AddrPortFrom(s.opts.Addr, addr.Port())
	}
	if !addr.Addr().Is4() || addr.Port() == 0 {
		return syscall.EINVAL
	}
	id := hashtable.FourTuple{LocalAddr: s.addr, RemoteAddr: addr.Addr().As4(), RemotePort: addr.Port()}
	if so.owner != 0 {
		id.LocalPort = so.port
		if _, taken := s.est.Lookup(id); taken {
			return syscall.EADDRNOTAVAIL
		}
	} else {
		port, err := s.ephemeralFor(id, uint16(so.portRange), uint16(so.portRange>>16))
		if err != nil {
			return err
		}
		owner := s.newOwner()
		if err := s.bind.Bind(hashtable.BindEntry{Owner: owner, Addr: s.addr}, port); err != nil {
			return err
		}
		so.owner, so.addr, so.port = owner, s.addr, port
		id.LocalPort = port
	}
	e := s.connectLocked(s.clock.Now(), id, so.owner, so.opts)
	e.ev = so.ev
	so.e = e
	return syscall.EINPROGRESS
}

// Accept returns a connection from the accept queue, or EAGAIN.
func (so *Socket) Accept() (*Socket, error) {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	l := so.l
	switch {
	case so.closed:
		return nil, syscall.EBADF
	case l == nil:
		return nil, syscall.EINVAL
	case len(l.acceptQ) == 0:
		return nil, syscall.EAGAIN
	}
	e := l.acceptQ[0]
	l.acceptQ = l.acceptQ[1:]
	e.parent = nil
	// Like Linux (sk_clone), the child inherits the listener's options,
	// SO_REUSEADDR included.
	c := &Socket{s: s, opts: l.child, reuseAddr: so.reuseAddr, e: e, ev: newWaiter(), addr: e.id.LocalAddr, port: e.id.LocalPort}
	c.opts.deferAccept = 0 // the child's accept queue is its own (inet_csk_clone_lock)
	e.ev = c.ev
	return c, nil
}

// Read reads received bytes: EAGAIN when none wait, 0 at EOF.
func (so *Socket) Read(p []byte) (int, error) { return so.Recv(p, 0) }

// Recv is recv(2) with its flags: MSG_PEEK copies without consuming (the
// window does not move). MSG_WAITALL is for blocking callers, who keep
// calling until all of p is filled; here it reads what there is. Other
// flags are EOPNOTSUPP.
func (so *Socket) Recv(p []byte, flags int) (int, error) {
	if flags&^(syscall.MSG_PEEK|syscall.MSG_WAITALL) != 0 {
		return 0, syscall.EOPNOTSUPP
	}
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	e := so.e
	switch {
	case so.closed:
		return 0, syscall.EBADF
	case e == nil:
		return 0, syscall.ENOTCONN
	case e.rcvBuf.Len() > 0: // even after SHUT_RD, as Linux tcp_recvmsg
		if len(p) == 0 {
			return 0, nil
		}
		if flags&syscall.MSG_PEEK != 0 {
			return e.rcvBuf.Peek(p, 0), nil
		}
		n := e.rcvBuf.Read(p)
		e.afterRead(s.clock.Now())
		s.drainLoopLocked()
		return n, nil
	case e.softErr != 0:
		err := e.softErr
		e.softErr = 0
		return 0, err
	case e.finRecvd || e.shutRd || e.gone:
		return 0, nil
	}
	return 0, syscall.EAGAIN
}

// Write queues bytes: EAGAIN when the send buffer is full or the
// connection is not yet established.
func (so *Socket) Write(p []byte) (int, error) { return so.Send(p, 0) }

// Send is send(2) with its flags: MSG_MORE holds a partial last segment,
// as TCP_CORK does, until a later send without it (or the RTO). Other
// flags are EOPNOTSUPP.
func (so *Socket) Send(p []byte, flags int) (int, error) {
	if flags&^syscall.MSG_MORE != 0 {
		return 0, syscall.EOPNOTSUPP
	}
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	e := so.e
	switch {
	case so.closed:
		return 0, syscall.EBADF
	case e == nil:
		return 0, syscall.EPIPE // Linux: write on an unconnected TCP socket
	case e.softErr != 0:
		err := e.softErr
		e.softErr = 0
		return 0, err
	case e.shutWr || e.gone:
		return 0, syscall.EPIPE
	case e.state == stateSynSent || e.state == stateSynRecv:
		return 0, syscall.EAGAIN
	}
	n := e.sndBuf.Write(p)
	if n == 0 && len(p) > 0 {
		return 0, syscall.EAGAIN
	}
	e.more = flags&syscall.MSG_MORE != 0 // for this push only (tcp_push)
	e.output(s.clock.Now())
	e.more = false
	s.drainLoopLocked()
	return n, nil
}

// Shutdown is shutdown(2): SHUT_RD, SHUT_WR or SHUT_RDWR (B34).
func (so *Socket) Shutdown(how int) error {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	e := so.e
	switch {
	case so.closed:
		return syscall.EBADF
	case e == nil || e.state == stateSynSent:
		return syscall.ENOTCONN
	}
	if how == syscall.SHUT_RD || how == syscall.SHUT_RDWR {
		e.shutRd = true
		e.notifyRead()
	}
	if (how == syscall.SHUT_WR || how == syscall.SHUT_RDWR) && !e.shutWr {
		e.shutWr = true
		e.queueFIN(s.clock.Now(), "shutdown(SHUT_WR)")
		s.drainLoopLocked()
	}
	return nil
}

// Close closes the socket: a listener resets its queue (B12), a connection
// closes as Conn.Close does (B30, B32).
func (so *Socket) Close() error {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.closed {
		return syscall.EBADF
	}
	so.closed = true
	now := s.clock.Now()
	switch {
	case so.l != nil:
		so.l.closeLocked(now)
	case so.e != nil:
		so.e.closeLocked(now)
	case so.owner != 0:
		s.bind.Unbind(so.owner, so.port)
	}
	s.drainLoopLocked()
	return nil
}

// Events reports readiness like poll(2)'s revents.
func (so *Socket) Events() Events {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	var ev Events
	if l := so.l; l != nil {
		if len(l.acceptQ) > 0 {
			ev |= EventIn
		}
		return ev
	}
	e := so.e
	if e == nil {
		return EventOut | EventHup // Linux: an unconnected socket polls as HUP|OUT
	}
	if e.readableLocked(max(so.opts.rcvLowat, 1)) {
		ev |= EventIn
	}
	if e.softErr != 0 {
		ev |= EventErr
	}
	if (e.state == stateEstablished || e.state == stateCloseWait) && !e.shutWr && e.sndBuf.Free() > 0 {
		ev |= EventOut
	}
	if e.gone || e.shutWr && e.finRecvd {
		ev |= EventHup | EventOut
	}
	return ev
}

// Changed delivers a value after any change of the socket's state; look
// at Events again when it does.
func (so *Socket) Changed() <-chan struct{} { return so.ev }

// SockError returns and clears the pending error (SO_ERROR).
func (so *Socket) SockError() syscall.Errno {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.e == nil {
		return 0
	}
	err := so.e.softErr
	so.e.softErr = 0
	if err == 0 {
		// Linux sock_getsockopt: with no error pending, SO_ERROR takes
		// the soft one (an ICMP error while open).
		err, so.e.icmpErr = so.e.icmpErr, 0
	}
	return err
}

// InQ is the number of bytes waiting to be read (SIOCINQ).
func (so *Socket) InQ() int {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.e == nil {
		return 0
	}
	return so.e.rcvBuf.Len()
}

// State is the connection's state with ss's name ("" before connect/listen).
func (so *Socket) State() string {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case so.l != nil:
		return stateListen.String()
	case so.e != nil:
		return so.e.state.String()
	}
	return ""
}

// Readable reports whether a blocking read of target bytes would return
// now: that much is queued (or SO_RCVLOWAT's worth, Linux's
// sock_rcvlowat takes the smaller), or EOF or an error ends the wait.
func (so *Socket) Readable(target int) bool {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.e == nil {
		return true // the read fails at once
	}
	return so.e.readableLocked(min(max(target, 1), max(so.opts.rcvLowat, 1)))
}

// readableLocked is tcp_stream_is_readable and tcp_epollin_ready: target
// bytes queued, or the window nearly shut (so waiting could deadlock), or
// nothing more will come.
func (e *endpoint) readableLocked(target int) bool {
	if n := e.rcvBuf.Len(); n > 0 && (n >= target || e.rcvAdv.sub(e.rcvNxt) <= uint32(e.rcvMSS)) {
		return true
	}
	return e.finRecvd || e.shutRd || e.gone || e.softErr != 0
}

// Closing reports whether the connection is still sending its FIN or
// waiting for its ACK (FIN-WAIT-1, CLOSING, LAST-ACK), also after Close:
// what a lingering close(2) waits out (sk_stream_closing).
func (so *Socket) Closing() bool {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.e == nil || so.e.gone {
		return false
	}
	switch so.e.state {
	case stateFinWait1, stateClosing, stateLastAck:
		return true
	}
	return false
}

// LocalAddr is the bound address.
func (so *Socket) LocalAddr() netip.AddrPort {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return addrPort(so.addr, so.port)
}

// secsToRetrans turns TCP_DEFER_ACCEPT seconds into the SYN|ACK
// retransmissions that cover them, the timeout doubling from 1 s up to the
// 120 s maximum (Linux secs_to_retrans).
func secsToRetrans(secs int) int {
	if secs <= 0 {
		return 0
	}
	n, timeout, period := 1, 1, 1
	for secs > period && n < 255 {
		n++
		timeout = min(2*timeout, int(rtoMax/time.Second))
		period += timeout
	}
	return n
}

// retransToSecs is the inverse for getsockopt (Linux retrans_to_secs).
func retransToSecs(n int) int {
	if n <= 0 {
		return 0
	}
	timeout, period := 1, 1
	for ; n > 1; n-- {
		timeout = min(2*timeout, int(rtoMax/time.Second))
		period += timeout
	}
	return period
}
