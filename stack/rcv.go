package stack

import (
	"math/bits"
	"time"
)

// The receive half of a connection: its state, data arriving in and out of
// order (B20), the peer's FIN, the window we offer (B21) and when we ACK
// (B22).

// rcvSlack is receive-buffer space the window never offers: rounding a
// scaled window up (never shrinking it) may promise up to one scale unit
// more than is free, and that data must still fit.
const rcvSlack = 1 << 14

// receiver is the receive half of a connection: RFC 9293's receive
// sequence variables, the receive buffer with its out-of-order blocks, the
// window we offer and when we ACK (B22).
type receiver struct {
	// Receive sequence space (RFC 9293 3.3.1).
	irs      seqnum
	nxt      seqnum
	wscale   uint8
	adv      seqnum // right edge of the window last advertised
	buf      ring   // readable bytes, then out-of-order bytes at their offsets
	tsRecent uint32 // RFC 7323 TS.Recent
	mss      int    // estimate of the peer's segment size (Linux icsk_ack.rcv_mss)

	ooo []seqRange // out-of-order blocks held in buf
	// oooRecent are the starts of the latest out-of-order segments, newest
	// first: our SACK blocks go in that order (RFC 2018 4).
	oooRecent [maxSACKSent]seqnum
	nRecent   int
	dsack     seqRange // a duplicate to report first in our next SACK (RFC 2883)
	hasDSACK  bool

	fin      seqnum // sequence number of the peer's FIN, when finPend
	finPend  bool   // a FIN arrived out of order, waiting for the hole to fill
	finRecvd bool   // the peer's FIN is consumed: reads end with EOF

	// ACK policy (B22, Linux's icsk_ack).
	quickACKs   int
	pingpong    bool      // interactive: we answered within the ATO (Linux pingpong mode)
	lastData    time.Time // when in-order data last arrived
	ackPending  bool      // an ACK is owed: delayed-ACK timer armed
	ackNow      bool      // an ACK is owed at the end of this input step
	ackBatch    bool      // in Stack.batchACKs: owed at the end of the batch
	unacked     int       // bytes received since our last ACK
	lastAckSent seqnum
}

// rcvSpace is the free receive space we may offer as window.
func (e *endpoint) rcvSpace() int { return max(e.rcv.buf.Free()-rcvSlack, 0) }

// rcvWscaleFor picks our window scale like Linux's tcp_select_initial_window:
// enough shift for the whole receive buffer to be advertised.
func rcvWscaleFor(space int) uint8 {
	shift := bits.Len(uint(space)) - 1 - 15
	if shift < 0 {
		return 0
	}
	if shift > 14 {
		return 14
	}
	return uint8(shift)
}

