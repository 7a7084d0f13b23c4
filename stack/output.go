package stack

import (
	"time"

	"ustack/hashtable"
	"ustack/stack/header"
)

// Sending (Linux's tcp_output.c): the transmit loop that the windows,
// Nagle and TSO shape, the ACK policy's sends, and the transmit builder every
// segment goes through.

// output sends what the send and congestion windows allow, then the ACK
// still owed if no data segment carried it.
func (e *endpoint) output(now time.Time) {
	if e.canSendData() {
		e.sendData(now)
	}
	if e.rcv.ackNow {
		e.sendACK(now)
	}
}

// sendData is the transmit loop (Linux tcp_write_xmit): segments of up to
// one MSS from SND.NXT while the windows allow, the FIN after the last byte.
func (e *endpoint) sendData(now time.Time) {
	mss := e.dataRoom()
	sent := false
	for {
		dataEnd := e.snd.una.add(uint32(e.snd.buf.Len()))
		if e.snd.nxt.gt(dataEnd) {
			break // our FIN is out, nothing follows it
		}
		retransmit := e.snd.nxt.lt(e.snd.max)
		if retransmit && e.snd.nxt == dataEnd && e.snd.finQueued {
			if _, ok := e.sackedAt(dataEnd); ok {
				// The peer holds our FIN too: it counts as sent.
				e.snd.finSent, e.snd.fin = true, dataEnd
				e.snd.nxt = dataEnd.add(1)
				break
			}
		}
		if retransmit && e.snd.nxt.lt(dataEnd) {
			// Going back after an RTO: skip the data the peer SACKed (a
			// block may reach past it, over our FIN).
			if end, ok := e.sackedAt(e.snd.nxt); ok {
				e.snd.nxt = seqMin(end, dataEnd)
				continue
			}
		}
		rest := int(dataEnd.sub(e.snd.nxt)) // unsent (or to resend) data
		avail := rest
		if next, ok := e.nextSacked(e.snd.nxt); ok && retransmit && int(next.sub(e.snd.nxt)) < avail {
			avail = int(next.sub(e.snd.nxt)) // up to the next SACKed block
		}
		// The peer's window covers all that is outstanding; cwnd, in
		// recovery, only what is still in the network (RFC 6675 pipe).
		usable := 0
		if f := e.flight(); e.snd.wnd > f {
			usable = int(e.snd.wnd - f)
		}
		inNet := e.flight()
		if e.snd.fr.active {
			inNet = e.pipe()
		}
		if e.snd.cwnd > inNet {
			usable = min(usable, int(e.snd.cwnd-inNet))
		} else {
			usable = 0
		}
		n := min(avail, usable, mss)
		gso := 0
		if n == mss && !retransmit && e.canGSO() {
			n, gso = e.gsoLen(mss, rest, min(avail, usable))
		}
		last := n == rest // this segment ends the queued data
		fin := e.snd.finQueued && last
		if n == 0 && !(fin && (usable > 0 || e.snd.wnd > 0 || e.flight() == 0)) {
			break
		}
		if n > 0 && n < mss && !retransmit && !fin && (e.cork || e.snd.more) {
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
		seq := e.snd.nxt
		if n > 0 && !retransmit && !e.rcv.lastData.IsZero() && now.Sub(e.rcv.lastData) < delackMin {
			e.rcv.pingpong = true // a reply within the ATO (Linux tcp_event_data_sent)
		}
		e.transmit(now, seq, flags, int(seq.sub(e.snd.una)), n, gso)
		sent = true
		if e.snd.fr.active {
			e.snd.fr.prrOut += max(e.ackedSegs(uint32(n)), 1)
		}
		if retransmit {
			e.s.inc(cntTCPRetransSegs)
		} else if !e.snd.rttTiming && !e.tsOK {
			e.snd.rttTiming, e.snd.rttSeq, e.snd.rttStart = true, seq, now
		}
		e.snd.nxt = seq.add(uint32(n))
		if n%mss != 0 && !retransmit {
			e.snd.sml = e.snd.nxt // ends short (Linux tcp_minshall_update)
		}
		if fin {
			e.snd.finSent = true
			e.snd.fin = e.snd.nxt
			e.snd.nxt = e.snd.nxt.add(1)
		}
		e.snd.max = seqMax(e.snd.max, e.snd.nxt)
		if !e.rtxTimer.Pending() || e.rtxMode == rtxPersist || (e.rtxMode == rtxLossProbe && !retransmit) {
			e.probesAt = time.Time{}
			e.armRetransmit(now) // new data moves the probe (tcp_event_new_data_sent)
		}
		if fin {
			break
		}
	}
	if limited := e.flight() >= e.snd.cwnd; sent || limited {
		e.noteCwndUsage(limited) // tcp_write_xmit's tcp_cwnd_validate
	}
	// B21: data waits behind a zero window, or held by TCP_CORK or
	// MSG_MORE, with nothing in flight to bring an ACK: the persist timer
	// probes (tcp_check_probe_timer), at the RTO.
	pending := e.snd.una.add(uint32(e.snd.buf.Len())).gt(e.snd.nxt) || (e.snd.finQueued && !e.snd.finSent)
	if pending && e.flight() == 0 && !e.rtxTimer.Pending() && (e.snd.wnd == 0 || e.cork || e.snd.more) {
		e.rtxMode = rtxPersist
		e.s.schedule(&e.rtxTimer, now.Add(e.backedOffRTO()))
	}
}

// canGSO reports whether new data may leave as one packet of several
// segments that the link cuts (TSO): the link offloads, and the peer is
// not our own address (loopback packets are processed as they are).
func (e *endpoint) canGSO() bool {
	return e.s.tsoMax() > 0 && e.id.RemoteAddr != e.s.ourAddr(e.id.RemoteAddr)
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
	limit := e.s.tsoMax() - netHdrLen(e.id.RemoteAddr) - header.TCPMinSize - 40
	n = min(room, limit) / mss * mss
	if rest <= min(room, limit) && rest > n && (e.nodelay || e.snd.finQueued || !e.smallInFlight()) {
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
	if e.sackOK && (len(e.rcv.ooo) > 0 || e.rcv.hasDSACK) {
		nb := min(len(e.rcv.ooo)+1, maxSACKSent)
		if e.tsOK {
			nb = min(nb, 3)
		}
		m -= 4 + 8*nb
	}
	return max(m, 1)
}

// sendACK sends a pure ACK now.
func (e *endpoint) sendACK(now time.Time) {
	e.sendSegment(now, e.snd.nxt, flagACK, 0, 0)
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
	e.sendSegment(now, e.snd.nxt, flagRST|flagACK, 0, 0)
}

// sendSYN sends our SYN, or our SYN|ACK when synAck (passive open, or a
// simultaneous open, which reuses the SYN's ISN).
func (e *endpoint) sendSYN(now time.Time, synAck bool) {
	flags := flagSYN
	if synAck {
		flags |= flagACK
	}
	e.sendSegment(now, e.snd.iss, flags, 0, 0)
	if e.retries == 0 {
		e.synStart = now
	}
	e.snd.nxt = e.snd.iss.add(1)
	e.snd.max = seqMax(e.snd.max, e.snd.nxt)
	if e.retries == 0 {
		e.snd.rttTiming, e.snd.rttSeq, e.snd.rttStart = true, e.snd.iss, now
	}
	d := e.synTimeout()
	if e.retries > 0 && e.active {
		d = e.clampToUserTimeout(now, e.synStart, d, jiffy) // tcp_retransmit_timer's rearm
	}
	e.s.schedule(&e.rtxTimer, now.Add(d))
}

// The transmit builder. Every TCP segment the stack sends is laid out by
// sendTCP: a connection's (new data, retransmissions, probes, ACKs, its
// RSTs) through transmit, which adds our options and window; a segment that
// belongs to no connection (a RST answering it) through sendRaw.

// sendSegment sends one segment of the connection: seq and flags as given,
// payload the n bytes at offset off of the send buffer.
func (e *endpoint) sendSegment(now time.Time, seq seqnum, flags uint8, off, n int) {
	e.transmit(now, seq, flags, off, n, 0)
}

// transmit is sendSegment for a packet of n > gso payload bytes that the
// link cuts into segments of gso bytes (0: an ordinary segment).
func (e *endpoint) transmit(now time.Time, seq seqnum, flags uint8, off, n, gso int) {
	tcp := e.s.txBuf[netHdrLen(e.id.RemoteAddr):]
	optLen := e.putOptions(tcp[header.TCPMinSize:], now, flags)
	if n > 0 {
		e.snd.buf.Peek(tcp[header.TCPMinSize+optLen:header.TCPMinSize+optLen+n], off)
	}
	var ack seqnum
	if flags&flagACK != 0 {
		ack = e.rcv.nxt
	}
	wnd := e.selectWindow(flags&flagSYN != 0)
	if flags&flagACK != 0 {
		// Any ACK we send is the one owed (Linux tcp_event_ack_sent).
		e.rcv.lastAckSent = ack
		e.rcv.ackNow = false
		e.rcv.ackPending = false
		e.rcv.unacked = 0
		e.s.timers.Stop(&e.delackTimer)
	}
	e.s.sendTCP(tcp[:header.TCPMinSize+optLen+n], optLen, header.TCPFields{
		SrcPort: e.id.LocalPort, DstPort: e.id.RemotePort,
		Seq: uint32(seq), Ack: uint32(ack), Flags: flags, Window: wnd,
	}, e.id.LocalAddr, e.id.RemoteAddr, gso)
}

// putOptions lays out our options in b, in Linux's order and padding
// (tcp_options_write): a SYN's MSS, SACK-permitted, timestamps and window
// scale; otherwise timestamps and SACK blocks. It returns their length.
func (e *endpoint) putOptions(b []byte, now time.Time, flags uint8) int {
	s := e.s
	tsVal := s.tsNow(now) + e.tsOff
	if e.cookieTS {
		tsVal = e.cookieTSVal(tsVal)
	}
	if flags&flagSYN == 0 {
		var blocks [maxSACKSent]header.SACKBlock
		nb := 0
		if e.sackOK && flags&flagACK != 0 {
			nb = e.sackBlocks(blocks[:])
		}
		return header.PutDataOptions(b, e.tsOK, tsVal, e.rcv.tsRecent, blocks[:nb])
	}
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
		ecr = e.rcv.tsRecent
	}
	return header.PutSYNOptions(b, uint16(e.advMSS()), wscale, sack, ts, tsVal, ecr)
}

// sendResetFor answers a segment that has no connection (RFC 9293 3.10.7.1,
// Linux tcp_v4_send_reset): never a RST for a RST (B05); RST seq=SEG.ACK for
// a segment with ACK (B04); otherwise RST|ACK seq 0 acking the segment (B01).
func (s *Stack) sendResetFor(sg *segment) {
	if sg.has(header.RST) {
		return
	}
	if sg.has(header.ACK) {
		s.sendRaw(sg.dst, sg.src, sg.dstPort, sg.srcPort, sg.ack, 0, header.RST, 0)
		return
	}
	s.sendRaw(sg.dst, sg.src, sg.dstPort, sg.srcPort, 0, sg.seq.add(sg.seqLen()), header.RST|header.ACK, 0)
}

// sendRaw sends an option-less segment that belongs to no connection.
func (s *Stack) sendRaw(src, dst hashtable.Addr, sport, dport uint16, seq, ack seqnum, flags uint8, wnd uint16) {
	s.sendTCP(s.txBuf[netHdrLen(dst):][:header.TCPMinSize], 0, header.TCPFields{
		SrcPort: sport, DstPort: dport, Seq: uint32(seq), Ack: uint32(ack), Flags: flags, Window: wnd,
	}, src, dst, 0)
}

// sendTCP finishes the segment seg (header, optLen bytes of options already
// in place, payload) in the transmit buffer and hands it to IP. A packet
// for the link to cut into segments of gso bytes gets only the
// pseudo-header sum, as Linux leaves the rest to a NIC.
func (s *Stack) sendTCP(seg []byte, optLen int, f header.TCPFields, src, dst hashtable.Addr, gso int) {
	header.EncodeTCP(seg, f, optLen)
	if gso > 0 {
		header.SetPseudoChecksumAt(seg, 16, pseudoSum(src, dst, header.ProtoTCP, len(seg)))
		n := len(seg) - header.TCPMinSize - optLen
		s.cnt[cntTCPOut] += uint64((n + gso - 1) / gso)
		s.inc(cntTCPGSOOut)
	} else {
		header.SetChecksumAt(seg, 16, pseudoSum(src, dst, header.ProtoTCP, len(seg)))
		s.inc(cntTCPOut)
	}
	if f.Flags&flagRST != 0 {
		s.inc(cntTCPResetsSent)
	}
	s.netOutput(s.txBuf[:netHdrLen(dst)+len(seg)], src, dst, header.ProtoTCP, gso)
}
