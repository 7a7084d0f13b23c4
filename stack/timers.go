package stack

import (
	"math/bits"
	"syscall"
	"time"
)

// The connection's timers (Linux's tcp_timer.c): retransmission (RTO, SYN
// and SYN|ACK, tail loss probe, persist), delayed ACK, keepalive and the
// FIN-WAIT-2 timeout, TIME-WAIT. The stack's timer queue calls them with the
// time; none sleeps.

// jiffy is one Linux timer tick at HZ=250.
const jiffy = 4 * time.Millisecond

// tlpMinTimeout is Linux's TCP_TIMEOUT_MIN (two jiffies at HZ=250).
const tlpMinTimeout = 8 * time.Millisecond

// backedOffRTO is the RTO with exponential backoff (RFC 6298 5.5).
func (e *endpoint) backedOffRTO() time.Duration {
	d := e.snd.rtt.rto
	for i := 0; i < e.snd.backoff && d < rtoMax; i++ {
		d *= 2
	}
	return min(d, rtoMax)
}

// synTimeout is the wait after the SYN or SYN|ACK just sent (B14): Linux
// waits a linear initial RTO for the first tcp_syn_linear_timeouts
// retransmissions of a SYN, then doubles; a SYN|ACK doubles at once.
func (e *endpoint) synTimeout() time.Duration {
	k := e.retries
	if e.state == stateSynSent {
		k -= e.s.opts.SynLinearTimeouts
	}
	d := rtoInitial
	for i := 0; i < k && d < rtoMax; i++ {
		d *= 2
	}
	return min(d, rtoMax)
}

// resendSYN retransmits our SYN (or SYN|ACK) and counts it.
func (e *endpoint) resendSYN(now time.Time, synAck bool) {
	e.retries++
	if synAck {
		e.s.inc(cntTCPSynAckRetrans)
	} else {
		e.s.inc(cntTCPSynRetrans)
	}
	e.sendSYN(now, synAck)
}

