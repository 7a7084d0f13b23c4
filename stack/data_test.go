package stack

import (
	"io"
	"syscall"
	"testing"
	"time"

	"ustack/stack/header"
)

// B20: out-of-order data is held and ACKed at once (duplicate ACK); when
// the hole fills, everything is delivered in order and ACKed at once.
func TestB20OutOfOrderReassembly(t *testing.T) {
	h, c := established(t)
	h.send(seg{flags: flagACK, seq: 4, ack: 1, data: []byte("def")})
	h.expect(seg{flags: flagACK, seq: 1, ack: 1})
	h.send(seg{flags: flagACK, seq: 1, ack: 1, data: []byte("abc")})
	h.expect(seg{flags: flagACK, seq: 1, ack: 7})
	wantRead(t, c, "abcdef")
}

// B20: a duplicate of data already received is ACKed at once and not
// delivered twice.
func TestB20DuplicateData(t *testing.T) {
	h, c := established(t)
	h.send(seg{flags: flagACK, seq: 1, ack: 1, data: []byte("abc")})
	h.expect(seg{flags: flagACK, seq: 1, ack: 4})
	h.send(seg{flags: flagACK, seq: 1, ack: 1, data: []byte("abc")})
	h.expect(seg{flags: flagACK, seq: 1, ack: 4})
	h.send(seg{flags: flagACK, seq: 2, ack: 1, data: []byte("bcdE")})
	h.expect(seg{flags: flagACK, seq: 1, ack: 6})
	wantRead(t, c, "abcdE")
}

// B20: retransmission timeout: initial RTO 1 s, doubling (RFC 6298), the
// data resent from SND.UNA; ETIMEDOUT after tcp_retries2.
func TestB20RetransmissionBackoff(t *testing.T) {
	h, c := established(t, func(o *Options) { o.Retries2 = 4 }) // an instant handshake: RTO is the 200 ms minimum
	c.Write([]byte("data"))
	h.expect(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("data")})
	// Doubling from 200 ms: 0.2, 0.6, 1.4, 3.0, 6.2 s. tcp_retries2=4
	// allows (2<<4 - 1) * 200 ms = 6.2 s, counted from the first
	// retransmission (retrans_stamp): at 6.2 s only 6.0 s have passed, so
	// the segment goes a fifth time, and the timer after it gives up.
	for _, at := range []time.Duration{200, 600, 1400, 3000, 6200} {
		h.expectAt(at*time.Millisecond, seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("data")})
	}
	h.advance(12600*time.Millisecond - h.now() - time.Millisecond)
	h.wantState("ESTAB")
	h.advance(2 * time.Millisecond)
	h.expectNone()
	h.wantState("gone")
	wantReadErr(t, c, syscall.ETIMEDOUT)
}

// B20: three duplicate ACKs trigger fast retransmit of the first
// unacknowledged segment, before any timeout.
func TestB20FastRetransmit(t *testing.T) {
	h, c := established(t)
	const mss = 1460
	c.Write(make([]byte, mss*5))
	for i := 0; i < 5; i++ {
		f := flagACK
		if i == 4 {
			f |= flagPSH
		}
		h.expect(seg{flags: f, seq: uint32(1 + mss*i), ack: 1, n: mss})
	}
	h.send(seg{flags: flagACK, seq: 1, ack: 1 + mss}) // new data acked
	for i := 0; i < 2; i++ {
		h.send(seg{flags: flagACK, seq: 1, ack: 1 + mss})
		h.expectNone()
	}
	h.send(seg{flags: flagACK, seq: 1, ack: 1 + mss}) // the third duplicate
	h.expect(seg{flags: flagACK, seq: 1 + mss, ack: 1, n: mss})
	h.expectNone()
	if h.s.Counter("tcp.fast_retrans") != 1 {
		t.Fatal("fast retransmit not counted")
	}
	// A partial ACK retransmits the next hole (NewReno).
	h.send(seg{flags: flagACK, seq: 1, ack: 1 + 2*mss})
	h.expect(seg{flags: flagACK, seq: 1 + 2*mss, ack: 1, n: mss})
}

