package stack

import (
	"math/bits"
	"syscall"
	"time"

	"ustack/hashtable"
	"ustack/timers"
)

// endpoint is one TCP connection: Linux's struct tcp_sock, the TCB of
// RFC 9293 section 3.3.1. All fields are guarded by Stack.mu.
type endpoint struct {
	s     *Stack
	id    hashtable.FourTuple
	state tcpState

	owner  hashtable.OwnerID // bind-table entry this connection holds; 0: none (a listener's child)
	parent *listener         // the listener, until accept()
	active bool              // opened by connect() (errors go to the dialer)
	orphan bool              // close() was called: no application any more

	// Send sequence space (RFC 9293 3.3.1).
	iss       seqnum
	sndUna    seqnum
	sndNxt    seqnum
	sndMax    seqnum // highest sequence number sent; sndNxt rewinds on RTO
	sndWnd    uint32 // peer's window, scaled
	maxWnd    uint32
	sndWl1    seqnum
	sndWl2    seqnum
	sndWscale uint8
	sndBuf    ring // bytes from sndUna on: unacknowledged, then unsent
	finQueued bool // a FIN follows the data in sndBuf
	finSent   bool
	sndFin    seqnum // sequence number of our FIN once sent
	synAcked  bool   // our SYN is acknowledged: SND.UNA has passed the ISS
	sndSml    seqnum // end of the last segment sent shorter than the MSS (Nagle)

	// Receive sequence space.
	irs       seqnum
	rcvNxt    seqnum
	rcvWscale uint8
	rcvAdv    seqnum // right edge of the window last advertised
	rcvBuf    ring   // readable bytes, then out-of-order bytes at their offsets
	ooo       []seqRange
	// oooRecent are the starts of the latest out-of-order segments, newest
	// first: our SACK blocks go in that order (RFC 2018 4).
	oooRecent [maxSACKSent]seqnum
	nRecent   int
	peerFin   seqnum // sequence number of the peer's FIN, when finPending
	finPend   bool   // a FIN arrived out of order, waiting for the hole to fill
	finRecvd  bool   // the peer's FIN is consumed: reads end with EOF

	// Negotiated options.
	mss         int // largest payload the peer accepts, without our options
	wsOK        bool
	tsOK        bool
	tsRecent    uint32
	tsOff       uint32
	cookieTS    bool // a cookie SYN|ACK: TSval carries the peer's options (B43)
	sackOK      bool
	lastAckSent seqnum

	// Congestion control (RFC 5681) and NewReno recovery (RFC 6582).
	cwnd       uint32
	ssthresh   uint32
	dupAcks    int
	inRecovery bool
	recover    seqnum
	sacked     []seqRange // the peer's SACK blocks above SND.UNA (sack.go)
	dsack      seqRange   // a duplicate to report first in our next SACK (RFC 2883)
	hasDSACK   bool
	highRxt    seqnum // recovery: retransmitted up to here (RFC 6675)

	// Retransmission timer state (RFC 6298).
	srtt      time.Duration
	rttvar    time.Duration
	rto       time.Duration
	rttTiming bool
	rttSeq    seqnum
	rttStart  time.Time
	backoff   int       // RTO expirations in a row
	rtxStart  time.Time // when the current run of retransmissions began
	rtoSentAt time.Time // when the RTO last resent the head
	retries   int       // SYN / SYN|ACK retransmissions so far
	synStart  time.Time // when the first SYN left
	persist   bool      // rtxTimer is the persist timer (B21)
	tlpArmed  bool      // rtxTimer is the tail loss probe timer (RFC 8985)
	tlpOut    bool      // a probe is unanswered: the next expiry is the RTO
	probes    int       // unanswered zero-window or keepalive probes
	probesAt  time.Time // first zero-window probe of this run (icsk_probes_tstamp)
	lastRecv  time.Time
	isnOver   seqnum // ISN chosen by TIME_WAIT reuse (B37), if isnSet
	isnSet    bool

	// Passive open.
	deferAcked bool // SYN-RECV: a bare ACK came, ignored for TCP_DEFER_ACCEPT
	fromCookie bool // made from a SYN cookie's ACK: no SYN-RECV to wait in

	// Congestion control (cc.go) and recovery (prr.go).
	cubic        cubic
	priorCwnd    uint32 // segments: cwnd when recovery began
	prrDelivered uint32 // segments delivered since then
	prrOut       uint32 // segments sent since then
	renoSacked   uint32 // without SACK: duplicate ACKs stand for SACKed segments
	headLost     bool   // SND.UNA's segment is marked lost (fast retransmit, NewReno)
	more         bool   // the write being pushed was sent with MSG_MORE
	cwndCnt      uint32 // segments ACKed toward the next cwnd increase (snd_cwnd_cnt)
	cwndLimited  bool   // cwnd limited the flight of this window (is_cwnd_limited)
	maxFlight    uint32 // the most in flight this window (max_packets_out), bytes
	cwndUsageSeq seqnum // the window those two describe ends here

	// ACK policy (B22).
	quickACKs  int
	pingpong   bool      // interactive: we answered within the ATO (Linux pingpong mode)
	lastData   time.Time // when in-order data last arrived
	ackPending bool      // an ACK is owed: delayed-ACK timer armed
	ackNow     bool      // an ACK is owed at the end of this input step
	unacked    int       // bytes received since our last ACK
	rcvMSS     int       // estimate of the peer's segment size (Linux icsk_ack.rcv_mss)
	lastOOW    time.Time

	rtxTimer    timers.Timer // retransmission, SYN retransmission, or persist
	delackTimer timers.Timer
	keepTimer   timers.Timer // keepalive, or the FIN_WAIT_2 timeout (B35)
	waitTimer   timers.Timer // TIME_WAIT (B37)

	// Application side.
	softErr   syscall.Errno // reported once by the next read or write
	icmpErr   syscall.Errno // an ICMP error while open: what a timeout reports (sk_err_soft)
	hardErr   syscall.Errno // the connection failed: what writes report afterwards
	shutRd    bool
	shutWr    bool
	keepalive bool
	nodelay   bool
	linger    int // SO_LINGER seconds; -1 off
	rdWait    cond
	wrWait    cond
	ev        waiter // a Socket's readiness channel; nil for a Conn
	gone      bool   // removed from every table

	tcpOpts // per-socket TCP options (tcp(7))
}

