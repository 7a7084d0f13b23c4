package stack

import (
	"syscall"
	"time"
)

// Socket options (socket(7), tcp(7), ip(7)) as Linux keeps them: their
// ranges, errnos, read-back values and what a listener's children inherit.

// sockOpts are the per-socket options a listener hands to its children.
type sockOpts struct {
	// lingerTime is SO_LINGER's l_linger, kept while lingering is off as
	// Linux keeps sk_lingertime (sock_setsockopt): getsockopt reads it back.
	lingerTime int
	rcvBufSize int // SO_RCVBUF; 0: the stack's default
	sndBufSize int // SO_SNDBUF
	rcvLowat   int // SO_RCVLOWAT; 0 means 1
	pmtuDisc   int // IP_MTU_DISCOVER: one of the PMTUDisc values
	tcp        tcpOpts

	// deferAccept is a listener's TCP_DEFER_ACCEPT as Linux keeps it
	// (rskq_defer_accept): the SYN|ACK retransmissions a bare ACK is
	// ignored for. Not inherited: an accepted socket reads 0.
	deferAccept int
}

// tcpOpts are the per-socket TCP options of tcp(7). A zero field means the
// stack-wide setting (Options, Linux's sysctl).
type tcpOpts struct {
	nodelay     bool          // TCP_NODELAY
	keepalive   bool          // SO_KEEPALIVE
	linger      int           // SO_LINGER seconds; -1 off
	userMSS     int           // TCP_MAXSEG: caps the MSS we announce and use
	userTimeout time.Duration // TCP_USER_TIMEOUT: how long data may go unacknowledged
	linger2     time.Duration // TCP_LINGER2: an orphan's FIN-WAIT-2 time; <0 aborts
	keepIdle    time.Duration // TCP_KEEPIDLE
	keepIntvl   time.Duration // TCP_KEEPINTVL
	keepCnt     int           // TCP_KEEPCNT
	synCnt      int           // TCP_SYNCNT
	cork        bool          // TCP_CORK: hold partial segments
}

// linuxSockOpts are a new socket's options in Linux: lingering off,
// IP_PMTUDISC_WANT.
var linuxSockOpts = sockOpts{tcp: tcpOpts{linger: -1}, pmtuDisc: PMTUDiscWant}

// goSockOpts are the defaults of Go's net package: TCP_NODELAY on.
var goSockOpts = sockOpts{tcp: tcpOpts{nodelay: true, linger: -1}, pmtuDisc: PMTUDiscWant}

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
	OptV6Only                           // IPV6_V6ONLY: 1 keeps a :: socket to IPv6 (set before bind)
	OptMTUDiscover                      // IP_MTU_DISCOVER: a PMTUDisc value; what a UDP datagram past the MTU gets
	OptRecvErr                          // IP_RECVERR, IPV6_RECVERR: 1 queues ICMP errors for RecvErr (UDP), unconnected sockets too
)

// IP_MTU_DISCOVER's values (ip(7)), as Linux numbers them. For UDP on
// IPv4, DONT, WANT and OMIT fragment a datagram larger than the MTU (DONT
// clears DF on every packet, the others only on fragments); DO, PROBE and
// INTERFACE refuse it with EMSGSIZE. With one link there is no path MTU
// apart from the link's, so PROBE and INTERFACE act as DO, OMIT as WANT.
// WANT is Linux's default (net.ipv4.ip_no_pmtu_disc = 0).
const (
	PMTUDiscDont      = 0 // IP_PMTUDISC_DONT
	PMTUDiscWant      = 1 // IP_PMTUDISC_WANT
	PMTUDiscDo        = 2 // IP_PMTUDISC_DO
	PMTUDiscProbe     = 3 // IP_PMTUDISC_PROBE
	PMTUDiscInterface = 4 // IP_PMTUDISC_INTERFACE
	PMTUDiscOmit      = 5 // IP_PMTUDISC_OMIT
)

// pmtuDiscFragments reports whether a socket with IP_MTU_DISCOVER v lets
// IPv4 fragment its datagrams (Linux ip_sk_ignore_df, ip_dont_fragment).
func pmtuDiscFragments(v int) bool {
	return v == PMTUDiscDont || v == PMTUDiscWant || v == PMTUDiscOmit
}

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

func (t *tcpOpts) keepaliveIdle(o *Options) time.Duration {
	return orDefault(t.keepIdle, o.KeepaliveIdle)
}

func (t *tcpOpts) keepaliveIntvl(o *Options) time.Duration {
	return orDefault(t.keepIntvl, o.KeepaliveIntvl)
}

