package stack

import "time"

// The sender's SACK scoreboard (RFC 2018, RFC 6675): which bytes above
// SND.UNA the peer reported holding. Retransmissions skip them, and a hole
// with DupThresh segments SACKed above it is lost and resent at once
// instead of waiting for one hole per round trip or for the RTO.

const dupThresh = 3 // RFC 6675 DupThresh (Linux tcp_reordering default)

// updateScoreboard merges the SACK blocks of an ACK; it reports whether
// they told us anything new.
func (e *endpoint) updateScoreboard(sg *segment) bool {
	if !e.sackOK || sg.opts.NumSACK == 0 {
		return false
	}
	grew := false
	for i := 0; i < sg.opts.NumSACK && i < len(sg.opts.SACK); i++ {
		b := sg.opts.SACK[i]
		r := seqRange{seqnum(b.Start), seqnum(b.End)}
		// Ignore D-SACKs and blocks outside what is outstanding.
		if !r.start.lt(r.end) || r.start.lt(e.snd.una) || r.end.gt(e.snd.max) || r.start.lt(sg.ack) {
			continue
		}
		before := e.sackedBytes()
		if e.addSacked(r) && e.sackedBytes() != before {
			grew = true
		}
	}
	return grew
}

// addSacked merges r into the sorted scoreboard; false when it is full.
func (e *endpoint) addSacked(r seqRange) bool {
	out, ok := mergeRange(e.snd.sacked, r)
	if ok {
		e.snd.sacked = out
	}
	return ok
}

// pruneScoreboard drops what the cumulative ACK now covers.
func (e *endpoint) pruneScoreboard() {
	i := 0
	for i < len(e.snd.sacked) && e.snd.sacked[i].end.leq(e.snd.una) {
		i++
	}
	e.snd.sacked = e.snd.sacked[i:]
	if len(e.snd.sacked) > 0 && e.snd.sacked[0].start.lt(e.snd.una) {
		e.snd.sacked[0].start = e.snd.una
	}
	if len(e.snd.sacked) == 0 {
		e.snd.sacked = nil
	}
}

func (e *endpoint) sackedBytes() uint32 {
	var n uint32
	for _, r := range e.snd.sacked {
		n += r.end.sub(r.start)
	}
	return n
}

// sackedAbove counts SACKed bytes at or above seq.
func (e *endpoint) sackedAbove(seq seqnum) uint32 {
	var n uint32
	for _, r := range e.snd.sacked {
		switch {
		case r.start.geq(seq):
			n += r.end.sub(r.start)
		case r.end.gt(seq):
			n += r.end.sub(seq)
		}
	}
	return n
}

// sackedAt returns the end of the SACKed range containing seq, if any.
func (e *endpoint) sackedAt(seq seqnum) (seqnum, bool) {
	for _, r := range e.snd.sacked {
		if seq.geq(r.start) && seq.lt(r.end) {
			return r.end, true
		}
	}
	return 0, false
}

// nextSacked returns the start of the first SACKed range above seq.
func (e *endpoint) nextSacked(seq seqnum) (seqnum, bool) {
	for _, r := range e.snd.sacked {
		if r.start.gt(seq) {
			return r.start, true
		}
	}
	return 0, false
}

// isLost is RFC 6675's IsLost: DupThresh segments' worth is SACKed above.
func (e *endpoint) isLost(seq seqnum) bool {
	return e.sackedAbove(seq) >= uint32(dupThresh*e.effMSS())
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
		n := min(int(dataEnd.sub(seq)), e.dataRoom())
		if next, ok := e.nextSacked(seq); ok && int(next.sub(seq)) < n {
			n = int(next.sub(seq))
		}
		flags := flagACK
		if seq.add(uint32(n)) == e.snd.una.add(uint32(e.snd.buf.Len())) { // the end of the queued data, as the original
			flags |= flagPSH
		}
		e.s.inc(cntTCPRetransSegs)
		e.sendSegment(now, seq, flags, int(seq.sub(e.snd.una)), n)
		seq = seq.add(uint32(n))
		e.snd.fr.highRxt = seq
		sent++
	}
	return sent
}
