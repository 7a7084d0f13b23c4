package stack

import (
	"encoding/binary"
	"syscall"
	"time"

	"ustack/hashtable"
	"ustack/stack/header"
)

// ICMPv4 (RFC 792): echo (B50), and errors about the packets we sent, read
// into a netError for the transport that sent them (TCP: tcperr.go), with
// the path MTUs they teach (RFC 1191).

// Destination-unreachable codes (RFC 792); the types are header's.
const (
	icmpNetUnreach     = 0
	icmpHostUnreach    = 1
	icmpFragNeeded     = 4
	icmpMaxUnreachCode = 15
)

// minPMTU is Linux's ip_rt_min_pmtu: a smaller "next-hop MTU" is taken as this.
const minPMTU = 552

// minPMTUFor is the smallest path MTU towards a: IPv4's ip_rt_min_pmtu, or
// IPv6's minimum link MTU (RFC 8201 4).
func minPMTUFor(a hashtable.Addr) int {
	if a.Is4() {
		return minPMTU
	}
	return header.IPv6MinMTU
}

// pmtuExpiry is how long a learned path MTU lasts (ip_rt_mtu_expires).
const pmtuExpiry = 10 * time.Minute

// maxPMTUEntries bounds the path MTU cache; the oldest entry makes room.
const maxPMTUEntries = 1024

// unreachErrno is Linux's icmp_err_convert for destination unreachable.
var unreachErrno = [icmpMaxUnreachCode + 1]syscall.Errno{
	syscall.ENETUNREACH,  // network unreachable
	syscall.EHOSTUNREACH, // host unreachable
	syscall.ENOPROTOOPT,  // protocol unreachable
	syscall.ECONNREFUSED, // port unreachable
	syscall.EMSGSIZE,     // fragmentation needed (handled as PMTU)
	syscall.EOPNOTSUPP,   // source route failed
	syscall.ENETUNREACH,  // network unknown
	syscall.EHOSTDOWN,    // host unknown
	syscall.ENONET,       // source host isolated
	syscall.ENETUNREACH,  // network prohibited
	syscall.EHOSTUNREACH, // host prohibited
	syscall.ENETUNREACH,  // network unreachable for TOS
	syscall.EHOSTUNREACH, // host unreachable for TOS
	syscall.EHOSTUNREACH, // communication prohibited
	syscall.EHOSTUNREACH, // host precedence violation
	syscall.EHOSTUNREACH, // precedence cutoff
}

// pmtuEntry is a learned path MTU towards one address.
type pmtuEntry struct {
	mtu     int
	expires time.Time
}

// netError is an ICMP error about a packet we sent, as the network layer
// reads it for the transport (Linux's icmp_err_convert): what it means to
// a socket, whichever ICMP carried it.
type netError struct {
	errno      syscall.Errno // what a socket reports; 0: an error the transport ignores
	fragNeeded bool          // the packet was too big for the path (RFC 1191)
	mtu        int           // with fragNeeded: the next-hop MTU
	unreach    bool          // the network or host is unreachable (RFC 6069)
	fatal      bool          // it ends a half-open connection (tcp_req_err)

	// The message itself, for IP_RECVERR's error queue.
	icmp6     bool
	typ, code uint8
	offender  hashtable.Addr // who sent the ICMP error
}

// icmp4Error reads an ICMPv4 error (RFC 792, RFC 1122 3.2.2).
func icmp4Error(typ, code uint8, mtu int) netError {
	switch {
	case typ == header.ICMPParamProblem:
		return netError{errno: syscall.EPROTO, fatal: true}
	case typ == header.ICMPTimeExceeded:
		return netError{errno: syscall.EHOSTUNREACH}
	case typ == header.ICMPDestUnreach && code == icmpFragNeeded:
		return netError{errno: syscall.EMSGSIZE, fragNeeded: true, mtu: mtu}
	case typ == header.ICMPDestUnreach && code <= icmpMaxUnreachCode:
		u := code == icmpNetUnreach || code == icmpHostUnreach
		return netError{errno: unreachErrno[code], unreach: u, fatal: u}
	}
	return netError{} // source quench, redirect, anything else
}

