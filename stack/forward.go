package stack

import (
	"net"
	"net/netip"
	"syscall"
	"time"

	"ustack/hashtable"
	"ustack/stack/header"
	"ustack/timers"
)

// Forwarding: connections to addresses and ports that no socket of ours
// has, handed to the embedder (a proxy, a VPN's relay) to decide before
// anything is answered, as gVisor's tcp.NewForwarder does, with what its
// users ask for besides: a decision that may come late, a bound on the
// requests waiting for one with every SYN past it counted, and a timeout.
// With Options.Promiscuous the stack takes packets to any address, and a
// forwarded connection's local address is the one the client dialled.

// TCPRequest is a SYN that no listener took, waiting for the forwarder's
// handler to Accept, Reject, RejectWith or Drop it. Each of those may be
// called once; after the first, or after the request expired or the
// client reset it, they fail with EINVAL (Accept) or do nothing.
type TCPRequest struct {
	s     *Stack
	syn   segment // the client's SYN, without its payload
	done  bool    // decided, expired or reset
	timer timers.Timer
	// est is the connection a SYN cookie's ACK completed already (the
	// table was full when the SYN came), waiting in its parent's accept
	// queue for the decision.
	est *endpoint
}

// tcpForwarder is the stack's forwarding state (SetTCPForwarder).
type tcpForwarder struct {
	handler    func(*TCPRequest)
	maxPending int
	pending    map[hashtable.FourTuple]*TCPRequest
	// lastOverflow is when a SYN last found the table full and got a
	// cookie: ACKs without a connection are checked as cookies for a
	// while after (cookieWindow).
	lastOverflow time.Time
}

// SetTCPForwarder hands every SYN that no listener takes (to any address
// but the stack's own with Options.Promiscuous, else to its own) to handler, each in a goroutine
// of its own, instead of answering RST. At most maxPending requests wait
// for a decision at a time. A SYN past that is answered with a SYN cookie
// (B43, as a listener's full SYN queue is, unless Options.SynCookies is
// off) and its handshake completes before the handler is asked, which
// then decides about an open connection (as many again may wait so);
// without cookies it is dropped and counted (tcp.forward.drop.pending_full)
// and the client's retransmission tries again.
// A request left undecided for Options.ForwardTimeout is answered with RST
// (tcp.forward.timeouts). A nil handler ends forwarding; the requests still
// waiting are answered with RST.
func (s *Stack) SetTCPForwarder(maxPending int, handler func(*TCPRequest)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.fwdTCP; old != nil {
		now := s.clock.Now()
		for _, r := range old.pending {
			r.finishLocked()
			r.resetLocked(now)
		}
	}
	s.fwdTCP = nil
	if handler != nil && !s.closed {
		s.fwdTCP = &tcpForwarder{handler: handler, maxPending: max(maxPending, 1), pending: make(map[hashtable.FourTuple]*TCPRequest)}
	}
}

// closeForwardersLocked ends forwarding as the stack closes: waiting
// requests are answered with RST, flows end with net.ErrClosed.
func (s *Stack) closeForwardersLocked() {
	if f := s.fwdTCP; f != nil {
		now := s.clock.Now()
		for _, r := range f.pending {
			r.finishLocked()
			r.resetLocked(now)
		}
	}
	if f := s.fwdUDP; f != nil {
		for f.lru.head != nil {
			f.lru.head.endLocked(net.ErrClosed)
		}
	}
	s.fwdTCP, s.fwdUDP, s.fwdEcho = nil, nil, nil
}

// forwards reports whether the forwarders take traffic to dst: with
// Options.Promiscuous every address but the stack's own (whose closed
// ports answer as ever, B01), without it the stack's own.
func (s *Stack) forwards(dst hashtable.Addr) bool { return s.opts.Promiscuous != s.isLocal(dst) }

