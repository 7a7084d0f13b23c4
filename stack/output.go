package stack

import (
	"time"

	"ustack/stack/header"
)

// canSendData reports whether the state lets data and FIN (re)transmit.
func (e *endpoint) canSendData() bool {
	switch e.state {
	case stateEstablished, stateCloseWait, stateFinWait1, stateClosing, stateLastAck:
		return true
	}
	return false
}

// output sends what the send and congestion windows allow, then the ACK
// still owed if no data segment carried it.
func (e *endpoint) output(now time.Time) {
	if e.canSendData() {
		e.sendData(now)
	}
	if e.ackNow {
		e.sendACK(now)
	}
}

// sendData is the transmit loop (Linux tcp_write_xmit): segments of up to
// one MSS from SND.NXT while the windows allow, the FIN after the last byte.
func (e *endpoint) sendData(now time.Time) {
	mss := e.dataRoom()
	sent := false
	for {
		dataEnd := e.sndUna.add(uint32(e.sndBuf.Len()))
		if e.sndNxt.gt(dataEnd) {
			break // our FIN is out, nothing follows it
		}
		retransmit := e.sndNxt.lt(e.sndMax)
		if retransmit && e.sndNxt == dataEnd && e.finQueued {
			if _, ok := e.sackedAt(dataEnd); ok {
				// The peer holds our FIN too: it counts as sent.
				e.finSent, e.sndFin = true, dataEnd
				e.sndNxt = dataEnd.add(1)
				break
			}
		}
		if retransmit && e.sndNxt.lt(dataEnd) {
			// Going back after an RTO: skip the data the peer SACKed (a
			// block may reach past it, over our FIN).
			if end, ok := e.sackedAt(e.sndNxt); ok {
				e.sndNxt = seqMin(end, dataEnd)
				continue
			}
		}
		rest := int(dataEnd.sub(e.sndNxt)) // unsent (or to resend) data
		avail := rest
		if next, ok := e.nextSacked(e.sndNxt); ok && retransmit && int(next.sub(e.sndNxt)) < avail {
			avail = int(next.sub(e.sndNxt)) // up to the next SACKed block
		}
		// The peer's window covers all that is outstanding; cwnd, in
		// recovery, only what is still in the network (RFC 6675 pipe).
		usable := 0
		if f := e.flight(); e.sndWnd > f {
			usable = int(e.sndWnd - f)
		}
		inNet := e.flight()
		if e.inRecovery {
			inNet = e.pipe()
		}
		if e.cwnd > inNet {
			usable = min(usable, int(e.cwnd-inNet))
		} else {
			usable = 0
		}
		n := min(avail, usable, mss)
		gso := 0
		if n == mss && !retransmit && e.canGSO() {
			n, gso = e.gsoLen(mss, rest, min(avail, usable))
		}
		last := n == rest // this segment ends the queued data
		fin := e.finQueued && last
		if n == 0 && !(fin && (usable > 0 || e.sndWnd > 0 || e.flight() == 0)) {
			break
		}
		if n > 0 && n < mss && !retransmit && !fin && (e.cork || e.more) {
			// TCP_CORK or MSG_MORE: a partial segment waits for more data
			// (tcp_nagle_check's TCP_NAGLE_CORK), or for the probe timer
			// below when nothing is in flight to bring an ACK.
			break
		}
		if n > 0 && n < mss && e.flight() > 0 && !retransmit {
			// Sender SWS avoidance (RFC 9293 3.8.6.2.1): a short segment
			// waits for an ACK unless it is the last of the data. Nagle,
			// when enabled, in Linux's (Minshall's) form, tcp_nagle_check:
			// the last one waits only while an earlier short segment is
			// unacknowledged.
			if !last || (!e.nodelay && !fin && e.smallInFlight()) {
				break
			}
		}
		flags := flagACK
		if n > 0 && last {
			flags |= flagPSH // Linux marks the last segment of a write
		}
		if fin {
			flags |= flagFIN
		}
		seq := e.sndNxt
		if n > 0 && !retransmit && !e.lastData.IsZero() && now.Sub(e.lastData) < delackMin {
			e.pingpong = true // a reply within the ATO (Linux tcp_event_data_sent)
		}
		e.sendSegmentGSO(now, seq, flags, int(seq.sub(e.sndUna)), n, gso)
		sent = true
		if e.inRecovery {
			e.prrOut += max(e.ackedSegs(uint32(n)), 1)
		}
		if retransmit {
			e.s.inc(cntTCPRetransSegs)
		} else if !e.rttTiming && !e.tsOK {
			e.rttTiming, e.rttSeq, e.rttStart = true, seq, now
		}
		e.sndNxt = seq.add(uint32(n))
		if n%mss != 0 && !retransmit {
			e.sndSml = e.sndNxt // ends short (Linux tcp_minshall_update)
		}
		if fin {
			e.finSent = true
			e.sndFin = e.sndNxt
			e.sndNxt = e.sndNxt.add(1)
		}
		e.sndMax = seqMax(e.sndMax, e.sndNxt)
		if !e.rtxTimer.Pending() || e.persist || (e.tlpArmed && !retransmit) {
			e.persist = false
			e.probesAt = time.Time{}
			e.armRetransmit(now) // new data moves the probe (tcp_event_new_data_sent)
		}
		if fin {
			break
		}
	}
	if limited := e.flight() >= e.cwnd; sent || limited {
		e.noteCwndUsage(limited) // tcp_write_xmit's tcp_cwnd_validate
	}
	// B21: data waits behind a zero window, or held by TCP_CORK or
	// MSG_MORE, with nothing in flight to bring an ACK: the persist timer
	// probes (tcp_check_probe_timer), at the RTO.
	pending := e.sndUna.add(uint32(e.sndBuf.Len())).gt(e.sndNxt) || (e.finQueued && !e.finSent)
	if pending && e.flight() == 0 && !e.rtxTimer.Pending() && (e.sndWnd == 0 || e.cork || e.more) {
		e.persist = true
		e.s.schedule(&e.rtxTimer, now.Add(e.backedOffRTO()))
	}
}

