package stack

import (
	"math/bits"
	"time"
)

// Congestion control outside recovery: how cwnd grows on ACKs and what
// ssthresh a loss leaves, as Linux's tcp_cong.c and tcp_cubic.c (the
// default, net.ipv4.tcp_congestion_control=cubic) or tcp_reno do it. Linux
// counts the windows in segments; so does this file, over the byte-valued
// cwnd and ssthresh the rest of the stack uses (always whole segments).

// CongestionControl names the algorithm, as net.ipv4.tcp_congestion_control.
type CongestionControl uint8

const (
	CongestionCubic CongestionControl = iota // CUBIC (RFC 9438) as Linux's tcp_cubic, without HyStart
	CongestionReno                           // NewReno (RFC 5681) as Linux's tcp_reno
)

func (c CongestionControl) String() string {
	if c == CongestionReno {
		return "reno"
	}
	return "cubic"
}

// Linux's tick: CUBIC's clock is jiffies, at HZ=250 here.
const hz = int64(time.Second / jiffy)

// CUBIC's constants (tcp_cubic.c, computed as cubictcp_register does).
const (
	cubicBeta        = 717  // / 1024: the window left after a loss
	cubicBetaScale   = 1024 // BICTCP_BETA_SCALE
	cubicHZ          = 10   // BICTCP_HZ: time in 1/1024 s
	cubicRTTScale    = 41 * 10
	cubicFriendScale = 8 * (cubicBetaScale + cubicBeta) / 3 / (cubicBetaScale - cubicBeta)
	cubicFactor      = (1 << (10 + 3*cubicHZ)) / (41 * 10)
)

// cubic is Linux's struct bictcp, less HyStart.
type cubic struct {
	cnt         uint32 // grow cwnd by one segment per cnt segments ACKed
	lastMaxCwnd uint32 // W_max
	lastCwnd    uint32
	lastTime    int64  // jiffies
	origin      uint32 // bic_origin_point
	k           uint32 // time to the origin, 1/1024 s
	delayMin    time.Duration
	epochStart  int64 // jiffies; 0 with !inEpoch
	inEpoch     bool
	ackCnt      uint32
	tcpCwnd     uint32 // the Reno window CUBIC must not fall below
}

func jiffies(t time.Time) int64 { return t.UnixNano() / int64(jiffy) }

// segs converts bytes to whole segments of the current MSS.
func (e *endpoint) segs(b uint32) uint32 { return b / uint32(e.effMSS()) }

// ackedSegs is the segments an ACK of n bytes delivered, counted as Linux
// counts skbs: a partial segment is one.
func (e *endpoint) ackedSegs(n uint32) uint32 {
	mss := uint32(e.effMSS())
	return (n + mss - 1) / mss
}

// ccOnAck grows cwnd for the bytes an ACK delivered outside recovery
// (Linux tcp_cong_avoid): slow start below ssthresh, then the algorithm's
// congestion avoidance, and only while cwnd is what limits the sender.
func (e *endpoint) ccOnAck(now time.Time, acked uint32) {
	if !e.isCwndLimited() {
		return
	}
	mss := uint32(e.effMSS())
	cwnd, ssthresh, n := e.segs(e.cwnd), e.segs(e.ssthresh), e.ackedSegs(acked)
	if cwnd < ssthresh {
		// tcp_slow_start: one segment per segment ACKed, up to ssthresh;
		// what is left over counts for congestion avoidance.
		grown := min(cwnd+n, ssthresh)
		n -= grown - cwnd
		cwnd = grown
		if n == 0 {
			e.setCwnd(cwnd, mss)
			return
		}
	}
	w := cwnd // tcp_reno_cong_avoid: one segment per window
	if e.s.opts.CongestionControl == CongestionCubic {
		e.cubic.update(now, cwnd, n)
		w = e.cubic.cnt
	}
	// tcp_cong_avoid_ai
	if e.cwndCnt >= w {
		e.cwndCnt = 0
		cwnd++
	}
	e.cwndCnt += n
	if e.cwndCnt >= w {
		d := e.cwndCnt / w
		e.cwndCnt -= d * w
		cwnd += d
	}
	e.setCwnd(cwnd, mss)
}

func (e *endpoint) setCwnd(segs, mss uint32) {
	e.cwnd = min(segs*mss, uint32(e.s.opts.SendBuffer)*2)
}

// ccSsthresh is the ssthresh a loss leaves, from cwnd (Linux's ssthresh
// op): 0.7 cwnd for CUBIC, half for Reno; never under two segments.
func (e *endpoint) ccSsthresh() uint32 {
	mss := uint32(e.effMSS())
	cwnd := e.segs(e.cwnd)
	if e.s.opts.CongestionControl == CongestionReno {
		return max(cwnd/2, 2) * mss
	}
	c := &e.cubic
	c.inEpoch = false
	if cwnd < c.lastMaxCwnd {
		// Fast convergence: release bandwidth to newer flows.
		c.lastMaxCwnd = cwnd * (cubicBetaScale + cubicBeta) / (2 * cubicBetaScale)
	} else {
		c.lastMaxCwnd = cwnd
	}
	return max(cwnd*cubicBeta/cubicBetaScale, 2) * mss
}

