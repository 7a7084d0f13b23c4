package stack

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"ustack/stack/header"
)

// sackOpts is nop,nop,SACK with blocks given relative to our ISN.
func (h *harness) sackOpts(blocks ...[2]uint32) []byte {
	b := []byte{1, 1, 5, byte(2 + 8*len(blocks))}
	for _, bl := range blocks {
		b = binary.BigEndian.AppendUint32(b, h.ourISN+bl[0])
		b = binary.BigEndian.AppendUint32(b, h.ourISN+bl[1])
	}
	return b
}

// sackHandshake opens a connection with SACK (and MSS 1460) negotiated,
// over a path with a 10 ms round trip (SRTT 10 ms, RTO 210 ms).
func sackHandshake(h *harness) *Conn {
	l := h.listen(5)
	h.send(seg{flags: flagSYN, seq: 0, opts: []byte{2, 4, 5, 0xb4, 1, 1, 4, 2}})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.advance(10 * time.Millisecond)
	h.send(seg{flags: flagACK, seq: 1, ack: 1})
	c, err := l.AcceptTCP()
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

const smss = 1460

// segAt is segment k (1-based) of a bulk write: its first sequence number.
func segAt(k int) uint32 { return uint32(1 + (k-1)*smss) }

// With SACK, a hole the scoreboard declares lost (RFC 6675 IsLost: three
// segments SACKed above it) is resent at once, and only the hole.
func TestSACKFastRecoveryResendsOnlyHoles(t *testing.T) {
	h := newHarness(t)
	c := sackHandshake(h)
	c.Write(make([]byte, 10*smss))
	for k := 1; k <= 10; k++ {
		f := flagACK
		if k == 10 {
			f |= flagPSH
		}
		h.expect(seg{flags: f, seq: segAt(k), ack: 1, n: smss})
	}
	// Segments 1 and 5 are lost; the peer SACKs the rest as it arrives.
	h.send(seg{flags: flagACK, seq: 1, ack: 1, opts: h.sackOpts([2]uint32{segAt(2), segAt(3)})})
	h.send(seg{flags: flagACK, seq: 1, ack: 1, opts: h.sackOpts([2]uint32{segAt(2), segAt(4)})})
	h.expectNone()
	h.send(seg{flags: flagACK, seq: 1, ack: 1, opts: h.sackOpts([2]uint32{segAt(2), segAt(5)})})
	h.expect(seg{flags: flagACK, seq: segAt(1), ack: 1, n: smss}) // the head is lost
	h.expectNone()
	h.send(seg{flags: flagACK, seq: 1, ack: 1, opts: h.sackOpts([2]uint32{segAt(6), segAt(9)}, [2]uint32{segAt(2), segAt(5)})})
	h.expect(seg{flags: flagACK, seq: segAt(5), ack: 1, n: smss}) // 3 segments SACKed above 5
	h.expectNone()
	// The retransmitted head arrives: a partial ACK up to the second hole,
	// which was already resent: nothing more to send but new data.
	h.send(seg{flags: flagACK, seq: 1, ack: segAt(5), opts: h.sackOpts([2]uint32{segAt(6), segAt(11)})})
	h.expectNone()
	h.send(seg{flags: flagACK, seq: 1, ack: segAt(11)})
	h.expectNone()
	if h.s.Counter("tcp.retrans_segs") != 2 {
		t.Fatalf("%d retransmissions, want exactly the 2 holes", h.s.Counter("tcp.retrans_segs"))
	}
}

// After an RTO, going back from SND.UNA skips what the peer SACKed.
func TestSACKRetransmissionAfterRTOSkipsSacked(t *testing.T) {
	h := newHarness(t)
	c := sackHandshake(h)
	c.Write(make([]byte, 5*smss))
	for k := 1; k <= 5; k++ {
		h.out()
	}
	// Segments 1 and 3 are lost; 2, 4 and 5 are SACKed (not enough above
	// segment 1 to call it lost before the timer: 3 segments are).
	h.send(seg{flags: flagACK, seq: 1, ack: 1, opts: h.sackOpts([2]uint32{segAt(2), segAt(3)})})
	h.expectNone()
	h.advance(210 * time.Millisecond)                             // the RTO; no probe with SACKed data out
	h.expect(seg{flags: flagACK, seq: segAt(1), ack: 1, n: smss}) // cwnd is one segment
	h.expectNone()
	h.send(seg{flags: flagACK, seq: 1, ack: segAt(3), opts: h.sackOpts([2]uint32{segAt(4), segAt(6)})})
	h.expect(seg{flags: flagACK, seq: segAt(3), ack: 1, n: smss})
	h.expectNone() // 4 and 5 are SACKed: not resent
}

// RFC 8985 TLP: with SACK and an RTT sample, a silent tail draws a probe
// (the last segment again) at 2*SRTT + 8 ms, long before the RTO; the RTO
// follows if the probe is unanswered.
func TestTailLossProbe(t *testing.T) {
	h := newHarness(t)
	c := sackHandshake(h) // SRTT 10 ms
	c.Write(make([]byte, 3*smss))
	for k := 2; k <= 4; k++ {
		h.out()
	}
	h.expectAt(h.now()+28*time.Millisecond, seg{flags: flagACK | flagPSH, seq: segAt(3), ack: 1, n: smss}) // 2*SRTT + 8 ms
	if h.s.Counter("tcp.loss_probes") != 1 {
		t.Fatal("probe not counted")
	}
	h.advance(150 * time.Millisecond)
	h.expectNone()
	h.advance(100 * time.Millisecond) // the RTO (200 ms minimum) after the probe
	h.expect(seg{flags: flagACK, seq: segAt(1), ack: 1, n: smss})
}

// RFC 2883: a duplicate segment is reported with a D-SACK block, once.
func TestDSACKForDuplicateData(t *testing.T) {
	h := newHarness(t)
	sackHandshake(h)
	h.send(seg{flags: flagACK, seq: 1, ack: 1, n: 100})
	h.expect(seg{flags: flagACK, seq: 1, ack: 101})
	h.send(seg{flags: flagACK, seq: 1, ack: 1, n: 100})                    // again
	h.expectSACK(seg{flags: flagACK, seq: 1, ack: 101}, [2]uint32{1, 101}) // D-SACK
	h.send(seg{flags: flagACK, seq: 101, ack: 1, n: 10})
	h.expectSACK(seg{flags: flagACK, seq: 1, ack: 111}) // the D-SACK is not repeated
}

// RFC 2883: an out-of-order duplicate is reported as a D-SACK first, then
// the block that holds it.
func TestDSACKForOutOfOrderDuplicate(t *testing.T) {
	h := newHarness(t)
	sackHandshake(h)
	h.send(seg{flags: flagACK, seq: 1001, ack: 1, n: 2000})
	h.expect(seg{flags: flagACK, seq: 1, ack: 1})
	h.send(seg{flags: flagACK, seq: 1001, ack: 1, n: 1000})
	// The D-SACK first, then the block that holds it.
	h.expectSACK(seg{flags: flagACK, seq: 1, ack: 1}, [2]uint32{1001, 2001}, [2]uint32{1001, 3001})
}

// A SACK block may reach our FIN's sequence number; going back after an RTO
// must still end (this once spun forever in sendData).
func TestSACKBlockCoveringFIN(t *testing.T) {
	h := newHarness(t)
	c := sackHandshake(h)
	c.Write(make([]byte, 2*smss))
	c.CloseWrite()
	h.expect(seg{flags: flagACK, seq: segAt(1), ack: 1, n: smss})
	h.expect(seg{flags: flagACK | flagPSH, seq: segAt(2), ack: 1, n: smss})
	h.expect(seg{flags: flagACK | flagFIN, seq: segAt(3), ack: 1})
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Segment 2 and the FIN are SACKed; segment 1 is lost.
		h.send(seg{flags: flagACK, seq: 1, ack: 1, opts: h.sackOpts([2]uint32{segAt(2), segAt(3) + 1})})
		h.advance(300 * time.Millisecond) // the RTO (210 ms), not yet its backoff
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the stack spins after an RTO with the FIN SACKed")
	}
	h.expect(seg{flags: flagACK, seq: segAt(1), ack: 1, n: smss}) // only the hole
	h.expectNone()                                                // not the SACKed data, not the FIN
}

