package drill

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"ustack/stack/header"
)

// OptUnknown is an option kind scripts cannot write but a stack may send;
// TCPOption.Value holds the kind byte.
const OptUnknown OptionKind = 100

// segment is a decoded TCP (or UDP) packet over IPv4 or IPv6, the form
// both directions are compared and printed in.
type segment struct {
	ipVersion  uint8
	ihl        int // bytes
	totalLen   int
	proto      uint8
	ipChecksum bool // header checksum valid
	src, dst   netip.AddrPort

	seq, ack uint32
	doff     int // bytes
	flags    uint8
	reserved uint8 // low nibble of byte 12; bit 0 is AE
	win, urg uint16
	opts     []TCPOption
	optErr   string
	payload  []byte
	udpLen   int // the UDP length field, for a datagram (proto UDP)
}

var errNotTCP = errors.New("not a TCP or UDP packet")

// decodeSegment parses an IPv4 or IPv6 packet carrying TCP or UDP (a
// datagram: ports, udpLen and payload only). Other packets (ICMP, the
// router solicitations and MLD reports a kernel sends on tun0) are
// errNotTCP. Linux puts no extension header before TCP or UDP, so an IPv6
// packet whose next header is neither is not one of ours either.
func decodeSegment(b []byte) (*segment, error) {
	if len(b) == 0 {
		return nil, errNotTCP
	}
	s := &segment{ipVersion: b[0] >> 4}
	switch s.ipVersion {
	case 4:
		if len(b) < header.IPv4MinSize {
			return nil, errNotTCP
		}
		ip := header.IPv4(b)
		s.ihl, s.totalLen, s.proto = ip.HeaderLen(), ip.TotalLen(), ip.Protocol()
		if s.proto != header.ProtoTCP && s.proto != header.ProtoUDP {
			return nil, errNotTCP
		}
		if s.ihl < 20 || s.totalLen < s.ihl || s.totalLen > len(b) {
			return nil, fmt.Errorf("malformed IPv4 header (ihl %d, total length %d, %d bytes)", s.ihl, s.totalLen, len(b))
		}
		s.ipChecksum = header.Checksum(b[:s.ihl], 0) == 0
		s.src = netip.AddrPortFrom(netip.AddrFrom4(ip.Src()), 0)
		s.dst = netip.AddrPortFrom(netip.AddrFrom4(ip.Dst()), 0)
	case 6:
		ip := header.IPv6(b)
		if err := ip.Validate(); err != nil {
			return nil, errNotTCP
		}
		s.ihl, s.totalLen, s.proto = header.IPv6HeaderSize, header.IPv6HeaderSize+ip.PayloadLen(), ip.NextHeader()
		if s.proto != header.ProtoTCP && s.proto != header.ProtoUDP {
			return nil, errNotTCP
		}
		s.ipChecksum = true // IPv6 has none
		s.src = netip.AddrPortFrom(netip.AddrFrom16(ip.Src()), 0)
		s.dst = netip.AddrPortFrom(netip.AddrFrom16(ip.Dst()), 0)
	default:
		return nil, errNotTCP
	}
	if s.proto == header.ProtoUDP {
		u := b[s.ihl:s.totalLen]
		if len(u) < 8 || int(binary.BigEndian.Uint16(u[4:])) > len(u) || int(binary.BigEndian.Uint16(u[4:])) < 8 {
			return nil, fmt.Errorf("malformed UDP header (%d bytes)", len(u))
		}
		s.src = netip.AddrPortFrom(s.src.Addr(), binary.BigEndian.Uint16(u[0:]))
		s.dst = netip.AddrPortFrom(s.dst.Addr(), binary.BigEndian.Uint16(u[2:]))
		s.udpLen = int(binary.BigEndian.Uint16(u[4:]))
		s.payload = u[8:s.udpLen]
		return s, nil
	}
	t := header.TCP(b[s.ihl:s.totalLen])
	if err := t.Validate(); err != nil {
		return nil, err
	}
	s.src = netip.AddrPortFrom(s.src.Addr(), t.SrcPort())
	s.dst = netip.AddrPortFrom(s.dst.Addr(), t.DstPort())
	s.seq, s.ack = t.Seq(), t.Ack()
	s.doff = t.HeaderLen()
	s.flags = t.Flags()
	s.reserved = t.Reserved()
	s.win, s.urg = t.Window(), t.Urgent()
	s.opts, s.optErr = decodeOptions(t.Options())
	s.payload = t.Payload()
	return s, nil
}

