package stack

// seqnum is a TCP sequence number; comparisons are modulo 2^32 (RFC 9293
// section 3.4), valid while the two numbers are less than 2^31 apart.
type seqnum uint32

func (a seqnum) lt(b seqnum) bool  { return int32(a-b) < 0 }
func (a seqnum) leq(b seqnum) bool { return int32(a-b) <= 0 }
func (a seqnum) gt(b seqnum) bool  { return int32(a-b) > 0 }
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