// dataInput stores in-window data and advances RCV.NXT (B20). Out-of-order
// data waits in the receive buffer at its offset until the hole fills.
func (e *endpoint) dataInput(now time.Time, sg *segment) {
	seq, data := sg.seq, sg.payload
	if len(data) > e.rcv.mss {
		// Linux tcp_measure_rcv_mss: the peer's segment size, for the
		// "ACK every second segment" rule.
		e.rcv.mss = min(len(data), e.s.netMSS(e.id.RemoteAddr))
	}
	if seq.lt(e.rcv.nxt) {
		// Old data: report it with a D-SACK (RFC 2883, Linux tcp_dsack_set).
		end := seqMin(seq.add(uint32(len(data))), e.rcv.nxt)
		e.setDSACK(seq, end)
		d := e.rcv.nxt.sub(seq)
		if d >= uint32(len(data)) {
			e.scheduleACK(now, true) // a full duplicate: tell the peer at once
			return
		}
		data, seq = data[d:], e.rcv.nxt
	}
	off := int(seq.sub(e.rcv.nxt))
	space := e.rcv.buf.Free()
	if (e.shutRd && e.orphan) || !e.rcv.adv.gt(e.rcv.nxt) {
		// Linux tcp_data_queue: a zero window drops even in-order data;
		// otherwise whatever fits is queued.
		space = 0
	}
	if off >= space {
		e.s.inc(cntTCPOOODropped)
		e.scheduleACK(now, true) // zero window: ACK to say so
		return
	}
	if off+len(data) > space {
		data = data[:space-off]
	}
	e.rcv.buf.writeAt(off, data)
	if off > 0 {
		end := seq.add(uint32(len(data)))
		for _, x := range e.rcv.ooo {
			if x.start.lt(end) && seq.lt(x.end) {
				// Already held: report the overlap (Linux tcp_data_queue_ofo).
				e.setDSACK(seqMax(seq, x.start), seqMin(end, x.end))
				break
			}
		}
		if !e.addOOO(seqRange{seq, end}) {
			e.s.inc(cntTCPOOODropped)
		} else {
			e.s.inc(cntTCPOOOQueued)
			e.noteOOO(seq)
		}
		e.scheduleACK(now, true) // RFC 5681 4.2: ACK out-of-order data at once
		return
	}
	e.rcv.buf.commit(len(data))
	e.rcv.nxt = e.rcv.nxt.add(uint32(len(data)))
	e.rcv.lastData = now
	filled := false
	for len(e.rcv.ooo) > 0 && e.rcv.ooo[0].start.leq(e.rcv.nxt) {
		if r := e.rcv.ooo[0]; r.end.gt(e.rcv.nxt) {
			e.rcv.buf.commit(int(r.end.sub(e.rcv.nxt)))
			e.rcv.nxt = r.end
		}
		e.rcv.ooo = e.rcv.ooo[1:]
		filled = true
	}
	if len(e.rcv.ooo) == 0 {
		e.rcv.ooo, e.rcv.nRecent = nil, 0
	}
	e.rcv.unacked += len(data)
	e.notifyRead()
	if !filled && sg.has(flagFIN) && e.rcv.nxt == sg.seq.add(uint32(len(sg.payload))) && len(e.rcv.ooo) == 0 {
		// The FIN right behind this data is taken next (maybeConsumeFin),
		// and the ACK is decided there: Linux's tcp_fin enters pingpong
		// mode before __tcp_ack_snd_check looks at quick-ACK mode.
		return
	}
	e.scheduleACK(now, filled) // RFC 5681 4.2: ACK at once when a hole fills
}

// setDSACK remembers a duplicate block for the next ACK.
func (e *endpoint) setDSACK(start, end seqnum) {
	if e.sackOK && e.s.opts.DSACK {
		e.rcv.dsack, e.rcv.hasDSACK = seqRange{start, end}, true
	}
}

// addOOO records an out-of-order block; false when the queue already
// holds too many separate blocks.
func (e *endpoint) addOOO(r seqRange) bool {
	out, ok := mergeRange(e.rcv.ooo, r)
	if ok {
		e.rcv.ooo = out
	}
	return ok
}

// maybeConsumeFin takes the peer's FIN once every byte before it arrived
// (RFC 9293 3.10.7.4 eighth step, Linux tcp_fin).
func (e *endpoint) maybeConsumeFin(now time.Time, sg *segment) {
	if !e.rcv.finPend || e.rcv.fin != e.rcv.nxt || len(e.rcv.ooo) > 0 {
		return
	}
	e.rcv.finPend = false
	e.rcv.finRecvd = true
	e.rcv.nxt = e.rcv.nxt.add(1)
	e.notifyRead()
	switch e.state {
	case stateSynRecv, stateEstablished:
		e.setState(stateCloseWait, "FIN", sg)
		// Linux tcp_fin enters pingpong mode: the ACK is delayed, so that
		// an application that closes right away sends one FIN|ACK (B31).
		e.rcv.pingpong = true
		e.scheduleACK(now, false)
	case stateFinWait1:
		e.setState(stateClosing, "FIN (simultaneous close)", sg)
		e.sendACK(now)
	case stateFinWait2:
		e.sendACK(now)
		e.enterTimeWait(now, "FIN", sg)
	}
}

