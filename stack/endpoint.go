package stack

import (
	"math/bits"
	"syscall"
	"time"

	"ustack/hashtable"
	"ustack/timers"
)

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

// seqRange is a block of out-of-order data [start, end).
type seqRange struct{ start, end seqnum }

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

// rcvSlack is receive-buffer space the window never offers: rounding a
// scaled window up (never shrinking it) may promise up to one scale unit
// more than is free, and that data must still fit.
const rcvSlack = 1 << 14

// rcvSpace is the free receive space we may offer as window.
func (e *endpoint) rcvSpace() int { return max(e.rcv.buf.Free()-rcvSlack, 0) }

// ourMSS is the MSS the link allows: its MTU less IPv4 and TCP headers.
func (s *Stack) ourMSS() int { return s.mtu - 40 }

// advMSS is the MSS we announce and the most we send: the link's, capped by
// TCP_MAXSEG (Linux tcp_advertise_mss, and tcp_parse_options clamping the
// peer's MSS to user_mss).
func (e *endpoint) advMSS() int {
	m := e.s.ourMSS()
	if e.userMSS > 0 && e.userMSS < m {
		m = e.userMSS
	}
	return m
}

// rcvWscaleFor picks our window scale like Linux's tcp_select_initial_window:
// enough shift for the whole receive buffer to be advertised.
func rcvWscaleFor(space int) uint8 {
	shift := bits.Len(uint(space)) - 1 - 15
	if shift < 0 {
		return 0
	}
	if shift > 14 {
		return 14
	}
	return uint8(shift)
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

// process is one step of the state machine: a segment arrives for this
// connection (RFC 9293 3.10.7.3 for SYN-SENT, 3.10.7.4 otherwise).
func (e *endpoint) process(now time.Time, sg *segment) {
	switch e.state {
	case stateSynSent:
		e.synSentInput(now, sg)
		e.afterInput(now)
		return
	case stateTimeWait:
		e.timeWaitInput(now, sg)
		return
	case stateClosed:
		e.s.sendResetFor(sg)
		return
	}
	// Linux drops a segment with none of ACK, RST, SYN before looking at
	// it further (SKB_DROP_REASON_TCP_FLAGS): no answer, no liveness.
	if !sg.has(flagACK) && !sg.has(flagRST) && !sg.has(flagSYN) {
		e.s.inc(cntTCPNoACKFlag)
		return
	}
	// PAWS (RFC 7323 5.3, Linux tcp_paws_discard): a segment whose TSval
	// is older than TS.Recent is a duplicate from an old incarnation.
	if e.tsOK && sg.opts.HasTS && !sg.has(flagRST) && int32(sg.opts.TSVal-e.rcv.tsRecent) < 0 {
		e.s.inc(cntTCPPAWSDrops)
		e.sendOOWAck(now, sg)
		return
	}

	// Step 1: sequence number acceptability, as Linux's tcp_sequence: the
	// segment must end at or after RCV.NXT and start inside the window.
	if !e.acceptable(sg) {
		e.s.inc(cntTCPOutOfWindow)
		switch {
		case sg.has(flagRST) && e.resetAtFin(sg):
			e.s.inc(cntTCPResetsReceived)
			e.resetByPeer(now, sg)
		case sg.has(flagRST):
			// RFC 5961 3.2: out-of-window RST is dropped silently.
		case sg.has(flagSYN):
			e.challengeACK(now) // RFC 5961 4.2
		default:
			e.sendOOWAck(now, sg) // RFC 9293: send an ACK, drop
		}
		return
	}

	// Step 2: RST (RFC 5961 3.2). Only an exact match resets (B40).
	if sg.has(flagRST) {
		if sg.seq == e.rcv.nxt || e.resetAtFin(sg) {
			e.s.inc(cntTCPResetsReceived)
			e.resetByPeer(now, sg)
		} else {
			e.challengeACK(now)
		}
		return
	}

	// An acceptable segment: the peer is alive (keepalive, probes).
	e.lastRecv = now
	e.probes = 0

	// Step 4: SYN in a synchronized state gets a challenge ACK (RFC 5961
	// 4.2, B41). The one exception is the SYN|ACK that completes a
	// simultaneous open or a self-connect (B15, B16).
	if sg.has(flagSYN) {
		if e.state == stateSynRecv && !e.active && !sg.has(flagACK) && sg.seq == e.rcv.irs {
			// Our SYN|ACK was lost: answer the retransmitted SYN with it
			// again, rate limited (Linux tcp_check_req).
			if e.lastOOW.IsZero() || now.Sub(e.lastOOW) >= oowRateLimit {
				e.lastOOW = now
				e.sendSegment(now, e.snd.iss, flagSYN|flagACK, 0, 0)
			}
			return
		}
		if e.state == stateSynRecv && e.active && sg.has(flagACK) && sg.seq.add(1) == e.rcv.nxt && sg.ack == e.snd.nxt {
			e.setState(stateEstablished, "SYN|ACK in SYN-RECV (simultaneous open)", sg)
			e.established(now, sg)
			// Its SYN is a duplicate of the one we have: Linux ACKs the
			// old sequence space with a D-SACK (tcp_data_queue).
			e.setDSACK(sg.seq, sg.seq.add(1))
			e.rcv.ackNow = true
			e.output(now)
			return
		}
		e.challengeACK(now)
		return
	}

	// Step 5: ACK.
	if !sg.has(flagACK) {
		return
	}
	if e.state == stateSynRecv {
		if !(sg.ack.gt(e.snd.una) && sg.ack.leq(e.snd.nxt)) {
			e.s.inc(cntTCPUnacceptableACK)
			e.s.sendResetFor(sg)
			return
		}
		if l := e.parent; l != nil && !e.active && !e.fromCookie && e.retries < l.child.deferAccept && sg.seq.add(sg.seqLen()) == e.rcv.irs.add(1) {
			// TCP_DEFER_ACCEPT: a bare ACK does not complete the
			// handshake; the connection waits for data (tcp_check_req).
			e.deferAcked = true
			e.s.inc(cntTCPDeferAcceptDrops)
			return
		}
		if !e.completePassiveOpen(now, sg) {
			return // accept queue full (B11): the ACK is dropped
		}
	}
	if !e.ackInput(now, sg) {
		return
	}
	if e.gone || e.state == stateTimeWait {
		// The ACK of our FIN ended LAST-ACK, or took CLOSING to TIME-WAIT:
		// the rest of the segment is consumed (Linux tcp_rcv_state_process,
		// tcp_time_wait then "goto consume").
		return
	}

	// Step 7: data (B20). Once our side is shut for reading and sending
	// (close(), or shutdown of both), new data would never be read: Linux
	// resets (tcp_rcv_state_process on RCV_SHUTDOWN, RFC 1122 4.2.2.13, B33).
	if len(sg.payload) > 0 {
		switch e.state {
		case stateFinWait1, stateFinWait2:
			if e.shutRd && sg.seq.add(uint32(len(sg.payload))).gt(e.rcv.nxt) {
				e.s.inc(cntTCPAbortOnData)
				e.s.sendResetFor(sg)
				e.close("data after close(): RST sent", nil, syscall.ECONNRESET)
				return
			}
			e.dataInput(now, sg)
		case stateEstablished:
			e.dataInput(now, sg)
		}
	}
	if e.rcv.finRecvd && (len(sg.payload) > 0 || sg.has(flagFIN)) {
		// CLOSE-WAIT, CLOSING, LAST-ACK: the peer's FIN is in.
		if e.afterPeerFin(now, sg) {
			return
		}
	}

	// Step 8: FIN.
	if sg.has(flagFIN) {
		fin := sg.seq.add(uint32(len(sg.payload)))
		if fin.geq(e.rcv.nxt) && !e.rcv.finRecvd && !e.rcv.finPend {
			e.rcv.finPend = true
			e.rcv.fin = fin
		}
	}
	e.maybeConsumeFin(now, sg)
	e.afterInput(now)
}

// resetAtFin is Linux's tcp_reset_check: once the peer's FIN is in, a RST
// may carry the FIN's own sequence number, RCV.NXT - 1.
func (e *endpoint) resetAtFin(sg *segment) bool {
	switch e.state {
	case stateCloseWait, stateClosing, stateLastAck:
		return sg.seq == e.rcv.nxt-1
	}
	return false
}

// afterPeerFin handles data or a FIN that arrives after the peer's FIN
// (Linux tcp_rcv_state_process, CLOSE-WAIT, CLOSING, LAST-ACK): nothing new
// can follow a FIN, so a segment at or past RCV.NXT is ignored; one that
// starts before it and brings data beyond it resets the connection (our
// reading side is shut by the FIN); a retransmission is ACKed at once, with
// a D-SACK. true means the connection is gone.
func (e *endpoint) afterPeerFin(now time.Time, sg *segment) bool {
	if sg.seq.geq(e.rcv.nxt) {
		e.s.inc(cntTCPIgnored)
		return false
	}
	if sg.seq.add(uint32(len(sg.payload))).gt(e.rcv.nxt) {
		// Linux tcp_reset, then a RST for the segment: the error is
		// the one a RST would give in this state.
		e.s.inc(cntTCPAbortOnData)
		e.s.sendResetFor(sg)
		errno := syscall.ECONNRESET
		if e.state == stateCloseWait {
			errno = syscall.EPIPE
		}
		e.close("data after the peer's FIN: RST sent", nil, errno)
		return true
	}
	e.setDSACK(sg.seq, seqMin(sg.seq.add(sg.seqLen()), e.rcv.nxt))
	e.scheduleACK(now, true)
	return false
}

// afterInput sends what the segment made due: data the ACK let out, and
// the ACK itself if it is not riding on that data.
func (e *endpoint) afterInput(now time.Time) {
	if e.gone {
		return
	}
	e.output(now)
}

// acceptable is Linux's tcp_sequence, a relaxed form of RFC 9293's table:
// the segment may overlap the left edge, and must start by the right edge.
func (e *endpoint) acceptable(sg *segment) bool {
	end := sg.seq.add(sg.seqLen())
	wnd := e.rcv.adv.sub(e.rcv.nxt)
	if e.rcv.adv.lt(e.rcv.nxt) {
		wnd = 0
	}
	if end.lt(e.rcv.nxt) {
		return false
	}
	if sg.seqLen() == 0 && end == e.rcv.nxt {
		return true
	}
	return sg.seq.leq(e.rcv.nxt.add(wnd))
}

// completePassiveOpen moves a listener's child from SYN-RECV to ESTABLISHED
// and into the accept queue; false when the queue is full.
func (e *endpoint) completePassiveOpen(now time.Time, sg *segment) bool {
	l := e.parent
	if l == nil || e.active {
		e.setState(stateEstablished, "ACK of SYN|ACK", sg)
		e.established(now, sg)
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
	e.established(now, sg)
	l.notify()
	return true
}

// established runs on entering ESTABLISHED from a handshake.
func (e *endpoint) established(now time.Time, sg *segment) {
	// The ACK of our SYN takes no bytes off the send queue: apply it here,
	// before ackInput sees the segment.
	if sg.ack.gt(e.snd.una) {
		e.snd.una = sg.ack
	}
	e.snd.synAcked = true
	e.retries = 0
	e.snd.backoff = 0
	e.snd.wnd = uint32(sg.wnd) << e.snd.wscale
	if sg.has(flagSYN) {
		e.snd.wnd = uint32(sg.wnd) // RFC 7323 2.2: never scaled on a SYN
	}
	e.snd.maxWnd = e.snd.wnd
	e.snd.wl1, e.snd.wl2 = sg.seq, sg.ack
	e.s.timers.Stop(&e.rtxTimer)
	if e.keepalive {
		e.armKeepalive(now)
	}
}

// ackInput processes SEG.ACK in a synchronized state (RFC 9293 3.10.7.4
// fifth step, RFC 5681, RFC 6582); false means drop the segment.
func (e *endpoint) ackInput(now time.Time, sg *segment) bool {
	ack := sg.ack
	if ack.gt(e.snd.max) {
		// RFC 5961 5.2 (Linux 6.x): it acknowledges what we never sent.
		e.s.inc(cntTCPUnacceptableACK)
		e.challengeACK(now)
		return false
	}
	if ack.lt(e.snd.una) {
		if e.snd.una.sub(ack) > e.snd.maxWnd {
			e.s.inc(cntTCPUnacceptableACK)
			e.challengeACK(now)
			return false
		}
		return true // an old ACK: ignore it, keep the data
	}
	// RFC 7323 4.3: remember the timestamp to echo, once the ACK is
	// accepted and before anything this ACK sends (Linux tcp_ack,
	// FLAG_UPDATE_TS_RECENT, ahead of tcp_fastretrans_alert).
	if e.tsOK && sg.opts.HasTS && sg.seq.leq(e.rcv.lastAckSent) {
		e.rcv.tsRecent = sg.opts.TSVal
	}

	// RFC 9293: update the window from the newest segment only.
	wnd := uint32(sg.wnd) << e.snd.wscale
	wndChanged := false
	if e.snd.wl1.lt(sg.seq) || (e.snd.wl1 == sg.seq && e.snd.wl2.leq(ack)) {
		wndChanged = wnd != e.snd.wnd
		e.snd.wnd = wnd
		e.snd.wl1, e.snd.wl2 = sg.seq, ack
		if wnd > e.snd.maxWnd {
			e.snd.maxWnd = wnd
		}
		if wnd > 0 && e.rtxMode == rtxPersist {
			// Linux tcp_ack_probe: the window is open, the probes'
			// backoff goes with them.
			e.rtxMode = rtxRetransmit
			e.probesAt = time.Time{}
			e.probes = 0
			e.snd.backoff = 0
			e.s.timers.Stop(&e.rtxTimer)
		}
	}

	sackedBefore := e.sackedBytes()
	var lostBefore uint32
	if e.snd.fr.active {
		lostBefore = e.lostBytes()
	}
	newSACK := e.updateScoreboard(sg)
	acked := ack.sub(e.snd.una)
	if acked == 0 {
		// A duplicate ACK (RFC 5681 2): no data, no window change, data
		// outstanding; with SACK, new SACK information counts too.
		if len(sg.payload) == 0 && !sg.has(flagFIN) && (!wndChanged || newSACK) && e.snd.max.gt(e.snd.una) {
			e.onDupAck(now, e.sackedBytes()-sackedBefore, lostBefore)
		}
		if e.rtxMode == rtxLossProbe && (newSACK || e.snd.dupAcks > 0) {
			e.armRetransmit(now) // no longer "Open": the RTO, not a probe
		}
		return true
	}

	e.onNewAck(now, sg, acked, sackedBefore, lostBefore)
	return true
}

// onNewAck takes newly acknowledged bytes off the send queue and updates
// the RTT estimate, the congestion window and the timers.
func (e *endpoint) onNewAck(now time.Time, sg *segment, acked, sackedBefore, lostBefore uint32) {
	ack := sg.ack
	dataAcked := int(acked)
	// Our FIN follows the queued data; an ACK beyond that end acks it, even
	// if an RTO has marked the FIN for sending again.
	dataStart := e.snd.una
	if !e.snd.synAcked {
		// Our SYN is only now acked: data starts after it. (A flag, not
		// SND.UNA == ISS: after 2^32 bytes that holds again.)
		e.snd.synAcked = true
		dataStart++
		dataAcked--
	}
	dataEnd := dataStart.add(uint32(e.snd.buf.Len()))
	finAcked := e.snd.finQueued && ack.gt(dataEnd)
	if finAcked {
		dataAcked--
		e.snd.finSent, e.snd.fin = true, dataEnd
	}
	if dataAcked > e.snd.buf.Len() {
		dataAcked = e.snd.buf.Len()
	}
	e.snd.buf.Discard(dataAcked)
	if e.snd.buf.Len() == 0 {
		e.snd.buf.release()
	}
	e.snd.una = ack
	if e.snd.nxt.lt(ack) {
		e.snd.nxt = ack
	}
	e.pruneScoreboard()

	// RTT sample (RFC 6298 3; RFC 7323 4 with timestamps). Karn: never
	// from a retransmitted segment, which backoff > 0 marks.
	if e.tsOK && sg.opts.HasTS && sg.opts.TSEcr != 0 && e.snd.backoff == 0 {
		if d := int32(e.s.tsNow(now) + e.tsOff - sg.opts.TSEcr); d >= 0 {
			e.rttSample(now, time.Duration(d)*time.Millisecond)
		}
	} else if e.snd.rttTiming && ack.gt(e.snd.rttSeq) {
		e.rttSample(now, now.Sub(e.snd.rttStart))
	}
	if e.snd.rttTiming && ack.gt(e.snd.rttSeq) {
		e.snd.rttTiming = false
	}
	e.snd.backoff = 0
	e.snd.rtxStart = time.Time{}
	e.icmpErr = 0 // tcp_ack: data got through, the soft error is stale

	// What this ACK delivered: newly acked or SACKed, not what an earlier
	// SACK already counted (Linux's acked_sacked).
	delivered := acked + e.sackedBytes() - sackedBefore
	e.congestionOnAck(now, acked, delivered, lostBefore)

	e.tlpOut = false
	if e.snd.una == e.snd.max {
		e.s.timers.Stop(&e.rtxTimer)
		e.rtxMode = rtxRetransmit
	} else if e.rtxMode != rtxPersist {
		e.armRetransmit(now)
	}
	e.notifyWrite()

	if finAcked {
		switch e.state {
		case stateFinWait1:
			if e.orphan && e.linger2 < 0 {
				// TCP_LINGER2 -1: an orphan does not wait in FIN-WAIT-2;
				// Linux tcp_done()s it and answers this ACK with a RST,
				// as for no socket (tcp_rcv_state_process returns 1).
				e.s.inc(cntTCPAbortOnData)
				e.s.sendResetFor(sg)
				e.close("ACK of FIN, TCP_LINGER2 < 0: RST sent", sg, 0)
				return
			}
			e.setState(stateFinWait2, "ACK of FIN", sg)
			if e.orphan {
				e.armFinWait2(now)
			}
		case stateClosing:
			e.enterTimeWait(now, "ACK of FIN", sg)
		case stateLastAck:
			e.close("ACK of FIN", sg, 0)
		}
	}
}

// rttSample feeds an RTT measurement to the estimator and the congestion
// control.
func (e *endpoint) rttSample(now time.Time, r time.Duration) {
	if r <= 0 {
		r = time.Microsecond
	}
	e.snd.cc.rttSample(now, r)
	e.snd.rtt.sample(r)
}

// dataInput stores in-window data and advances RCV.NXT (B20). Out-of-order
// data waits in the receive buffer at its offset until the hole fills.
func (e *endpoint) dataInput(now time.Time, sg *segment) {
	seq, data := sg.seq, sg.payload
	if len(data) > e.rcv.mss {
		// Linux tcp_measure_rcv_mss: the peer's segment size, for the
		// "ACK every second segment" rule.
		e.rcv.mss = min(len(data), e.s.ourMSS())
	}
	if seq.lt(e.rcv.nxt) {
		// Old data: report it with a D-SACK (RFC 2883, Linux tcp_dsack_set).
		end := seqMin(seq.add(uint32(len(data))), e.rcv.nxt)
		e.setDSACK(seq, end)
		d := e.rcv.nxt.sub(seq)
		if d >= uint32(len(data)) {
			e.scheduleACK(now, true) // a full duplicate: tell the peer at once
			return
		}
		data, seq = data[d:], e.rcv.nxt
	}
	off := int(seq.sub(e.rcv.nxt))
	space := e.rcv.buf.Free()
	if (e.shutRd && e.orphan) || !e.rcv.adv.gt(e.rcv.nxt) {
		// Linux tcp_data_queue: a zero window drops even in-order data;
		// otherwise whatever fits is queued.
		space = 0
	}
	if off >= space {
		e.s.inc(cntTCPOOODropped)
		e.scheduleACK(now, true) // zero window: ACK to say so
		return
	}
	if off+len(data) > space {
		data = data[:space-off]
	}
	e.rcv.buf.writeAt(off, data)
	if off > 0 {
		end := seq.add(uint32(len(data)))
		for _, x := range e.rcv.ooo {
			if x.start.lt(end) && seq.lt(x.end) {
				// Already held: report the overlap (Linux tcp_data_queue_ofo).
				e.setDSACK(seqMax(seq, x.start), seqMin(end, x.end))
				break
			}
		}
		if !e.addOOO(seqRange{seq, end}) {
			e.s.inc(cntTCPOOODropped)
		} else {
			e.s.inc(cntTCPOOOQueued)
			e.noteOOO(seq)
		}
		e.scheduleACK(now, true) // RFC 5681 4.2: ACK out-of-order data at once
		return
	}
	e.rcv.buf.commit(len(data))
	e.rcv.nxt = e.rcv.nxt.add(uint32(len(data)))
	e.rcv.lastData = now
	filled := false
	for len(e.rcv.ooo) > 0 && e.rcv.ooo[0].start.leq(e.rcv.nxt) {
		if r := e.rcv.ooo[0]; r.end.gt(e.rcv.nxt) {
			e.rcv.buf.commit(int(r.end.sub(e.rcv.nxt)))
			e.rcv.nxt = r.end
		}
		e.rcv.ooo = e.rcv.ooo[1:]
		filled = true
	}
	if len(e.rcv.ooo) == 0 {
		e.rcv.ooo, e.rcv.nRecent = nil, 0
	}
	e.rcv.unacked += len(data)
	e.notifyRead()
	if !filled && sg.has(flagFIN) && e.rcv.nxt == sg.seq.add(uint32(len(sg.payload))) && len(e.rcv.ooo) == 0 {
		// The FIN right behind this data is taken next (maybeConsumeFin),
		// and the ACK is decided there: Linux's tcp_fin enters pingpong
		// mode before __tcp_ack_snd_check looks at quick-ACK mode.
		return
	}
	e.scheduleACK(now, filled) // RFC 5681 4.2: ACK at once when a hole fills
}

// setDSACK remembers a duplicate block for the next ACK.
func (e *endpoint) setDSACK(start, end seqnum) {
	if e.sackOK && e.s.opts.DSACK {
		e.rcv.dsack, e.rcv.hasDSACK = seqRange{start, end}, true
	}
}

// addOOO records an out-of-order block; false when the queue already
// holds too many separate blocks.
func (e *endpoint) addOOO(r seqRange) bool {
	out, ok := mergeRange(e.rcv.ooo, r)
	if ok {
		e.rcv.ooo = out
	}
	return ok
}

// mergeRange returns the sorted, disjoint list with r merged in, as a new
// slice (the old one may be in use), or false when it would hold more than
// maxOOORanges blocks.
func mergeRange(list []seqRange, r seqRange) ([]seqRange, bool) {
	out := make([]seqRange, 0, len(list)+1)
	placed := false
	for _, x := range list {
		switch {
		case x.end.lt(r.start):
			out = append(out, x)
		case r.end.lt(x.start):
			if !placed {
				out = append(out, r)
				placed = true
			}
			out = append(out, x)
		default:
			r.start, r.end = seqMin(r.start, x.start), seqMax(r.end, x.end)
		}
	}
	if !placed {
		out = append(out, r)
	}
	return out, len(out) <= maxOOORanges
}

// maybeConsumeFin takes the peer's FIN once every byte before it arrived
// (RFC 9293 3.10.7.4 eighth step, Linux tcp_fin).
func (e *endpoint) maybeConsumeFin(now time.Time, sg *segment) {
	if !e.rcv.finPend || e.rcv.fin != e.rcv.nxt || len(e.rcv.ooo) > 0 {
		return
	}
	e.rcv.finPend = false
	e.rcv.finRecvd = true
	e.rcv.nxt = e.rcv.nxt.add(1)
	e.notifyRead()
	switch e.state {
	case stateSynRecv, stateEstablished:
		e.setState(stateCloseWait, "FIN", sg)
		// Linux tcp_fin enters pingpong mode: the ACK is delayed, so that
		// an application that closes right away sends one FIN|ACK (B31).
		e.rcv.pingpong = true
		e.scheduleACK(now, false)
	case stateFinWait1:
		e.setState(stateClosing, "FIN (simultaneous close)", sg)
		e.sendACK(now)
	case stateFinWait2:
		e.sendACK(now)
		e.enterTimeWait(now, "FIN", sg)
	}
}

// resetByPeer handles an acceptable RST (RFC 9293 3.10.7.4 second step).
func (e *endpoint) resetByPeer(now time.Time, sg *segment) {
	switch e.state {
	case stateSynRecv:
		if !e.active {
			// A listener's child just goes away (Linux: the request
			// socket is dropped).
			e.close("RST", sg, 0)
			return
		}
		e.close("RST", sg, syscall.ECONNREFUSED)
	case stateCloseWait:
		e.close("RST", sg, syscall.EPIPE)
	case stateClosing, stateLastAck:
		e.close("RST", sg, 0)
	default:
		e.s.inc(cntTCPEstabResets)
		e.close("RST", sg, syscall.ECONNRESET)
	}
}

// close is the one way a connection ends: CLOSED (traced with why and the
// segment that caused it), the error the application will see (0: none;
// an orphan has no application), then out of every table with its timers
// stopped and its waiters woken.
func (e *endpoint) close(why string, sg *segment, errno syscall.Errno) {
	if errno == syscall.ETIMEDOUT && e.icmpErr != 0 {
		errno = e.icmpErr // tcp_write_err: the soft error, if any, explains the timeout
	}
	e.setState(stateClosed, why, sg)
	if errno != 0 {
		if !e.orphan {
			e.softErr = errno
		}
		e.hardErr = errno
	}
	e.destroy()
}

// destroy removes the connection from every table and stops its timers;
// the application, if any, still holds the endpoint to read its error.
func (e *endpoint) destroy() {
	if e.gone {
		return
	}
	e.gone = true
	s := e.s
	e.state = stateClosed
	s.est.Remove(e.id)
	if e.owner != 0 {
		s.bind.Unbind(e.owner, e.id.LocalPort)
		e.owner = 0
	}
	if l := e.parent; l != nil {
		delete(l.synQ, e)
		l.removeFromAcceptQ(e)
	}
	s.timers.Stop(&e.rtxTimer)
	s.timers.Stop(&e.delackTimer)
	s.timers.Stop(&e.keepTimer)
	s.timers.Stop(&e.waitTimer)
	e.rcv.ooo = nil
	if e.orphan {
		e.rcv.buf.n = 0
		e.rcv.buf.release()
		e.snd.buf.n = 0
		e.snd.buf.release()
	}
	e.notifyRead()
	e.notifyWrite()
}

// enterTimeWait starts the 2MSL wait (B30, B37).
func (e *endpoint) enterTimeWait(now time.Time, why string, sg *segment) {
	e.setState(stateTimeWait, why, sg)
	e.s.timers.Stop(&e.rtxTimer)
	e.s.timers.Stop(&e.keepTimer)
	e.s.timers.Stop(&e.delackTimer)
	e.rcv.ackPending = false
	e.s.schedule(&e.waitTimer, now.Add(e.s.opts.TimeWait))
}

// timeWaitInput is Linux's tcp_timewait_state_process (B37).
func (e *endpoint) timeWaitInput(now time.Time, sg *segment) {
	switch {
	case sg.has(flagRST):
		// RFC 1337 says ignore; Linux (tcp_rfc1337=0) kills the socket
		// when the RST is exactly at RCV.NXT.
		if sg.seq == e.rcv.nxt {
			e.close("RST in TIME-WAIT", sg, 0)
		} else {
			e.s.inc(cntTCPIgnored)
		}
	case sg.has(flagSYN) && !sg.has(flagACK) && sg.seq.gt(e.rcv.nxt):
		// A new incarnation may reuse the pair; its ISN starts beyond
		// anything the old one sent (Linux tcp_timewait_state_process).
		if l, ok := e.s.lis.Lookup(e.id.LocalAddr, e.id.LocalPort); ok {
			isn := e.snd.nxt.add(65535 + 2)
			e.s.inc(cntTCPTimeWaitRecycled)
			e.close("new SYN reuses the pair", sg, 0)
			l.synInput(now, sg, isn, true)
			return
		}
		e.sendOOWAck(now, sg)
	case sg.has(flagFIN):
		// A retransmitted FIN (our ACK was lost): ACK again, restart 2MSL.
		e.s.timers.Stop(&e.waitTimer)
		e.s.schedule(&e.waitTimer, now.Add(e.s.opts.TimeWait))
		e.sendACK(now)
	case sg.seqLen() > 0 || !e.acceptable(sg):
		// Linux tcp_timewait_check_oow_rate_limit.
		e.sendOOWAck(now, sg)
	}
}

// synSentInput is RFC 9293 3.10.7.3 with Linux's tcp_rcv_synsent_state_process (B13, B15).
func (e *endpoint) synSentInput(now time.Time, sg *segment) {
	if sg.has(flagACK) && (sg.ack.leq(e.snd.iss) || sg.ack.gt(e.snd.max)) {
		// An unacceptable ACK: RST seq=SEG.ACK, unless it is a RST. It may
		// answer an old connection's FIN or RST, so Linux resends the SYN
		// almost at once (TCP_TIMEOUT_MIN) if it has not yet resent it.
		if !sg.has(flagRST) {
			e.s.inc(cntTCPUnacceptableACK)
			e.s.sendResetFor(sg)
		}
		if e.retries == 0 {
			e.s.schedule(&e.rtxTimer, now.Add(tlpMinTimeout))
		}
		return
	}
	if sg.has(flagRST) {
		if sg.has(flagACK) {
			e.s.inc(cntTCPResetsReceived)
			e.s.inc(cntTCPAttemptFails)
			e.close("RST|ACK", sg, syscall.ECONNREFUSED)
			return
		}
		e.s.inc(cntTCPIgnored) // RST without ACK: ignore (RFC 9293)
		return
	}
	if !sg.has(flagSYN) {
		e.s.inc(cntTCPIgnored)
		return
	}
	e.rcv.irs = sg.seq
	e.rcv.nxt = sg.seq.add(1)
	e.negotiate(&sg.opts, sg.has(flagACK))
	if sg.opts.HasTS && e.tsOK {
		e.rcv.tsRecent = sg.opts.TSVal
	}
	e.rcv.adv = e.rcv.nxt.add(min(uint32(e.rcvSpace()), 65535))
	if sg.has(flagACK) {
		e.snd.una = sg.ack
		if e.snd.rttTiming && e.retries == 0 {
			e.rttSample(now, now.Sub(e.snd.rttStart))
		}
		e.snd.rttTiming = false
		e.setState(stateEstablished, "SYN|ACK", sg)
		e.established(now, sg)
		e.sendACK(now)
		return
	}
	// Simultaneous open (B15): SYN|ACK with the same ISN as our SYN.
	e.setState(stateSynRecv, "SYN (simultaneous open)", sg)
	e.snd.wnd = uint32(sg.wnd)
	e.snd.nxt = e.snd.iss
	e.sendSYN(now, true)
}

// negotiate applies the options of the peer's SYN (RFC 7323 1.3, RFC 2018).
// Window scaling and timestamps are used only if both sides offered them;
// synAck says whether our SYN already offered ours.
func (e *endpoint) negotiate(o *optionsT, synAck bool) {
	opts := &e.s.opts
	if o.HasMSS && o.MSS > 0 {
		e.snd.mss = min(int(o.MSS), e.advMSS())
	} else {
		e.snd.mss = min(536, e.advMSS())
	}
	if p := e.s.pathMSS(e.s.clock.Now(), e.id.RemoteAddr); p > 0 {
		e.snd.mss = min(e.snd.mss, p) // a learned path MTU (RFC 1191)
	}
	e.wsOK = opts.WindowScaling && o.HasWScale
	if e.wsOK {
		e.snd.wscale = min(o.WScale, 14)
		e.rcv.wscale = rcvWscaleFor(opts.RecvBuffer)
	} else {
		e.snd.wscale, e.rcv.wscale = 0, 0
	}
	e.tsOK = opts.Timestamps && o.HasTS
	e.sackOK = opts.SACK && o.SACKPermitted
	e.snd.cwnd = uint32(initialCwnd * e.effMSS())
	e.snd.ssthresh = 1 << 30
	e.snd.recover = e.snd.iss // RFC 6582 3.2 step 1
}