// B21: the advertised window never exceeds free buffer; a zero window is
// probed with backoff and the transfer resumes when it opens.
func TestB21ZeroWindowProbe(t *testing.T) {
	h, c := established(t)
	h.send(seg{flags: flagACK, seq: 1, ack: 1, win: zeroWin}) // window 0
	c.Write([]byte("x"))
	h.expectNone()
	// Persist backoff from the 200 ms RTO (an instant handshake).
	for _, at := range []time.Duration{200 * time.Millisecond, 600 * time.Millisecond, 1400 * time.Millisecond} {
		h.expectAt(at, seg{flags: flagACK, seq: 0, ack: 1}) // SND.UNA-1: Linux's probe
		h.send(seg{flags: flagACK, seq: 1, ack: 1, win: zeroWin})
	}
	if h.s.Counter("tcp.zero_window_probes") != 3 {
		t.Fatal("probes not counted")
	}
	h.send(seg{flags: flagACK, seq: 1, ack: 1, win: 1000})
	h.expect(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("x")})
}

// B21: our window shrinks as unread data fills the buffer, reaches zero,
// and an update is sent when the application reads.
func TestB21ReceiveWindowTracksBuffer(t *testing.T) {
	h, c := established(t, func(o *Options) { o.RecvBuffer = 4000; o.WindowScaling = false })
	h.send(seg{flags: flagACK, seq: 1, ack: 1, n: 1000})
	h.expect(seg{flags: flagACK, seq: 1, ack: 1001, win: 3000})
	h.send(seg{flags: flagACK, seq: 1001, ack: 1, n: 3000})
	h.expect(seg{flags: flagACK, seq: 1, ack: 4001, win: zeroWin})
	// Beyond the window: dropped, and ACKed.
	h.send(seg{flags: flagACK, seq: 4001, ack: 1, n: 10})
	h.expect(seg{flags: flagACK, seq: 1, ack: 4001, win: zeroWin})
	io.ReadFull(c, make([]byte, 4000))
	h.expect(seg{flags: flagACK, seq: 1, ack: 4001, win: 4000})
}

// B22: quick ACKs at the start, then an ACK for every second full-sized
// segment, or after the 40 ms delayed-ACK timer.
func TestB22DelayedACK(t *testing.T) {
	h, _ := established(t)
	seq := uint32(1)
	for i := 0; i < maxQuickACKs; i++ {
		h.send(seg{flags: flagACK, seq: seq, ack: 1, n: 536})
		seq += 536
		h.expect(seg{flags: flagACK, seq: 1, ack: seq})
	}
	h.send(seg{flags: flagACK, seq: seq, ack: 1, n: 536})
	seq += 536
	h.expectNone()
	h.send(seg{flags: flagACK, seq: seq, ack: 1, n: 536})
	seq += 536
	h.expect(seg{flags: flagACK, seq: 1, ack: seq})
	h.send(seg{flags: flagACK, seq: seq, ack: 1, n: 100})
	seq += 100
	h.advance(39 * time.Millisecond)
	h.expectNone()
	h.advance(time.Millisecond)
	h.expect(seg{flags: flagACK, seq: 1, ack: seq})
}

// B22: an ACK rides on outgoing data when it can.
func TestB22ACKRidesOnData(t *testing.T) {
	h, c := established(t)
	seq := uint32(1)
	for i := 0; i < maxQuickACKs; i++ {
		h.send(seg{flags: flagACK, seq: seq, ack: 1, n: 10})
		seq += 10
		h.expect(seg{flags: flagACK, seq: 1, ack: seq})
	}
	h.send(seg{flags: flagACK, seq: seq, ack: 1, n: 10})
	seq += 10
	h.expectNone()
	c.Write([]byte("reply"))
	h.expect(seg{flags: flagACK | flagPSH, seq: 1, ack: seq, data: []byte("reply")})
	h.advance(time.Second / 10)
	h.expectNone() // no delayed ACK follows: the data carried it
}

