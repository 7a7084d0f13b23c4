package stack

import (
	"syscall"
	"time"
)

// Segment arrival on a connection (RFC 9293 3.10.7): process is the
// dispatcher, one handler per state group, each returning a verdict that
// says what is left to send.

// verdict is what an input handler leaves to do once it is done with the
// segment: the state change, the wake-ups and the end of the connection
// (close) happen in the handler; what goes back on the wire is said here.
type verdict uint8

const (
	vOutput    verdict = iota // send what is now due: data the ACK let out, an owed ACK
	vDrop                     // nothing more (counted where it was dropped)
	vReset                    // a RST for the segment, as for no connection (RFC 9293 3.10.7.1)
	vChallenge                // RFC 5961's challenge ACK, rate limited
	vOOWAck                   // an ACK for an unacceptable segment, rate limited
	vContinue                 // (inside a handler) the segment goes on to its next step
)

// process is one step of the state machine: a segment arrives for this
// connection. It reads like RFC 9293 3.10.7: SYN-SENT (3.10.7.3), then the
// states with a receive window (3.10.7.4), SYN-RECEIVED before the others;
// LISTEN is the listener's (accept.go).
func (e *endpoint) process(now time.Time, sg *segment) {
	var v verdict
	switch e.state {
	case stateSynSent:
		v = e.synSentInput(now, sg)
	case stateSynRecv:
		v = e.synRecvInput(now, sg)
	case stateTimeWait:
		v = e.timeWaitInput(now, sg)
	case stateClosed:
		v = vReset
	default:
		v = e.synchronizedInput(now, sg)
	}
	switch v {
	case vOutput, vContinue:
		if !e.gone {
			e.output(now)
		}
	case vReset:
		e.s.sendResetFor(sg)
	case vChallenge:
		e.challengeACK(now)
	case vOOWAck:
		e.sendOOWAck(now, sg)
	}
}

// synchronizedInput is ESTABLISHED through LAST-ACK.
func (e *endpoint) synchronizedInput(now time.Time, sg *segment) verdict {
	if v := e.screen(now, sg); v != vContinue {
		return v
	}
	// Step 4: SYN in a synchronized state gets a challenge ACK (RFC 5961
	// 4.2, B41).
	if sg.has(flagSYN) {
		return vChallenge
	}
	if !sg.has(flagACK) {
		return vDrop
	}
	return e.established(now, sg)
}

// synRecvInput is SYN-RECEIVED: a listener's child waiting for the ACK of
// its SYN|ACK, or our SYN met the peer's (simultaneous open, B15, B16).
func (e *endpoint) synRecvInput(now time.Time, sg *segment) verdict {
	if v := e.screen(now, sg); v != vContinue {
		return v
	}
	if sg.has(flagSYN) {
		switch {
		case !e.active && !sg.has(flagACK) && sg.seq == e.rcv.irs:
			// Our SYN|ACK was lost: answer the retransmitted SYN with it
			// again, rate limited (Linux tcp_check_req).
			if e.lastOOW.IsZero() || now.Sub(e.lastOOW) >= oowRateLimit {
				e.lastOOW = now
				e.sendSegment(now, e.snd.iss, flagSYN|flagACK, 0, 0)
			}
			return vDrop
		case e.active && sg.has(flagACK) && sg.seq.add(1) == e.rcv.nxt && sg.ack == e.snd.nxt:
			// The SYN|ACK that completes a simultaneous open.
			e.setState(stateEstablished, "SYN|ACK in SYN-RECV (simultaneous open)", sg)
			e.handshakeDone(now, sg)
			// Its SYN is a duplicate of the one we have: Linux ACKs the
			// old sequence space with a D-SACK (tcp_data_queue).
			e.setDSACK(sg.seq, sg.seq.add(1))
			e.rcv.ackNow = true
			return vOutput
		}
		return vChallenge
	}
	if !sg.has(flagACK) {
		return vDrop
	}
	if !(sg.ack.gt(e.snd.una) && sg.ack.leq(e.snd.nxt)) {
		e.s.inc(cntTCPUnacceptableACK)
		return vReset
	}
	if l := e.parent; l != nil && !e.active && !e.fromCookie && e.retries < l.child.deferAccept && sg.seq.add(sg.seqLen()) == e.rcv.irs.add(1) {
		// TCP_DEFER_ACCEPT: a bare ACK does not complete the
		// handshake; the connection waits for data (tcp_check_req).
		e.deferAcked = true
		e.s.inc(cntTCPDeferAcceptDrops)
		return vDrop
	}
	if !e.completePassiveOpen(now, sg) {
		return vDrop // accept queue full (B11): the ACK is dropped
	}
	return e.established(now, sg)
}

