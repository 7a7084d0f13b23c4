package stack

import "time"

// Congestion control outside recovery: how cwnd grows on ACKs and what
// ssthresh a loss leaves, as Linux's tcp_cong.c does it over an algorithm
// (cubic.go, the default; reno.go). Linux counts the windows in segments;
// so does this file, over the byte-valued cwnd and ssthresh the rest of the
// stack uses (always whole segments).

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

// congestionControl is one algorithm (Linux's struct tcp_congestion_ops):
// the rate of growth in congestion avoidance and the window a loss leaves,
// in segments. Slow start, the additive increase and recovery are common
// to all (cc.go, recovery.go). A new algorithm is one file.
type congestionControl interface {
	// avoidCount is how many segments must be ACKed for cwnd to grow by
	// one in congestion avoidance; acked segments were just ACKed.
	avoidCount(now time.Time, cwnd, acked uint32) uint32
	// ssthresh is the window (segments) a loss leaves.
	ssthresh(cwnd uint32) uint32
	// onLoss is the RTO's TCP_CA_Loss: the algorithm starts over.
	onLoss()
	// rttSample feeds an RTT measurement.
	rttSample(now time.Time, rtt time.Duration)
}

// newCongestionControl returns the algorithm's per-connection state.
func newCongestionControl(c CongestionControl) congestionControl {
	if c == CongestionReno {
		return reno{}
	}
	return &cubic{}
}

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
	cwnd, ssthresh, n := e.segs(e.snd.cwnd), e.segs(e.snd.ssthresh), e.ackedSegs(acked)
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
	w := max(e.snd.cc.avoidCount(now, cwnd, n), 1)
	// tcp_cong_avoid_ai
	if e.snd.cwndCnt >= w {
		e.snd.cwndCnt = 0
		cwnd++
	}
	e.snd.cwndCnt += n
	if e.snd.cwndCnt >= w {
		d := e.snd.cwndCnt / w
		e.snd.cwndCnt -= d * w
		cwnd += d
	}
	e.setCwnd(cwnd, mss)
}

func (e *endpoint) setCwnd(segs, mss uint32) {
	e.snd.cwnd = min(segs*mss, uint32(e.s.opts.SendBuffer)*2)
}

// ccSsthresh is the ssthresh a loss leaves, from cwnd (Linux's ssthresh
// op), never under two segments.
func (e *endpoint) ccSsthresh() uint32 {
	return max(e.snd.cc.ssthresh(e.segs(e.snd.cwnd)), 2) * uint32(e.effMSS())
}

// noteCwndUsage is tcp_cwnd_validate, after a transmit: whether the
// congestion window limited this flight, kept for the window in flight.
func (e *endpoint) noteCwndUsage(limited bool) {
	if !e.snd.una.lt(e.snd.cwndUsageSeq) || limited || (!e.snd.cwndLimited && e.flight() > e.snd.maxFlight) {
		e.snd.cwndLimited = limited
		e.snd.maxFlight = e.flight()
		e.snd.cwndUsageSeq = e.snd.nxt
	}
}

// isCwndLimited is tcp_is_cwnd_limited: cwnd grows only when it is what
// limits the sender (RFC 7661), or in slow start up to twice the most that
// was in flight.
func (e *endpoint) isCwndLimited() bool {
	if e.snd.cwndLimited {
		return true
	}
	if e.snd.cwnd < e.snd.ssthresh {
		return e.snd.cwnd < 2*e.snd.maxFlight
	}
	return false
}
