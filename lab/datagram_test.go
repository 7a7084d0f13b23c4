package lab

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"ustack/stack/header"
)

// udpPkt is an IPv4 or IPv6 packet carrying a UDP datagram of payload
// bytes from src to dst (checksums are not the timeline's business).
func udpPkt(src, dst string, payload int) []byte {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	udp := make([]byte, 8+payload)
	binary.BigEndian.PutUint16(udp[0:2], s.Port())
	binary.BigEndian.PutUint16(udp[2:4], d.Port())
	binary.BigEndian.PutUint16(udp[4:6], uint16(len(udp)))
	return ipPkt(s.Addr(), d.Addr(), header.ProtoUDP, udp)
}

func ipPkt(src, dst netip.Addr, proto uint8, payload []byte) []byte {
	if src.Is6() {
		b := make([]byte, header.IPv6HeaderSize+len(payload))
		header.EncodeIPv6(b, header.IPv6Fields{PayloadLen: len(payload), NextHeader: proto, HopLimit: 64, Src: src.As16(), Dst: dst.As16()})
		copy(b[header.IPv6HeaderSize:], payload)
		return b
	}
	b := make([]byte, header.IPv4MinSize+len(payload))
	header.EncodeIPv4(b, header.IPv4Fields{TotalLen: len(b), TTL: 64, Protocol: proto, Src: src.As4(), Dst: dst.As4()})
	copy(b[header.IPv4MinSize:], payload)
	return b
}

// icmpPkt is an ICMP (ICMPv6 between IPv6 addresses) message of type and
// code from src to dst quoting orig.
func icmpPkt(src, dst string, typ, code uint8, orig []byte) []byte {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	msg := append([]byte{typ, code, 0, 0, 0, 0, 0, 0}, orig...)
	proto := uint8(header.ProtoICMP)
	if s.Is6() {
		proto = header.ProtoICMPv6
	}
	return ipPkt(s, d, proto, msg)
}

func TestTimelineDatagrams(t *testing.T) {
	tl := newTimeline(time.Now())
	in4 := udpPkt("10.0.0.1:40000", "10.0.0.2:9", 6)
	tl.Packet(false, in4)
	tl.Packet(true, icmpPkt("10.0.0.2", "10.0.0.1", 3, 3, in4[:28])) // RFC 792's quote: header + 8 bytes
	tl.Packet(true, icmpPkt("10.0.0.2", "10.0.0.1", 0, 0, []byte("echo reply")))
	in6 := udpPkt("[fd00::1]:40000", "[fd00::2]:9", 3)
	tl.Packet(false, in6)
	tl.Packet(true, icmpPkt("fd00::2", "fd00::1", 1, 4, in6))
	tl.Packet(false, icmpPkt("fd00::1", "ff02::1:ff00:2", 135, 0, make([]byte, 16))) // neighbour solicitation
	tl.Packet(true, icmpPkt("10.0.0.2", "10.0.0.1", 3, 3, in4[:27]))                 // quote cut inside the UDP ports
	tl.Packet(false, udpPkt("10.0.0.1:1", "10.0.0.2:2", 0)[:27])                     // truncated

	got := tl.Datagrams()
	want := []string{
		"kernel > ustack  :40000 > :9     udp 6",
		"ustack > kernel                  icmp port unreachable (udp :40000 > :9, 6)",
		"kernel > ustack  :40000 > :9     udp 3",
		"ustack > kernel                  icmp6 port unreachable (udp :40000 > :9, 3)",
	}
	if len(got) != len(want) {
		t.Fatalf("%d datagrams, want %d: %+v", len(got), len(want), got)
	}
	for i, d := range got {
		if s := FormatDatagram(d); s != want[i] {
			t.Errorf("datagram %d: %q, want %q", i, s, want[i])
		}
	}
	if got[0].Out || !got[1].Out || !got[1].Unreachable() || got[0].Unreachable() || !got[3].Unreachable() {
		t.Errorf("directions or kinds wrong: %+v", got)
	}
	if len(tl.Segments()) != 0 {
		t.Errorf("datagrams counted as segments")
	}
}