// forwardTCP offers sg, which no socket took, to the forwarder; it reports
// whether the forwarder took it (so no RST is due).
func (s *Stack) forwardTCP(now time.Time, sg *segment) bool {
	f := s.fwdTCP
	if f == nil || !s.forwards(sg.dst) {
		return false
	}
	if r, ok := f.pending[sg.tuple()]; ok {
		switch {
		case sg.has(flagRST):
			// The client gave up: nothing to accept any more.
			r.finishLocked()
			s.inc(cntTCPForwardReset)
		case sg.has(flagSYN) && !sg.has(flagACK) && sg.seq == r.syn.seq:
			s.inc(cntTCPForwardDupSYN) // a retransmission: still deciding
		}
		return true
	}
	if sg.has(flagACK) && !sg.has(flagSYN) && !sg.has(flagRST) {
		return s.forwardCookieACK(now, f, sg)
	}
	if !sg.has(flagSYN) || sg.has(flagACK) || sg.has(flagRST) || sg.has(flagFIN) {
		return false // only a SYN opens; the rest gets the usual RST
	}
	if len(f.pending) >= f.maxPending {
		if s.opts.SynCookies == SynCookiesOff {
			s.inc(cntTCPForwardPendingFull)
			return true
		}
		f.lastOverflow = now
		forwardParent(s, sg).sendCookie(now, sg)
		return true
	}
	s.offerLocked(now, f, &TCPRequest{s: s, syn: *sg})
	return true
}

// offerLocked registers r and hands it to the handler.
func (s *Stack) offerLocked(now time.Time, f *tcpForwarder, r *TCPRequest) {
	r.syn.payload = nil
	r.timer.Init(r.expire)
	f.pending[r.syn.tuple()] = r
	s.schedule(&r.timer, now.Add(s.opts.ForwardTimeout))
	s.inc(cntTCPForwardRequests)
	go f.handler(r)
}

// forwardParent is the listener of a forwarded connection: in no table,
// at the address the client dialled, holding just that one connection.
func forwardParent(s *Stack, sg *segment) *listener {
	return &listener{s: s, addr: sg.dst, port: sg.dstPort, synQ: make(map[*endpoint]struct{}), child: goSockOpts}
}

// forwardCookieACK checks an ACK without a connection against the cookies
// the forwarder sent; a valid one completes the handshake and the open
// connection goes to the handler. It reports whether it was one.
func (s *Stack) forwardCookieACK(now time.Time, f *tcpForwarder, sg *segment) bool {
	if f.lastOverflow.IsZero() || now.Sub(f.lastOverflow) > cookieWindow {
		return false
	}
	l := forwardParent(s, sg)
	l.lastOverflow = f.lastOverflow
	if !l.cookieACK(now, sg) {
		return false
	}
	if len(l.acceptQ) != 1 {
		return true // the ACK did not complete it (cookieACK said why)
	}
	e := l.acceptQ[0]
	if len(f.pending) >= 2*f.maxPending {
		s.inc(cntTCPForwardPendingFull)
		e.sendRST(now)
		e.close("forwarder full: RST sent", nil, 0)
		return true
	}
	syn := segment{src: sg.src, dst: sg.dst, srcPort: sg.srcPort, dstPort: sg.dstPort, seq: e.rcv.irs, flags: flagSYN}
	s.offerLocked(now, f, &TCPRequest{s: s, syn: syn, est: e})
	return true
}

// resetLocked refuses the request with RST: to the SYN, or on the
// connection a cookie opened.
func (r *TCPRequest) resetLocked(now time.Time) {
	if e := r.est; e != nil {
		if !e.gone {
			e.sendRST(now)
			e.close("forwarder refused: RST sent", nil, 0)
		}
		return
	}
	r.s.sendResetFor(&r.syn)
}

// Src is the client's address and port.
func (r *TCPRequest) Src() netip.AddrPort { return addrPort(r.syn.src, r.syn.srcPort) }

// Dst is the address and port the client connects to: the accepted
// connection's LocalAddr.
func (r *TCPRequest) Dst() netip.AddrPort { return addrPort(r.syn.dst, r.syn.dstPort) }

// finishLocked ends the request's wait: no decision is taken after it.
func (r *TCPRequest) finishLocked() bool {
	if r.done {
		return false
	}
	r.done = true
	r.s.timers.Stop(&r.timer)
	if f := r.s.fwdTCP; f != nil && f.pending[r.syn.tuple()] == r {
		delete(f.pending, r.syn.tuple())
	}
	return true
}

