package stack

import (
	"time"

	"ustack/hashtable"
)

// The active open (RFC 9293 3.10.7.3, Linux tcp_v4_connect and
// tcp_rcv_synsent_state_process): connect() sends a SYN, and SYN-SENT waits
// for the peer's SYN|ACK, a RST, or the peer's own SYN (simultaneous open).

// connect creates the connection id, holding the bind entry owner, and
// sends its SYN (B13).
func (s *Stack) connect(now time.Time, id hashtable.FourTuple, owner hashtable.OwnerID, o sockOpts) *endpoint {
	e := s.newEndpoint(id)
	o.apply(e)
	e.owner = owner
	e.active = true
	e.snd.iss = s.isn(now, id)
	e.snd.una, e.snd.nxt, e.snd.max = e.snd.iss, e.snd.iss, e.snd.iss
	e.lastRecv = now
	s.est.Insert(id, e)
	s.inc(cntTCPActiveOpens)
	e.setState(stateSynSent, "connect()", nil)
	e.sendSYN(now, false)
	return e
}