// onRetransmitTimer is Linux's tcp_retransmit_timer, tcp_probe_timer and
// the SYN paths of tcp_write_timeout.
func (e *endpoint) onRetransmitTimer(now time.Time) {
	switch e.state {
	case stateSynSent:
		// Linux tcp_write_timeout: out of retransmissions, or out of the
		// time tcp_syn_retries allows by the exponential model, whichever
		// comes first (with linear timeouts the time usually does).
		// TCP_USER_TIMEOUT replaces the time (retransmits_timed_out),
		// which only counts once something was retransmitted.
		o := &e.s.opts
		retries := e.synRetries(o)
		limit := modelTimeout(retries, rtoInitial)
		if e.userTimeout > 0 {
			limit = e.userTimeout
		}
		if e.retries >= retries+o.SynLinearTimeouts || e.retries > 0 && now.Sub(e.synStart) >= limit {
			e.s.inc(cntTCPAttemptFails)
			e.close("SYN retransmissions exhausted", nil, syscall.ETIMEDOUT)
			return
		}
		e.resendSYN(now, false)
		return
	case stateSynRecv:
		if e.active {
			if e.retries >= e.synRetries(&e.s.opts) {
				e.close("SYN|ACK retransmissions exhausted", nil, syscall.ETIMEDOUT)
			} else {
				e.resendSYN(now, true)
			}
			return
		}
		// Linux reqsk_timer_handler and syn_ack_recalc: the listener's
		// TCP_SYNCNT or tcp_synack_retries; with TCP_DEFER_ACCEPT at
		// least that many, and once a bare ACK came, no SYN|ACK until
		// the last deferred try, which gives the peer's ACK to it the
		// chance to complete the handshake.
		limit := orDefault(e.synCnt, e.s.opts.SynAckRetries)
		deferAccept := 0
		if e.parent != nil {
			deferAccept = e.parent.child.deferAccept
		}
		limit = max(limit, deferAccept)
		if e.retries >= limit && (!e.deferAcked || e.retries >= deferAccept) {
			e.close("SYN|ACK retransmissions exhausted", nil, syscall.ETIMEDOUT)
			return
		}
		if !e.deferAcked || e.retries >= deferAccept-1 {
			e.resendSYN(now, true)
		} else {
			e.retries++
			e.s.schedule(&e.rtxTimer, now.Add(e.synTimeout()))
		}
		return
	}
	if !e.canSendData() {
		return
	}
	if e.rtxMode == rtxPersist {
		e.zeroWindowProbe(now)
		return
	}
	if e.snd.una == e.snd.max {
		return
	}
	if e.rtxMode == rtxLossProbe {
		e.tailLossProbe(now)
		return
	}
	if e.snd.rtxStart.IsZero() {
		// Linux's retrans_stamp: the time of the first retransmission
		// (tcp_retransmit_skb stamps it after sending).
		e.snd.rtxStart = now
	}
	limit := e.s.opts.Retries2
	if e.orphan {
		limit = orphanRetries(e.backedOffRTO() < rtoMax)
	}
	timeout := retriesTimeout(limit)
	if e.userTimeout > 0 {
		timeout = e.userTimeout
	}
	// Linux retransmits_timed_out: the time counts only once something
	// has been retransmitted.
	if e.snd.backoff > 0 && now.Sub(e.snd.rtxStart) >= timeout {
		// B20: give up after tcp_retries2 (Linux tcp_write_err: no RST).
		e.s.inc(cntTCPAbortOnTimeout)
		e.close("retransmissions exhausted", nil, syscall.ETIMEDOUT)
		return
	}
	e.s.inc(cntTCPTimeouts)
	// RFC 5681 3.1 and RFC 6298 5.5-5.7: collapse to one segment,
	// back off, and go back to SND.UNA. ssthresh is set on the first
	// timeout only: when a retransmission is lost too it stays (RFC 5681
	// 3.1, Linux tcp_enter_loss), as it does in fast recovery, which has
	// set it already.
	if e.snd.backoff == 0 && !e.snd.fr.active {
		e.snd.ssthresh = e.ccSsthresh() // tcp_enter_loss
	}
	e.snd.cc.onLoss()
	e.snd.recover = e.snd.max // RFC 6582 4.2: no fast retransmit for what the RTO resends
	e.snd.cwnd = uint32(e.effMSS())
	e.snd.fr.active = false
	e.snd.fr.headLost = false
	e.snd.renoSacked = 0 // tcp_reset_reno_sack
	e.snd.dupAcks = 0
	e.snd.rttTiming = false
	e.snd.backoff++
	e.snd.nxt = e.snd.una // go back; sendData skips what the peer SACKed
	e.snd.fr.highRxt = e.snd.una
	if e.snd.finSent && e.snd.fin.geq(e.snd.una) {
		e.snd.finSent = false
	}
	e.sendData(now)
	e.snd.rtoSentAt = now
	e.s.schedule(&e.rtxTimer, now.Add(e.clampToUserTimeout(now, e.snd.rtxStart, e.backedOffRTO(), jiffy)))
}

// clampToUserTimeout is Linux's tcp_clamp_rto_to_user_timeout (and
// tcp_clamp_probe0_to_user_timeout): with TCP_USER_TIMEOUT, a timer that
// started counting at start fires no later than when the time runs out,
// and at least floor from now.
func (e *endpoint) clampToUserTimeout(now, start time.Time, d, floor time.Duration) time.Duration {
	if e.userTimeout <= 0 || start.IsZero() {
		return d
	}
	return min(d, max(e.userTimeout-now.Sub(start), floor))
}

// orphanRetries is Linux's tcp_orphan_retries with tcp_orphan_retries=0:
// a close()d socket that sent something recently (alive: its backed-off RTO
// is still under the maximum) gets 8 retries, >100 s at the minimum RTO;
// otherwise none.
func orphanRetries(alive bool) int {
	if alive {
		return 8
	}
	return 0
}

// retriesTimeout is how long tcp_retries2 retransmissions may take
// (tcp_retries2 = 15 gives 924.6 s).
func retriesTimeout(boundary int) time.Duration { return modelTimeout(boundary, rtoMin) }

