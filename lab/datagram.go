package lab

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"ustack/stack/header"
)

// Datagram is a UDP datagram, or an ICMP error that quotes one, seen by
// the stack's packet observer. The timeline keeps no other ICMP: the
// kernel's neighbour discovery and the TCP experiments' pings are noise
// there.
type Datagram struct {
	T        time.Duration // since the experiment started
	Out      bool          // sent by ustack
	Src, Dst netip.AddrPort
	Len      int // UDP payload bytes

	// ICMP is set for an ICMP (or ICMPv6) error: Src and Dst are then the
	// quoted datagram's, the one the error is about, and Len its length.
	ICMP       bool
	Type, Code uint8
	From, To   netip.Addr // the error's own addresses
}

// Unreachable reports an ICMP port unreachable (ICMPv4 type 3 code 3,
// ICMPv6 type 1 code 4).
func (d Datagram) Unreachable() bool {
	if d.From.Is4() {
		return d.ICMP && d.Type == 3 && d.Code == 3
	}
	return d.ICMP && d.Type == 1 && d.Code == 4
}

// parseDatagram parses an IPv4 or IPv6 packet carrying UDP, or an ICMP
// error quoting a UDP header; ok is false for anything else.
func parseDatagram(pkt []byte) (Datagram, bool) {
	var src, dst netip.Addr
	var proto uint8
	var payload []byte
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		ip := header.IPv6(pkt)
		if ip.Validate() != nil {
			return Datagram{}, false
		}
		src, dst, proto, payload = netip.AddrFrom16(ip.Src()), netip.AddrFrom16(ip.Dst()), ip.NextHeader(), ip.Payload()
	} else {
		ip := header.IPv4(pkt)
		if ip.Validate() != nil || ip.IsFragment() {
			return Datagram{}, false
		}
		src, dst, proto, payload = netip.AddrFrom4(ip.Src()), netip.AddrFrom4(ip.Dst()), ip.Protocol(), ip.Payload()
	}
	switch proto {
	case header.ProtoUDP:
		return udpDatagram(src, dst, payload)
	case header.ProtoICMP, header.ProtoICMPv6:
		// An error: type, code, checksum, 4 unused bytes, then the packet
		// it is about (RFC 792, RFC 4443 §3.1).
		isErr := len(payload) >= 8 && (proto == header.ProtoICMP && payload[0] == 3 ||
			proto == header.ProtoICMPv6 && payload[0] == 1)
		if !isErr {
			return Datagram{}, false
		}
		q, ok := quotedDatagram(payload[8:])
		if !ok {
			return Datagram{}, false
		}
		q.ICMP, q.Type, q.Code, q.From, q.To = true, payload[0], payload[1], src, dst
		return q, true
	}
	return Datagram{}, false
}

func udpDatagram(src, dst netip.Addr, udp []byte) (Datagram, bool) {
	if len(udp) < 8 {
		return Datagram{}, false
	}
	return Datagram{
		Src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(udp[0:2])),
		Dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(udp[2:4])),
		Len: int(binary.BigEndian.Uint16(udp[4:6])) - 8,
	}, true
}

// quotedDatagram reads the IP and UDP headers an ICMP error quotes; the
// quote may be cut anywhere after the UDP ports (RFC 792 keeps 8 bytes).
func quotedDatagram(q []byte) (Datagram, bool) {
	if len(q) > 0 && q[0]>>4 == 6 {
		if len(q) < header.IPv6HeaderSize+8 || header.IPv6(q).NextHeader() != header.ProtoUDP {
			return Datagram{}, false
		}
		ip := header.IPv6(q)
		return udpDatagram(netip.AddrFrom16(ip.Src()), netip.AddrFrom16(ip.Dst()), q[header.IPv6HeaderSize:])
	}
	if len(q) < 20 || q[0]>>4 != 4 {
		return Datagram{}, false
	}
	ip := header.IPv4(q)
	hl := ip.HeaderLen()
	if hl < 20 || len(q) < hl+8 || ip.Protocol() != header.ProtoUDP {
		return Datagram{}, false
	}
	return udpDatagram(netip.AddrFrom4(ip.Src()), netip.AddrFrom4(ip.Dst()), q[hl:])
}

// FormatDatagram is a datagram's timeline line without the time, in the
// segments' columns: "kernel > ustack  :41234 > :9       udp 6", and for
// an error "ustack > kernel   icmp port unreachable (udp :41234 > :9, 6)".
func FormatDatagram(d Datagram) string {
	if !d.ICMP {
		dir := endpointName(d.Src.Addr()) + " > " + endpointName(d.Dst.Addr())
		ports := portName(d.Src) + " > " + portName(d.Dst)
		return fmt.Sprintf("%-32s udp %d", fmt.Sprintf("%-16s %s", dir, ports), d.Len)
	}
	dir := endpointName(d.From) + " > " + endpointName(d.To)
	what := fmt.Sprintf("unreachable type %d code %d", d.Type, d.Code)
	if d.Unreachable() {
		what = "port unreachable"
	}
	name := "icmp"
	if d.From.Is6() {
		name = "icmp6"
	}
	return fmt.Sprintf("%-32s %s %s (udp %s > %s, %d)", dir, name, what, portName(d.Src), portName(d.Dst), d.Len)
}
