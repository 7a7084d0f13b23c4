package stack

import "time"

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
