package stack

import (
	"io"
	"testing"
	"time"

	"ustack/hashtable"
)

// fillSynQueue sends backlog+1 SYNs from ports 41000... that are never
// answered, filling the listener's SYN queue (Linux keeps backlog+1).
func (h *harness) fillSynQueue(backlog int) {
	h.t.Helper()
	port := h.port
	for i := 0; i <= backlog; i++ {
		h.port = uint16(41000 + i)
		h.send(seg{flags: flagSYN, seq: 0})
		h.known = false
		h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	}
	h.port, h.known = port, false
}

// B43: with the SYN queue full, a SYN gets a SYN|ACK whose ISN is a cookie
// and whose TSval carries the peer's window scale and SACK-permitted; no
// state is kept. The ACK that returns the cookie makes the connection, with
// the options of the SYN, and data flows.
func TestB43SynCookieWithTimestamps(t *testing.T) {
	h := newHarness(t)
	l := h.listen(2)
	h.fillSynQueue(2)
	h.send(seg{flags: flagSYN, seq: 0, opts: linuxSYNOpts(100)}) // mss 1460, sackOK, TS, wscale 7
	synack := h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1, win: 65535})
	o := tcpOptions(t, synack)
	if !o.HasMSS || o.MSS != 1460 || !o.SACKPermitted || !o.HasTS || o.TSEcr != 100 || !o.HasWScale {
		t.Fatalf("cookie SYN|ACK options %+v: want mss 1460, sackOK, TS ecr 100, wscale", o)
	}
	if got := o.TSVal & tsOptMask; got != 7|tsOptSACK {
		t.Fatalf("TSval low bits %#x, want wscale 7 | SACK (%#x)", got, 7|tsOptSACK)
	}
	h.wantState("gone") // nothing kept
	if h.s.Counter("tcp.syncookies_sent") != 1 {
		t.Fatal("cookie not counted")
	}

	h.send(seg{flags: flagACK, seq: 1, ack: 1, win: 100, opts: tsOpts(101, o.TSVal)})
	h.expectNone()
	h.wantState("ESTAB")
	c, err := l.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	h.s.mu.Lock()
	e := c.so.e
	mss, wnd, ts, sack, srtt := e.snd.mss, e.snd.wnd, e.tsOK, e.sackOK, e.snd.rtt.srtt
	h.s.mu.Unlock()
	if mss != 1460 || wnd != 100<<7 || !ts || !sack {
		t.Fatalf("cookie connection: mss %d, send window %d, ts %v, sack %v; want 1460, %d, true, true", mss, wnd, ts, sack, 100<<7)
	}
	if srtt == 0 {
		t.Fatal("no RTT sample from the cookie SYN|ACK's echoed TSval")
	}
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("hello"), opts: tsOpts(102, o.TSVal)})
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if h.s.Counter("tcp.syncookies_recv") != 1 {
		t.Fatal("valid cookie not counted")
	}
}

// B43: without timestamps there is nowhere to keep window scale and SACK:
// the cookie SYN|ACK offers only the MSS, and the MSS comes back rounded
// down to the cookie's table (1400 -> 1300).
func TestB43SynCookieWithoutTimestamps(t *testing.T) {
	h := newHarness(t)
	l := h.listen(0)
	h.fillSynQueue(0)
	opts := []byte{2, 4, 0x05, 0x78, 1, 3, 3, 7} // mss 1400, nop, wscale 7
	h.send(seg{flags: flagSYN, seq: 0, opts: opts})
	synack := h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	if o := tcpOptions(t, synack); !o.HasMSS || o.HasWScale || o.SACKPermitted || o.HasTS {
		t.Fatalf("cookie SYN|ACK options %+v: want only mss", o)
	}
	h.send(seg{flags: flagACK, seq: 1, ack: 1, win: 1000})
	h.wantState("ESTAB")
	c, err := l.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	h.s.mu.Lock()
	mss, wnd := c.so.e.snd.mss, c.so.e.snd.wnd
	h.s.mu.Unlock()
	if mss != 1300 || wnd != 1000 {
		t.Fatalf("mss %d, window %d; want 1300 (cookie table), 1000 (unscaled)", mss, wnd)
	}
}

