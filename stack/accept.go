package stack

import (
	"time"

	"ustack/hashtable"
)

// The listener (RFC 9293 3.10.7.2) and the passive open: SYN, the SYN
// queue, SYN-RECV's children, the accept queue (B10, B11, B12).

// listener is a socket in LISTEN: its SYN queue of children in SYN-RECV and
// its accept queue of established children (B10, B11, B12).
type listener struct {
	s       *Stack
	addr    hashtable.Addr
	v6only  bool // IPV6_V6ONLY: :: takes no IPv4 SYN
	port    uint16
	owner   hashtable.OwnerID
	backlog int
	synQ    map[*endpoint]struct{}
	acceptQ []*endpoint
	closed  bool
	wait    cond
	ev      waiter // a Socket's readiness channel; nil for a Listener
	child   sockOpts
	// lastOverflow is when the SYN queue last overflowed into cookies:
	// ACKs to the listener are checked as cookies for a while after.
	lastOverflow time.Time
}

// full is Linux's sk_acceptq_is_full: backlog+1 entries fit (B11).
func (l *listener) full() bool { return len(l.acceptQ) > l.backlog }

// process handles a segment for the listener (RFC 9293 3.10.7.2).
func (l *listener) process(now time.Time, sg *segment) verdict {
	switch {
	case sg.has(flagRST):
		return vDrop
	case sg.has(flagACK):
		if l.cookieACK(now, sg) { // B43
			return vDrop
		}
		return vReset // B04: no connection for this ACK
	case !sg.has(flagSYN):
		return vDrop
	}
	l.synInput(now, sg, 0, false)
	return vDrop
}

// synInput starts a passive open (B10): a child in SYN-RECV answers with
// SYN|ACK. isn is used when useISN (TIME-WAIT reuse, B37).
func (l *listener) synInput(now time.Time, sg *segment, isn seqnum, useISN bool) {
	s := l.s
	if l.full() {
		// B11: a full accept queue drops SYNs silently; the client retries
		// (Linux drops them even with SYN cookies).
		s.inc(cntTCPListenOverflows)
		s.inc(cntTCPListenDrops)
		return
	}
	if !useISN && l.wantCookie(now) {
		l.sendCookie(now, sg) // B43: a full SYN queue keeps no more state
		return
	}
	if !useISN && l.synQFull() {
		// tcp_syncookies=0: Linux's TCPReqQFullDrop. A SYN that reuses a
		// TIME-WAIT pair is exempt from the limit, as in tcp_conn_request.
		s.inc(cntTCPSynQueueDrops)
		return
	}
	if !useISN {
		isn = s.isn(now, sg.tuple())
	}
	l.openChild(now, sg, isn)
}

// openChild makes the child that sg asks for, in SYN-RECV, and answers
// with SYN|ACK; nil when its 4-tuple is taken.
func (l *listener) openChild(now time.Time, sg *segment, isn seqnum) *endpoint {
	e := l.newChild(now, sg, isn)
	if !l.s.est.Insert(e.id, e) {
		return nil
	}
	l.synQ[e] = struct{}{}
	l.s.inc(cntTCPPassiveOpens)
	e.setState(stateSynRecv, "SYN", sg)
	e.sendSYN(now, true)
	return e
}

// newChild makes the endpoint a SYN to the listener asks for, not yet in any
// table: our ISN iss, the peer's, and the options of its SYN.
func (l *listener) newChild(now time.Time, sg *segment, iss seqnum) *endpoint {
	e := l.s.newEndpoint(sg.tuple())
	l.child.apply(e)
	e.parent = l
	e.snd.iss = iss
	e.snd.una, e.snd.nxt, e.snd.max = iss, iss, iss
	e.rcv.irs = sg.seq
	e.rcv.nxt = sg.seq.add(1)
	e.rcv.adv = e.rcv.nxt // nothing offered yet: the SYN|ACK offers the window
	e.negotiate(&sg.opts, true)
	if e.tsOK {
		e.rcv.tsRecent = sg.opts.TSVal
	}
	e.snd.wnd = uint32(sg.wnd) // RFC 7323 2.2: a SYN's window is unscaled
	e.lastRecv = now
	return e
}

func (l *listener) removeFromAcceptQ(e *endpoint) {
	for i, c := range l.acceptQ {
		if c == e {
			l.acceptQ = append(l.acceptQ[:i], l.acceptQ[i+1:]...)
			return
		}
	}
}

// closeLocked stops listening: children still in the accept queue are
// reset (B12); those in SYN-RECV are dropped silently, as Linux frees its
// request sockets.
func (l *listener) closeLocked(now time.Time) {
	if l.closed {
		return
	}
	l.closed = true
	s := l.s
	s.lis.Remove(l.addr, l.port)
	s.bind.Unbind(l.owner, l.port)
	for _, c := range l.acceptQ {
		c.parent = nil
		c.orphan = true
		c.sendRST(now)
		s.inc(cntTCPAbortOnClose)
		c.close("listener closed: RST sent", nil, errConnAborted)
	}
	l.acceptQ = nil
	for c := range l.synQ {
		c.parent = nil
		c.orphan = true
		c.close("listener closed", nil, 0)
	}
	l.synQ = nil
	l.notify()
}

// completePassiveOpen moves a listener's child from SYN-RECV to ESTABLISHED
// and into the accept queue; false when the queue is full.
func (e *endpoint) completePassiveOpen(now time.Time, sg *segment) bool {
	l := e.parent
	if l == nil || e.active {
		e.setState(stateEstablished, "ACK of SYN|ACK", sg)
		e.handshakeDone(now, sg)
		return true
	}
	if l.full() {
		// Linux (tcp_check_req, tcp_abort_on_overflow=0): drop the ACK and
		// let the SYN|ACK timer try again.
		e.s.inc(cntTCPListenOverflows)
		e.s.inc(cntTCPListenDrops)
		return false
	}
	if e.snd.rttTiming && e.retries == 0 {
		e.rttSample(now, now.Sub(e.snd.rttStart)) // Linux tcp_synack_rtt_meas
	}
	e.snd.rttTiming = false
	delete(l.synQ, e)
	l.acceptQ = append(l.acceptQ, e)
	e.setState(stateEstablished, "ACK of SYN|ACK", sg)
	e.handshakeDone(now, sg)
	l.notify()
	return true
}