// canGSO reports whether new data may leave as one packet of several
// segments that the link cuts (TSO): the link offloads, and the peer is
// not our own address (loopback packets are processed as they are).
func (e *endpoint) canGSO() bool {
	return e.s.gso != nil && e.id.RemoteAddr != e.s.addr
}

// gsoLen is the payload of a TSO packet that starts with a full segment:
// as many whole segments as room (what the windows allow) and the link's
// size limit take, plus the short tail of the queued data (rest) if it all
// fits and Nagle would let that tail go after the full segments (last of
// the data, and TCP_NODELAY, a FIN behind it, or no short segment in flight:
// Linux's tcp_mss_split_point). gso is the segment size, or 0 when a single
// segment is all there is.
func (e *endpoint) gsoLen(mss, rest, room int) (n, gso int) {
	// Headers: IPv4 without options, TCP with at most 40 bytes of options.
	limit := e.s.gso.GSOMaxSize() - header.IPv4MinSize - header.TCPMinSize - 40
	n = min(room, limit) / mss * mss
	if rest <= min(room, limit) && rest > n && (e.nodelay || e.finQueued || !e.smallInFlight()) {
		n = rest
	}
	if n <= mss {
		return mss, 0
	}
	return n, mss
}

// dataRoom is the payload that fits in a data segment given the options it
// will carry (timestamps, and SACK blocks while we hold out-of-order data).
func (e *endpoint) dataRoom() int {
	m := e.effMSS()
	if e.sackOK && (len(e.ooo) > 0 || e.hasDSACK) {
		nb := min(len(e.ooo)+1, maxSACKSent)
		if e.tsOK {
			nb = min(nb, 3)
		}
		m -= 4 + 8*nb
	}
	return max(m, 1)
}

// backedOffRTO is the RTO with exponential backoff (RFC 6298 5.5).
func (e *endpoint) backedOffRTO() time.Duration {
	d := e.rto
	for i := 0; i < e.backoff && d < rtoMax; i++ {
		d *= 2
	}
	return min(d, rtoMax)
}

// scheduleACK decides when to ACK received data (B22, Linux
// __tcp_ack_snd_check): at once for out-of-order data, in quick-ACK mode
// and for every second full-sized segment; otherwise after the delayed-ACK
// timer, unless data leaving first carries the ACK.
func (e *endpoint) scheduleACK(now time.Time, immediate bool) {
	switch {
	case immediate:
		e.ackNow = true
	case e.quickACKs > 0 && !e.pingpong:
		e.quickACKs--
		e.ackNow = true
	case e.unacked > e.rcvMSS: // more than one full segment unacknowledged
		e.ackNow = true
	default:
		if !e.delackTimer.Pending() {
			d := delackMin
			if e.lastData.IsZero() {
				d = delackNoData
			}
			e.s.schedule(&e.delackTimer, now.Add(d))
		}
		e.ackPending = true
	}
}

// sendACK sends a pure ACK now.
func (e *endpoint) sendACK(now time.Time) {
	e.sendSegment(now, e.sndNxt, flagACK, 0, 0)
}

// sendOOWAck answers an unacceptable segment with an ACK. Segments without
// data (and SYNs) get one at most twice a second per connection; a segment
// carrying data always does (Linux tcp_oow_rate_limited).
func (e *endpoint) sendOOWAck(now time.Time, sg *segment) {
	if len(sg.payload) > 0 && !sg.has(flagSYN) {
		e.sendACK(now)
		return
	}
	if !e.lastOOW.IsZero() && now.Sub(e.lastOOW) < oowRateLimit {
		return
	}
	e.lastOOW = now
	e.sendACK(now)
}

