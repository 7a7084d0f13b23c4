package stack

import (
	"net/netip"
	"testing"

	"ustack/stack/header"
)

// B01: SYN to a port nobody listens on: RST|ACK seq 0 ack SEG.SEQ+1.
func TestB01SynToClosedPort(t *testing.T) {
	h := newHarness(t)
	h.send(seg{flags: flagSYN, seq: 0, opts: linuxSYNOpts(1)})
	h.expect(seg{flags: flagRST | flagACK, seq: 0, ack: peerISN + 1, raw: true, win: zeroWin})
	h.expectNone()
	if got := h.s.Counter("tcp.no_socket"); got != 1 {
		t.Fatalf("tcp.no_socket = %d, want 1", got)
	}
}

// B02: a bound, not listening, socket is not in the listener table.
func TestB02SynToBoundPort(t *testing.T) {
	h := newHarness(t)
	b, err := h.s.Bind(netip.AddrPortFrom(netip.AddrFrom4(stackAddr), 80))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	h.send(seg{flags: flagSYN, seq: 0})
	h.expect(seg{flags: flagRST | flagACK, seq: 0, ack: peerISN + 1, raw: true})
	if st := h.s.Sockets(); len(st) != 1 || st[0].State != "UNCONN" {
		t.Fatalf("sockets = %+v, want one UNCONN", st)
	}
}

// B03: a bad TCP checksum is dropped silently and counted; so is a bad
// IPv4 header checksum.
func TestB03BadChecksumsDropped(t *testing.T) {
	h := newHarness(t)
	h.listen(5)
	pkt := h.build(seg{flags: flagSYN, seq: 0})
	pkt[len(pkt)-1] ^= 0xff // inside the TCP header: checksum now wrong
	h.s.Inject(pkt)
	h.expectNone()
	if got := h.s.Counter("tcp.drop.checksum"); got != 1 {
		t.Fatalf("tcp.drop.checksum = %d, want 1", got)
	}
	pkt = h.build(seg{flags: flagSYN, seq: 0})
	pkt[10] ^= 0x01 // IPv4 header checksum
	h.s.Inject(pkt)
	h.expectNone()
	if got := h.s.Counter("ip.drop.checksum"); got != 1 {
		t.Fatalf("ip.drop.checksum = %d, want 1", got)
	}
	if st := h.s.Sockets(); len(st) != 1 {
		t.Fatalf("a dropped SYN changed state: %+v", st)
	}
}

// B04: a segment with ACK to no socket: RST seq=SEG.ACK, no ACK flag.
func TestB04AckToNoSocket(t *testing.T) {
	h := newHarness(t)
	h.send(seg{flags: flagACK, seq: 5, ack: 123456, raw: true})
	h.expect(seg{flags: flagRST, seq: 123456, ack: 0, raw: true})
	// Data without ACK, to no socket: RST|ACK acking it (RFC 9293 3.10.7.1).
	h.send(seg{flags: flagPSH, seq: 7, n: 10, raw: true})
	h.expect(seg{flags: flagRST | flagACK, seq: 0, ack: 17, raw: true})
}

// B05: never answer a RST.
func TestB05NoRSTForRST(t *testing.T) {
	h := newHarness(t)
	h.send(seg{flags: flagRST, seq: 5, raw: true})
	h.send(seg{flags: flagRST | flagACK, seq: 5, ack: 9, raw: true})
	h.expectNone()
}

// B04 for a listener: an ACK that matches no half-open connection.
func TestListenerAnswersStrayACKWithRST(t *testing.T) {
	h := newHarness(t)
	h.listen(5)
	h.send(seg{flags: flagACK, seq: 1, ack: 777, raw: true})
	h.expect(seg{flags: flagRST, seq: 777, raw: true})
}

// icmpPacket wraps an ICMP message from the peer in IPv4, filling in its
// checksum.
func icmpPacket(msg []byte) []byte {
	cs := header.Checksum(msg, 0)
	msg[2], msg[3] = byte(cs>>8), byte(cs)
	pkt := make([]byte, 20+len(msg))
	copy(pkt[20:], msg)
	header.EncodeIPv4(pkt, header.IPv4Fields{TotalLen: len(pkt), TTL: 64, Protocol: header.ProtoICMP, Src: peerAddr, Dst: stackAddr})
	return pkt
}

// B50: ping is answered.
func TestB50EchoReply(t *testing.T) {
	h := newHarness(t)
	h.s.Inject(icmpPacket([]byte{8, 0, 0, 0, 0x12, 0x34, 0, 1, 'p', 'i', 'n', 'g'}))
	out := h.link.Outbound()
	if len(out) != 1 {
		t.Fatalf("got %d packets, want one echo reply", len(out))
	}
	ip := header.IPv4(out[0])
	if err := ip.Validate(); err != nil || ip.Dst() != peerAddr || ip.Protocol() != header.ProtoICMP {
		t.Fatalf("bad reply %x (%v)", out[0], err)
	}
	rep := header.ICMPv4(ip.Payload())
	if rep.Type() != header.ICMPEchoReply || !header.ICMPChecksumValid(rep) || string(rep[8:]) != "ping" || rep.EchoID() != 0x1234 {
		t.Fatalf("bad echo reply %x", []byte(rep))
	}
}

// An ICMP error that quotes no TCP segment of ours (here a "fragmentation
// needed" with an empty quote) gets no answer and is counted as ignored.
func TestICMPOtherTypesCounted(t *testing.T) {
	h := newHarness(t)
	msg := make([]byte, 8+28)
	msg[0], msg[1] = 3, 4 // destination unreachable, fragmentation needed
	h.s.Inject(icmpPacket(msg))
	h.expectNone()
	if h.s.Counter("icmp.drop.ignored") != 1 {
		t.Fatal("not counted")
	}
}

// B51: malformed packets are counted and dropped; nothing is sent.
func TestB51MalformedDropped(t *testing.T) {
	h := newHarness(t)
	h.listen(5)
	good := h.build(seg{flags: flagSYN, seq: 0})
	cases := map[string][]byte{
		"empty":          {},
		"short ip":       good[:10],
		"ip version 6":   append([]byte{0x65}, good[1:]...),
		"total too long": func() []byte { b := append([]byte(nil), good...); b[3] = 0xff; return b }(),
		"short tcp":      func() []byte { b := append([]byte(nil), good[:30]...); b[3] = 30; fixIPChecksum(b); return b }(),
		"data offset 15": func() []byte { b := append([]byte(nil), good...); b[32] = 0xf0; return b }(),
		"fragment":       func() []byte { b := append([]byte(nil), good...); b[6] = 0x20; fixIPChecksum(b); return b }(),
	}
	for name, pkt := range cases {
		h.s.Inject(pkt)
		if out := h.link.Outbound(); len(out) != 0 {
			t.Errorf("%s: stack answered %d packets", name, len(out))
		}
	}
	if n := h.s.Counter("ip.drop.malformed") + h.s.Counter("ip6.drop.malformed") + h.s.Counter("ip6.drop.no_ipv6_address") + h.s.Counter("tcp.drop.malformed") + h.s.Counter("ip.drop.fragment") + h.s.Counter("tcp.drop.checksum"); n != uint64(len(cases)) {
		t.Fatalf("counted %d drops, want %d", n, len(cases))
	}
}

func fixIPChecksum(b []byte) {
	b[10], b[11] = 0, 0
	cs := header.Checksum(b[:20], 0)
	b[10], b[11] = byte(cs>>8), byte(cs)
}
