package stack

import (
	"errors"
	"time"

	"ustack/hashtable"
	"ustack/stack/header"
)

// IPv6 (RFC 8200): input checks, the extension-header chain, parameter
// problems as Linux sends them, demultiplexing to ICMPv6 or a transport,
// and output. Fragments are not reassembled (kernels send TCP in segments
// that fit, and UDP fragments are rare): they are dropped and counted.
// What the kernel sends on a new TUN device (router solicitations, MLD
// reports, DAD neighbour solicitations, all to multicast groups) is
// ignored and counted (B61).

// ip6Input is IPv6 input. Every drop is counted.
func (s *Stack) ip6Input(now time.Time, pkt []byte, csumOK bool) {
	s.inc(cntIP6In)
	ip := header.IPv6(pkt)
	if err := ip.Validate(); err != nil {
		if errors.Is(err, header.ErrIPv6Jumbo) {
			s.inc(cntIP6Jumbo)
		} else {
			s.inc(cntIP6Malformed) // B60
		}
		return
	}
	dst := hashtable.Addr(ip.Dst())
	switch {
	case !s.has6:
		s.inc(cntIP6NoAddress)
		return
	case dst[0] == 0xff:
		// Multicast: neighbour discovery, MLD and router solicitations
		// on a point-to-point link need no answer from us (B61).
		s.inc(cntIP6Multicast)
		return
	case dst != s.addr6 && (!s.opts.Promiscuous || dst == hashtable.Any6):
		s.inc(cntIPNotForUs)
		return
	case ip.HopLimit() == 0:
		s.inc(cntIP6HopLimitZero)
		return
	}
	if dst != s.addr6 {
		s.inc(cntIPForeign)
	}
	src := hashtable.Addr(ip.Src())
	if src[0] == 0xff || src == hashtable.Any6 {
		s.inc(cntIP6BadSource) // RFC 4291 2.7: never from a multicast address
		return
	}
	p := ip.Payload()
	x, err := header.WalkExtensions(ip.NextHeader(), p)
	switch {
	case errors.Is(err, header.ErrExtHopByHop):
		// A hop-by-hop header after the first is an unknown next header
		// to Linux (ip6_protocol_deliver_rcu).
		s.inc(cntIP6UnknownHeader)
		s.paramProblem(now, pkt, header.ICMPv6UnknownHeader, header.IPv6HeaderSize+x.ErrAt)
		return
	case err != nil:
		s.inc(cntIP6BadExtension) // truncated, or a chain too long
		return
	case x.OptionAt >= 0:
		// RFC 8200 4.2: an option we do not know, whose type says drop.
		s.inc(cntIP6UnknownOption)
		if x.OptionAction >= 2 { // our destination is unicast: 11 answers too
			s.paramProblem(now, pkt, header.ICMPv6UnknownOption, header.IPv6HeaderSize+x.OptionAt)
		}
		return
	case x.Fragment && (x.FragOffset != 0 || x.MoreFragments):
		s.inc(cntIP6FragmentDropped) // not reassembled
		return
	}
	upper := p[x.Offset:]
	switch t := s.transports[x.Proto]; {
	case x.Proto == header.ProtoICMPv6:
		s.icmp6Input(now, ip, src, upper)
	case x.Proto == header.ProtoNoNext:
		s.inc(cntIP6NoNextHeader)
	case t != nil:
		t.deliver(now, src, dst, upper, csumOK && x.Offset == 0)
	default:
		// Linux: ICMPv6 parameter problem, unrecognized next header,
		// pointing at the field that named it (IPSTATS_MIB_INUNKNOWNPROTOS).
		s.inc(cntIP6UnknownHeader)
		s.paramProblem(now, pkt, header.ICMPv6UnknownHeader, x.NextAt)
	}
}

// ip6Output fills in the IPv6 header of pkt (whose payload starts at byte
// 40) and sends it, as ipOutput does for IPv4.
func (s *Stack) ip6Output(pkt []byte, src, dst hashtable.Addr, proto uint8, gso int) {
	header.EncodeIPv6(pkt, header.IPv6Fields{
		PayloadLen: len(pkt) - header.IPv6HeaderSize,
		NextHeader: proto,
		HopLimit:   64, // ipv6.conf.default.hop_limit
		Src:        src,
		Dst:        dst,
	})
	s.inc(cntIP6Out)
	s.linkOutput(pkt, dst, gso)
}

// netHdrLen is the size of the IP header for packets to a.
func netHdrLen(a hashtable.Addr) int {
	if a.Is4() {
		return header.IPv4MinSize
	}
	return header.IPv6HeaderSize
}

// netOutput sends pkt, whose IP header (netHdrLen(dst) bytes) is still to
// be written, with the IP version dst calls for.
func (s *Stack) netOutput(pkt []byte, src, dst hashtable.Addr, proto uint8, gso int) {
	if dst.Is4() {
		s.ipOutput(pkt, src, dst, proto, gso)
		return
	}
	s.ip6Output(pkt, src, dst, proto, gso)
}

// pseudoSum is the transport checksum's pseudo-header sum for a packet of
// n bytes from src to dst, for either IP version.
func pseudoSum(src, dst hashtable.Addr, proto uint8, n int) uint32 {
	if src.Is4() {
		return header.PseudoHeaderSum(src.As4(), dst.As4(), proto, n)
	}
	return header.PseudoHeaderSum6(src, dst, proto, n)
}

// ourAddr is our address of a's IP version (our IPv4 address for IPv4
// and IPv4-mapped peers).
func (s *Stack) ourAddr(a hashtable.Addr) hashtable.Addr {
	if a.Is4() {
		return s.addr
	}
	return s.addr6
}

// netMSS is the TCP MSS the link's MTU allows towards a.
func (s *Stack) netMSS(a hashtable.Addr) int {
	return s.mtu - netHdrLen(a) - header.TCPMinSize
}