// challengeACK is RFC 5961's reply to a suspicious RST, SYN or ACK (B40,
// B41): an ACK that tells a genuine peer where we are.
func (e *endpoint) challengeACK(now time.Time) {
	if !e.lastOOW.IsZero() && now.Sub(e.lastOOW) < oowRateLimit {
		return
	}
	e.s.inc(cntTCPChallengeACKs)
	e.lastOOW = now
	e.sendACK(now)
}

// sendRST aborts from our side: RST|ACK at SND.NXT (Linux
// tcp_send_active_reset).
func (e *endpoint) sendRST(now time.Time) {
	e.sendSegment(now, e.sndNxt, flagRST|flagACK, 0, 0)
}

// sendSYN sends our SYN, or our SYN|ACK when synAck (passive open, or a
// simultaneous open, which reuses the SYN's ISN).
func (e *endpoint) sendSYN(now time.Time, synAck bool) {
	flags := flagSYN
	if synAck {
		flags |= flagACK
	}
	e.sendSegment(now, e.iss, flags, 0, 0)
	if e.retries == 0 {
		e.synStart = now
	}
	e.sndNxt = e.iss.add(1)
	e.sndMax = seqMax(e.sndMax, e.sndNxt)
	if e.retries == 0 {
		e.rttTiming, e.rttSeq, e.rttStart = true, e.iss, now
	}
	d := e.synTimeout()
	if e.retries > 0 && e.active {
		d = e.clampToUserTimeout(now, e.synStart, d, jiffy) // tcp_retransmit_timer's rearm
	}
	e.s.schedule(&e.rtxTimer, now.Add(d))
}

// sendSegment builds one segment with our options and sends it: seq and
// flags as given, payload the n bytes at offset off of the send buffer.
func (e *endpoint) sendSegment(now time.Time, seq seqnum, flags uint8, off, n int) {
	e.sendSegmentGSO(now, seq, flags, off, n, 0)
}

// sendSegmentGSO is sendSegment for a packet of n > gso payload bytes that
// the link cuts into segments of gso bytes (0: an ordinary segment). Its
// checksum is left to the link, as Linux leaves it to a NIC.
func (e *endpoint) sendSegmentGSO(now time.Time, seq seqnum, flags uint8, off, n, gso int) {
	s := e.s
	tcp := s.txBuf[header.IPv4MinSize:]
	opts := tcp[header.TCPMinSize:]
	tsVal := s.tsNow(now) + e.tsOff
	if e.cookieTS {
		tsVal = e.cookieTSVal(tsVal)
	}
	var optLen int
	if flags&flagSYN != 0 {
		wscale := -1
		if e.wsOK || (flags&flagACK == 0 && s.opts.WindowScaling) {
			wscale = int(rcvWscaleFor(s.opts.RecvBuffer))
		}
		sack, ts := e.sackOK, e.tsOK
		var ecr uint32
		if flags&flagACK == 0 || e.active {
			// Our SYN offers what we support; in a simultaneous open Linux
			// resends that SYN with ACK set (tcp_send_synack), options and
			// all.
			sack, ts = s.opts.SACK, s.opts.Timestamps
			if s.opts.WindowScaling {
				wscale = int(rcvWscaleFor(s.opts.RecvBuffer))
			}
		} else {
			ecr = e.tsRecent
		}
		optLen = header.PutSYNOptions(opts, uint16(e.advMSS()), wscale, sack, ts, tsVal, ecr)
	} else {
		var blocks [maxSACKSent]header.SACKBlock
		nb := 0
		if e.sackOK && flags&flagACK != 0 {
			nb = e.sackBlocks(blocks[:])
		}
		optLen = header.PutDataOptions(opts, e.tsOK, tsVal, e.tsRecent, blocks[:nb])
	}
	if n > 0 {
		e.sndBuf.Peek(tcp[header.TCPMinSize+optLen:header.TCPMinSize+optLen+n], off)
	}
	var ack seqnum
	if flags&flagACK != 0 {
		ack = e.rcvNxt
	}
	wnd := e.selectWindow(flags&flagSYN != 0)
	seg := tcp[:header.TCPMinSize+optLen+n]
	header.EncodeTCP(seg, header.TCPFields{
		SrcPort: e.id.LocalPort, DstPort: e.id.RemotePort,
		Seq: uint32(seq), Ack: uint32(ack), Flags: flags, Window: wnd,
	}, optLen)
	if gso > 0 {
		header.SetTCPPseudoChecksum(seg, s.addr, e.id.RemoteAddr)
		s.cnt[cntTCPOut] += uint64((n + gso - 1) / gso)
		s.inc(cntTCPGSOOut)
	} else {
		header.SetTCPChecksum(seg, s.addr, e.id.RemoteAddr)
		s.inc(cntTCPOut)
	}
	if flags&flagRST != 0 {
		s.inc(cntTCPResetsSent)
	}
	if flags&flagACK != 0 {
		e.lastAckSent = ack
		e.ackNow = false
		e.ackPending = false
		e.unacked = 0
		s.timers.Stop(&e.delackTimer)
	}
	s.txGSO = gso
	s.ipOutput(s.txBuf[:header.IPv4MinSize+len(seg)], e.id.RemoteAddr, header.ProtoTCP)
	s.txGSO = 0
}