// B23: keepalive probes after the idle time, at the interval, then
// ETIMEDOUT and a RST after the probe count.
func TestB23Keepalive(t *testing.T) {
	h, c := keepaliveProbed(t, 3)               // -> the first probe at 10 s
	h.send(seg{flags: flagACK, seq: 1, ack: 1}) // answered: idle again
	h.advance(9 * time.Second)
	h.expectNone()
	h.advance(time.Second)
	for i := 0; i < 3; i++ {
		h.expect(seg{flags: flagACK, seq: 0, ack: 1})
		h.advance(2 * time.Second)
	}
	h.expect(seg{flags: flagRST | flagACK, seq: 1, ack: 1})
	wantReadErr(t, c, syscall.ETIMEDOUT)
}

// keepaliveProbed is an established connection with SO_KEEPALIVE on (idle
// 10 s, interval 2 s, the given probe count), left idle for 10 s: -> the
// first probe, ACK 0 ack 1 (one below SND.NXT).
func keepaliveProbed(t *testing.T, probes int) (*harness, *Conn) {
	t.Helper()
	h, c := established(t, func(o *Options) {
		o.KeepaliveIdle, o.KeepaliveIntvl, o.KeepaliveProbes = 10*time.Second, 2*time.Second, probes
	})
	c.SetKeepAlive(true)
	h.advance(10 * time.Second)
	h.expect(seg{flags: flagACK, seq: 0, ack: 1})
	return h, c
}

// The window offered never exceeds the receive buffer, whatever the peer's
// ISN (an uninitialised right edge once made the window 65535 << scale for
// ISNs in the upper half of sequence space).
func TestWindowNeverExceedsBuffer(t *testing.T) {
	for _, isn := range []uint32{0, 0x7fffffff, 0x80000000, 0xfffffff0} {
		h := newHarness(t, func(o *Options) { o.RecvBuffer = 1 << 20 })
		h.listen(5)
		syn := seg{flags: flagSYN, seq: isn - peerISN, opts: linuxSYNOpts(1)}
		h.send(syn)
		synack := h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: isn - peerISN + 1})
		if synack.Window() != 65535 {
			t.Fatalf("isn %#x: SYN|ACK window %d", isn, synack.Window())
		}
		h.send(seg{flags: flagACK, seq: isn - peerISN + 1, ack: 1, n: 1000, opts: tsOpts(2, 0)})
		ack := h.expect(seg{flags: flagACK, seq: 1, ack: isn - peerISN + 1001})
		if got := int(ack.Window()) << rcvWscaleFor(1<<20); got > 1<<20 {
			t.Fatalf("isn %#x: window %d bytes exceeds the 1 MiB buffer", isn, got)
		}
	}
}

// B21: a window that cannot shrink is rounded up to the scale unit, and the
// peer may fill it to that rounded edge: the bytes up to the edge the last
// ACK offered are all taken. (They were once dropped when a segment started
// past our unrounded edge, and the peer's ACKs, sent from beyond our edge,
// ignored: a stall.)
func TestB21RoundedWindowEdgeIsHonoured(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.RecvBuffer = 1 << 20 })
	h.listen(5)
	h.send(seg{flags: flagSYN, seq: 0, opts: linuxSYNOpts(1)})
	synack := h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	edge := 1 + uint32(synack.Window())
	h.send(seg{flags: flagACK, seq: 1, ack: 1, opts: tsOpts(2, 0)})
	scale := rcvWscaleFor(1 << 20)
	next := uint32(1)
	for i := 0; ; i++ {
		n := min(int(edge-next), 1000)
		if n < 1000 {
			break
		}
		if i == 0 {
			n = 7 // what is left at the end is then no multiple of the scale unit
		}
		h.send(seg{flags: flagACK, seq: next, ack: 1, n: n, opts: tsOpts(3, 0)})
		next += uint32(n)
		pkts := h.link.Outbound()
		if len(pkts) == 0 {
			h.advance(200 * time.Millisecond) // the delayed ACK
			pkts = h.link.Outbound()
		}
		if len(pkts) > 0 {
			ack := header.TCP(header.IPv4(pkts[len(pkts)-1]).Payload())
			edge = next + uint32(ack.Window())<<scale
		}
		if i > 5000 {
			t.Fatal("the window never came down to less than a segment")
		}
	}
	// The rest of the window in two segments, the last one byte at the edge.
	h.send(seg{flags: flagACK, seq: next, ack: 1, n: int(edge-next) - 1, opts: tsOpts(3, 0)})
	h.send(seg{flags: flagACK, seq: edge - 1, ack: 1, n: 1, opts: tsOpts(3, 0)})
	h.advance(200 * time.Millisecond)
	pkts := h.link.Outbound()
	if len(pkts) == 0 {
		t.Fatal("no ACK for the data up to the edge")
	}
	if got := header.TCP(header.IPv4(pkts[len(pkts)-1]).Payload()).Ack() - peerISN; got != edge {
		t.Fatalf("ACK %d, want %d: bytes inside the offered window were dropped", got, edge)
	}
}

