package stack

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"ustack/stack/header"
)

// gsoLink is a MemLink with offload: it cuts each GSO packet the way the
// kernel does (tcp_gso_segment) into the MemLink's output, so the tests
// see the segments a peer would, and it records the GSO writes.
type gsoLink struct {
	*MemLink
	t      testing.TB
	writes []int // payload bytes of each GSO write
	mss    []int
}

func (l *gsoLink) ReadOffload(b []byte) (int, bool, error) {
	n, err := l.ReadPacket(b)
	return n, true, err
}

func (l *gsoLink) GSOMaxSize() int { return 65535 }

func (l *gsoLink) WriteGSO(pkt []byte, mss int) error {
	ip := header.IPv4(pkt)
	if err := ip.Validate(); err != nil {
		l.t.Errorf("GSO packet: bad IPv4 header: %v", err)
		return nil
	}
	tcp := header.TCP(ip.Payload())
	// The checksum field holds the pseudo-header sum: summing the whole
	// segment over it must give a valid checksum, as the kernel's would.
	whole := append([]byte(nil), tcp...)
	c := header.Checksum(whole, 0)
	binary.BigEndian.PutUint16(whole[16:], c)
	if !header.TCPChecksumValid(ip.Src(), ip.Dst(), whole) {
		l.t.Errorf("GSO packet: checksum field is not the pseudo-header sum")
	}
	hl := tcp.HeaderLen()
	payload := tcp[hl:]
	l.writes = append(l.writes, len(payload))
	l.mss = append(l.mss, mss)
	for i := 0; i*mss < len(payload); i++ {
		chunk := payload[i*mss : min((i+1)*mss, len(payload))]
		last := (i+1)*mss >= len(payload)
		p := make([]byte, 20+hl+len(chunk))
		copy(p, pkt[:20])
		copy(p[20:], tcp[:hl])
		copy(p[20+hl:], chunk)
		t := header.TCP(p[20:])
		binary.BigEndian.PutUint32(t[4:], tcp.Seq()+uint32(i*mss))
		if !last {
			t[13] &^= flagPSH | flagFIN
		}
		header.SetTCPChecksum(t, ip.Src(), ip.Dst())
		header.EncodeIPv4(p, header.IPv4Fields{TotalLen: len(p), ID: ip.ID() + uint16(i), DF: true, TTL: 64,
			Protocol: header.ProtoTCP, Src: ip.Src(), Dst: ip.Dst()})
		if err := l.MemLink.WritePacket(p); err != nil {
			return err
		}
	}
	return nil
}

func newGSOHarness(t *testing.T) (*harness, *gsoLink) {
	t.Helper()
	h := newHarness(t)
	h.s.Close()
	gl := &gsoLink{MemLink: NewMemLink(1500), t: t}
	o := h.s.opts
	s, err := New(gl, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h.s, h.link = s, gl.MemLink
	return h, gl
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
	if len(gl.writes) != 1 || gl.writes[0] != 10*1460 || gl.mss[0] != 1460 {
		t.Fatalf("GSO writes %v (mss %v), want one of 14600 bytes cut at 1460", gl.writes, gl.mss)
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
	if len(gl.writes) != 2 {
		t.Fatalf("GSO writes %v, want 2", gl.writes)
	}
}

// The short tail of a write rides in the TSO packet only when Nagle would
// let it go right after the full segments: with TCP_NODELAY, not without.
func TestGSOTailAndNagle(t *testing.T) {
	for _, nodelay := range []bool{false, true} {
		h, gl := newGSOHarness(t)
		c := h.handshake(h.listen(8))
		c.SetNoDelay(nodelay)
		c.Write(make([]byte, 3*1460+100))
		for i := range 3 {
			h.expect(seg{flags: flagACK, seq: 1 + uint32(i*1460), ack: 1, n: 1460})
		}
		if nodelay {
			h.expect(seg{flags: flagACK | flagPSH, seq: 1 + 3*1460, ack: 1, n: 100})
			h.expectNone()
			if len(gl.writes) != 1 || gl.writes[0] != 3*1460+100 {
				t.Fatalf("nodelay: GSO writes %v, want one of %d", gl.writes, 3*1460+100)
			}
			continue
		}
		h.expectNone() // Nagle: the tail waits for the ACK
		if len(gl.writes) != 1 || gl.writes[0] != 3*1460 {
			t.Fatalf("Nagle: GSO writes %v, want one of %d", gl.writes, 3*1460)
		}
		h.send(seg{flags: flagACK, seq: 1, ack: 1 + 3*1460})
		h.expect(seg{flags: flagACK | flagPSH, seq: 1 + 3*1460, ack: 1, n: 100})
		h.expectNone()
	}
}

// A FIN queued behind the data goes on the last segment of the packet.
func TestGSOWithFIN(t *testing.T) {
	h, gl := newGSOHarness(t)
	c := h.handshake(h.listen(8))
	c.SetNoDelay(false) // so the tail waits for the FIN
	c.Write(make([]byte, 2*1460+7))
	h.expect(seg{flags: flagACK, seq: 1, ack: 1, n: 1460})
	h.expect(seg{flags: flagACK, seq: 1 + 1460, ack: 1, n: 1460})
	h.expectNone()
	c.CloseWrite()
	h.expect(seg{flags: flagACK | flagPSH | flagFIN, seq: 1 + 2*1460, ack: 1, n: 7})
	h.expectNone()
	if len(gl.writes) != 1 {
		t.Fatalf("GSO writes %v, want 1 (the tail and FIN alone are one segment)", gl.writes)
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
	if len(gl.writes) != 1 {
		t.Fatalf("GSO writes %v, want only the first", gl.writes)
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
	buf := make([]byte, 16)
	if n, _ := c.Read(buf); string(buf[:n]) != "hello" {
		t.Fatalf("read %q, want hello", buf[:n])
	}
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
