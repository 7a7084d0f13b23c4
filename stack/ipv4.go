package stack

import (
	"errors"
	"time"
	"ustack/hashtable"
	"ustack/stack/header"
)

// IPv4 (RFC 791, RFC 1122 3.2.1): input checks and demultiplexing by
// protocol, ICMP echo (B50), output, and the loopback path for packets to
// our own address (B16).

// transport is a protocol above IP (TCP; UDP plugs in beside it): IP hands
// it the packets and the ICMP errors for its protocol number.
type transport interface {
	// deliver takes a packet's payload from src to dst; csumOK: the link
	// vouched for its checksum.
	deliver(now time.Time, src, dst hashtable.Addr, payload []byte, csumOK bool)
	// deliverError takes an ICMP error about a packet we sent from src
	// to dst; quoted holds at least the first 8 bytes of its payload.
	deliverError(now time.Time, src, dst hashtable.Addr, quoted []byte, ne netError)
}

// netInput is where every packet from the link (or our loopback) enters:
// IPv4 or IPv6 by the version nibble.
func (s *Stack) netInput(now time.Time, pkt []byte, csumOK bool) {
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		s.ip6Input(now, pkt, csumOK)
		return
	}
	s.ipInput(now, pkt, csumOK)
}

// ipInput is IPv4 input (RFC 791, RFC 1122 3.2.1): checks, then protocol
// demultiplexing. Every drop is counted.
func (s *Stack) ipInput(now time.Time, pkt []byte, csumOK bool) {
	s.inc(cntIPIn)
	if !s.has4 {
		s.inc(cntIPNoAddress) // an IPv6-only stack
		return
	}
	ip := header.IPv4(pkt)
	if err := ip.Validate(); err != nil {
		switch {
		case errors.Is(err, header.ErrIPv4Checksum):
			s.inc(cntIPChecksum) // B03
		case errors.Is(err, header.ErrIPv4Version):
			s.inc(cntIPNotIPv4) // neither 4 nor 6 (netInput sends IPv6 to ip6Input)
		default:
			s.inc(cntIPMalformed) // B51
		}
		return
	}
	if d := ip.Dst(); d != s.ip4 {
		// Promiscuous: any unicast address (not 0/8, multicast or
		// broadcast) is taken, for the forwarders.
		if !s.opts.Promiscuous || d[0] == 0 || d[0] >= 224 {
			s.inc(cntIPNotForUs)
			return
		}
		s.inc(cntIPForeign)
	}
	if ip.IsFragment() {
		// We do not reassemble; kernels set DF on TCP, so these are rare.
		s.inc(cntIPFragmentDropped)
		return
	}
	switch p := ip.Protocol(); {
	case p == header.ProtoICMP:
		s.icmpInput(now, ip)
	case s.transports[p] != nil:
		s.transports[p].deliver(now, hashtable.AddrFrom4(ip.Src()), hashtable.AddrFrom4(ip.Dst()), ip.Payload(), csumOK)
	default:
		s.inc(cntIPUnknownProto)
	}
}

// ipOutput fills in the IPv4 header of pkt (whose payload starts at byte 20)
// and sends it: to the link, or back into our own input for our own address.
// gso > 0 marks a TCP packet the link cuts into segments of gso bytes.
func (s *Stack) ipOutput(pkt []byte, src, dst hashtable.Addr, proto uint8, gso int) {
	s.ipID++
	header.EncodeIPv4(pkt, header.IPv4Fields{
		TotalLen: len(pkt),
		ID:       s.ipID,
		DF:       true,
		TTL:      64,
		Protocol: proto,
		Src:      src.As4(),
		Dst:      dst.As4(),
	})
	s.inc(cntIPOut)
	if gso > 0 {
		// The link gives each segment the next ID (tcp_gso_segment).
		s.ipID += uint16((len(pkt) - header.IPv4MinSize - header.TCP(pkt[header.IPv4MinSize:]).HeaderLen() - 1) / gso)
	}
	s.linkOutput(pkt, dst, gso)
}

// maxIPPacket is the largest IP packet: IPv4's total length and IPv6's
// payload length are 16 bits (no jumbograms, RFC 2675).
const maxIPPacket = 65535

// ipFragment sends the IPv4 datagram in pkt (its header's room at bytes
// 0-19) as fragments that fit the link's MTU, DF clear, one ID for all
// (RFC 791 §3.2, Linux ip_fragment). Each fragment's header is written
// just before its part of the payload, over bytes the previous fragment
// has already handed to the link, so nothing is copied twice.
func (s *Stack) ipFragment(pkt []byte, src, dst hashtable.Addr, proto uint8) {
	s.ipID++
	id := s.ipID
	payload := len(pkt) - header.IPv4MinSize
	chunk := (s.mtu - header.IPv4MinSize) &^ 7
	for off := 0; off < payload; off += chunk {
		end := min(off+chunk, payload)
		frag := header.IPv4(pkt[off : header.IPv4MinSize+end])
		header.EncodeIPv4(frag, header.IPv4Fields{TotalLen: len(frag), ID: id, TTL: 64, Protocol: proto, Src: src.As4(), Dst: dst.As4()})
		frag.SetFragment(off, end < payload)
		s.inc(cntIPOut)
		s.inc(cntIPFragmentOut)
		s.linkOutput(frag, dst, 0)
	}
}

// isLocal reports whether a is one of the stack's own addresses; with
// Options.Promiscuous others come in too, for the forwarders only.
func (s *Stack) isLocal(a hashtable.Addr) bool {
	return a == s.addr && s.has4 || a == s.addr6 && s.has6
}

// linkOutput hands a finished IP packet to the link's queue, or back to our
// own input when it is for our own address (B16). The Packet hook sees it.
func (s *Stack) linkOutput(pkt []byte, dst hashtable.Addr, gso int) {
	if s.opts.Packet != nil {
		s.opts.Packet(true, pkt)
	}
	if s.isLocal(dst) {
		s.loopback(pkt)
		return
	}
	if s.batch != nil && len(s.tx.q) >= BatchQueueLen {
		s.inc(cntLinkTxQueueFull) // the embedder is not reading
		return
	}
	var b []byte
	free := &s.tx.free
	if len(pkt) > s.mtu {
		free = &s.tx.freeB
	}
	if n := len(*free); n > 0 {
		b = (*free)[n-1]
		*free = (*free)[:n-1]
	} else if len(pkt) > s.mtu {
		b = make([]byte, 0, s.gso.GSOMaxSize())
	} else {
		b = make([]byte, 0, s.mtu)
	}
	s.tx.q = append(s.tx.q, txPacket{b: append(b, pkt...), gso: gso})
}

func (s *Stack) loopback(pkt []byte) {
	var b []byte
	if n := len(s.loopFree); n > 0 {
		b = s.loopFree[n-1][:0]
		s.loopFree = s.loopFree[:n-1]
	}
	s.loop = append(s.loop, append(b, pkt...))
}

// drainLoopLocked processes looped-back packets until none are left.
func (s *Stack) drainLoopLocked() {
	for i := 0; i < len(s.loop); i++ {
		pkt := s.loop[i]
		s.netInput(s.clock.Now(), pkt, false)
		s.loopFree = append(s.loopFree, pkt)
	}
	s.loop = s.loop[:0]
}