// B21: probes into a zero window that nobody answers end the connection
// after tcp_retries2 of them (Linux tcp_probe_timer): ETIMEDOUT, no RST.
func TestB21UnansweredProbesGiveUp(t *testing.T) {
	h, c := established(t, func(o *Options) { o.Retries2 = 3 })
	h.send(seg{flags: flagACK, seq: 1, ack: 1, win: zeroWin})
	c.Write([]byte("x"))
	for _, at := range []time.Duration{200 * time.Millisecond, 600 * time.Millisecond, 1400 * time.Millisecond} {
		h.expectAt(at, seg{flags: flagACK, seq: 0, ack: 1})
	}
	h.advance(2999*time.Millisecond - h.now())
	h.wantState("ESTAB")
	h.advance(2 * time.Millisecond) // when the fourth probe would go
	h.expectNone()                  // tcp_write_err sends nothing
	h.wantState("gone")
	wantReadErr(t, c, syscall.ETIMEDOUT)
}

// B21: a peer that answers every probe, even with a zero window, keeps the
// connection open for as long as it likes (RFC 1122 4.2.2.17).
func TestB21AnsweredProbesGoOn(t *testing.T) {
	h, c := established(t, func(o *Options) { o.Retries2 = 3 })
	h.send(seg{flags: flagACK, seq: 1, ack: 1, win: zeroWin})
	c.Write([]byte("x"))
	for i := 0; i < 20; i++ {
		for k := 0; len(h.link.out) == 0 && k < 200; k++ {
			h.advance(time.Second)
		}
		h.expect(seg{flags: flagACK, seq: 0, ack: 1})
		h.send(seg{flags: flagACK, seq: 1, ack: 1, win: zeroWin})
	}
	h.wantState("ESTAB")
}

// B21: a close()d socket behind a window that stays shut gives up once its
// probe backoff reaches the maximum RTO, answers or not (Linux
// tcp_orphan_retries: an orphan must not pin its send buffer forever).
func TestB21OrphanBehindZeroWindowGivesUp(t *testing.T) {
	h, c := established(t)
	h.send(seg{flags: flagACK, seq: 1, ack: 1, win: zeroWin})
	c.Write(make([]byte, 1000))
	c.Close()
	for i := 0; i < 30 && h.state() != "gone"; i++ {
		h.advance(30 * time.Second)
		h.link.Outbound()
		h.send(seg{flags: flagACK, seq: 1, ack: 1, win: zeroWin})
	}
	if h.state() != "gone" || h.now() > 10*time.Minute {
		t.Fatalf("orphan %s after %v of zero window", h.state(), h.now())
	}
}

