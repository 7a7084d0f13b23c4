package stack

// Sequence-number arithmetic (RFC 9293 3.4) and ranges of sequence space.

// seqRange is a block of out-of-order data [start, end).
type seqRange struct{ start, end seqnum }

// seqnum is a TCP sequence number; comparisons are modulo 2^32 (RFC 9293
// section 3.4), valid while the two numbers are less than 2^31 apart.
type seqnum uint32

// mergeRange returns the sorted, disjoint list with r merged in, as a new
// slice (the old one may be in use), or false when it would hold more than
// maxOOORanges blocks.
func mergeRange(list []seqRange, r seqRange) ([]seqRange, bool) {
	out := make([]seqRange, 0, len(list)+1)
	placed := false
	for _, x := range list {
		switch {
		case x.end.lt(r.start):
			out = append(out, x)
		case r.end.lt(x.start):
			if !placed {
				out = append(out, r)
				placed = true
			}
			out = append(out, x)
		default:
			r.start, r.end = seqMin(r.start, x.start), seqMax(r.end, x.end)
		}
	}
	if !placed {
		out = append(out, r)
	}
	return out, len(out) <= maxOOORanges
}

func (a seqnum) lt(b seqnum) bool { return int32(a-b) < 0 }

func (a seqnum) leq(b seqnum) bool { return int32(a-b) <= 0 }

func (a seqnum) gt(b seqnum) bool { return int32(a-b) > 0 }

func (a seqnum) geq(b seqnum) bool { return int32(a-b) >= 0 }

// add returns a+n.
func (a seqnum) add(n uint32) seqnum { return a + seqnum(n) }

// sub returns the distance from b up to a (a-b); callers know a >= b.
func (a seqnum) sub(b seqnum) uint32 { return uint32(a - b) }

func seqMax(a, b seqnum) seqnum {
	if a.gt(b) {
		return a
	}
	return b
}

func seqMin(a, b seqnum) seqnum {
	if a.lt(b) {
		return a
	}
	return b
}