func (t *tcpOpts) keepaliveProbes(o *Options) int { return orDefault(t.keepCnt, o.KeepaliveProbes) }

func (t *tcpOpts) synRetries(o *Options) int { return orDefault(t.synCnt, o.SynRetries) }

// orDefault is the per-socket value unless it is zero (unset).
func orDefault[T comparable](v, def T) T {
	var zero T
	if v != zero {
		return v
	}
	return def
}

// apply gives a new connection the options.
func (o sockOpts) apply(e *endpoint) {
	e.tcpOpts = o.tcp
	// Never below what the buffers already hold (or was offered as window).
	if o.rcvBufSize > 0 {
		e.rcv.buf.limit = max(o.rcvBufSize+rcvSlack, e.rcv.buf.limit)
		if e.state == stateClosed || e.state == stateSynSent || e.state == stateListen {
			e.rcv.buf.limit = o.rcvBufSize + rcvSlack
		}
	}
	if o.sndBufSize > 0 {
		e.snd.buf.limit = max(o.sndBufSize, e.snd.buf.Len())
	}
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
	return so.opts.tcp.linger >= 0, so.opts.lingerTime, nil
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
	case OptV6Only:
		return b(so.v6only), nil
	case OptRecvErr:
		return b(so.u != nil && so.u.recvErr), nil
	case OptLocalPortRange:
		return int(so.portRange), nil
	case OptNoDelay:
		return b(so.opts.tcp.nodelay), nil
	case OptKeepAlive:
		return b(so.opts.tcp.keepalive), nil
	case OptLinger:
		return so.opts.tcp.linger, nil
	case OptRcvBuf:
		if so.opts.rcvBufSize > 0 {
			return so.opts.rcvBufSize, nil
		}
		return s.opts.RecvBuffer, nil
	case OptSndBuf:
		if so.opts.sndBufSize > 0 {
			return so.opts.sndBufSize, nil
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
				return defaultMSS, nil
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
		return b(so.e == nil || !so.e.rcv.pingpong), nil
	case OptRcvLowat:
		return max(so.opts.rcvLowat, 1), nil
	case OptMTUDiscover:
		return so.opts.pmtuDisc, nil
	}
	return 0, syscall.ENOPROTOOPT
}

// SetOption sets a socket option.
func (so *Socket) SetOption(opt SockOpt, val int) error {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return so.setOptionLocked(opt, val)
}

func (so *Socket) setOptionLocked(opt SockOpt, val int) error {
	s := so.s
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
	case OptV6Only:
		// Linux do_ipv6_setsockopt: only before the socket is bound.
		if so.owner != 0 || so.e != nil || so.l != nil {
			return syscall.EINVAL
		}
		so.v6only = val != 0
		return nil
	case OptRecvErr:
		if so.u == nil {
			return syscall.ENOPROTOOPT // only datagram sockets here
		}
		so.u.recvErr = val != 0
		if !so.u.recvErr {
			so.u.errQueue = nil // ip_sock_set_recverr purges the queue
		}
		return nil
	case OptMTUDiscover:
		// Linux do_ip_setsockopt: IP_PMTUDISC_OMIT is the largest.
		if val < PMTUDiscDont || val > PMTUDiscOmit {
			return syscall.EINVAL
		}
		so.opts.pmtuDisc = val
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
		so.opts.tcp.nodelay = val != 0
	case OptKeepAlive:
		so.opts.tcp.keepalive = val != 0
	case OptLinger:
		so.opts.tcp.linger = val
		if val >= 0 {
			so.opts.lingerTime = val
		}
	case OptRcvBuf:
		so.opts.rcvBufSize = max(2*val, 2048)
		if so.u != nil {
			so.u.limit = so.opts.rcvBufSize // B72: datagrams past it are dropped
		}
	case OptSndBuf:
		so.opts.sndBufSize = max(2*val, 4608)
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
			e.rcv.pingpong = val == 0
			ready := e.state == stateEstablished || e.state == stateCloseWait
			if val != 0 && ready && e.rcv.ackPending && (e.rcv.buf.Len() == 0 || e.rcv.unacked > e.rcv.mss) {
				e.sendACK(s.clock.Now())
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
		switch {
		case e.keepalive && e.state.synchronized() && !e.gone:
			e.armKeepalive(s.clock.Now())
		case !e.keepalive && !(e.state == stateFinWait2 && e.orphan):
			s.timers.Stop(&e.keepTimer) // the FIN-WAIT-2 timeout shares it
		}
		e.output(s.clock.Now())
	}
	if so.l != nil {
		so.l.child = so.opts
	}
	return nil
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