// sackBlocks fills b with our out-of-order blocks for the peer: the block
// of the segment that arrived last first, then the blocks of the segments
// before it (RFC 2018 4, Linux tcp_sack_new_ofo_skb), then any others,
// highest first.
func (e *endpoint) sackBlocks(b []header.SACKBlock) int {
	max := len(b)
	if e.tsOK {
		max = 3 // 40 bytes of options: TS takes 12
	}
	n := 0
	if e.hasDSACK {
		// RFC 2883: the duplicate first, reported once.
		b[0] = header.SACKBlock{Start: uint32(e.dsack.start), End: uint32(e.dsack.end)}
		n = 1
		e.hasDSACK = false
	}
	var used [maxOOORanges]bool
	add := func(i int) {
		if !used[i] && n < max {
			used[i] = true
			b[n] = header.SACKBlock{Start: uint32(e.ooo[i].start), End: uint32(e.ooo[i].end)}
			n++
		}
	}
	for _, seq := range e.oooRecent[:e.nRecent] {
		if i := e.oooBlock(seq); i >= 0 {
			add(i)
		}
	}
	for i := len(e.ooo) - 1; i >= 0 && n < max; i-- {
		add(i)
	}
	return n
}

// noteOOO remembers that an out-of-order segment starting at seq arrived,
// for the order of our SACK blocks: the block now holding it moves to the
// front of the recency list (one entry per block, as Linux keeps its
// selective_acks in tcp_sack_new_ofo_skb).
func (e *endpoint) noteOOO(seq seqnum) {
	var blk seqRange
	if i := e.oooBlock(seq); i >= 0 {
		blk = e.ooo[i]
	}
	var keep [len(e.oooRecent)]seqnum
	keep[0] = seq
	k := 1
	for _, x := range e.oooRecent[:e.nRecent] {
		if k < len(keep) && (x.lt(blk.start) || x.geq(blk.end)) {
			keep[k], k = x, k+1
		}
	}
	e.oooRecent, e.nRecent = keep, k
}

// oooBlock is the index of the out-of-order block holding seq, or -1.
func (e *endpoint) oooBlock(seq seqnum) int {
	for i, r := range e.ooo {
		if seq.geq(r.start) && seq.lt(r.end) {
			return i
		}
	}
	return -1
}

// selectWindow computes the window field (Linux tcp_select_window): free
// receive space, scaled, never shrinking the right edge already offered.
func (e *endpoint) selectWindow(syn bool) uint16 {
	free := e.rcvSpace()
	if syn {
		// RFC 7323 2.2: the window of a SYN is never scaled.
		w := min(free, 65535)
		e.rcvAdv = seqMax(e.rcvAdv, e.rcvNxt.add(uint32(w)))
		return uint16(w)
	}
	// Receiver SWS avoidance (RFC 9293 3.8.6.2.2).
	if free < e.s.opts.RecvBuffer/2 && free < e.s.ourMSS() {
		free = 0
	}
	w := free >> e.rcvWscale
	if w > 65535 {
		w = 65535
	}
	edge := e.rcvNxt.add(uint32(w) << e.rcvWscale)
	if edge.lt(e.rcvAdv) {
		// Never shrink (RFC 9293 3.8.6.2.1): keep offering the old edge.
		unit := uint32(1)<<e.rcvWscale - 1
		w = int((e.rcvAdv.sub(e.rcvNxt) + unit) >> e.rcvWscale)
		if w > 65535 {
			w = 65535
		}
		// The peer reads the rounded-up edge: remember that one (Linux
		// keeps the aligned window in rcv_wnd), or the data it may send
		// up to it would be dropped, and its later ACKs, beyond our
		// edge, ignored (rcvSlack holds the extra bytes).
		e.rcvAdv = seqMax(e.rcvAdv, e.rcvNxt.add(uint32(w)<<e.rcvWscale))
	} else {
		e.rcvAdv = edge
	}
	return uint16(w)
}

// smallInFlight is Linux's tcp_minshall_check: a segment shorter than the
// MSS has been sent and is not yet acknowledged.
func (e *endpoint) smallInFlight() bool {
	return e.sndSml.gt(e.sndUna) && e.sndSml.leq(e.sndNxt)
}
