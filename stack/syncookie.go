package stack

import (
	"encoding/binary"
	"hash/maphash"
	"time"

	"ustack/hashtable"
)

// SYN cookies (B43, RFC 4987 3.6): when a listener's SYN queue is full, the
// SYN|ACK carries everything the connection needs in its ISN (and, with
// timestamps, in its TSval), and nothing is stored. The ACK that answers it
// proves the peer saw our ISN, and the connection is rebuilt from it. The
// layout is Linux's (net/ipv4/syncookies.c), in our own code.

// cookieMSS are the MSS values a cookie can carry (Linux's msstab for IPv4):
// a two-bit index, the largest entry not above the peer's MSS.
var cookieMSS = [...]uint16{536, 1300, 1440, 1460}

// cookieMSS6 is the same for IPv6 (Linux's msstab in syncookies.c for
// IPv6: 1280, 1480, 1500 and 9000 less 60).
var cookieMSS6 = [...]uint16{1220, 1420, 1440, 8940}

// cookieMSSTable is the table for a connection with peer a.
func cookieMSSTable(a hashtable.Addr) *[4]uint16 {
	if a.Is4() {
		return &cookieMSS
	}
	return &cookieMSS6
}

const (
	cookieBits = 24 // low bits: hash + MSS index; high 8: the minute counter
	cookieMask = 1<<cookieBits - 1
	// cookieMaxAge is how many minutes a cookie stays good
	// (MAX_SYNCOOKIE_AGE).
	cookieMaxAge = 2
	// cookieWindow is how long after the last overflow an ACK to a
	// listener is checked as a cookie (TCP_SYNCOOKIE_VALID); otherwise it
	// gets the usual RST (B04).
	cookieWindow = 2 * time.Minute

	// The TSval of a cookie SYN|ACK carries the peer's options in its low
	// six bits (Linux cookie_init_timestamp): window scale (0xf: none),
	// SACK-permitted, and ECN (never: ustack has none).
	tsOptWscaleMask = 0xf
	tsOptSACK       = 1 << 4
	tsOptMask       = 1<<6 - 1
)

// SynCookies modes, as net.ipv4.tcp_syncookies.
const (
	SynCookiesOff     = 0 // a full SYN queue drops SYNs
	SynCookiesOnFlood = 1 // cookies only when the SYN queue is full (Linux's default)
	SynCookiesAlways  = 2 // every SYN is answered with a cookie
)

// cookieMinute is the cookie clock: minutes of the stack's clock.
func cookieMinute(now time.Time) uint32 { return uint32(now.Unix() / 60) }

// cookieHash is a keyed hash of the 4-tuple and count; which keeps the two
// hashes of a cookie independent.
func (s *Stack) cookieHash(id hashtable.FourTuple, count uint32, which byte) uint32 {
	var b [41]byte
	copy(b[0:16], id.LocalAddr[:])
	copy(b[16:32], id.RemoteAddr[:])
	binary.BigEndian.PutUint16(b[32:], id.LocalPort)
	binary.BigEndian.PutUint16(b[34:], id.RemotePort)
	binary.BigEndian.PutUint32(b[36:], count)
	b[40] = which
	return uint32(maphash.Bytes(s.cookieSeed, b[:]))
}

// makeCookie is the ISN of a cookie SYN|ACK for a SYN with sequence number
// irs (Linux secure_tcp_syn_cookie): hash(tuple) + irs + (minute << 24) +
// ((hash(tuple, minute) + mssIndex) mod 2^24).
func (s *Stack) makeCookie(now time.Time, id hashtable.FourTuple, irs seqnum, mssIndex uint32) seqnum {
	t := cookieMinute(now)
	c := s.cookieHash(id, 0, 1) + uint32(irs) + t<<cookieBits + (s.cookieHash(id, t, 2)+mssIndex)&cookieMask
	return seqnum(c)
}

// checkCookie validates the cookie an ACK returns (SEG.ACK - 1, for the SYN
// whose sequence number was SEG.SEQ - 1) and recovers the MSS index
// (Linux check_tcp_syn_cookie).
func (s *Stack) checkCookie(now time.Time, id hashtable.FourTuple, irs, cookie seqnum) (mssIndex int, ok bool) {
	c := uint32(cookie) - s.cookieHash(id, 0, 1) - uint32(irs)
	t := cookieMinute(now)
	age := (t - c>>cookieBits) & (1<<(32-cookieBits) - 1)
	if age >= cookieMaxAge {
		return 0, false
	}
	idx := (c - s.cookieHash(id, t-age, 2)) & cookieMask
	if idx >= uint32(len(cookieMSS)) {
		return 0, false
	}
	return int(idx), true
}

// cookieMSSIndex picks the largest cookie MSS in tab not above the peer's.
func cookieMSSIndex(tab *[4]uint16, o *optionsT) uint32 {
	mss := uint16(defaultMSS)
	if o.HasMSS {
		mss = o.MSS
	}
	for i := len(tab) - 1; i > 0; i-- {
		if mss >= tab[i] {
			return uint32(i)
		}
	}
	return 0
}

// cookieTSVal folds the peer's options into the low bits of our TSval,
// never above tsval itself, so that our clock still only moves forward.
func cookieTSVal(tsval uint32, wsOK bool, sndWscale uint8, sackOK bool) uint32 {
	opt := uint32(tsOptWscaleMask)
	if wsOK {
		opt = uint32(sndWscale)
	}
	if sackOK {
		opt |= tsOptSACK
	}
	v := tsval&^tsOptMask | opt
	if v > tsval {
		v -= tsOptMask + 1
	}
	return v
}