// scheduleACK decides when to ACK received data (B22, Linux
// __tcp_ack_snd_check): at once for out-of-order data, in quick-ACK mode
// and for every second full-sized segment; otherwise after the delayed-ACK
// timer, unless data leaving first carries the ACK.
func (e *endpoint) scheduleACK(now time.Time, immediate bool) {
	quick := e.rcv.quickACKs > 0 && !e.rcv.pingpong
	switch {
	case immediate:
		e.rcv.ackNow = true
	case (quick || e.rcv.unacked > e.rcv.mss) && e.s.batching && e.rcv.unacked < groMax:
		// Within one batch from the embedder, the flow's in-order
		// segments are one GRO packet to Linux (dev_gro_receive): one
		// ACK, when the batch is done (Stack.inputBatchLocked).
		if !e.rcv.ackBatch {
			if quick {
				e.rcv.quickACKs--
			}
			e.rcv.ackBatch = true
			e.s.batchACKs = append(e.s.batchACKs, e)
		}
		e.rcv.ackPending = true
	case quick:
		e.rcv.quickACKs--
		e.rcv.ackNow = true
	case e.rcv.unacked > e.rcv.mss:
		e.rcv.ackNow = true
	default:
		if !e.delackTimer.Pending() {
			d := delackMin
			if e.rcv.lastData.IsZero() {
				d = delackNoData
			}
			e.s.schedule(&e.delackTimer, now.Add(d))
		}
		e.rcv.ackPending = true
	}
}

// selectWindow computes the window field (Linux tcp_select_window): free
// receive space, scaled, never shrinking the right edge already offered.
func (e *endpoint) selectWindow(syn bool) uint16 {
	free := e.rcvSpace()
	if syn {
		// RFC 7323 2.2: the window of a SYN is never scaled.
		w := min(free, maxWindow)
		e.rcv.adv = seqMax(e.rcv.adv, e.rcv.nxt.add(uint32(w)))
		return uint16(w)
	}
	// Receiver SWS avoidance (RFC 9293 3.8.6.2.2).
	if free < e.s.opts.RecvBuffer/2 && free < e.s.netMSS(e.id.RemoteAddr) {
		free = 0
	}
	w := free >> e.rcv.wscale
	if w > maxWindow {
		w = maxWindow
	}
	edge := e.rcv.nxt.add(uint32(w) << e.rcv.wscale)
	if edge.lt(e.rcv.adv) {
		// Never shrink (RFC 9293 3.8.6.2.1): keep offering the old edge.
		unit := uint32(1)<<e.rcv.wscale - 1
		w = int((e.rcv.adv.sub(e.rcv.nxt) + unit) >> e.rcv.wscale)
		if w > maxWindow {
			w = maxWindow
		}
		// The peer reads the rounded-up edge: remember that one (Linux
		// keeps the aligned window in rcv_wnd), or the data it may send
		// up to it would be dropped, and its later ACKs, beyond our
		// edge, ignored (rcvSlack holds the extra bytes).
		e.rcv.adv = seqMax(e.rcv.adv, e.rcv.nxt.add(uint32(w)<<e.rcv.wscale))
	} else {
		e.rcv.adv = edge
	}
	return uint16(w)
}

// afterRead reopens the window after the application consumed data, and
// tells the peer when the window at least doubled (Linux tcp_cleanup_rbuf).
func (e *endpoint) afterRead(now time.Time) {
	if e.rcv.buf.Len() == 0 && len(e.rcv.ooo) == 0 {
		e.rcv.buf.release()
	}
	if !e.state.synchronized() || e.rcv.finRecvd || e.gone {
		return
	}
	cur := uint32(0)
	if e.rcv.adv.gt(e.rcv.nxt) {
		cur = e.rcv.adv.sub(e.rcv.nxt)
	}
	// The window we could offer is capped by what the field can carry
	// (Linux window_clamp).
	clamp := uint32(maxWindow) << e.rcv.wscale
	free := min(uint32(e.rcvSpace()), clamp)
	if 2*cur <= clamp && free >= 2*cur && free-cur >= uint32(e.s.netMSS(e.id.RemoteAddr)) {
		e.sendACK(now)
	}
}
