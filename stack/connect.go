package stack

import (
	"syscall"
	"time"

	"ustack/hashtable"
)

// The active open (RFC 9293 3.10.7.3, Linux tcp_v4_connect and
// tcp_rcv_synsent_state_process): connect() sends a SYN, and SYN-SENT waits
// for the peer's SYN|ACK, a RST, or the peer's own SYN (simultaneous open).

// connect creates the connection id, holding the bind entry owner, and
// sends its SYN (B13).
func (s *Stack) connect(now time.Time, id hashtable.FourTuple, owner hashtable.OwnerID, o sockOpts) *endpoint {
	e := s.newEndpoint(id)
	o.apply(e)
	e.owner = owner
	e.active = true
	e.snd.iss = s.isn(now, id)
	e.snd.una, e.snd.nxt, e.snd.max = e.snd.iss, e.snd.iss, e.snd.iss
	e.lastRecv = now
	s.est.Insert(id, e)
	s.inc(cntTCPActiveOpens)
	e.setState(stateSynSent, "connect()", nil)
	e.sendSYN(now, false)
	return e
}

// handshakeDone runs on entering ESTABLISHED from a handshake.
func (e *endpoint) handshakeDone(now time.Time, sg *segment) {
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

// synSentInput is RFC 9293 3.10.7.3 with Linux's tcp_rcv_synsent_state_process (B13, B15).
func (e *endpoint) synSentInput(now time.Time, sg *segment) verdict {
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
		return vDrop
	}
	if sg.has(flagRST) {
		if sg.has(flagACK) {
			e.s.inc(cntTCPResetsReceived)
			e.s.inc(cntTCPAttemptFails)
			e.close("RST|ACK", sg, syscall.ECONNREFUSED)
			return vDrop
		}
		e.s.inc(cntTCPIgnored) // RST without ACK: ignore (RFC 9293)
		return vDrop
	}
	if !sg.has(flagSYN) {
		e.s.inc(cntTCPIgnored)
		return vDrop
	}
	e.rcv.irs = sg.seq
	e.rcv.nxt = sg.seq.add(1)
	e.negotiate(&sg.opts, sg.has(flagACK))
	if sg.opts.HasTS && e.tsOK {
		e.rcv.tsRecent = sg.opts.TSVal
	}
	e.rcv.adv = e.rcv.nxt.add(min(uint32(e.rcvSpace()), maxWindow))
	if sg.has(flagACK) {
		e.snd.una = sg.ack
		if e.snd.rttTiming && e.retries == 0 {
			e.rttSample(now, now.Sub(e.snd.rttStart))
		}
		e.snd.rttTiming = false
		e.setState(stateEstablished, "SYN|ACK", sg)
		e.handshakeDone(now, sg)
		e.sendACK(now)
		return vOutput // and data queued before the handshake
	}
	// Simultaneous open (B15): SYN|ACK with the same ISN as our SYN.
	e.setState(stateSynRecv, "SYN (simultaneous open)", sg)
	e.snd.wnd = uint32(sg.wnd)
	e.snd.nxt = e.snd.iss
	e.sendSYN(now, true)
	return vDrop
}

// negotiate applies the options of the peer's SYN (RFC 7323 1.3, RFC 2018).
// Window scaling and timestamps are used only if both sides offered them;
// synAck says whether our SYN already offered ours.
func (e *endpoint) negotiate(o *optionsT, synAck bool) {
	opts := &e.s.opts
	if o.HasMSS && o.MSS > 0 {
		e.snd.mss = min(int(o.MSS), e.advMSS())
	} else {
		e.snd.mss = min(defaultMSS, e.advMSS())
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
