package stack

import "time"

// The send half of a connection: its state, and what an ACK does to it
// (RFC 9293 3.10.7.4 fifth step: the window, the send queue, the RTT, the
// congestion window).

// sender is the send half of a connection: RFC 9293's send sequence
// variables, the send buffer, the peer's window, the RTT estimate and the
// congestion and recovery state that decide how much may be in flight.
type sender struct {
	// Send sequence space (RFC 9293 3.3.1).
	iss      seqnum
	una      seqnum
	nxt      seqnum
	max      seqnum // highest sequence number sent; nxt rewinds on RTO
	wnd      uint32 // peer's window, scaled
	maxWnd   uint32
	wl1, wl2 seqnum
	wscale   uint8
	mss      int  // largest payload the peer accepts, without our options
	buf      ring // bytes from una on: unacknowledged, then unsent

	finQueued bool   // a FIN follows the data in buf
	finSent   bool   //
	fin       seqnum // sequence number of our FIN once sent
	synAcked  bool   // our SYN is acknowledged: una has passed the ISS
	sml       seqnum // end of the last segment sent shorter than the MSS (Nagle)
	more      bool   // the write being pushed was sent with MSG_MORE

	sacked []seqRange // the peer's SACK blocks above una (sack.go)

	// Retransmission timing (RFC 6298, rtt.go).
	rtt       rttEstimator
	rttTiming bool // a segment is being timed (without timestamps)
	rttSeq    seqnum
	rttStart  time.Time
	backoff   int       // RTO expirations in a row
	rtxStart  time.Time // when the current run of retransmissions began
	rtoSentAt time.Time // when the RTO last resent the head

	// Congestion control (RFC 5681, cc.go) and loss recovery (RFC 6582,
	// RFC 6675, RFC 6937; recovery.go).
	cwnd         uint32
	ssthresh     uint32
	cc           congestionControl
	dupAcks      int
	recover      seqnum       // RFC 6582: no new recovery below this
	renoSacked   uint32       // without SACK: duplicate ACKs stand for SACKed segments
	fr           fastRecovery // while in fast recovery
	cwndCnt      uint32       // segments ACKed toward the next cwnd increase (snd_cwnd_cnt)
	cwndLimited  bool         // cwnd limited the flight of this window (is_cwnd_limited)
	maxFlight    uint32       // the most in flight this window (max_packets_out), bytes
	cwndUsageSeq seqnum       // the window those two describe ends here
}

// ackInput processes SEG.ACK in a synchronized state (RFC 9293 3.10.7.4
// fifth step, RFC 5681, RFC 6582); vContinue lets the segment go on to
// its data.
func (e *endpoint) ackInput(now time.Time, sg *segment) verdict {
	ack := sg.ack
	if ack.gt(e.snd.max) {
		// RFC 5961 5.2 (Linux 6.x): it acknowledges what we never sent.
		e.s.inc(cntTCPUnacceptableACK)
		return vChallenge
	}
	if ack.lt(e.snd.una) {
		if e.snd.una.sub(ack) > e.snd.maxWnd {
			e.s.inc(cntTCPUnacceptableACK)
			return vChallenge
		}
		return vContinue // an old ACK: ignore it, keep the data
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
		return vContinue
	}

	e.onNewAck(now, sg, acked, sackedBefore, lostBefore)
	return vContinue
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

// canSendData reports whether the state lets data and FIN (re)transmit.
func (e *endpoint) canSendData() bool {
	switch e.state {
	case stateEstablished, stateCloseWait, stateFinWait1, stateClosing, stateLastAck:
		return true
	}
	return false
}

// smallInFlight is Linux's tcp_minshall_check: a segment shorter than the
// MSS has been sent and is not yet acknowledged.
func (e *endpoint) smallInFlight() bool {
	return e.snd.sml.gt(e.snd.una) && e.snd.sml.leq(e.snd.nxt)
}

// flight is the sequence space sent and not yet acknowledged.
func (e *endpoint) flight() uint32 { return e.snd.nxt.sub(e.snd.una) }

// sentEnd is the end of the data ever sent: retransmissions stop there,
// or the peer would ACK bytes we count as unsent.
func (e *endpoint) sentEnd() seqnum {
	return seqMin(e.snd.max, e.snd.una.add(uint32(e.snd.buf.Len())))
}