// modelTimeout is Linux's tcp_model_timeout: how long `boundary`
// retransmissions take when the timeout doubles from base up to 120 s.
func modelTimeout(boundary int, base time.Duration) time.Duration {
	thresh := bits.Len64(uint64(rtoMax/base)) - 1 // ilog2(TCP_RTO_MAX / base)
	if boundary <= thresh {
		return time.Duration((2<<boundary)-1) * base
	}
	return time.Duration((2<<thresh)-1)*base + time.Duration(boundary-thresh)*rtoMax
}

// zeroWindowProbe sends a probe into a zero window (B21): Linux's
// tcp_xmit_probe_skb, an ACK with sequence number SND.UNA-1 that the peer
// must answer with its current window.
func (e *endpoint) zeroWindowProbe(now time.Time) {
	if e.snd.wnd > 0 {
		e.rtxMode = rtxRetransmit
		e.probesAt = time.Time{}
		e.writeWakeup(now)
		return
	}
	// Linux tcp_probe_timer: a peer that answers keeps us probing for as
	// long as it likes (RFC 1122 4.2.2.17; an answer resets probes), but
	// tcp_retries2 unanswered probes end the connection; an orphan gives
	// up sooner, on the backoff, which answers do not reset. Like
	// tcp_write_err, no RST.
	// TCP_USER_TIMEOUT bounds the probing from the first probe on, answers
	// or not (tcp_probe_timer's icsk_probes_tstamp).
	if e.probesAt.IsZero() {
		e.probesAt = now
	} else if e.userTimeout > 0 && now.Sub(e.probesAt) >= e.userTimeout {
		e.s.inc(cntTCPAbortOnTimeout)
		e.close("zero window: TCP_USER_TIMEOUT", nil, syscall.ETIMEDOUT)
		return
	}
	maxProbes := e.s.opts.Retries2
	if e.orphan {
		alive := e.backedOffRTO() < rtoMax
		maxProbes = orphanRetries(alive)
		if !alive && e.snd.backoff >= maxProbes {
			e.s.inc(cntTCPAbortOnTimeout)
			e.close("zero window: orphan out of probes", nil, syscall.ETIMEDOUT)
			return
		}
	}
	if e.probes >= maxProbes {
		e.s.inc(cntTCPAbortOnTimeout)
		e.close("zero window probes unanswered", nil, syscall.ETIMEDOUT)
		return
	}
	e.probes++
	e.s.inc(cntTCPZeroWindowProbes)
	e.sendSegment(now, e.snd.una-1, flagACK, 0, 0)
	e.snd.backoff++
	e.s.schedule(&e.rtxTimer, now.Add(e.clampToUserTimeout(now, e.probesAt, e.backedOffRTO(), tlpMinTimeout)))
}

func (e *endpoint) onDelackTimer(now time.Time) {
	if !e.rcv.ackPending || e.gone {
		return
	}
	e.s.inc(cntTCPDelayedACKs)
	e.rcv.pingpong = false // a delayed ACK was needed: not interactive after all
	e.sendACK(now)
}

// armKeepalive schedules the next keepalive check (B23).
func (e *endpoint) armKeepalive(now time.Time) {
	base := e.lastRecv
	if base.IsZero() {
		base = now
	}
	e.s.schedule(&e.keepTimer, base.Add(e.keepaliveIdle(&e.s.opts)))
}

// armFinWait2 bounds an orphaned FIN-WAIT-2 (B35, Linux tcp_fin_timeout).
func (e *endpoint) armFinWait2(now time.Time) {
	e.s.schedule(&e.keepTimer, now.Add(e.finTime()))
}

// finTime is Linux's tcp_fin_time: TCP_LINGER2 if set, else
// tcp_fin_timeout, never under 3.5 RTOs.
func (e *endpoint) finTime() time.Duration {
	d := e.s.opts.FinTimeout
	if e.linger2 > 0 {
		d = e.linger2
	}
	rto := e.backedOffRTO()
	return max(d, 4*rto-rto/2)
}