// seqRange is a block of out-of-order data [start, end).
type seqRange struct{ start, end seqnum }

func (s *Stack) newEndpoint(id hashtable.FourTuple) *endpoint {
	e := &endpoint{
		s:         s,
		id:        id,
		sndBuf:    newRing(s.opts.SendBuffer),
		rcvBuf:    newRing(s.opts.RecvBuffer + rcvSlack),
		rto:       rtoInitial,
		mss:       536, // RFC 9293 3.7.1 default when the peer sends none
		linger:    -1,
		nodelay:   true, // Go's net package sets TCP_NODELAY on every TCPConn
		quickACKs: maxQuickACKs,
		rcvMSS:    536, // TCP_MSS_DEFAULT, as tcp_initialize_rcv_mss starts
		tsOff:     s.tsOffset(id),
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
func (e *endpoint) rcvSpace() int { return max(e.rcvBuf.Free()-rcvSlack, 0) }

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
	m := e.mss
	if e.tsOK {
		m -= 12
	}
	if m < 1 {
		m = 1
	}
	return m
}

// flight is the sequence space sent and not yet acknowledged.
func (e *endpoint) flight() uint32 { return e.sndNxt.sub(e.sndUna) }

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
	if e.tsOK && sg.opts.HasTS && !sg.has(flagRST) && int32(sg.opts.TSVal-e.tsRecent) < 0 {
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
		if sg.seq == e.rcvNxt || e.resetAtFin(sg) {
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
		if e.state == stateSynRecv && !e.active && !sg.has(flagACK) && sg.seq == e.irs {
			// Our SYN|ACK was lost: answer the retransmitted SYN with it
			// again, rate limited (Linux tcp_check_req).
			if e.lastOOW.IsZero() || now.Sub(e.lastOOW) >= oowRateLimit {
				e.lastOOW = now
				e.sendSegment(now, e.iss, flagSYN|flagACK, 0, 0)
			}
			return
		}
		if e.state == stateSynRecv && e.active && sg.has(flagACK) && sg.seq.add(1) == e.rcvNxt && sg.ack == e.sndNxt {
			e.setState(stateEstablished, "SYN|ACK in SYN-RECV (simultaneous open)", sg)
			e.established(now, sg)
			// Its SYN is a duplicate of the one we have: Linux ACKs the
			// old sequence space with a D-SACK (tcp_data_queue).
			e.setDSACK(sg.seq, sg.seq.add(1))
			e.ackNow = true
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
		if !(sg.ack.gt(e.sndUna) && sg.ack.leq(e.sndNxt)) {
			e.s.inc(cntTCPUnacceptableACK)
			e.s.sendResetFor(sg)
			return
		}
		if l := e.parent; l != nil && !e.active && !e.fromCookie && e.retries < l.child.deferAccept && sg.seq.add(sg.seqLen()) == e.irs.add(1) {
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
			if e.shutRd && sg.seq.add(uint32(len(sg.payload))).gt(e.rcvNxt) {
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
	if e.finRecvd && (len(sg.payload) > 0 || sg.has(flagFIN)) {
		// CLOSE-WAIT, CLOSING, LAST-ACK: the peer's FIN is in.
		if e.afterPeerFin(now, sg) {
			return
		}
	}

	// Step 8: FIN.
	if sg.has(flagFIN) {
		fin := sg.seq.add(uint32(len(sg.payload)))
		if fin.geq(e.rcvNxt) && !e.finRecvd && !e.finPend {
			e.finPend = true
			e.peerFin = fin
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
		return sg.seq == e.rcvNxt-1
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
	if sg.seq.geq(e.rcvNxt) {
		e.s.inc(cntTCPIgnored)
		return false
	}
	if sg.seq.add(uint32(len(sg.payload))).gt(e.rcvNxt) {
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
	e.setDSACK(sg.seq, seqMin(sg.seq.add(sg.seqLen()), e.rcvNxt))
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
	wnd := e.rcvAdv.sub(e.rcvNxt)
	if e.rcvAdv.lt(e.rcvNxt) {
		wnd = 0
	}
	if end.lt(e.rcvNxt) {
		return false
	}
	if sg.seqLen() == 0 && end == e.rcvNxt {
		return true
	}
	return sg.seq.leq(e.rcvNxt.add(wnd))
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
	if e.rttTiming && e.retries == 0 {
		e.rttSample(now, now.Sub(e.rttStart)) // Linux tcp_synack_rtt_meas
	}
	e.rttTiming = false
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
	if sg.ack.gt(e.sndUna) {
		e.sndUna = sg.ack
	}
	e.synAcked = true
	e.retries = 0
	e.backoff = 0
	e.sndWnd = uint32(sg.wnd) << e.sndWscale
	if sg.has(flagSYN) {
		e.sndWnd = uint32(sg.wnd) // RFC 7323 2.2: never scaled on a SYN
	}
	e.maxWnd = e.sndWnd
	e.sndWl1, e.sndWl2 = sg.seq, sg.ack
	e.s.timers.Stop(&e.rtxTimer)
	if e.keepalive {
		e.armKeepalive(now)
	}
}

// ackInput processes SEG.ACK in a synchronized state (RFC 9293 3.10.7.4
// fifth step, RFC 5681, RFC 6582); false means drop the segment.
func (e *endpoint) ackInput(now time.Time, sg *segment) bool {
	ack := sg.ack
	if ack.gt(e.sndMax) {
		// RFC 5961 5.2 (Linux 6.x): it acknowledges what we never sent.
		e.s.inc(cntTCPUnacceptableACK)
		e.challengeACK(now)
		return false
	}
	if ack.lt(e.sndUna) {
		if e.sndUna.sub(ack) > e.maxWnd {
			e.s.inc(cntTCPUnacceptableACK)
			e.challengeACK(now)
			return false
		}
		return true // an old ACK: ignore it, keep the data
	}
	// RFC 7323 4.3: remember the timestamp to echo, once the ACK is
	// accepted and before anything this ACK sends (Linux tcp_ack,
	// FLAG_UPDATE_TS_RECENT, ahead of tcp_fastretrans_alert).
	if e.tsOK && sg.opts.HasTS && sg.seq.leq(e.lastAckSent) {
		e.tsRecent = sg.opts.TSVal
	}

	// RFC 9293: update the window from the newest segment only.
	wnd := uint32(sg.wnd) << e.sndWscale
	wndChanged := false
	if e.sndWl1.lt(sg.seq) || (e.sndWl1 == sg.seq && e.sndWl2.leq(ack)) {
		wndChanged = wnd != e.sndWnd
		e.sndWnd = wnd
		e.sndWl1, e.sndWl2 = sg.seq, ack
		if wnd > e.maxWnd {
			e.maxWnd = wnd
		}
		if wnd > 0 && e.persist {
			// Linux tcp_ack_probe: the window is open, the probes'
			// backoff goes with them.
			e.persist = false
			e.probesAt = time.Time{}
			e.probes = 0
			e.backoff = 0
			e.s.timers.Stop(&e.rtxTimer)
		}
	}

	sackedBefore := e.sackedBytes()
	var lostBefore uint32
	if e.inRecovery {
		lostBefore = e.lostBytes()
	}
	newSACK := e.updateScoreboard(sg)
	acked := ack.sub(e.sndUna)
	if acked == 0 {
		// A duplicate ACK (RFC 5681 2): no data, no window change, data
		// outstanding; with SACK, new SACK information counts too.
		if len(sg.payload) == 0 && !sg.has(flagFIN) && (!wndChanged || newSACK) && e.sndMax.gt(e.sndUna) {
			e.onDupAck(now, e.sackedBytes()-sackedBefore, lostBefore)
		}
		if e.tlpArmed && (newSACK || e.dupAcks > 0) {
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
	dataStart := e.sndUna
	if !e.synAcked {
		// Our SYN is only now acked: data starts after it. (A flag, not
		// SND.UNA == ISS: after 2^32 bytes that holds again.)
		e.synAcked = true
		dataStart++
		dataAcked--
	}
	dataEnd := dataStart.add(uint32(e.sndBuf.Len()))
	finAcked := e.finQueued && ack.gt(dataEnd)
	if finAcked {
		dataAcked--
		e.finSent, e.sndFin = true, dataEnd
	}
	if dataAcked > e.sndBuf.Len() {
		dataAcked = e.sndBuf.Len()
	}
	e.sndBuf.Discard(dataAcked)
	if e.sndBuf.Len() == 0 {
		e.sndBuf.release()
	}
	e.sndUna = ack
	if e.sndNxt.lt(ack) {
		e.sndNxt = ack
	}
	e.pruneScoreboard()

	// RTT sample (RFC 6298 3; RFC 7323 4 with timestamps). Karn: never
	// from a retransmitted segment, which backoff > 0 marks.
	if e.tsOK && sg.opts.HasTS && sg.opts.TSEcr != 0 && e.backoff == 0 {
		if d := int32(e.s.tsNow(now) + e.tsOff - sg.opts.TSEcr); d >= 0 {
			e.rttSample(now, time.Duration(d)*time.Millisecond)
		}
	} else if e.rttTiming && ack.gt(e.rttSeq) {
		e.rttSample(now, now.Sub(e.rttStart))
	}
	if e.rttTiming && ack.gt(e.rttSeq) {
		e.rttTiming = false
	}
	e.backoff = 0
	e.rtxStart = time.Time{}
	e.icmpErr = 0 // tcp_ack: data got through, the soft error is stale

	// What this ACK delivered: newly acked or SACKed, not what an earlier
	// SACK already counted (Linux's acked_sacked).
	delivered := acked + e.sackedBytes() - sackedBefore
	e.congestionOnAck(now, acked, delivered, lostBefore)

	e.tlpOut = false
	if e.sndUna == e.sndMax {
		e.s.timers.Stop(&e.rtxTimer)
		e.tlpArmed = false
	} else if !e.persist {
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

// rttSample feeds the RFC 6298 estimator; the minimum RTO is Linux's 200 ms.
func (e *endpoint) rttSample(now time.Time, r time.Duration) {
	if r <= 0 {
		r = time.Microsecond
	}
	e.ccRTTSample(now, r)
	if e.srtt == 0 {
		e.srtt = r
		e.rttvar = r / 2
	} else {
		d := e.srtt - r
		if d < 0 {
			d = -d
		}
		e.rttvar = (3*e.rttvar + d) / 4
		e.srtt = (7*e.srtt + r) / 8
	}
	v := 4 * e.rttvar
	if v < rtoMin {
		v = rtoMin // Linux: rttvar is never below tcp_rto_min
	}
	e.rto = min(max(e.srtt+v, rtoMin), rtoMax)
}

// dataInput stores in-window data and advances RCV.NXT (B20). Out-of-order
// data waits in the receive buffer at its offset until the hole fills.
func (e *endpoint) dataInput(now time.Time, sg *segment) {
	seq, data := sg.seq, sg.payload
	if len(data) > e.rcvMSS {
		// Linux tcp_measure_rcv_mss: the peer's segment size, for the
		// "ACK every second segment" rule.
		e.rcvMSS = min(len(data), e.s.ourMSS())
	}
	if seq.lt(e.rcvNxt) {
		// Old data: report it with a D-SACK (RFC 2883, Linux tcp_dsack_set).
		end := seqMin(seq.add(uint32(len(data))), e.rcvNxt)
		e.setDSACK(seq, end)
		d := e.rcvNxt.sub(seq)
		if d >= uint32(len(data)) {
			e.scheduleACK(now, true) // a full duplicate: tell the peer at once
			return
		}
		data, seq = data[d:], e.rcvNxt
	}
	off := int(seq.sub(e.rcvNxt))
	space := e.rcvBuf.Free()
	if (e.shutRd && e.orphan) || !e.rcvAdv.gt(e.rcvNxt) {
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
	e.rcvBuf.writeAt(off, data)
	if off > 0 {
		end := seq.add(uint32(len(data)))
		for _, x := range e.ooo {
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
	e.rcvBuf.commit(len(data))
	e.rcvNxt = e.rcvNxt.add(uint32(len(data)))
	e.lastData = now
	filled := false
	for len(e.ooo) > 0 && e.ooo[0].start.leq(e.rcvNxt) {
		if r := e.ooo[0]; r.end.gt(e.rcvNxt) {
			e.rcvBuf.commit(int(r.end.sub(e.rcvNxt)))
			e.rcvNxt = r.end
		}
		e.ooo = e.ooo[1:]
		filled = true
	}
	if len(e.ooo) == 0 {
		e.ooo, e.nRecent = nil, 0
	}
	e.unacked += len(data)
	e.notifyRead()
	if !filled && sg.has(flagFIN) && e.rcvNxt == sg.seq.add(uint32(len(sg.payload))) && len(e.ooo) == 0 {
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
		e.dsack, e.hasDSACK = seqRange{start, end}, true
	}
}

// addOOO records an out-of-order block; false when the queue already
// holds too many separate blocks.
func (e *endpoint) addOOO(r seqRange) bool {
	out, ok := mergeRange(e.ooo, r)
	if ok {
		e.ooo = out
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
	if !e.finPend || e.peerFin != e.rcvNxt || len(e.ooo) > 0 {
		return
	}
	e.finPend = false
	e.finRecvd = true
	e.rcvNxt = e.rcvNxt.add(1)
	e.notifyRead()
	switch e.state {
	case stateSynRecv, stateEstablished:
		e.setState(stateCloseWait, "FIN", sg)
		// Linux tcp_fin enters pingpong mode: the ACK is delayed, so that
		// an application that closes right away sends one FIN|ACK (B31).
		e.pingpong = true
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
	e.ooo = nil
	if e.orphan {
		e.rcvBuf.n = 0
		e.rcvBuf.release()
		e.sndBuf.n = 0
		e.sndBuf.release()
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
	e.ackPending = false
	e.s.schedule(&e.waitTimer, now.Add(e.s.opts.TimeWait))
}

// timeWaitInput is Linux's tcp_timewait_state_process (B37).
func (e *endpoint) timeWaitInput(now time.Time, sg *segment) {
	switch {
	case sg.has(flagRST):
		// RFC 1337 says ignore; Linux (tcp_rfc1337=0) kills the socket
		// when the RST is exactly at RCV.NXT.
		if sg.seq == e.rcvNxt {
			e.close("RST in TIME-WAIT", sg, 0)
		} else {
			e.s.inc(cntTCPIgnored)
		}
	case sg.has(flagSYN) && !sg.has(flagACK) && sg.seq.gt(e.rcvNxt):
		// A new incarnation may reuse the pair; its ISN starts beyond
		// anything the old one sent (Linux tcp_timewait_state_process).
		if l, ok := e.s.lis.Lookup(e.id.LocalAddr, e.id.LocalPort); ok {
			isn := e.sndNxt.add(65535 + 2)
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
	if sg.has(flagACK) && (sg.ack.leq(e.iss) || sg.ack.gt(e.sndMax)) {
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
	e.irs = sg.seq
	e.rcvNxt = sg.seq.add(1)
	e.negotiate(&sg.opts, sg.has(flagACK))
	if sg.opts.HasTS && e.tsOK {
		e.tsRecent = sg.opts.TSVal
	}
	e.rcvAdv = e.rcvNxt.add(min(uint32(e.rcvSpace()), 65535))
	if sg.has(flagACK) {
		e.sndUna = sg.ack
		if e.rttTiming && e.retries == 0 {
			e.rttSample(now, now.Sub(e.rttStart))
		}
		e.rttTiming = false
		e.setState(stateEstablished, "SYN|ACK", sg)
		e.established(now, sg)
		e.sendACK(now)
		return
	}
	// Simultaneous open (B15): SYN|ACK with the same ISN as our SYN.
	e.setState(stateSynRecv, "SYN (simultaneous open)", sg)
	e.sndWnd = uint32(sg.wnd)
	e.sndNxt = e.iss
	e.sendSYN(now, true)
}

// negotiate applies the options of the peer's SYN (RFC 7323 1.3, RFC 2018).
// Window scaling and timestamps are used only if both sides offered them;
// synAck says whether our SYN already offered ours.
func (e *endpoint) negotiate(o *optionsT, synAck bool) {
	opts := &e.s.opts
	if o.HasMSS && o.MSS > 0 {
		e.mss = min(int(o.MSS), e.advMSS())
	} else {
		e.mss = min(536, e.advMSS())
	}
	if p := e.s.pathMSS(e.s.clock.Now(), e.id.RemoteAddr); p > 0 {
		e.mss = min(e.mss, p) // a learned path MTU (RFC 1191)
	}
	e.wsOK = opts.WindowScaling && o.HasWScale
	if e.wsOK {
		e.sndWscale = min(o.WScale, 14)
		e.rcvWscale = rcvWscaleFor(opts.RecvBuffer)
	} else {
		e.sndWscale, e.rcvWscale = 0, 0
	}
	e.tsOK = opts.Timestamps && o.HasTS
	e.sackOK = opts.SACK && o.SACKPermitted
	e.cwnd = uint32(initialCwnd * e.effMSS())
	e.ssthresh = 1 << 30
	e.recover = e.iss // RFC 6582 3.2 step 1
}