// ccOnRTO is CUBIC's TCP_CA_Loss state change: it starts over.
func (e *endpoint) ccOnRTO() { e.cubic = cubic{delayMin: e.cubic.delayMin} }

// ccRTTSample feeds CUBIC's minimum delay (cubictcp_acked), except right
// after a loss.
func (e *endpoint) ccRTTSample(now time.Time, r time.Duration) {
	c := &e.cubic
	if c.inEpoch && jiffies(now)-c.epochStart < hz {
		return
	}
	if c.delayMin == 0 || r < c.delayMin {
		c.delayMin = max(r, time.Microsecond)
	}
}

// update is bictcp_update: the segments ACKed per one of cwnd growth, from
// the cubic curve through W_max and the Reno-friendly window.
func (c *cubic) update(now time.Time, cwnd, acked uint32) {
	c.ackCnt += acked
	j := jiffies(now)
	if c.lastCwnd == cwnd && j-c.lastTime <= hz/32 {
		return
	}
	// The curve is recomputed at most once per jiffy.
	if !(c.inEpoch && j == c.lastTime) {
		c.lastCwnd, c.lastTime = cwnd, j
		if !c.inEpoch {
			c.inEpoch, c.epochStart = true, j
			c.ackCnt = acked
			c.tcpCwnd = cwnd
			if c.lastMaxCwnd <= cwnd {
				c.k, c.origin = 0, cwnd
			} else {
				c.k = cubicRoot(cubicFactor * uint64(c.lastMaxCwnd-cwnd))
				c.origin = c.lastMaxCwnd
			}
		}
		t := uint64(j-c.epochStart) + uint64((c.delayMin+jiffy-1)/jiffy)
		t = t << cubicHZ / uint64(hz)
		var offs uint64
		if t < uint64(c.k) {
			offs = uint64(c.k) - t
		} else {
			offs = t - uint64(c.k)
		}
		delta := uint32(cubicRTTScale * offs * offs * offs >> (10 + 3*cubicHZ))
		target := c.origin + delta
		if t < uint64(c.k) {
			target = c.origin - delta
		}
		if target > cwnd {
			c.cnt = cwnd / (target - cwnd)
		} else {
			c.cnt = 100 * cwnd // very small increment
		}
		if c.lastMaxCwnd == 0 && c.cnt > 20 {
			c.cnt = 20 // no loss yet: 5% per RTT
		}
	}
	// TCP friendliness: never slower than Reno would be.
	delta := cwnd * cubicFriendScale >> 3
	for delta > 0 && c.ackCnt > delta {
		c.ackCnt -= delta
		c.tcpCwnd++
	}
	if c.tcpCwnd > cwnd {
		if maxCnt := cwnd / (c.tcpCwnd - cwnd); c.cnt > maxCnt {
			c.cnt = maxCnt
		}
	}
	c.cnt = max(c.cnt, 2) // at most 1.5x per RTT
}

// cubicRoot is tcp_cubic.c's cubic_root: a table for the leading bits,
// then one Newton-Raphson step (0.195% average error). The same integer
// steps give the same K, and so the same windows, as Linux.
func cubicRoot(a uint64) uint32 {
	b := uint32(bits.Len64(a))
	if b < 7 {
		return (uint32(cbrtTable[a]) + 35) >> 6
	}
	b = (b*84)>>8 - 1
	shift := a >> (b * 3)
	x := (uint32(cbrtTable[shift]) + 10) << b >> 6
	x = 2*x + uint32(a/(uint64(x)*uint64(x-1)))
	return x * 341 >> 10
}

// cbrtTable[x] = cbrt(x << 18) - 1, as Linux's table (refined by hand there).
var cbrtTable = [64]uint8{
	0, 54, 54, 54, 118, 118, 118, 118,
	123, 129, 134, 138, 143, 147, 151, 156,
	157, 161, 164, 168, 170, 173, 176, 179,
	181, 185, 187, 190, 192, 194, 197, 199,
	200, 202, 204, 206, 209, 211, 213, 215,
	217, 219, 221, 222, 224, 225, 227, 229,
	231, 232, 234, 236, 237, 239, 240, 242,
	244, 245, 246, 248, 250, 251, 252, 254,
}

// noteCwndUsage is tcp_cwnd_validate, after a transmit: whether the
// congestion window limited this flight, kept for the window in flight.
func (e *endpoint) noteCwndUsage(limited bool) {
	if !e.sndUna.lt(e.cwndUsageSeq) || limited || (!e.cwndLimited && e.flight() > e.maxFlight) {
		e.cwndLimited = limited
		e.maxFlight = e.flight()
		e.cwndUsageSeq = e.sndNxt
	}
}

// isCwndLimited is tcp_is_cwnd_limited: cwnd grows only when it is what
// limits the sender (RFC 7661), or in slow start up to twice the most that
// was in flight.
func (e *endpoint) isCwndLimited() bool {
	if e.cwndLimited {
		return true
	}
	if e.cwnd < e.ssthresh {
		return e.cwnd < 2*e.maxFlight
	}
	return false
}