// decodeOptions lists the options in wire order, keeping NOPs (packetdrill
// compares kind by kind).
func decodeOptions(b []byte) ([]TCPOption, string) {
	opts := []TCPOption{}
	for len(b) > 0 {
		kind := b[0]
		switch kind {
		case header.OptEOL:
			return append(opts, TCPOption{Kind: OptEOL}), ""
		case header.OptNOP:
			opts = append(opts, TCPOption{Kind: OptNOP})
			b = b[1:]
			continue
		}
		if len(b) < 2 || int(b[1]) < 2 || int(b[1]) > len(b) {
			return opts, fmt.Sprintf("option kind %d has a bad length", kind)
		}
		o, n := b[:b[1]], int(b[1])
		b = b[n:]
		bad := func() ([]TCPOption, string) { return opts, fmt.Sprintf("option kind %d has length %d", kind, n) }
		switch kind {
		case header.OptMSS:
			if n != 4 {
				return bad()
			}
			opts = append(opts, TCPOption{Kind: OptMSS, Value: uint32(binary.BigEndian.Uint16(o[2:]))})
		case header.OptWScale:
			if n != 3 {
				return bad()
			}
			opts = append(opts, TCPOption{Kind: OptWScale, Value: uint32(o[2])})
		case header.OptSACKPermitted:
			if n != 2 {
				return bad()
			}
			opts = append(opts, TCPOption{Kind: OptSACKOK})
		case header.OptSACK:
			if (n-2)%8 != 0 {
				return bad()
			}
			so := TCPOption{Kind: OptSACK}
			for i := 2; i < n; i += 8 {
				so.Blocks = append(so.Blocks, [2]uint32{binary.BigEndian.Uint32(o[i:]), binary.BigEndian.Uint32(o[i+4:])})
			}
			opts = append(opts, so)
		case header.OptTimestamp:
			if n != 10 {
				return bad()
			}
			opts = append(opts, TCPOption{Kind: OptTS, TSVal: binary.BigEndian.Uint32(o[2:]), TSEcr: binary.BigEndian.Uint32(o[6:])})
		default:
			opts = append(opts, TCPOption{Kind: OptUnknown, Value: uint32(kind)})
		}
	}
	return opts, ""
}

// encodeOptions writes options in the order given.
func encodeOptions(opts []TCPOption) []byte {
	var b []byte
	for _, o := range opts {
		switch o.Kind {
		case OptNOP:
			b = append(b, header.OptNOP)
		case OptEOL:
			b = append(b, header.OptEOL)
		case OptMSS:
			b = append(b, header.OptMSS, 4, byte(o.Value>>8), byte(o.Value))
		case OptWScale:
			b = append(b, header.OptWScale, 3, byte(o.Value))
		case OptSACKOK:
			b = append(b, header.OptSACKPermitted, 2)
		case OptSACK:
			b = append(b, header.OptSACK, byte(2+8*len(o.Blocks)))
			for _, blk := range o.Blocks {
				b = binary.BigEndian.AppendUint32(b, blk[0])
				b = binary.BigEndian.AppendUint32(b, blk[1])
			}
		case OptTS:
			b = append(b, header.OptTimestamp, 10)
			b = binary.BigEndian.AppendUint32(b, o.TSVal)
			b = binary.BigEndian.AppendUint32(b, o.TSEcr)
		}
	}
	for len(b)%4 != 0 { // scripts pad themselves; this only guards the header
		b = append(b, header.OptEOL)
	}
	return b
}

