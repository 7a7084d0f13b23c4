package stack

import (
	"encoding/binary"
	"syscall"
	"time"

	"ustack/hashtable"
	"ustack/stack/header"
)

// ICMPv6 (RFC 4443): echo (B62), errors about the packets we sent read
// into a netError for the transport that sent them (B63, B65), the
// neighbour discovery and MLD messages a TUN device brings ignored and
// counted (B61), and the parameter problems IPv6 input sends, rate
// limited as Linux's icmp_global_allow.

// icmp6Unreach is Linux's icmpv6_err_convert for destination unreachable
// codes (RFC 4443 3.1): every one is fatal to a connection being opened.
var icmp6Unreach = [...]syscall.Errno{
	syscall.ENETUNREACH,  // no route to destination
	syscall.EACCES,       // communication administratively prohibited
	syscall.EHOSTUNREACH, // beyond the scope of the source address
	syscall.EHOSTUNREACH, // address unreachable
	syscall.ECONNREFUSED, // port unreachable
	syscall.EACCES,       // source address failed ingress/egress policy
	syscall.EACCES,       // reject route to destination
}

// icmp6Error reads an ICMPv6 error (icmpv6_err_convert).
func icmp6Error(typ, code uint8, mtu int) netError {
	switch typ {
	case header.ICMPv6DestUnreach:
		if int(code) < len(icmp6Unreach) {
			// RFC 6069 treats "no route" and "address unreachable" as
			// the path's, as net and host unreachable for IPv4.
			return netError{errno: icmp6Unreach[code], fatal: true, unreach: code == 0 || code == 3}
		}
	case header.ICMPv6PacketTooBig:
		return netError{errno: syscall.EMSGSIZE, fragNeeded: true, mtu: mtu}
	case header.ICMPv6TimeExceeded:
		return netError{errno: syscall.EHOSTUNREACH}
	case header.ICMPv6ParamProblem:
		return netError{errno: syscall.EPROTO, fatal: true}
	}
	return netError{}
}

// icmp6Input takes an ICMPv6 message msg of packet ip from src to us.
func (s *Stack) icmp6Input(now time.Time, ip header.IPv6, src hashtable.Addr, msg []byte) {
	s.inc(cntICMP6In)
	dst := hashtable.Addr(ip.Dst())
	if !header.ICMPv6ChecksumValid(src, dst, msg) {
		s.inc(cntICMP6Malformed)
		return
	}
	switch typ := msg[0]; typ {
	case header.ICMPv6EchoRequest:
		if dst != s.addr6 && s.forwardEcho(src, dst, msg) {
			return
		}
		s.echoReply6(dst, src, msg)
	case header.ICMPv6EchoReply:
		if !s.pingDeliver(src, msg, true) {
			s.inc(cntICMP6Ignored)
		}
	case header.ICMPv6DestUnreach, header.ICMPv6PacketTooBig, header.ICMPv6TimeExceeded, header.ICMPv6ParamProblem:
		s.icmp6ErrorInput(now, src, msg)
	case header.ICMPv6MLDQuery, header.ICMPv6MLDReport, header.ICMPv6MLDDone, header.ICMPv6MLDv2Report,
		header.ICMPv6RouterSolicit, header.ICMPv6RouterAdvert, header.ICMPv6NeighborSolicit,
		header.ICMPv6NeighborAdvert, header.ICMPv6Redirect:
		s.inc(cntICMP6NDIgnored) // B61: no link layer to resolve on a TUN
	default:
		s.inc(cntICMP6Ignored)
	}
}

// echoReply6 answers an echo request to dst (ours, or any address when
// promiscuous) from src (RFC 4443 4.2) with its identifier, sequence
// number and data (B62).
func (s *Stack) echoReply6(dst, src hashtable.Addr, msg []byte) {
	n := header.IPv6HeaderSize + len(msg)
	if n > s.mtu {
		s.inc(cntICMP6Malformed)
		return
	}
	pkt := s.txBuf[:n]
	reply := pkt[header.IPv6HeaderSize:]
	copy(reply, msg)
	reply[0], reply[1] = header.ICMPv6EchoReply, 0
	header.SetICMPv6Checksum(reply, dst, src)
	s.ip6Output(pkt, dst, src, header.ProtoICMPv6, 0)
	s.inc(cntICMP6EchoReplies)
}