// screen is what every state with a receive window checks first (RFC 9293
// 3.10.7.4, first and second steps, with Linux's and RFC 5961's rules):
// flags, PAWS, sequence acceptability, RST. vContinue lets the segment on.
func (e *endpoint) screen(now time.Time, sg *segment) verdict {
	// Linux drops a segment with none of ACK, RST, SYN before looking at
	// it further (SKB_DROP_REASON_TCP_FLAGS): no answer, no liveness.
	if !sg.has(flagACK) && !sg.has(flagRST) && !sg.has(flagSYN) {
		e.s.inc(cntTCPNoACKFlag)
		return vDrop
	}
	// PAWS (RFC 7323 5.3, Linux tcp_paws_discard): a segment whose TSval
	// is older than TS.Recent is a duplicate from an old incarnation.
	if e.tsOK && sg.opts.HasTS && !sg.has(flagRST) && int32(sg.opts.TSVal-e.rcv.tsRecent) < 0 {
		e.s.inc(cntTCPPAWSDrops)
		return vOOWAck
	}

	// Step 1: sequence number acceptability, as Linux's tcp_sequence: the
	// segment must end at or after RCV.NXT and start inside the window.
	if !e.acceptable(sg) {
		e.s.inc(cntTCPOutOfWindow)
		switch {
		case sg.has(flagRST) && e.resetAtFin(sg):
			e.s.inc(cntTCPResetsReceived)
			e.resetByPeer(sg)
			return vDrop
		case sg.has(flagRST):
			return vDrop // RFC 5961 3.2: out-of-window RST is dropped silently.
		case sg.has(flagSYN):
			return vChallenge // RFC 5961 4.2
		}
		return vOOWAck // RFC 9293: send an ACK, drop
	}

	// Step 2: RST (RFC 5961 3.2). Only an exact match resets (B40).
	if sg.has(flagRST) {
		if sg.seq == e.rcv.nxt || e.resetAtFin(sg) {
			e.s.inc(cntTCPResetsReceived)
			e.resetByPeer(sg)
			return vDrop
		}
		return vChallenge
	}

	// An acceptable segment: the peer is alive (keepalive, probes).
	e.lastRecv = now
	e.probes = 0
	return vContinue
}

// established takes an acceptable ACK-bearing segment in a synchronized
// state through RFC 9293 3.10.7.4's fifth to eighth steps: its ACK, its
// data, its FIN.
func (e *endpoint) established(now time.Time, sg *segment) verdict {
	if v := e.ackInput(now, sg); v != vContinue {
		return v
	}
	if e.gone || e.state == stateTimeWait {
		// The ACK of our FIN ended LAST-ACK, or took CLOSING to TIME-WAIT:
		// the rest of the segment is consumed (Linux tcp_rcv_state_process,
		// tcp_time_wait then "goto consume").
		return vDrop
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
				return vDrop
			}
			e.dataInput(now, sg)
		case stateEstablished:
			e.dataInput(now, sg)
		}
	}
	if e.rcv.finRecvd && (len(sg.payload) > 0 || sg.has(flagFIN)) {
		// CLOSE-WAIT, CLOSING, LAST-ACK: the peer's FIN is in.
		if v := e.afterPeerFin(now, sg); v != vContinue {
			return v
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
	return vOutput
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
// a D-SACK.
func (e *endpoint) afterPeerFin(now time.Time, sg *segment) verdict {
	if sg.seq.geq(e.rcv.nxt) {
		e.s.inc(cntTCPIgnored)
		return vContinue
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
		return vDrop
	}
	e.setDSACK(sg.seq, seqMin(sg.seq.add(sg.seqLen()), e.rcv.nxt))
	e.scheduleACK(now, true)
	return vContinue
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
func (e *endpoint) resetByPeer(sg *segment) {
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