// encodeSegment builds an IPv4 or IPv6 packet (the family of s's
// addresses) carrying TCP, with valid checksums.
func encodeSegment(s *segment) []byte {
	opts := encodeOptions(s.opts)
	tcpLen := header.TCPMinSize + len(opts) + len(s.payload)
	pkt, tcp := ipPacket(s.src.Addr(), s.dst.Addr(), header.ProtoTCP, tcpLen)
	header.EncodeTCP(tcp, header.TCPFields{
		SrcPort: s.src.Port(), DstPort: s.dst.Port(),
		Seq: s.seq, Ack: s.ack, Flags: s.flags, Window: s.win, Urgent: s.urg,
	}, len(opts))
	tcp[12] |= s.reserved & 0x0f
	copy(tcp[header.TCPMinSize:], opts)
	copy(tcp[header.TCPMinSize+len(opts):], s.payload)
	header.SetChecksumAt(tcp, 16, pseudoSum(s.src.Addr(), s.dst.Addr(), header.ProtoTCP, tcpLen))
	return pkt
}

// encodeDatagram builds a UDP datagram of n zero bytes from src to dst,
// with a valid checksum.
func encodeDatagram(src, dst netip.AddrPort, n int) []byte {
	pkt, udp := ipPacket(src.Addr(), dst.Addr(), header.ProtoUDP, 8+n)
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(8+n))
	header.SetChecksumAt(udp, 6, pseudoSum(src.Addr(), dst.Addr(), header.ProtoUDP, 8+n))
	if udp[6] == 0 && udp[7] == 0 {
		udp[6], udp[7] = 0xff, 0xff // 0 means "no checksum" (RFC 768)
	}
	return pkt
}

// ipPacket allocates a packet from src to dst with an IP header (TTL or
// hop limit 64) for n bytes of proto, and returns it and its payload.
func ipPacket(src, dst netip.Addr, proto uint8, n int) (pkt, payload []byte) {
	if src.Is4() {
		pkt = make([]byte, header.IPv4MinSize+n)
		header.EncodeIPv4(pkt, header.IPv4Fields{TotalLen: len(pkt), TTL: 64, Protocol: proto, Src: src.As4(), Dst: dst.As4()})
		return pkt, pkt[header.IPv4MinSize:]
	}
	pkt = make([]byte, header.IPv6HeaderSize+n)
	header.EncodeIPv6(pkt, header.IPv6Fields{PayloadLen: n, NextHeader: proto, HopLimit: 64, Src: src.As16(), Dst: dst.As16()})
	return pkt, pkt[header.IPv6HeaderSize:]
}

// pseudoSum is the pseudo-header sum of the family of src.
func pseudoSum(src, dst netip.Addr, proto uint8, n int) uint32 {
	if src.Is4() {
		return header.PseudoHeaderSum(src.As4(), dst.As4(), proto, n)
	}
	return header.PseudoHeaderSum6(src.As16(), dst.As16(), proto, n)
}

// encodeICMPError builds an ICMP error (ICMPv6 on IPv6) from the peer's
// address to us about our segment from local to remote with sequence
// number seq: the quoted IP header and the first 8 bytes of TCP (RFC 792;
// RFC 4443 quotes as much as fits, and the same 28 or 48 bytes do).
func encodeICMPError(ic *ICMPSpec, local, remote netip.AddrPort, seq uint32) ([]byte, error) {
	typ, code, err := ic.wire(local.Addr().Is6())
	if err != nil {
		return nil, err
	}
	var orig []byte
	if ic.UDP {
		orig = encodeDatagram(local, remote, ic.UDPLen)
	} else {
		var tcp []byte
		orig, tcp = ipPacket(local.Addr(), remote.Addr(), header.ProtoTCP, header.TCPMinSize)
		header.EncodeTCP(tcp, header.TCPFields{SrcPort: local.Port(), DstPort: remote.Port(), Seq: seq, Flags: header.ACK}, 0)
	}
	if local.Addr().Is4() {
		pkt, icmp := ipPacket(remote.Addr(), local.Addr(), header.ProtoICMP, header.ICMPv4MinSize+header.IPv4MinSize+8)
		header.PutICMPError(icmp, typ, code, uint32(ic.MTU), orig)
		return pkt, nil
	}
	orig = orig[:min(len(orig), header.IPv6MinMTU-header.IPv6HeaderSize-header.ICMPv6MinSize)] // RFC 4443 2.4(c)
	pkt, icmp := ipPacket(remote.Addr(), local.Addr(), header.ProtoICMPv6, header.ICMPv6MinSize+len(orig))
	icmp[0], icmp[1] = typ, code
	binary.BigEndian.PutUint32(icmp[4:8], uint32(ic.MTU))
	copy(icmp[header.ICMPv6MinSize:], orig)
	header.SetICMPv6Checksum(icmp, remote.Addr().As16(), local.Addr().As16())
	return pkt, nil
}