// onKeepTimer is Linux's tcp_keepalive_timer: the FIN-WAIT-2 timeout for
// an orphan, otherwise keepalive probing.
func (e *endpoint) onKeepTimer(now time.Time) {
	if e.state == stateFinWait2 && e.orphan {
		// B35: straight to CLOSED, no TIME-WAIT and no segment.
		e.s.inc(cntTCPFinWait2Timeouts)
		e.close("FIN-WAIT-2 timeout", nil, 0)
		return
	}
	if !e.keepalive || !e.state.synchronized() || e.state == stateTimeWait {
		return
	}
	o := &e.s.opts
	idle := now.Sub(e.lastRecv)
	if e.probes == 0 && idle < e.keepaliveIdle(o) {
		e.s.schedule(&e.keepTimer, e.lastRecv.Add(e.keepaliveIdle(o)))
		return
	}
	if e.snd.buf.Len() > 0 {
		// Data in flight: the retransmission timer is in charge.
		e.s.schedule(&e.keepTimer, now.Add(e.keepaliveIntvl(o)))
		return
	}
	// With TCP_USER_TIMEOUT the silence, not the probe count, decides.
	if e.userTimeout > 0 && idle >= e.userTimeout && e.probes > 0 || e.userTimeout == 0 && e.probes >= e.keepaliveProbes(o) {
		e.s.inc(cntTCPAbortOnTimeout)
		e.sendRST(now)
		e.close("keepalive probes unanswered", nil, syscall.ETIMEDOUT)
		return
	}
	e.probes++
	e.s.inc(cntTCPKeepaliveProbes)
	e.sendSegment(now, e.snd.una-1, flagACK, 0, 0)
	e.s.schedule(&e.keepTimer, now.Add(e.keepaliveIntvl(o)))
}

func (e *endpoint) onTimeWaitTimer(now time.Time) {
	e.close("TIME-WAIT timeout", nil, 0)
}

// armRetransmit arms the retransmission timer for outstanding data: as a
// tail loss probe when RFC 8985 allows (SACK, an RTT sample, not in
// recovery, no probe out), otherwise as the RTO.
func (e *endpoint) armRetransmit(now time.Time) {
	// Linux probes only in the Open state: no SACKed data, no dupacks.
	if e.sackOK && e.s.opts.TailLossProbes && e.snd.rtt.srtt > 0 && !e.snd.fr.active && !e.tlpOut && e.snd.backoff == 0 && len(e.snd.sacked) == 0 && e.snd.dupAcks == 0 {
		e.rtxMode = rtxLossProbe
		e.s.schedule(&e.rtxTimer, now.Add(e.probeTimeout()))
		return
	}
	e.rtxMode = rtxRetransmit
	e.s.schedule(&e.rtxTimer, now.Add(e.backedOffRTO()))
}

// probeTimeout is Linux's tcp_schedule_loss_probe: two smoothed RTTs, plus
// room for a delayed ACK when one segment is out, never beyond the RTO.
func (e *endpoint) probeTimeout() time.Duration {
	pto := 2*e.snd.rtt.srtt + tlpMinTimeout
	if e.flight() <= uint32(e.effMSS()) {
		pto = 2*e.snd.rtt.srtt + rtoMin // TCP_RTO_MIN covers the peer's delayed ACK
	}
	return min(pto, e.snd.rtt.rto)
}

// writeWakeup is Linux's tcp_write_wakeup with the window open: the probe
// timer sends the head of the unsent data, up to a segment, with PSH,
// whatever TCP_CORK or Nagle held back; the RTO then covers it.
func (e *endpoint) writeWakeup(now time.Time) {
	dataEnd := e.snd.una.add(uint32(e.snd.buf.Len()))
	usable := int(e.snd.wnd) - int(e.flight())
	n := min(int(dataEnd.sub(e.snd.nxt)), e.dataRoom(), max(usable, 0))
	if n <= 0 || !e.snd.nxt.lt(dataEnd) {
		e.sendData(now) // our FIN, or nothing held
		return
	}
	seq := e.snd.nxt
	e.sendSegment(now, seq, flagACK|flagPSH, int(seq.sub(e.snd.una)), n)
	e.snd.nxt = seq.add(uint32(n))
	e.snd.max = seqMax(e.snd.max, e.snd.nxt)
	if !e.snd.rttTiming && !e.tsOK {
		e.snd.rttTiming, e.snd.rttSeq, e.snd.rttStart = true, seq, now
	}
	e.armRetransmit(now)
}
