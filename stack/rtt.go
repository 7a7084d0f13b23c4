package stack

import "time"

// Round-trip time measurement and the retransmission timeout (RFC 6298).

// rttEstimator is RFC 6298's: the smoothed RTT, its variation, and the
// retransmission timeout they give.
type rttEstimator struct {
	srtt   time.Duration // 0: no sample yet
	rttvar time.Duration
	rto    time.Duration
}

// rttSample feeds an RTT measurement to the estimator and the congestion
// control.
func (e *endpoint) rttSample(now time.Time, r time.Duration) {
	if r <= 0 {
		r = time.Microsecond
	}
	e.snd.cc.rttSample(now, r)
	e.snd.rtt.sample(r)
}

// sample takes one measurement r > 0 (RFC 6298 2.2, 2.3); the RTO stays
// within Linux's 200 ms and 120 s, and the variation term is never under
// the minimum RTO (Linux's tcp_rtt_estimator).
func (r *rttEstimator) sample(m time.Duration) {
	if r.srtt == 0 {
		r.srtt = m
		r.rttvar = m / 2
	} else {
		d := r.srtt - m
		if d < 0 {
			d = -d
		}
		r.rttvar = (3*r.rttvar + d) / 4
		r.srtt = (7*r.srtt + m) / 8
	}
	r.rto = min(max(r.srtt+max(4*r.rttvar, rtoMin), rtoMin), rtoMax)
}
