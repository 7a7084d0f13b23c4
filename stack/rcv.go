package stack

import "time"

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
	unacked     int       // bytes received since our last ACK
	lastAckSent seqnum
}
