package stack

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"ustack/stack/header"
)

// newGSOHarness is newHarness over a link with offload.
func newGSOHarness(t *testing.T) (*harness, *MemLink) {
	t.Helper()
	h := newHarness(t)
	h.s.Close()
	link := NewMemLink(1500)
	link.EnableOffload()
	s, err := New(link, h.s.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h.s, h.link = s, link
	return h, link
}

// With TSO the initial window (IW10) leaves as one packet of ten segments.
func TestGSOInitialWindowOnePacket(t *testing.T) {
	h, gl := newGSOHarness(t)
	c := h.handshake(h.listen(8))
	c.Write(make([]byte, 20*1460))
	for i := range 10 {
		h.expect(seg{flags: flagACK, seq: 1 + uint32(i*1460), ack: 1, n: 1460})
	}
	h.expectNone()
	if w := gl.GSOWrites(); len(w) != 1 || w[0] != 10*1460 {
		t.Fatalf("GSO writes %v, want one of 14600 bytes", w)
	}
	if out, gso := h.s.Counter("tcp.out"), h.s.Counter("tcp.out.gso_packets"); out != 11 || gso != 1 {
		t.Fatalf("tcp.out %d, tcp.out.gso_packets %d; want 11 (SYN|ACK and 10 segments) and 1", out, gso)
	}
	// An ACK for all ten opens cwnd: the next packet carries the rest.
	h.send(seg{flags: flagACK, seq: 1, ack: 1 + 10*1460})
	for i := 10; i < 20; i++ {
		want := seg{flags: flagACK, seq: 1 + uint32(i*1460), ack: 1, n: 1460}
		if i == 19 {
			want.flags |= flagPSH // the last segment of the write
		}
		h.expect(want)
	}
	h.expectNone()
	if len(gl.GSOWrites()) != 2 {
		t.Fatalf("GSO writes %v, want 2", gl.GSOWrites())
	}
}

// The short tail of a write rides in the TSO packet when Nagle lets it go:
// with TCP_NODELAY, or, in Linux's (Minshall's) form of Nagle, when no short
// segment is in flight (tcp_mss_split_point). The next short write then
// waits for the ACK of that tail, unless TCP_NODELAY is set.
func TestGSOTailAndNagle(t *testing.T) {
	for _, nodelay := range []bool{false, true} {
		h, gl := newGSOHarness(t)
		c := h.handshake(h.listen(8))
		c.SetNoDelay(nodelay)
		c.Write(make([]byte, 3*1460+100))
		for i := range 3 {
			h.expect(seg{flags: flagACK, seq: 1 + uint32(i*1460), ack: 1, n: 1460})
		}
		h.expect(seg{flags: flagACK | flagPSH, seq: 1 + 3*1460, ack: 1, n: 100})
		h.expectNone()
		if len(gl.GSOWrites()) != 1 || gl.GSOWrites()[0] != 3*1460+100 {
			t.Fatalf("nodelay %v: GSO writes %v, want one of %d", nodelay, gl.GSOWrites(), 3*1460+100)
		}
		c.Write(make([]byte, 50))
		if !nodelay {
			h.expectNone() // Nagle: a short segment (the tail) is in flight
			h.send(seg{flags: flagACK, seq: 1, ack: 1 + 3*1460 + 100})
		}
		h.expect(seg{flags: flagACK | flagPSH, seq: 1 + 3*1460 + 100, ack: 1, n: 50})
		h.expectNone()
	}
}

// A FIN queued behind the data goes on the last segment.
func TestGSOWithFIN(t *testing.T) {
	h, gl := newGSOHarness(t)
	c := h.handshake(h.listen(8))
	c.SetNoDelay(false)
	c.Write([]byte("x")) // a short segment in flight: Nagle holds the next tail
	h.expect(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, n: 1})
	c.Write(make([]byte, 2*1460+7))
	h.expect(seg{flags: flagACK, seq: 2, ack: 1, n: 1460})
	h.expect(seg{flags: flagACK, seq: 2 + 1460, ack: 1, n: 1460})
	h.expectNone()
	c.CloseWrite()
	h.expect(seg{flags: flagACK | flagPSH | flagFIN, seq: 2 + 2*1460, ack: 1, n: 7})
	h.expectNone()
	if len(gl.GSOWrites()) != 1 {
		t.Fatalf("GSO writes %v, want 1 (the tail and FIN alone are one segment)", gl.GSOWrites())
	}
}

