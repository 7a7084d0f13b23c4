package stack

import "time"

// Fast recovery's sending rate: Proportional Rate Reduction (RFC 6937) as
// Linux's tcp_cwnd_reduction, over RFC 6675's pipe. In recovery each ACK
// sets cwnd to pipe plus what PRR lets out: in proportion to what was
// delivered while pipe is above ssthresh, then up to ssthresh (PRR-SSRB).
// Like Linux, the window is counted in segments.

// enterRecovery starts fast recovery at the third duplicate ACK (Linux
// tcp_enter_recovery and tcp_init_cwnd_reduction).
func (e *endpoint) enterRecovery() {
	e.s.inc(cntTCPFastRetrans)
	e.priorCwnd = e.segs(e.cwnd)
	e.ssthresh = e.ccSsthresh()
	e.recover = e.sndMax
	e.inRecovery = true
	e.highRxt = e.sndUna
	e.headLost = true // the fast retransmit
	e.prrDelivered, e.prrOut = 0, 0
}

// prrOnAck is tcp_cwnd_reduction for an ACK in recovery that delivered
// (acked or SACKed) delivered bytes, then the retransmissions it allows.
func (e *endpoint) prrOnAck(now time.Time, delivered uint32, advanced, newlyLost bool) {
	if n := e.ackedSegs(delivered); n > 0 && e.priorCwnd > 0 {
		e.prrDelivered += n
		pipe, ssthresh := e.pipeSegs(), e.segs(e.ssthresh)
		var sndcnt uint32
		if pipe > ssthresh {
			// Proportional: ssthresh/prior_cwnd of what was delivered.
			sndcnt = sub0((ssthresh*e.prrDelivered+e.priorCwnd-1)/e.priorCwnd, e.prrOut)
		} else {
			sndcnt = max(sub0(e.prrDelivered, e.prrOut), n)
			if advanced && !newlyLost {
				sndcnt++
			}
			sndcnt = min(ssthresh-pipe, sndcnt)
		}
		if e.prrOut == 0 {
			sndcnt = max(sndcnt, 1) // the fast retransmit goes now
		}
		e.cwnd = (pipe + sndcnt) * uint32(e.effMSS())
	}
	// tcp_xmit_retransmit_queue: lost segments first, while pipe allows;
	// new data follows when the ACK's output runs.
	for e.pipeSegs() < e.segs(e.cwnd) {
		if e.retransmitLostHoles(now, 1) > 0 {
			e.prrOut++
			continue
		}
		if e.headLost && e.highRxt.leq(e.sndUna) {
			// A head the holes do not cover: our FIN alone.
			e.headLost = false
			e.retransmitHead(now)
			e.prrOut++
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
		held = e.renoSacked * uint32(e.effMSS())
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
	seq := seqMax(e.sndUna, e.highRxt)
	end := e.sentEnd()
	for seq.lt(end) {
		if r, ok := e.sackedAt(seq); ok {
			seq = r
			continue
		}
		head := e.headLost && seq == e.sndUna
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
