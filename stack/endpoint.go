package stack

import (
	"syscall"
	"time"

	"ustack/hashtable"
	"ustack/timers"
)

// The TCP connection (the TCB): its identity, state, timers and
// application side; the send and receive halves are snd.go and rcv.go.

// endpoint is one TCP connection: Linux's struct tcp_sock, the TCB of
// RFC 9293 section 3.3.1. Its send half is snd (snd.go), its receive half
// rcv (rcv.go); what is left here is the connection's identity, state,
// timers and the application's side. All fields are guarded by Stack.mu.
type endpoint struct {
	s     *Stack
	id    hashtable.FourTuple
	state tcpState

	owner  hashtable.OwnerID // bind-table entry this connection holds; 0: none (a listener's child)
	parent *listener         // the listener, until accept()
	active bool              // opened by connect() (errors go to the dialer)
	orphan bool              // close() was called: no application any more
	gone   bool              // removed from every table

	snd sender
	rcv receiver
	negotiated

	// Timers (timers.go). rtxTimer is the retransmission, SYN
	// retransmission, tail loss probe or persist timer, as rtxMode says.
	rtxTimer    timers.Timer
	rtxMode     rtxMode
	delackTimer timers.Timer
	keepTimer   timers.Timer // keepalive, or the FIN_WAIT_2 timeout (B35)
	waitTimer   timers.Timer // TIME_WAIT (B37)
	retries     int          // SYN / SYN|ACK retransmissions so far
	synStart    time.Time    // when the first SYN left
	tlpOut      bool         // a probe is unanswered: the next expiry is the RTO
	probes      int          // unanswered zero-window or keepalive probes
	probesAt    time.Time    // first zero-window probe of this run (icsk_probes_tstamp)
	lastRecv    time.Time    // last acceptable segment (keepalive idle time)
	lastOOW     time.Time    // last rate-limited answer (tcp_oow_rate_limited)

	// Passive open.
	deferAcked bool // SYN-RECV: a bare ACK came, ignored for TCP_DEFER_ACCEPT
	fromCookie bool // made from a SYN cookie's ACK: no SYN-RECV to wait in

	// Application side.
	softErr syscall.Errno // reported once by the next read or write
	icmpErr syscall.Errno // an ICMP error while open: what a timeout reports (sk_err_soft)
	hardErr syscall.Errno // the connection failed: what writes report afterwards
	shutRd  bool
	shutWr  bool
	rdWait  cond
	wrWait  cond
	ev      waiter // a Socket's readiness channel; nil unless polled

	tcpOpts // per-socket options (tcp(7), socket(7))
}

// negotiated are the options both sides agreed on in the handshake
// (RFC 7323, RFC 2018).
type negotiated struct {
	wsOK     bool
	tsOK     bool
	sackOK   bool
	tsOff    uint32 // our TSval origin (secure_tcp_ts_off)
	cookieTS bool   // a cookie SYN|ACK: TSval carries the peer's options (B43)
}

// rtxMode says what the armed rtxTimer is for.
type rtxMode uint8

const (
	rtxRetransmit rtxMode = iota // the RTO (or, in SYN-SENT and SYN-RECV, the SYN's)
	rtxLossProbe                 // a tail loss probe (RFC 8985 7)
	rtxPersist                   // a zero-window probe, or data held by TCP_CORK (B21)
)

func (s *Stack) newEndpoint(id hashtable.FourTuple) *endpoint {
	e := &endpoint{
		s:  s,
		id: id,
		snd: sender{
			buf: newRing(s.opts.SendBuffer),
			rtt: rttEstimator{rto: rtoInitial},
			mss: defaultMSS, // RFC 9293 3.7.1: when the peer sends none
			cc:  newCongestionControl(s.opts.CongestionControl),
		},
		rcv: receiver{
			buf:       newRing(s.opts.RecvBuffer + rcvSlack),
			quickACKs: maxQuickACKs,
			mss:       defaultMSS, // as tcp_initialize_rcv_mss starts
		},
		negotiated: negotiated{tsOff: s.tsOffset(id)},
		// Go's net package sets TCP_NODELAY on every TCPConn.
		tcpOpts: tcpOpts{nodelay: true, linger: -1},
	}
	e.rtxTimer.Init(e.onRetransmitTimer)
	e.delackTimer.Init(e.onDelackTimer)
	e.keepTimer.Init(e.onKeepTimer)
	e.waitTimer.Init(e.onTimeWaitTimer)
	return e
}

// advMSS is the MSS we announce and the most we send: the link's, capped by
// TCP_MAXSEG (Linux tcp_advertise_mss, and tcp_parse_options clamping the
// peer's MSS to user_mss).
func (e *endpoint) advMSS() int {
	m := e.s.netMSS(e.id.RemoteAddr)
	if e.userMSS > 0 && e.userMSS < m {
		m = e.userMSS
	}
	return m
}

// setState moves the connection to st and traces why.
func (e *endpoint) setState(st tcpState, why string, sg *segment) {
	if e.state == st {
		return
	}
	e.s.trace(e, e.state, st, why, sg)
	e.state = st
	e.notifyRead()
	e.notifyWrite()
}

// effMSS is the payload that fits in one segment with our usual options.
func (e *endpoint) effMSS() int {
	m := e.snd.mss
	if e.tsOK {
		m -= 12
	}
	if m < 1 {
		m = 1
	}
	return m
}
