package stack

import "time"

// Loss recovery (RFC 5681 3.2, RFC 6582, RFC 6675, RFC 6937): duplicate
// ACKs, fast retransmit and fast recovery paced by Proportional Rate
// Reduction as Linux's tcp_cwnd_reduction, the lost holes the scoreboard
// shows, the tail loss probe (RFC 8985 7), and resend, the one builder of
// retransmitted segments.

// fastRecovery is the state of one fast recovery episode (RFC 6582, RFC
// 6675, RFC 6937; Linux's TCP_CA_Recovery).
type fastRecovery struct {
	active       bool
	highRxt      seqnum // retransmitted up to here (RFC 6675 HighRxt)
	headLost     bool   // una's segment is marked lost (fast retransmit, NewReno)
	priorCwnd    uint32 // segments: cwnd when recovery began
	prrDelivered uint32 // segments delivered since then
	prrOut       uint32 // segments sent since then
}

// Fast recovery's sending rate: Proportional Rate Reduction (RFC 6937) as
// Linux's tcp_cwnd_reduction, over RFC 6675's pipe. In recovery each ACK
// sets cwnd to pipe plus what PRR lets out: in proportion to what was
// delivered while pipe is above ssthresh, then up to ssthresh (PRR-SSRB).
// Like Linux, the window is counted in segments.

// enterRecovery starts fast recovery at the third duplicate ACK (Linux
// tcp_enter_recovery and tcp_init_cwnd_reduction).
func (e *endpoint) enterRecovery() {
	e.s.inc(cntTCPFastRetrans)
	e.snd.fr.priorCwnd = e.segs(e.snd.cwnd)
	e.snd.ssthresh = e.ccSsthresh()
	e.snd.recover = e.snd.max
	e.snd.fr.active = true
	e.snd.fr.highRxt = e.snd.una
	e.snd.fr.headLost = true // the fast retransmit
	e.snd.fr.prrDelivered, e.snd.fr.prrOut = 0, 0
}

// prrOnAck is tcp_cwnd_reduction for an ACK in recovery that delivered
// (acked or SACKed) delivered bytes, then the retransmissions it allows.
func (e *endpoint) prrOnAck(now time.Time, delivered uint32, advanced, newlyLost bool) {
	if n := e.ackedSegs(delivered); n > 0 && e.snd.fr.priorCwnd > 0 {
		e.snd.fr.prrDelivered += n
		pipe, ssthresh := e.pipeSegs(), e.segs(e.snd.ssthresh)
		var sndcnt uint32
		if pipe > ssthresh {
			// Proportional: ssthresh/prior_cwnd of what was delivered.
			sndcnt = sub0((ssthresh*e.snd.fr.prrDelivered+e.snd.fr.priorCwnd-1)/e.snd.fr.priorCwnd, e.snd.fr.prrOut)
		} else {
			sndcnt = max(sub0(e.snd.fr.prrDelivered, e.snd.fr.prrOut), n)
			if advanced && !newlyLost {
				sndcnt++
			}
			sndcnt = min(ssthresh-pipe, sndcnt)
		}
		if e.snd.fr.prrOut == 0 {
			sndcnt = max(sndcnt, 1) // the fast retransmit goes now
		}
		e.snd.cwnd = (pipe + sndcnt) * uint32(e.effMSS())
	}
	// tcp_xmit_retransmit_queue: lost segments first, while pipe allows;
	// new data follows when the ACK's output runs.
	for e.pipeSegs() < e.segs(e.snd.cwnd) {
		if e.retransmitLostHoles(now, 1) > 0 {
			e.snd.fr.prrOut++
			continue
		}
		if e.snd.fr.headLost && e.snd.fr.highRxt.leq(e.snd.una) {
			// A head the holes do not cover: our FIN alone.
			e.snd.fr.headLost = false
			e.retransmitHead(now)
			e.snd.fr.prrOut++
		}
		break
	}
}

func sub0(a, b uint32) uint32 {
	if a < b {
		return 0
	}
	return a - b
}

