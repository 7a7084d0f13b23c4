package stack

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"ustack/stack/header"
)

// echoTo is an ICMP echo request from the peer to dst.
func echoTo(dst [4]byte, id, seq uint16, data string) []byte {
	m := append([]byte{header.ICMPEchoRequest, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq)}, data...)
	binary.BigEndian.PutUint16(m[2:4], header.Checksum(m, 0))
	pkt := make([]byte, header.IPv4MinSize+len(m))
	header.EncodeIPv4(pkt, header.IPv4Fields{TotalLen: len(pkt), TTL: 64, Protocol: header.ProtoICMP, Src: peerAddr, Dst: dst})
	copy(pkt[header.IPv4MinSize:], m)
	return pkt
}

// wantEchoReply checks the next packet: an echo reply from `from` with id,
// seq and data, its checksum valid.
func (h *harness) wantEchoReply(from [4]byte, id, seq uint16, data string) {
	h.t.Helper()
	pkts := h.link.Outbound()
	if len(pkts) != 1 {
		h.t.Fatalf("%d packets out, want an echo reply", len(pkts))
	}
	ip := header.IPv4(pkts[0])
	m := ip.Payload()
	if ip.Src() != from || ip.Dst() != peerAddr || m[0] != header.ICMPEchoReply || binary.BigEndian.Uint16(m[4:]) != id || binary.BigEndian.Uint16(m[6:]) != seq || string(m[8:]) != data || !header.ICMPChecksumValid(m) {
		h.t.Fatalf("sent %x from %v", m, ip.Src())
	}
}

// Promiscuous without an echo forwarder: every address answers, as itself.
func TestEchoToAnyAddressAnsweredLocally(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Promiscuous = true })
	h.s.Inject(echoTo(farAddr, 9, 1, "hi"))
	h.wantEchoReply(farAddr, 9, 1, "hi")
}

// With an echo forwarder, nothing is answered until the handler says the
// destination did; the reply then comes from it. Handlers are bounded.
func TestEchoForwarded(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Promiscuous = true })
	reqs := make(chan *EchoRequest, 4)
	release := make(chan struct{})
	h.s.SetEchoForwarder(1, func(r *EchoRequest) { reqs <- r; <-release })
	h.s.Inject(echoTo(farAddr, 9, 1, "real?"))
	var r *EchoRequest
	select {
	case r = <-reqs:
	case <-time.After(5 * time.Second):
		t.Fatal("the echo forwarder was not called")
	}
	if r.Src() != netip.MustParseAddr("10.0.0.1") || r.Dst() != netip.MustParseAddr("93.184.216.34") || r.ID() != 9 || r.Seq() != 1 || string(r.Data()) != "real?" {
		t.Fatalf("request %v -> %v id %d seq %d %q", r.Src(), r.Dst(), r.ID(), r.Seq(), r.Data())
	}
	h.expectNone()
	h.s.Inject(echoTo(farAddr, 9, 2, "busy")) // the one handler is still running
	if got := h.s.Counter("icmp.forward.drop.pending_full"); got != 1 {
		t.Errorf("icmp.forward.drop.pending_full = %d, want 1", got)
	}
	r.Reply()
	h.wantEchoReply(farAddr, 9, 1, "real?")
	close(release)
	// Our own address is still answered by the stack itself.
	h.s.Inject(echoTo(stackAddr, 9, 3, "me"))
	h.wantEchoReply(stackAddr, 9, 3, "me")
}

// Over IPv6 too, an address not the stack's answers as itself, its
// checksum over that address.
func TestEchoToAnyAddressIPv6(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Addr6 = stack6; o.Promiscuous = true })
	far6 := netip.MustParseAddr("2001:db8::77")
	m := append([]byte{header.ICMPv6EchoRequest, 0, 0, 0, 0, 5, 0, 6}, "six"...)
	header.SetICMPv6Checksum(m, peer6.As16(), far6.As16())
	h.s.Inject(pkt6(far6, header.ProtoICMPv6, 64, m))
	out := h.link.Outbound()
	if len(out) != 1 {
		t.Fatalf("%d packets, want one echo reply", len(out))
	}
	ip := header.IPv6(out[0])
	r := ip.Payload()
	if ip.Src() != far6.As16() || r[0] != header.ICMPv6EchoReply || string(r[8:]) != "six" || !header.ICMPv6ChecksumValid(far6.As16(), peer6.As16(), r) {
		t.Fatalf("reply %x from %x", r, ip.Src())
	}
}
