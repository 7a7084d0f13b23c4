package stack

import (
	"syscall"
	"time"
)

// Segment arrival on a connection (RFC 9293 3.10.7): process is the
// dispatcher, one handler per state group, each returning a verdict that
// says what is left to send.

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