// B21: when the window opens after long probing, the probes' backoff goes
// (Linux tcp_ack_probe): a lost first segment is resent after the RTO, not
// after minutes.
func TestB21BackoffEndsWhenWindowOpens(t *testing.T) {
	h, c := established(t)
	h.send(seg{flags: flagACK, seq: 1, ack: 1, win: zeroWin})
	c.Write([]byte("x"))
	for i := 0; i < 8; i++ {
		h.advance(2 * time.Minute)
		h.link.Outbound()
		h.send(seg{flags: flagACK, seq: 1, ack: 1, win: zeroWin})
	}
	h.send(seg{flags: flagACK, seq: 1, ack: 1, win: 1000})
	h.expect(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("x")})
	start := h.now()
	h.expectAt(start+200*time.Millisecond, seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("x")})
}

// B20: a timeout sets ssthresh from cwnd, 0.7 of it with CUBIC and half
// with Reno, and a second timeout for the same data leaves it where the
// first put it (RFC 5681 3.1, Linux tcp_enter_loss).
func TestB20SsthreshOnRepeatedRTO(t *testing.T) {
	for _, cc := range []CongestionControl{CongestionCubic, CongestionReno} {
		t.Run(cc.String(), func(t *testing.T) { testSsthreshOnRepeatedRTO(t, cc) })
	}
}

func testSsthreshOnRepeatedRTO(t *testing.T, cc CongestionControl) {
	h, c := established(t, func(o *Options) { o.CongestionControl = cc })
	c.Write(make([]byte, 10*smss))
	for i := 0; i < 10; i++ {
		h.out()
	}
	ssthresh := func() uint32 {
		h.s.mu.Lock()
		defer h.s.mu.Unlock()
		return c.so.e.snd.ssthresh
	}
	h.expectAt(200*time.Millisecond, seg{flags: flagACK, seq: 1, ack: 1, n: smss})
	first := ssthresh()
	want := uint32(7 * smss) // 10 * 717/1024 segments (tcp_cubic)
	if cc == CongestionReno {
		want = 5 * smss
	}
	if first != want {
		t.Fatalf("ssthresh after the first RTO %d, want %d", first, want)
	}
	h.expectAt(600*time.Millisecond, seg{flags: flagACK, seq: 1, ack: 1, n: smss})
	if got := ssthresh(); got != first {
		t.Fatalf("ssthresh cut again by the second RTO: %d -> %d", first, got)
	}
}

// RFC 6582 4.2: after a timeout, duplicate ACKs for what the RTO resends
// do not start a fast retransmit.
func TestB20NoFastRetransmitAfterRTO(t *testing.T) {
	h, c := established(t)
	c.Write(make([]byte, 4*smss))
	for i := 0; i < 4; i++ {
		h.out()
	}
	h.expectAt(200*time.Millisecond, seg{flags: flagACK, seq: 1, ack: 1, n: smss})
	h.send(seg{flags: flagACK, seq: 1, ack: 1461})
	h.expect(seg{flags: flagACK, seq: 1461, ack: 1, n: smss})
	h.expect(seg{flags: flagACK, seq: 2921, ack: 1, n: smss})
	for i := 0; i < 3; i++ {
		h.send(seg{flags: flagACK, seq: 1, ack: 1461})
	}
	h.expectNone()
	if h.s.Counter("tcp.fast_retrans") != 0 {
		t.Fatal("fast retransmit after an RTO, for the same loss")
	}
}

// After 2^32 bytes SND.UNA equals the ISS again: that must not look like
// the ACK of our SYN and shift the send queue by a byte.
func TestSequenceWrapAtISS(t *testing.T) {
	h, c := established(t)
	data := make([]byte, 3*smss)
	for i := range data {
		data[i] = byte(i % 251)
	}
	c.Write(data)
	for i := 0; i < 3; i++ {
		h.out()
	}
	// Make the ISS congruent to relative sequence number 1461, as it is
	// after the connection has moved 2^32 bytes.
	h.s.mu.Lock()
	c.so.e.snd.iss = seqnum(h.ourISN + 1461)
	h.s.mu.Unlock()
	h.send(seg{flags: flagACK, seq: 1, ack: 1461}) // SND.UNA == ISS now
	h.send(seg{flags: flagACK, seq: 1, ack: 2921}) // and past it
	h.expectAt(h.now()+200*time.Millisecond, seg{flags: flagACK | flagPSH, seq: 2921, ack: 1, data: data[2920:]})
}