// RFC 2018 4: the first SACK block is the one holding the segment that just
// arrived, then the blocks of the segments before it (Linux
// tcp_sack_new_ofo_skb), not simply the highest.
func TestSACKBlocksMostRecentFirst(t *testing.T) {
	h := newHarness(t)
	sackHandshake(h)
	var got [][2]uint32
	for _, start := range []uint32{segAt(6), segAt(4), segAt(2)} { // a hole before each
		h.send(seg{flags: flagACK, seq: start, ack: 1, n: smss})
		got = h.sackBlocks(h.expect(seg{flags: flagACK, seq: 1, ack: 1}))
	}
	want := [][2]uint32{{segAt(2), segAt(3)}, {segAt(4), segAt(5)}, {segAt(6), segAt(7)}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("SACK blocks %v, want %v (newest first)", got, want)
	}
	// Segment 5 joins the block of segment 4: that block comes first now.
	h.send(seg{flags: flagACK, seq: segAt(5), ack: 1, n: smss})
	got = h.sackBlocks(h.expect(seg{flags: flagACK, seq: 1, ack: 1}))
	want = [][2]uint32{{segAt(4), segAt(7)}, {segAt(2), segAt(3)}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("SACK blocks %v, want %v", got, want)
	}
}

// The recency order is per block: segments that land in one block count
// once, and the other blocks keep their own order (Linux keeps its
// selective_acks newest first, tcp_sack_new_ofo_skb).
func TestSACKBlocksRecencyPerBlock(t *testing.T) {
	h := newHarness(t)
	sackHandshake(h)
	var last header.TCP
	for _, k := range []int{20, 30, 25, 2, 3, 4, 5} {
		h.send(seg{flags: flagACK, seq: segAt(k), ack: 1, n: smss})
		last = h.expect(seg{flags: flagACK, seq: 1, ack: 1})
	}
	var got []int
	for _, b := range h.sackBlocks(last) {
		got = append(got, int((b[0]-1)/smss+1))
	}
	if want := "[2 25 30 20]"; fmt.Sprint(got) != want {
		t.Fatalf("SACK blocks start at segments %v, want %s (newest first)", got, want)
	}
}

// A fast retransmission echoes the TSval of the duplicate ACK that
// triggered it: TS.Recent is taken before the ACK is acted on (Linux
// tcp_ack: tcp_replace_ts_recent, then tcp_fastretrans_alert).
func TestFastRetransmitEchoesLatestTSval(t *testing.T) {
	h := newHarness(t)
	c := h.tsHandshake() // the peer's TSval is 1001
	const mss = 1448     // 1460 less the timestamp option
	c.Write(make([]byte, 6*mss))
	for k := 0; k < 6; k++ {
		h.out()
	}
	for _, ts := range []uint32{1002, 1003, 1004} {
		h.send(seg{flags: flagACK, seq: 1, ack: 1, opts: tsOpts(ts, 0)})
	}
	rtx := h.expect(seg{flags: flagACK, seq: 1, ack: 1, n: mss})
	if o := tcpOptions(t, rtx); o.TSEcr != 1004 {
		t.Fatalf("fast retransmission echoes TSval %d, want 1004 (the third duplicate ACK's)", o.TSEcr)
	}
}
