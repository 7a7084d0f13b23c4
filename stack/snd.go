package stack

import "time"

// sender is the send half of a connection: RFC 9293's send sequence
// variables, the send buffer, the peer's window, the RTT estimate and the
// congestion and recovery state that decide how much may be in flight.
type sender struct {
	// Send sequence space (RFC 9293 3.3.1).
	iss      seqnum
	una      seqnum
	nxt      seqnum
	max      seqnum // highest sequence number sent; nxt rewinds on RTO
	wnd      uint32 // peer's window, scaled
	maxWnd   uint32
	wl1, wl2 seqnum
	wscale   uint8
	mss      int  // largest payload the peer accepts, without our options
	buf      ring // bytes from una on: unacknowledged, then unsent

	finQueued bool   // a FIN follows the data in buf
	finSent   bool   //
	fin       seqnum // sequence number of our FIN once sent
	synAcked  bool   // our SYN is acknowledged: una has passed the ISS
	sml       seqnum // end of the last segment sent shorter than the MSS (Nagle)
	more      bool   // the write being pushed was sent with MSG_MORE

	sacked []seqRange // the peer's SACK blocks above una (sack.go)

	// Retransmission timing (RFC 6298, rtt.go).
	rtt       rttEstimator
	rttTiming bool // a segment is being timed (without timestamps)
	rttSeq    seqnum
	rttStart  time.Time
	backoff   int       // RTO expirations in a row
	rtxStart  time.Time // when the current run of retransmissions began
	rtoSentAt time.Time // when the RTO last resent the head

	// Congestion control (RFC 5681, cc.go) and loss recovery (RFC 6582,
	// RFC 6675, RFC 6937; recovery.go).
	cwnd         uint32
	ssthresh     uint32
	cc           congestionControl
	dupAcks      int
	recover      seqnum       // RFC 6582: no new recovery below this
	renoSacked   uint32       // without SACK: duplicate ACKs stand for SACKed segments
	fr           fastRecovery // while in fast recovery
	cwndCnt      uint32       // segments ACKed toward the next cwnd increase (snd_cwnd_cnt)
	cwndLimited  bool         // cwnd limited the flight of this window (is_cwnd_limited)
	maxFlight    uint32       // the most in flight this window (max_packets_out), bytes
	cwndUsageSeq seqnum       // the window those two describe ends here
}

// flight is the sequence space sent and not yet acknowledged.
func (e *endpoint) flight() uint32 { return e.snd.nxt.sub(e.snd.una) }