// icmp6ErrorInput hands an ICMPv6 error (type, code, 4 bytes of MTU or
// pointer, then as much of the offending packet as fits) to the transport
// that sent that packet.
func (s *Stack) icmp6ErrorInput(now time.Time, from hashtable.Addr, msg []byte) {
	inner := header.IPv6(msg[header.ICMPv6MinSize:])
	if len(inner) < header.IPv6HeaderSize || inner[0]>>4 != 6 {
		s.inc(cntICMP6Ignored)
		return
	}
	// The quoted packet may be cut short: walk what there is.
	x, err := header.WalkExtensions(inner.NextHeader(), inner[header.IPv6HeaderSize:])
	quoted := inner[header.IPv6HeaderSize:]
	if err != nil || len(quoted)-x.Offset < 8 {
		s.inc(cntICMP6Ignored)
		return
	}
	t := s.transports[x.Proto]
	if t == nil {
		s.inc(cntICMP6Ignored)
		return
	}
	ne := icmp6Error(msg[0], msg[1], int(binary.BigEndian.Uint32(msg[4:8])))
	ne.icmp6, ne.typ, ne.code, ne.offender = true, msg[0], msg[1], from
	if ne.fragNeeded && ne.mtu < header.IPv6MinMTU {
		ne.mtu = header.IPv6MinMTU // RFC 8201 4: never below 1280
	}
	t.deliverError(now, hashtable.Addr(inner.Src()), hashtable.Addr(inner.Dst()), quoted[x.Offset:], ne)
}

// paramProblem answers pkt with an ICMPv6 parameter problem (RFC 4443 3.4)
// of code that points at byte ptr, quoting as much of pkt as fits in the
// minimum MTU, as Linux's icmp6_send.
func (s *Stack) paramProblem(now time.Time, pkt []byte, code uint8, ptr int) {
	ip := header.IPv6(pkt)
	src := hashtable.Addr(ip.Src())
	if src == hashtable.Any6 || src[0] == 0xff || !s.icmpAllow(now) {
		return
	}
	quote := min(len(pkt), header.IPv6MinMTU-header.IPv6HeaderSize-header.ICMPv6MinSize)
	n := header.IPv6HeaderSize + header.ICMPv6MinSize + quote
	out := s.txBuf[:n]
	msg := out[header.IPv6HeaderSize:]
	msg[0], msg[1] = header.ICMPv6ParamProblem, code
	binary.BigEndian.PutUint32(msg[4:8], uint32(ptr))
	copy(msg[header.ICMPv6MinSize:], pkt[:quote])
	header.SetICMPv6Checksum(msg, s.addr6, src)
	s.inc(cntICMP6ErrorsSent)
	s.ip6Output(out, s.addr6, src, header.ProtoICMPv6, 0)
}

// Linux's defaults for ICMP errors sent: net.ipv4.icmp_msgs_per_sec and
// icmp_msgs_burst, a token bucket shared by ICMP and ICMPv6.
const (
	icmpMsgsPerSec = 1000
	icmpMsgsBurst  = 50
)

// icmpBucket is the token bucket of icmpAllow.
type icmpBucket struct {
	tokens int       // errors that may go now
	at     time.Time // when it was last refilled
}

// icmpAllow is icmp_global_allow: one token per error sent, refilled at
// icmpMsgsPerSec up to icmpMsgsBurst. A refusal is counted.
func (s *Stack) icmpAllow(now time.Time) bool {
	if s.icmpLimit.at.IsZero() {
		s.icmpLimit.tokens, s.icmpLimit.at = icmpMsgsBurst, now
	}
	if refill := int(now.Sub(s.icmpLimit.at) * icmpMsgsPerSec / time.Second); refill > 0 {
		s.icmpLimit.tokens = min(s.icmpLimit.tokens+refill, icmpMsgsBurst)
		s.icmpLimit.at = now
	}
	if s.icmpLimit.tokens == 0 {
		s.inc(cntICMPRateLimited)
		return false
	}
	s.icmpLimit.tokens--
	return true
}