// pipe is RFC 6675's estimate of the bytes still in the network: what is
// outstanding less what the peer holds (SACKed, or for Reno one segment per
// duplicate ACK, tcp_add_reno_sack) and what is lost and not resent.
func (e *endpoint) pipe() uint32 {
	held := e.sackedBytes()
	if !e.sackOK {
		held = e.snd.renoSacked * uint32(e.effMSS())
	}
	return sub0(e.flight(), held+e.lostBytes())
}

// pipeSegs is pipe in segments, a partial one counting whole.
func (e *endpoint) pipeSegs() uint32 { return e.ackedSegs(e.pipe()) }

// lostBytes counts what is marked lost and not yet retransmitted: from
// highRxt up, the holes with DupThresh segments SACKed above them (RFC
// 6675 IsLost), and the head segment while marked lost (the fast
// retransmit, NewReno's partial ACK).
func (e *endpoint) lostBytes() uint32 {
	var n uint32
	seq := seqMax(e.snd.una, e.snd.fr.highRxt)
	end := e.sentEnd()
	for seq.lt(end) {
		if r, ok := e.sackedAt(seq); ok {
			seq = r
			continue
		}
		head := e.snd.fr.headLost && seq == e.snd.una
		if !head && !e.isLost(seq) {
			break // IsLost only falls from here up
		}
		next := end
		if s, ok := e.nextSacked(seq); ok && s.lt(end) {
			next = s
		}
		if head && !e.isLost(seq) {
			next = seqMin(next, seq.add(uint32(e.dataRoom())))
		}
		n += next.sub(seq)
		seq = next
	}
	return n
}

// retransmitLostHoles resends holes the scoreboard declares lost, from
// highRxt up, at most max segments (RFC 6675 NextSeg rule 1).
func (e *endpoint) retransmitLostHoles(now time.Time, max int) int {
	sent := 0
	seq := seqMax(e.snd.una, e.snd.fr.highRxt)
	dataEnd := e.sentEnd()
	for sent < max && seq.lt(dataEnd) {
		if end, ok := e.sackedAt(seq); ok {
			seq = end
			continue
		}
		head := e.snd.fr.headLost && seq == e.snd.una
		if !head && !e.isLost(seq) {
			break
		}
		e.snd.fr.headLost = false
		seq, _ = e.resend(now, seq)
		e.snd.fr.highRxt = seq
		sent++
	}
	return sent
}

// congestionOnAck handles partial and full ACKs in recovery (RFC 6582 3.2,
// with PRR setting the pace, prr.go); outside it, cwnd grows as the
// congestion control says (cc.go).
func (e *endpoint) congestionOnAck(now time.Time, acked, delivered, lostBefore uint32) {
	mss := uint32(e.effMSS())
	if !e.sackOK {
		// tcp_remove_reno_sacks: the ACK fills the hole, and each
		// segment beyond it was one of the duplicate ACKs.
		n := e.ackedSegs(acked)
		delivered = max(sub0(n, e.snd.renoSacked), 1) * mss
		e.snd.renoSacked = sub0(e.snd.renoSacked, n-1)
	}
	if e.snd.fr.active {
		if e.snd.una.geq(e.snd.recover) {
			// Full ACK: deflate to ssthresh (RFC 5681 3.2 step 6; the
			// second choice of RFC 6582 3.2, as Linux's
			// tcp_end_cwnd_reduction).
			e.snd.fr.active = false
			e.snd.fr.headLost = false
			e.snd.renoSacked = 0
			e.snd.cwnd = max(e.snd.ssthresh, mss)
		} else {
			// Partial ACK: without SACK (NewReno), or when SACK marks
			// nothing lost, the new head is the next loss.
			if !e.sackOK || (e.lostBytes() == 0 && e.snd.fr.highRxt.leq(e.snd.una)) {
				if _, sacked := e.sackedAt(e.snd.una); !sacked {
					e.snd.fr.headLost = true
				}
			}
			e.prrOnAck(now, delivered, true, e.lostBytes() > lostBefore)
			return
		}
	}
	e.snd.dupAcks = 0
	e.ccOnAck(now, delivered)
}

