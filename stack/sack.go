package stack

import "ustack/stack/header"

// SACK (RFC 2018), both ways. The sender's scoreboard (RFC 6675): which
// bytes above SND.UNA the peer reported holding; retransmissions skip them,
// and a hole with DupThresh segments SACKed above it is lost and resent at
// once instead of waiting for one hole per round trip or for the RTO. And
// the receiver's blocks: the out-of-order data we hold, reported in the
// order Linux reports it, a D-SACK (RFC 2883) first.

const dupThresh = 3 // RFC 6675 DupThresh (Linux tcp_reordering default)

// sackBlocks fills b with our out-of-order blocks for the peer: the block
// of the segment that arrived last first, then the blocks of the segments
// before it (RFC 2018 4, Linux tcp_sack_new_ofo_skb), then any others,
// highest first.
func (e *endpoint) sackBlocks(b []header.SACKBlock) int {
	max := len(b)
	if e.tsOK {
		max = 3 // 40 bytes of options: TS takes 12
	}
	n := 0
	if e.rcv.hasDSACK {
		// RFC 2883: the duplicate first, reported once.
		b[0] = header.SACKBlock{Start: uint32(e.rcv.dsack.start), End: uint32(e.rcv.dsack.end)}
		n = 1
		e.rcv.hasDSACK = false
	}
	var used [maxOOORanges]bool
	add := func(i int) {
		if !used[i] && n < max {
			used[i] = true
			b[n] = header.SACKBlock{Start: uint32(e.rcv.ooo[i].start), End: uint32(e.rcv.ooo[i].end)}
			n++
		}
	}
	for _, seq := range e.rcv.oooRecent[:e.rcv.nRecent] {
		if i := e.oooBlock(seq); i >= 0 {
			add(i)
		}
	}
	for i := len(e.rcv.ooo) - 1; i >= 0 && n < max; i-- {
		add(i)
	}
	return n
}

// noteOOO remembers that an out-of-order segment starting at seq arrived,
// for the order of our SACK blocks: the block now holding it moves to the
// front of the recency list (one entry per block, as Linux keeps its
// selective_acks in tcp_sack_new_ofo_skb).
func (e *endpoint) noteOOO(seq seqnum) {
	var blk seqRange
	if i := e.oooBlock(seq); i >= 0 {
		blk = e.rcv.ooo[i]
	}
	var keep [len(e.rcv.oooRecent)]seqnum
	keep[0] = seq
	k := 1
	for _, x := range e.rcv.oooRecent[:e.rcv.nRecent] {
		if k < len(keep) && (x.lt(blk.start) || x.geq(blk.end)) {
			keep[k], k = x, k+1
		}
	}
	e.rcv.oooRecent, e.rcv.nRecent = keep, k
}

// oooBlock is the index of the out-of-order block holding seq, or -1.
func (e *endpoint) oooBlock(seq seqnum) int {
	for i, r := range e.rcv.ooo {
		if seq.geq(r.start) && seq.lt(r.end) {
			return i
		}
	}
	return -1
}

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
