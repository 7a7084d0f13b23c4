package stack

import (
	"encoding/binary"
	"time"
	"ustack/hashtable"
	"ustack/stack/header"
)

// TCP's response to ICMP errors about its segments (RFC 5927, RFC 1122
// 4.2.3.9), as Linux's tcp_v4_err: a connection being opened fails with the
// error; an open one keeps trying and reports it only if it then times
// out; "fragmentation needed" lowers the MSS (RFC 1191) and resends what
// no longer fits; an unreachable head undoes one RTO backoff (RFC 6069).

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
	if floor := minPMTUFor(e.id.RemoteAddr); mtu < floor {
		mtu = floor
	}
	mss := mtu - netHdrLen(e.id.RemoteAddr) - header.TCPMinSize
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

// deliverError hands an ICMP error about one of our segments (from src to
// dst; quoted starts with its TCP header) to its connection, as Linux's
// tcp_v4_err (icmp.go).
func (p tcpProtocol) deliverError(now time.Time, src, dst hashtable.Addr, quoted []byte, ne netError) {
	id := hashtable.FourTuple{
		LocalAddr: src, LocalPort: binary.BigEndian.Uint16(quoted[0:2]),
		RemoteAddr: dst, RemotePort: binary.BigEndian.Uint16(quoted[2:4]),
	}
	e, ok := p.s.est.Lookup(id)
	if !ok {
		p.s.inc(cntICMPIgnored)
		return
	}
	e.icmpError(now, ne, seqnum(binary.BigEndian.Uint32(quoted[4:8])))
}