// flagString writes flags the way scripts do (S., F., P., R, ., -).
func flagString(flags uint8, ae bool) string {
	var b strings.Builder
	for _, f := range []struct {
		bit uint8
		c   byte
	}{{header.FIN, 'F'}, {header.SYN, 'S'}, {header.RST, 'R'}, {header.PSH, 'P'}, {header.ACK, '.'}, {header.URG, 'U'}, {header.ECE, 'E'}, {header.CWR, 'W'}} {
		if flags&f.bit != 0 {
			b.WriteByte(f.c)
		}
	}
	if ae {
		b.WriteByte('A')
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

func optionsString(opts []TCPOption) string {
	var parts []string
	for _, o := range opts {
		if o.Kind == OptUnknown {
			parts = append(parts, fmt.Sprintf("kind%d", o.Value))
			continue
		}
		parts = append(parts, o.String())
	}
	return "<" + strings.Join(parts, ",") + ">"
}

// String formats an expected packet line (without the time).
func (p *Packet) String() string {
	var b strings.Builder
	if p.Dir == Inbound {
		b.WriteString("< ")
	} else {
		b.WriteString("> ")
	}
	if u := p.UDP; u != nil {
		if u.SrcPort != 0 || u.DstPort != 0 {
			fmt.Fprintf(&b, "udp %d>%d (%d)", u.SrcPort, u.DstPort, u.Len)
		} else {
			fmt.Fprintf(&b, "udp (%d)", u.Len)
		}
		return b.String()
	}
	fmt.Fprintf(&b, "%s %d:%d(%d)", flagString(p.Flags, p.AE), p.Seq, p.Seq+uint32(p.Len), p.Len)
	if p.Flags&header.ACK != 0 || p.Ack != 0 {
		fmt.Fprintf(&b, " ack %d", p.Ack)
	}
	if p.HasWin {
		fmt.Fprintf(&b, " win %d", p.Win)
	}
	if p.Urg != 0 {
		fmt.Fprintf(&b, " urg %d", p.Urg)
	}
	switch {
	case p.AnyOptions:
		b.WriteString(" <...>")
	case len(p.Options) > 0:
		b.WriteString(" " + optionsString(p.Options))
	}
	return b.String()
}

// scriptString formats a segment already mapped to script space.
func (s *segment) scriptString() string {
	var b strings.Builder
	if s.proto == header.ProtoUDP {
		fmt.Fprintf(&b, "> udp %d>%d (%d)", s.src.Port(), s.dst.Port(), len(s.payload))
		return b.String()
	}
	fmt.Fprintf(&b, "> %s %d:%d(%d)", flagString(s.flags, s.reserved&1 != 0), s.seq, s.seq+uint32(len(s.payload)), len(s.payload))
	if s.flags&header.ACK != 0 || s.ack != 0 {
		fmt.Fprintf(&b, " ack %d", s.ack)
	}
	fmt.Fprintf(&b, " win %d", s.win)
	if s.urg != 0 {
		fmt.Fprintf(&b, " urg %d", s.urg)
	}
	if len(s.opts) > 0 {
		b.WriteString(" " + optionsString(s.opts))
	}
	return b.String()
}
