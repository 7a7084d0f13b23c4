package stack

import "time"

// reno is NewReno's congestion avoidance (RFC 5681) as Linux's tcp_reno:
// one segment per window of ACKs, and half the window after a loss.
type reno struct{}

func (reno) avoidCount(_ time.Time, cwnd, _ uint32) uint32 { return cwnd }

func (reno) ssthresh(cwnd uint32) uint32 { return cwnd / 2 }

func (reno) onLoss() {}

func (reno) rttSample(time.Time, time.Duration) {}