// Retransmissions go one segment at a time (Linux retransmits an MSS at
// a time too, tcp_retransmit_skb), not as TSO packets.
func TestGSORetransmitIsOneSegment(t *testing.T) {
	h, gl := newGSOHarness(t)
	c := h.handshake(h.listen(8))
	c.Write(make([]byte, 4*1460))
	for i := range 4 {
		want := seg{flags: flagACK, seq: 1 + uint32(i*1460), ack: 1, n: 1460}
		if i == 3 {
			want.flags |= flagPSH
		}
		h.expect(want)
	}
	// The handshake's RTT sample is 0, so the RTO is the 200 ms minimum.
	h.expectAt(200*time.Millisecond, seg{flags: flagACK, seq: 1, ack: 1, n: 1460})
	h.expectNone()
	if len(gl.GSOWrites()) != 1 {
		t.Fatalf("GSO writes %v, want only the first", gl.GSOWrites())
	}
}

// Segments to our own address stay MSS-sized: loopback has no link.
func TestGSONotOnLoopback(t *testing.T) {
	h, _ := newGSOHarness(t)
	s := h.s
	l := h.listen(8)
	go func() {
		c, err := l.Accept()
		if err == nil {
			buf := make([]byte, 1<<16)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}
	}()
	// Over loopback the handshake needs no timer: the virtual clock can
	// stand still.
	c, err := s.DialTCP(context.Background(), netip.AddrPort{}, netip.AddrPortFrom(netip.AddrFrom4(stackAddr), 80))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.Write(make([]byte, 100000)); n != 100000 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if n := s.Counter("tcp.out"); n < 100000/65483 {
		t.Fatalf("tcp.out %d: nothing sent", n)
	}
	if n := s.Counter("tcp.out.gso_packets"); n != 0 {
		t.Fatalf("%d GSO packets on loopback, want 0", n)
	}
	c.Close()
}

// With the link vouching for checksums (csumOK), a segment whose checksum
// field is only the pseudo-header sum is taken; without, B03 drops it.
func TestOffloadedChecksumAccepted(t *testing.T) {
	h, _ := newGSOHarness(t)
	l := h.listen(8)
	c := h.handshake(l)
	pkt := h.build(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("hello")})
	header.SetTCPPseudoChecksum(pkt[20:], peerAddr, stackAddr)
	h.s.Inject(pkt)
	h.expectNone()
	if got := h.s.Counter("tcp.drop.checksum"); got != 1 {
		t.Fatalf("tcp.drop.checksum %d, want 1", got)
	}
	h.s.inject(pkt, true)
	h.advance(delackMin)
	h.expect(seg{flags: flagACK, seq: 1, ack: 6})
	wantRead(t, c, "hello")
}

// A 64 KB segment from the kernel's TSO is taken whole and ACKed at once:
// it is more than one full-sized segment (Linux __tcp_ack_snd_check).
func TestLargeInboundSegment(t *testing.T) {
	h, _ := newGSOHarness(t)
	c := h.handshake(h.listen(8))
	data := bytes.Repeat([]byte("0123456789abcdef"), 60000/16)
	pkt := h.build(seg{flags: flagACK, seq: 1, ack: 1, data: data})
	h.s.inject(pkt, true)
	h.expect(seg{flags: flagACK, seq: 1, ack: 1 + uint32(len(data))})
	got := make([]byte, 0, len(data))
	buf := make([]byte, 8192)
	for len(got) < len(data) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("payload differs")
	}
}
