package stack

import (
	"encoding/binary"
	"syscall"
	"time"

	"ustack/hashtable"
	"ustack/stack/header"
)

// ICMP errors about our TCP segments (RFC 5927, RFC 1122 4.2.3.9), as
// Linux's tcp_v4_err: a connection being opened fails with the error; an
// open one keeps trying and reports it only if it then times out; and
// "fragmentation needed" lowers the path MTU (RFC 1191) and resends what
// no longer fits.

// Destination-unreachable codes (RFC 792); the types are header's.
const (
	icmpNetUnreach     = 0
	icmpHostUnreach    = 1
	icmpFragNeeded     = 4
	icmpMaxUnreachCode = 15
)

// minPMTU is Linux's ip_rt_min_pmtu: a smaller "next-hop MTU" is taken as this.
const minPMTU = 552

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
func (s *Stack) icmpError(now time.Time, msg []byte) {
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
	t.deliverError(now, hashtable.AddrFrom4(inner.Src()), hashtable.AddrFrom4(inner.Dst()), inner[inner.HeaderLen():], ne)
}

func (e *endpoint) icmpError(now time.Time, ne netError, seq seqnum) {
	s := e.s
	if e.state == stateTimeWait || e.state == stateClosed || e.gone {
		s.inc(cntICMPIgnored)
		return
	}
	if e.state == stateSynRecv && !e.active {
		// A request socket (tcp_req_err): only a fatal error about our
		// SYN|ACK drops it, silently.
		if ne.fatal && seq == e.snd.iss {
			s.inc(cntTCPICMPErrors)
			e.close("ICMP error for the SYN|ACK", nil, 0)
		} else {
			s.inc(cntICMPOutOfWindow)
		}
		return
	}
	if seq.lt(e.snd.una) || seq.gt(e.snd.nxt) {
		s.inc(cntICMPOutOfWindow) // LINUX_MIB_OUTOFWINDOWICMPS
		return
	}
	switch {
	case ne.fragNeeded:
		e.pmtuReduced(now, ne.mtu)
		return
	case ne.errno == 0:
		s.inc(cntICMPIgnored)
		return
	case ne.unreach:
		defer e.rtoRevert(now, seq)
	}
	s.inc(cntTCPICMPErrors)
	if e.state == stateSynSent || e.state == stateSynRecv {
		// Opening: the error is final (connect fails with it).
		e.close("ICMP error while connecting", nil, ne.errno)
		return
	}
	// Open: RFC 1122 4.2.3.9 lets us keep trying; the error is what a
	// timeout will report (sk_err_soft), and SO_ERROR reads it.
	e.icmpErr = ne.errno
}

// rtoRevert is RFC 6069 (Linux tcp_ld_RTO_revert): a net or host
// unreachable for the head segment while the RTO backs off says the path,
// not congestion, lost it. One step of backoff is undone, and the timer
// fires as that shorter RTO says from the last retransmission, at once if
// that time has passed.
func (e *endpoint) rtoRevert(now time.Time, seq seqnum) {
	if e.gone || seq != e.snd.una || e.snd.backoff == 0 || e.rtxMode != rtxRetransmit || e.snd.rtoSentAt.IsZero() || !e.state.synchronized() {
		return
	}
	e.s.inc(cntTCPRTORevert)
	e.snd.backoff--
	if left := e.backedOffRTO() - now.Sub(e.snd.rtoSentAt); left > 0 {
		e.s.schedule(&e.rtxTimer, now.Add(left))
		return
	}
	e.onRetransmitTimer(now)
}

// pmtuReduced is tcp_v4_mtu_reduced: a smaller path MTU lowers the MSS,
// and the segments that no longer fit are sent again at once, cut to it
// (tcp_simple_retransmit), without a congestion response.
func (e *endpoint) pmtuReduced(now time.Time, mtu int) {
	s := e.s
	if mtu < minPMTU {
		mtu = minPMTU
	}
	mss := mtu - header.IPv4MinSize - header.TCPMinSize
	s.rememberPMTU(now, e.id.RemoteAddr, mtu)
	if mss >= e.snd.mss {
		return
	}
	s.inc(cntTCPPMTUReductions)
	e.snd.mss = mss
	if !e.canSendData() || e.snd.una == e.snd.nxt {
		return
	}
	e.snd.nxt = e.snd.una
	e.snd.fr.highRxt = e.snd.una
	if e.snd.finSent && e.snd.fin.geq(e.snd.una) {
		e.snd.finSent = false
	}
	e.sendData(now)
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
	return p.mtu - header.IPv4MinSize - header.TCPMinSize
}