// onDupAck counts duplicate ACKs, which delivered newly SACKed bytes; the
// third (or SACK's IsLost) starts fast retransmit and recovery (RFC 5681
// 3.2, RFC 6582 3.2, RFC 6675 5), whose pace PRR sets (prr.go).
func (e *endpoint) onDupAck(now time.Time, delivered, lostBefore uint32) {
	mss := uint32(e.effMSS())
	e.snd.dupAcks++
	if !e.sackOK {
		// tcp_add_reno_sack: a duplicate ACK stands for one segment that
		// arrived, up to all but one of those outstanding.
		if out := e.ackedSegs(e.flight()); e.snd.renoSacked+1 < out {
			e.snd.renoSacked++
		}
		delivered = mss
	}
	switch {
	case e.snd.fr.active:
		e.prrOnAck(now, delivered, false, e.lostBytes() > lostBefore)
	case e.snd.dupAcks >= dupThresh || (e.sackOK && e.isLost(e.snd.una)):
		if e.snd.una.lt(e.snd.recover) {
			return // RFC 6582 4.1: no new recovery for the same loss
		}
		e.enterRecovery()
		e.prrOnAck(now, delivered, false, true)
	}
}

// retransmitHead resends the first unacknowledged segment, up to the next
// block the peer SACKed, and restarts the RTO.
func (e *endpoint) retransmitHead(now time.Time) {
	end, ok := e.resend(now, e.snd.una)
	e.snd.fr.highRxt = seqMax(e.snd.fr.highRxt, end)
	if !ok {
		return
	}
	e.snd.rttTiming = false // Karn
	e.s.schedule(&e.rtxTimer, now.Add(e.backedOffRTO()))
}

// resend sends the data at seq again, as Linux's tcp_retransmit_skb resends
// an skb: at most one segment, not into the next block the peer SACKed,
// with PSH when it ends the queued data (as the original did) and our FIN
// when that followed it; the FIN alone when nothing is left before it. It
// returns where what it sent ends, and false when there was nothing to
// send. This is the one builder of retransmitted segments.
func (e *endpoint) resend(now time.Time, seq seqnum) (seqnum, bool) {
	n := min(int(e.sentEnd().sub(seq)), e.dataRoom())
	if next, ok := e.nextSacked(seq); ok && int(next.sub(seq)) < n {
		n = int(next.sub(seq))
	}
	dataEnd := e.snd.una.add(uint32(e.snd.buf.Len()))
	last := seq.add(uint32(n)) == dataEnd
	flags := flagACK
	if n > 0 && last {
		flags |= flagPSH
	}
	if last && e.snd.finSent && e.snd.max.gt(dataEnd) {
		flags |= flagFIN
	}
	if n == 0 && flags&flagFIN == 0 {
		return seq, false
	}
	e.s.inc(cntTCPRetransSegs)
	e.sendSegment(now, seq, flags, int(seq.sub(e.snd.una)), n)
	return seq.add(uint32(n)), true
}

// tailLossProbe sends one segment to draw an ACK (RFC 8985 7.3): new data if
// the windows allow it, else the last segment again; then the RTO is armed.
func (e *endpoint) tailLossProbe(now time.Time) {
	e.rtxMode = rtxRetransmit
	e.tlpOut = true
	e.s.inc(cntTCPLossProbes)
	dataEnd := e.snd.una.add(uint32(e.snd.buf.Len()))
	if e.snd.nxt.lt(dataEnd) && e.snd.nxt == e.snd.max && e.snd.wnd > e.flight() {
		saved := e.snd.cwnd
		e.snd.cwnd = e.flight() + uint32(e.dataRoom()) // exactly one new segment
		e.sendData(now)
		e.snd.cwnd = saved
	} else {
		// The last segment sent (or our FIN alone) again.
		end := e.sentEnd()
		start := e.snd.una
		if d := int(end.sub(e.snd.una)); d > e.dataRoom() {
			start = end.add(^uint32(e.dataRoom() - 1))
		}
		e.resend(now, start)
	}
	e.s.schedule(&e.rtxTimer, now.Add(e.backedOffRTO()))
}