// wantCookie decides, for a SYN the listener would queue, whether it is
// answered with a cookie instead (Linux tcp_conn_request, tcp_syn_flood_action).
// It notes the overflow, so that the ACKs that follow are checked.
func (l *listener) wantCookie(now time.Time) bool {
	mode := l.s.opts.SynCookies
	if mode == SynCookiesAlways || (mode == SynCookiesOnFlood && l.synQFull()) {
		l.lastOverflow = now
		return true
	}
	return false
}

// synQFull is Linux's inet_csk_reqsk_queue_is_full: backlog+1 half-open
// connections fit, as many as in the accept queue.
func (l *listener) synQFull() bool { return len(l.synQ) > l.backlog }

// sendCookie answers sg with a SYN|ACK whose ISN is a cookie, keeping no
// state (B43). The child endpoint built for it is thrown away.
func (l *listener) sendCookie(now time.Time, sg *segment) {
	s := l.s
	e := l.newChild(now, sg, s.makeCookie(now, sg.tuple(), sg.seq, cookieMSSIndex(cookieMSSTable(sg.src), &sg.opts)))
	// Linux tcp_conn_request: without timestamps there is nowhere to keep
	// the window scale and SACK-permitted, so the SYN|ACK offers neither.
	if !e.tsOK {
		e.wsOK, e.sackOK, e.snd.wscale, e.rcv.wscale = false, false, 0, 0
	}
	e.cookieTS = true
	s.inc(cntTCPSynCookiesSent)
	e.sendSegment(now, e.snd.iss, flagSYN|flagACK, 0, 0)
}

// cookieACK checks an ACK that found no connection at the listener against
// the cookies it sent, and on success rebuilds the connection in SYN-RECV
// and lets the ACK complete it (Linux cookie_v4_check). false means it is no
// cookie of ours: the caller answers as for no connection.
func (l *listener) cookieACK(now time.Time, sg *segment) bool {
	s := l.s
	if s.opts.SynCookies == SynCookiesOff || l.lastOverflow.IsZero() || now.Sub(l.lastOverflow) > cookieWindow {
		return false
	}
	if sg.has(flagSYN) || sg.has(flagRST) || !sg.has(flagACK) {
		return false
	}
	id := sg.tuple()
	irs, iss := sg.seq.add(^uint32(0)), sg.ack.add(^uint32(0))
	idx, ok := s.checkCookie(now, id, irs, iss)
	if !ok {
		s.inc(cntTCPSynCookiesFailed)
		return false
	}
	// The options the SYN had, as far as the cookie kept them.
	var o optionsT
	o.HasMSS, o.MSS = true, cookieMSSTable(sg.src)[idx]
	if sg.opts.HasTS {
		if !s.opts.Timestamps {
			s.inc(cntTCPSynCookiesFailed)
			return false
		}
		o.HasTS, o.TSVal = true, sg.opts.TSVal
		opt := sg.opts.TSEcr & tsOptMask
		if w := uint8(opt & tsOptWscaleMask); w != tsOptWscaleMask {
			if w > 14 {
				s.inc(cntTCPSynCookiesFailed)
				return false
			}
			o.HasWScale, o.WScale = true, w
		}
		o.SACKPermitted = opt&tsOptSACK != 0
	}
	s.inc(cntTCPSynCookiesRecv)
	if l.full() {
		// Linux tcp_v4_syn_recv_sock: no room in the accept queue, the
		// ACK is dropped; the peer's retransmission brings the cookie again.
		s.inc(cntTCPListenOverflows)
		s.inc(cntTCPListenDrops)
		return true
	}
	synSeg := segment{src: sg.src, dst: sg.dst, srcPort: sg.srcPort, dstPort: sg.dstPort, seq: irs, flags: flagSYN, opts: o}
	e := l.newChild(now, &synSeg, iss)
	e.snd.nxt, e.snd.max = iss.add(1), iss.add(1) // our SYN|ACK went out
	// The window our SYN|ACK offered (unscaled), as selectWindow(true) set it.
	e.rcv.adv = e.rcv.nxt.add(uint32(min(e.rcvSpace(), maxWindow)))
	if !s.est.Insert(e.id, e) {
		return true
	}
	l.synQ[e] = struct{}{}
	s.inc(cntTCPPassiveOpens)
	e.fromCookie = true // cookie_v4_check completes it: TCP_DEFER_ACCEPT does not apply
	e.setState(stateSynRecv, "ACK with a valid SYN cookie", sg)
	e.process(now, sg)
	if e.state == stateSynRecv {
		// Not completed after all: a cookie child keeps no timer, so it
		// must not stay (the peer's next segment brings the cookie again).
		e.close("cookie ACK not accepted", sg, 0)
		return true
	}
	if e.state == stateEstablished && e.tsOK && sg.opts.TSEcr != 0 {
		// No SYN|ACK was timed; its TSval echo gives the RTT (Linux
		// tcp_ack_update_rtt falls back on TSecr the same way).
		if d := int32(s.tsNow(now) + e.tsOff - sg.opts.TSEcr); d >= 0 {
			e.rttSample(now, time.Duration(d)*time.Millisecond)
		}
	}
	return true
}

// cookieTSVal is the TSval of a cookie SYN|ACK, carrying e's options.
func (e *endpoint) cookieTSVal(tsval uint32) uint32 {
	return cookieTSVal(tsval, e.wsOK, e.snd.wscale, e.sackOK)
}