// icmpError handles an ICMPv4 error message msg (type, code, the 4 bytes
// after the checksum, then the offending datagram's IP header and at least
// 8 bytes of its payload): the transport that sent the datagram gets it.
func (s *Stack) icmpError(now time.Time, from hashtable.Addr, msg []byte) {
	inner := header.IPv4(msg[header.ICMPv4MinSize:])
	if len(inner) < header.IPv4MinSize || inner.HeaderLen() < header.IPv4MinSize || len(inner) < inner.HeaderLen()+8 {
		s.inc(cntICMPIgnored)
		return
	}
	t := s.transports[inner.Protocol()]
	if t == nil {
		s.inc(cntICMPIgnored)
		return
	}
	ne := icmp4Error(msg[0], msg[1], int(binary.BigEndian.Uint16(msg[6:8])))
	ne.typ, ne.code, ne.offender = msg[0], msg[1], from
	t.deliverError(now, hashtable.AddrFrom4(inner.Src()), hashtable.AddrFrom4(inner.Dst()), inner[inner.HeaderLen():], ne)
}

// rememberPMTU keeps a learned path MTU for new connections to addr (Linux
// keeps it in the route's exception, for ip_rt_mtu_expires).
func (s *Stack) rememberPMTU(now time.Time, addr hashtable.Addr, mtu int) {
	if s.pmtu == nil {
		s.pmtu = make(map[hashtable.Addr]pmtuEntry)
	}
	if _, ok := s.pmtu[addr]; !ok && len(s.pmtu) >= maxPMTUEntries {
		var oldest hashtable.Addr
		first := true
		for a, p := range s.pmtu {
			if first || p.expires.Before(s.pmtu[oldest].expires) {
				oldest, first = a, false
			}
		}
		delete(s.pmtu, oldest)
	}
	if p, ok := s.pmtu[addr]; ok && p.mtu < mtu && now.Before(p.expires) {
		mtu = p.mtu
	}
	s.pmtu[addr] = pmtuEntry{mtu: mtu, expires: now.Add(pmtuExpiry)}
}

// pathMSS is the MSS the learned path MTU to addr allows, or 0 if none is known.
func (s *Stack) pathMSS(now time.Time, addr hashtable.Addr) int {
	p, ok := s.pmtu[addr]
	if !ok {
		return 0
	}
	if !now.Before(p.expires) {
		delete(s.pmtu, addr)
		return 0
	}
	return p.mtu - netHdrLen(addr) - header.TCPMinSize
}

// icmpInput answers echo requests (B50) and hands errors about our TCP
// segments to their connection (icmp.go); the rest is counted and dropped.
func (s *Stack) icmpInput(now time.Time, ip header.IPv4) {
	s.inc(cntICMPIn)
	msg := ip.Payload()
	if len(msg) < header.ICMPv4MinSize || !header.ICMPChecksumValid(msg) {
		s.inc(cntICMPMalformed)
		return
	}
	switch header.ICMPv4(msg).Type() {
	case header.ICMPEchoRequest:
		if dst := hashtable.AddrFrom4(ip.Dst()); dst != s.addr && s.forwardEcho(hashtable.AddrFrom4(ip.Src()), dst, msg) {
			return
		}
	case header.ICMPEchoReply:
		if !s.pingDeliver(hashtable.AddrFrom4(ip.Src()), msg, false) {
			s.inc(cntICMPIgnored) // no ping socket has that identifier
		}
		return
	case header.ICMPDestUnreach, header.ICMPTimeExceeded, header.ICMPParamProblem:
		s.icmpError(now, hashtable.AddrFrom4(ip.Src()), msg)
		return
	default:
		s.inc(cntICMPIgnored)
		return
	}
	n := header.IPv4MinSize + len(msg)
	if n > s.mtu {
		s.inc(cntICMPMalformed)
		return
	}
	pkt := s.txBuf[:n]
	copy(pkt[header.IPv4MinSize:], msg)
	header.MakeEchoReply(pkt[header.IPv4MinSize:])
	s.ipOutput(pkt, hashtable.AddrFrom4(ip.Dst()), hashtable.AddrFrom4(ip.Src()), header.ProtoICMP, 0)
	s.inc(cntICMPEchoReplies)
}
