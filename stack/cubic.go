package stack

import (
	"math/bits"
	"time"
)

// CUBIC (RFC 9438) as Linux's tcp_cubic, the default
// (net.ipv4.tcp_congestion_control=cubic), less HyStart: after a loss the
// window follows a cubic curve through the window it had, in segments.

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

func (c *cubic) ssthresh(cwnd uint32) uint32 {
	c.inEpoch = false
	if cwnd < c.lastMaxCwnd {
		// Fast convergence: release bandwidth to newer flows.
		c.lastMaxCwnd = cwnd * (cubicBetaScale + cubicBeta) / (2 * cubicBetaScale)
	} else {
		c.lastMaxCwnd = cwnd
	}
	return cwnd * cubicBeta / cubicBetaScale
}

// onLoss is TCP_CA_Loss: start over, keeping the minimum delay.
func (c *cubic) onLoss() { *c = cubic{delayMin: c.delayMin} }

// rttSample feeds the minimum delay (cubictcp_acked), except right after a
// loss.
func (c *cubic) rttSample(now time.Time, r time.Duration) {
	if c.inEpoch && jiffies(now)-c.epochStart < hz {
		return
	}
	if c.delayMin == 0 || r < c.delayMin {
		c.delayMin = max(r, time.Microsecond)
	}
}

// avoidCount is bictcp_cong_avoid's: the curve's pace.
func (c *cubic) avoidCount(now time.Time, cwnd, acked uint32) uint32 {
	c.update(now, cwnd, acked)
	return c.cnt
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