// B43 with B04: an ACK whose cookie does not check out is answered as an
// ACK to no connection, RST seq=SEG.ACK; so is a cookie older than two
// minutes, even while the queue is still overflowing.
func TestB43BadOrOldCookieGetsRST(t *testing.T) {
	h := newHarness(t)
	h.listen(0)
	h.fillSynQueue(0)
	h.send(seg{flags: flagSYN, seq: 0})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	cookie := h.ourISN
	h.send(seg{flags: flagACK, seq: 1, ack: 1 + 1<<20}) // not our cookie
	h.expect(seg{flags: flagRST, seq: 1 + 1<<20, ack: 0})
	if h.s.Counter("tcp.syncookies_failed") != 1 {
		t.Fatal("bad cookie not counted")
	}
	// Three minutes on, with the queue overflowing again, the old cookie
	// is refused for its age.
	h.advance(3 * time.Minute)
	h.link.Outbound() // the first filler's SYN|ACK retransmissions
	h.wantState("gone")
	h.fillSynQueue(0)
	h.port = 40099
	h.send(seg{flags: flagSYN, seq: 0})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	if h.s.Counter("tcp.syncookies_sent") != 2 {
		t.Fatal("the queue did not overflow again")
	}
	h.port, h.ourISN = 40000, cookie
	h.send(seg{flags: flagACK, seq: 1, ack: 1})
	h.expect(seg{flags: flagRST, seq: 1, ack: 0})
	h.wantState("gone")
}

// B43 and B11: a valid cookie whose ACK finds the accept queue full is
// dropped, nothing sent; the same ACK again once there is room succeeds.
func TestB43CookieACKWithAcceptQueueFull(t *testing.T) {
	h := newHarness(t)
	l := h.listen(0)
	h.send(seg{flags: flagSYN, seq: 0})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	first := h.ourISN
	h.port, h.known = 40001, false
	h.send(seg{flags: flagSYN, seq: 0}) // the SYN queue (1) is full: a cookie
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	cookie := h.ourISN
	h.port, h.ourISN = 40000, first
	h.send(seg{flags: flagACK, seq: 1, ack: 1}) // the accept queue (1) is now full
	h.wantState("ESTAB")

	h.port, h.ourISN = 40001, cookie
	h.send(seg{flags: flagACK, seq: 1, ack: 1})
	h.expectNone()
	h.wantState("gone")
	if h.s.Counter("tcp.listen_drops") != 1 {
		t.Fatal("dropped cookie ACK not counted as a listen drop")
	}
	if _, err := l.AcceptTCP(); err != nil {
		t.Fatal(err)
	}
	h.send(seg{flags: flagACK, seq: 1, ack: 1})
	h.expectNone()
	h.wantState("ESTAB")
}

// tcp_syncookies=2 answers every SYN with a cookie; 0 drops SYNs once the
// SYN queue is full, as Linux does without cookies.
func TestB43SynCookieModes(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.SynCookies = SynCookiesAlways })
	l := h.listen(5)
	h.send(seg{flags: flagSYN, seq: 0})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.wantState("gone")
	h.send(seg{flags: flagACK, seq: 1, ack: 1})
	h.wantState("ESTAB")
	if _, err := l.AcceptTCP(); err != nil {
		t.Fatal(err)
	}

	h = newHarness(t, func(o *Options) { o.SynCookies = SynCookiesOff })
	h.listen(0)
	h.fillSynQueue(0)
	h.send(seg{flags: flagSYN, seq: 0})
	h.expectNone()
	if h.s.Counter("tcp.syn_queue_drops") != 1 || h.s.Counter("tcp.syncookies_sent") != 0 {
		t.Fatal("full SYN queue without cookies: want one syn_queue_drop, no cookie")
	}
}

// The cookie arithmetic: the MSS index survives the round trip, and any
// other ISN, sequence number or 4-tuple fails.
func TestCookieRoundTrip(t *testing.T) {
	h := newHarness(t)
	id := hashtable.FourTuple{LocalAddr: hashtable.AddrFrom4(stackAddr), LocalPort: 80, RemoteAddr: hashtable.AddrFrom4(peerAddr), RemotePort: 40000}
	now := h.clock.Now()
	for idx := uint32(0); idx < uint32(len(cookieMSS)); idx++ {
		c := h.s.makeCookie(now, id, 12345, idx)
		if got, ok := h.s.checkCookie(now.Add(time.Minute), id, 12345, c); !ok || got != int(idx) {
			t.Fatalf("index %d: check a minute later gave %d, %v", idx, got, ok)
		}
		if _, ok := h.s.checkCookie(now, id, 12345, c+1<<20); ok {
			t.Fatalf("index %d: a changed cookie accepted", idx)
		}
		if _, ok := h.s.checkCookie(now, id, 12345+1<<20, c); ok {
			t.Fatalf("index %d: another peer ISN accepted", idx)
		}
		other := id
		other.RemotePort++
		if _, ok := h.s.checkCookie(now, other, 12345, c); ok {
			t.Fatalf("index %d: another 4-tuple accepted", idx)
		}
		if _, ok := h.s.checkCookie(now.Add(3*time.Minute), id, 12345, c); ok {
			t.Fatalf("index %d: a cookie three minutes old accepted", idx)
		}
	}
}
