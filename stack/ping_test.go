package stack

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"

	"ustack/stack/header"
)

// B73: a ping socket sends echo requests with its own identifier and reads
// the replies that carry it, over IPv4 and IPv6; here the stack pings
// itself, so its own echo answers.
func TestPingSocket(t *testing.T) {
	h := newHarness6(t)
	for _, c := range []struct {
		v6        bool
		to        netip.Addr
		req, resp uint8
	}{
		{false, netip.AddrFrom4(stackAddr), header.ICMPEchoRequest, header.ICMPEchoReply},
		{true, stack6, header.ICMPv6EchoRequest, header.ICMPv6EchoReply},
	} {
		so := h.s.NewPingSocket(c.v6)
		req := []byte{c.req, 0, 0, 0, 0, 0, 0, 7, 'p', 'i', 'n', 'g'} // id 0: the stack picks it
		if n, err := so.SendTo(req, netip.AddrPortFrom(c.to, 0)); n != len(req) || err != nil {
			t.Fatalf("v6 %v: sendto: %d, %v", c.v6, n, err)
		}
		id := so.LocalAddr().Port()
		buf := make([]byte, 64)
		n, from, err := so.RecvFrom(buf, 0)
		if err != nil || n != len(req) || buf[0] != c.resp || binary.BigEndian.Uint16(buf[4:]) != id || binary.BigEndian.Uint16(buf[6:]) != 7 || string(buf[8:n]) != "ping" || from.Addr() != c.to {
			t.Fatalf("v6 %v: reply % x from %v, %v (id %d)", c.v6, buf[:n], from, err, id)
		}
		// A reply with another identifier is not this socket's.
		other := h.s.NewPingSocket(c.v6)
		other.SendTo(req, netip.AddrPortFrom(c.to, 0))
		if _, _, err := so.RecvFrom(buf, 0); err != syscall.EAGAIN {
			t.Fatalf("v6 %v: another socket's reply: %v", c.v6, err)
		}
		if _, err := so.SendTo([]byte{c.resp, 0, 0, 0, 0, 0, 0, 1}, netip.AddrPortFrom(c.to, 0)); err != syscall.EINVAL {
			t.Fatalf("v6 %v: sending an echo reply: %v, want EINVAL", c.v6, err)
		}
		so.Close()
		other.Close()
	}
	if _, err := h.s.NewPingSocket(false).SendTo([]byte{8, 0, 0, 0, 0, 0, 0, 1}, netip.AddrPortFrom(stack6, 0)); err != syscall.EAFNOSUPPORT {
		t.Fatalf("an ICMP socket to an IPv6 address: %v, want EAFNOSUPPORT", err)
	}
}

// To a peer, the request leaves with the socket's identifier and a valid
// checksum.
func TestPingSocketToPeer(t *testing.T) {
	h := newHarness6(t)
	so := h.s.NewPingSocket(false)
	so.SendTo([]byte{8, 0, 0xff, 0xff, 0, 0, 0, 3, 'x'}, netip.AddrPortFrom(netip.AddrFrom4(peerAddr), 0))
	out := h.link.Outbound()
	if len(out) != 1 {
		t.Fatalf("sent %d packets", len(out))
	}
	ip := header.IPv4(out[0])
	m := ip.Payload()
	if ip.Protocol() != header.ProtoICMP || m[0] != 8 || binary.BigEndian.Uint16(m[4:]) != so.LocalAddr().Port() || !header.ICMPChecksumValid(m) || ip.Dst() != peerAddr {
		t.Fatalf("request % x", out[0])
	}
}