// expire answers a request nobody decided in time with RST.
func (r *TCPRequest) expire(now time.Time) {
	if r.finishLocked() {
		r.s.inc(cntTCPForwardTimeouts)
		r.resetLocked(now)
	}
}

// Accept answers the SYN with SYN|ACK and waits for the handshake to
// complete, as a listener would; it fails with ETIMEDOUT when the client
// never completes it and ECONNRESET when it resets. Its Conn's LocalAddr
// is Dst.
func (r *TCPRequest) Accept() (*Conn, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(err error) (*Conn, error) {
		return nil, opError("accept", tcpAddr(r.syn.dst, r.syn.dstPort), tcpAddr(r.syn.src, r.syn.srcPort), err)
	}
	if s.closed {
		return fail(net.ErrClosed)
	}
	if !r.finishLocked() {
		return fail(syscall.EINVAL)
	}
	if e := r.est; e != nil {
		// A cookie's handshake is done: the connection is open already.
		if e.gone {
			return fail(syscall.ECONNRESET)
		}
		s.inc(cntTCPForwardAccepted)
		e.parent.acceptQ = nil
		e.parent = nil
		return newConn(&Socket{s: s, opts: goSockOpts, e: e, addr: e.id.LocalAddr, port: e.id.LocalPort}), nil
	}
	now := s.clock.Now()
	// The child's parent is a listener of its own, in no table: the
	// handshake runs as for any passive open (B10), and only this call
	// takes what it accepts.
	l := forwardParent(s, &r.syn)
	child := l.openChild(now, &r.syn, s.isn(now, r.syn.tuple()))
	if child == nil {
		return fail(syscall.EADDRINUSE)
	}
	s.inc(cntTCPForwardAccepted)
	for len(l.acceptQ) == 0 {
		if child.gone {
			// Its SYN|ACKs went unanswered (ETIMEDOUT), or a RST came.
			if child.hardErr == syscall.ETIMEDOUT {
				return fail(syscall.ETIMEDOUT)
			}
			return fail(syscall.ECONNRESET)
		}
		ch := l.wait.wait()
		s.mu.Unlock()
		<-ch
		s.mu.Lock()
	}
	e := l.acceptQ[0]
	l.acceptQ = nil
	e.parent = nil
	so := &Socket{s: s, opts: l.child, e: e, addr: e.id.LocalAddr, port: e.id.LocalPort}
	return newConn(so), nil
}

// Reject answers the SYN with RST|ACK, as a closed port does: the client
// sees ECONNREFUSED.
func (r *TCPRequest) Reject() {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed && r.finishLocked() {
		s.inc(cntTCPForwardRejected)
		r.resetLocked(s.clock.Now())
	}
}

// RejectWith answers the SYN with ICMP destination unreachable (ICMPv6
// for IPv6) of the given code, from the stack's own address, as a router
// on the way would: for example 1 (host unreachable) or 13
// (administratively prohibited) on IPv4, 1 (administratively prohibited)
// or 3 (address unreachable) on IPv6. A Linux client's connect fails with
// the matching errno (EHOSTUNREACH, ENETUNREACH...) after its retries.
func (r *TCPRequest) RejectWith(code uint8) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !r.finishLocked() {
		return
	}
	s.inc(cntTCPForwardRejected)
	if r.est != nil {
		r.resetLocked(s.clock.Now()) // too late for ICMP: the connection is open
		return
	}
	if !r.syn.src.Is4() && !s.has6 {
		return
	}
	var seg [header.TCPMinSize]byte
	header.EncodeTCP(seg[:], header.TCPFields{SrcPort: r.syn.srcPort, DstPort: r.syn.dstPort, Seq: uint32(r.syn.seq), Flags: flagSYN, Window: r.syn.wnd}, 0)
	s.destUnreachable(r.syn.src, r.syn.dst, header.ProtoTCP, code, seg[:])
}

// Drop answers nothing: the client retransmits its SYN, which comes to
// the handler again as a new request.
func (r *TCPRequest) Drop() {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.finishLocked() {
		s.inc(cntTCPForwardDropped)
		if e := r.est; e != nil && !e.gone {
			e.close("forwarder dropped", nil, 0) // silently: the client's next segment meets RST
		}
	}
}