// A segment with none of ACK, RST and SYN is dropped unanswered in a
// synchronized state (Linux SKB_DROP_REASON_TCP_FLAGS), and counted.
func TestSegmentWithoutACKFlagDropped(t *testing.T) {
	h, c := established(t)
	h.send(seg{flags: flagPSH, seq: 1, data: []byte("hi")})
	h.expectNone()
	if h.s.Counter("tcp.drop.no_ack_flag") != 1 {
		t.Fatal("not counted")
	}
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("ok")})
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("read %q, %v: want the acked data only", buf, err)
	}
}

// RFC 6298 2 and 5: the estimator and the timer, step by step. A 100 ms
// handshake gives SRTT 100 ms, RTTVAR 50 ms, RTO = SRTT + max(4 RTTVAR,
// 200 ms) = 300 ms; a 50 ms sample then gives 93.75 ms, 50 ms, 293.75 ms.
// Karn's rule: the ACK of a retransmitted segment is no sample. The backoff
// doubles up to 120 s and stays there.
func TestRFC6298Estimator(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Retries2 = 30 })
	l := h.listen(5)
	h.send(seg{flags: flagSYN, seq: 0, opts: []byte{2, 4, 0x05, 0xb4}})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.advance(100 * time.Millisecond)
	h.send(seg{flags: flagACK, seq: 1, ack: 1})
	c, err := l.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	rto := func() time.Duration {
		h.s.mu.Lock()
		defer h.s.mu.Unlock()
		return c.so.e.snd.rtt.rto
	}
	if got := rto(); got != 300*time.Millisecond {
		t.Fatalf("RTO after a 100 ms handshake %v, want 300ms", got)
	}
	c.Write([]byte("a"))
	h.expect(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("a")})
	h.advance(50 * time.Millisecond)
	h.send(seg{flags: flagACK, seq: 1, ack: 2})
	if got := rto(); got != 293750*time.Microsecond {
		t.Fatalf("RTO after a 50 ms sample %v, want 293.75ms", got)
	}

	// The timer: "b" is resent one RTO after it left.
	c.Write([]byte("b"))
	h.expect(seg{flags: flagACK | flagPSH, seq: 2, ack: 1, data: []byte("b")})
	sent := h.now()
	h.expectAt(sent+294*time.Millisecond, seg{flags: flagACK | flagPSH, seq: 2, ack: 1, data: []byte("b")})
	h.advance(time.Second)
	h.link.Outbound()                           // its second retransmission
	h.send(seg{flags: flagACK, seq: 1, ack: 3}) // 1.3 s after: not a sample
	if got := rto(); got != 293750*time.Microsecond {
		t.Fatalf("RTO %v after the ACK of a retransmission, want 293.75ms (Karn)", got)
	}

	// Backoff: 0.29, 0.59, 1.2 s... doubling to 120 s, then 120 s apart
	// (to within the 100 ms steps of this loop).
	c.Write([]byte("c"))
	h.expect(seg{flags: flagACK | flagPSH, seq: 3, ack: 1, data: []byte("c")})
	prev := h.now()
	var times []time.Duration
	for len(times) < 12 {
		h.advance(100 * time.Millisecond)
		if pkts := h.link.Outbound(); len(pkts) > 0 {
			times = append(times, h.now())
		}
	}
	want := 293750 * time.Microsecond
	for i, at := range times {
		gap := at - prev
		if gap < want-100*time.Millisecond || gap > want+100*time.Millisecond {
			t.Fatalf("retransmission %d %v after the previous one, want %v (doubling, at most 120 s)", i+1, gap, want)
		}
		prev = at
		want = min(2*want, rtoMax)
	}
	if want != rtoMax {
		t.Fatal("the backoff never reached the 120 s maximum")
	}
}
