package stack

import (
	"math"
	"testing"
	"time"
)

// cubicRoot is Linux's table-and-one-Newton-step cube root: within 1% of
// the true root over the range CUBIC uses.
func TestCubicRoot(t *testing.T) {
	for _, a := range []uint64{1, 2, 7, 8, 63, 64, 1000, 27000, 1 << 20, cubicFactor, cubicFactor * 3, cubicFactor * 1000, 1 << 50} {
		got, want := float64(cubicRoot(a)), math.Cbrt(float64(a))
		if math.Abs(got-want) > math.Max(1, want*0.01) {
			t.Errorf("cubicRoot(%d) = %v, want %.1f", a, got, want)
		}
	}
}

// After a loss from W_max = 10 segments to 7, the cubic curve returns to
// 10 at K = cbrt(3 / C) seconds (C = 0.4, about 1.96 s): growth is fast at
// first, slow near W_max (concave), then speeds up again (convex).
func TestCubicCurve(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := cubic{lastMaxCwnd: 10}
	c.update(t0, 7, 1)
	if c.origin != 10 || c.k < 1990 || c.k > 2020 {
		t.Fatalf("origin %d, K %d/1024 s; want 10 and about 2004", c.origin, c.k)
	}
	// At the start the curve is at cwnd: Linux's integer steps put the
	// target one segment above it, so one segment per 7 ACKed.
	if c.cnt != 7 {
		t.Errorf("cnt right after the loss %d, want 7", c.cnt)
	}
	// Near K, cwnd 9 is one short of the target: one segment per 9 ACKed.
	c.update(t0.Add(1960*time.Millisecond), 9, 1)
	if c.cnt != 9 {
		t.Errorf("cnt at K with cwnd 9: %d, want 9", c.cnt)
	}
	// Past W_max, at cwnd 10 a second after K, the target is 10 + C*1^3:
	// 10.4 segments, so growth stays slow (cnt = 100 * cwnd means "flat").
	c.update(t0.Add(2960*time.Millisecond), 10, 1)
	if c.cnt != 1000 {
		t.Errorf("cnt one second past K at W_max: %d, want 1000", c.cnt)
	}
	// Three seconds past K the target is 10 + 0.4*27 = 20.8: cwnd 12
	// grows one segment per 12/8 ACKed.
	c.update(t0.Add(4960*time.Millisecond), 12, 1)
	if c.cnt != 2 {
		t.Errorf("cnt three seconds past K: %d, want 2", c.cnt)
	}
}

// The Reno-friendly window caps cnt: when Reno would be ahead, CUBIC
// grows at least as fast.
func TestCubicRenoFriendly(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := cubic{lastMaxCwnd: 100}
	c.update(t0, 99, 1)
	c.tcpCwnd = 120 // Reno would be at 120
	c.lastCwnd = 0  // force the recomputation
	c.update(t0.Add(time.Second), 100, 1)
	if c.cnt != 5 {
		t.Errorf("cnt with Reno 20 segments ahead: %d, want 100/20 = 5", c.cnt)
	}
}

// Fast retransmit with CUBIC leaves ssthresh at 0.7 cwnd (Linux
// cubictcp_recalc_ssthresh); with Reno, half.
func TestFastRetransmitSsthresh(t *testing.T) {
	for _, tc := range []struct {
		cc   CongestionControl
		want uint32
	}{{CongestionCubic, 7}, {CongestionReno, 5}} {
		h, c := established(t, func(o *Options) { o.CongestionControl = tc.cc })
		c.Write(make([]byte, 10*smss))
		for i := 0; i < 10; i++ {
			h.out()
		}
		for i := 0; i < 3; i++ {
			h.send(seg{flags: flagACK, seq: 1, ack: 1})
		}
		h.expect(seg{flags: flagACK, seq: 1, ack: 1, n: smss}) // the fast retransmit
		h.s.mu.Lock()
		got := c.so.e.snd.ssthresh / smss
		h.s.mu.Unlock()
		if got != tc.want {
			t.Errorf("%s: ssthresh %d segments, want %d", tc.cc, got, tc.want)
		}
	}
}

// Slow start grows cwnd by the segments an ACK covers, as Linux's
// tcp_slow_start (no one-SMSS cap per ACK): an ACK for two segments opens
// room for four.
func TestSlowStartCountsSegmentsAcked(t *testing.T) {
	h, c := established(t)
	c.Write(make([]byte, 20*smss))
	for i := 0; i < 10; i++ { // IW10
		h.out()
	}
	h.expectNone()
	h.send(seg{flags: flagACK, seq: 1, ack: 1 + 2*smss})
	for i := 0; i < 4; i++ {
		h.out()
	}
	h.expectNone()
}

// cwnd does not grow while the application, not cwnd, limits the sender
// (Linux tcp_is_cwnd_limited, RFC 7661).
func TestCwndDoesNotGrowWhenAppLimited(t *testing.T) {
	h, c := established(t, func(o *Options) { o.CongestionControl = CongestionReno })
	cwnd := func() uint32 {
		h.s.mu.Lock()
		defer h.s.mu.Unlock()
		return c.so.e.snd.cwnd
	}
	before := cwnd()
	for i := uint32(0); i < 20; i++ {
		c.Write([]byte("x"))
		h.out()
		h.send(seg{flags: flagACK, seq: 1, ack: 2 + i})
	}
	if got := cwnd(); got != before {
		t.Fatalf("cwnd %d after 20 one-byte round trips, want %d (unchanged)", got, before)
	}
}

// PRR (RFC 6937) in recovery: the third SACK forces the retransmission of
// the lost head; then, with pipe at ssthresh, each segment delivered lets
// one new segment out, two for a SACK that covers two (tcp_cwnd_reduction;
// RFC 6582's inflation would give one per duplicate ACK).
func TestPRROneSegmentPerDelivered(t *testing.T) {
	h := newHarness(t)
	c := sackHandshake(h)
	c.Write(make([]byte, 10*smss))
	for i := 0; i < 10; i++ {
		h.out()
	}
	// The peer holds segments 2 to upTo.
	sack := func(upTo int) {
		h.send(seg{flags: flagACK, seq: 1, ack: 1, opts: h.sackOpts([2]uint32{segAt(2), segAt(upTo + 1)})})
	}
	sack(2)
	sack(3)
	h.expectNone()
	sack(4)
	h.expect(seg{flags: flagACK, seq: 1, ack: 1, n: smss}) // the fast retransmit
	h.expectNone()
	c.Write(make([]byte, 5*smss))
	h.expectNone() // pipe is at ssthresh: nothing until something is delivered
	sack(5)
	h.expect(seg{flags: flagACK, seq: 1 + 10*smss, ack: 1, n: smss, win: 65535})
	h.expectNone()
	sack(7) // two more segments delivered: two out
	h.expect(seg{flags: flagACK, seq: 1 + 11*smss, ack: 1, n: smss, win: 65535})
	h.expect(seg{flags: flagACK, seq: 1 + 12*smss, ack: 1, n: smss, win: 65535})
	h.expectNone()
	sack(9)
	h.expect(seg{flags: flagACK, seq: 1 + 13*smss, ack: 1, n: smss, win: 65535})
	h.expect(seg{flags: flagACK | flagPSH, seq: 1 + 14*smss, ack: 1, n: smss, win: 65535})
	h.expectNone()
}
