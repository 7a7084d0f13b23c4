package stack

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"ustack/hashtable"
)

// What `ustack ss` and the status page show: one line per socket.

// Sockets lists every socket, like ss -tan, sorted by local then peer.
func (s *Stack) Sockets() []SocketInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	var out []SocketInfo
	for _, l := range s.listenersLocked() {
		out = append(out, SocketInfo{State: "LISTEN", RecvQ: len(l.acceptQ), SendQ: l.backlog,
			Local: addrPort(l.addr, l.port), Peer: netip.AddrPortFrom(netip.IPv4Unspecified(), 0)})
	}
	for _, b := range s.bound {
		out = append(out, SocketInfo{State: "UNCONN", Local: addrPort(b.addr, b.port),
			Peer: netip.AddrPortFrom(netip.IPv4Unspecified(), 0)})
	}
	for _, e := range s.endpointsLocked() {
		si := SocketInfo{State: e.state.String(), RecvQ: e.rcv.buf.Len(), SendQ: e.snd.buf.Len(),
			Local: addrPort(e.id.LocalAddr, e.id.LocalPort), Peer: addrPort(e.id.RemoteAddr, e.id.RemotePort)}
		switch {
		case e.waitTimer.Pending():
			si.Timer, si.TimerLeft = "timewait", e.waitTimer.Deadline().Sub(now)
		case e.rtxTimer.Pending():
			si.Timer, si.TimerLeft = "on", e.rtxTimer.Deadline().Sub(now)
			if e.rtxMode == rtxPersist {
				si.Timer = "persist"
			}
			si.Retransmits = max(e.snd.backoff, e.retries)
		case e.keepTimer.Pending():
			si.Timer, si.TimerLeft = "keepalive", e.keepTimer.Deadline().Sub(now)
			if e.state == stateFinWait2 && e.orphan {
				si.Timer = "timewait" // Linux reports an orphan FIN-WAIT-2 so
			}
		}
		out = append(out, si)
	}
	for i := range out {
		out[i].Proto = "tcp"
	}
	for _, list := range s.udp {
		for _, u := range list {
			si := SocketInfo{Proto: "udp", State: "UNCONN", RecvQ: u.queue.bytes,
				Local: addrPort(u.local, u.port), Peer: netip.AddrPortFrom(netip.IPv4Unspecified(), 0)}
			if u.connected {
				si.State, si.Peer = "ESTAB", u.remote // as ss -uan shows a connected socket
			}
			out = append(out, si)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Proto != out[j].Proto {
			return out[i].Proto < out[j].Proto
		}
		if c := out[i].Local.Compare(out[j].Local); c != 0 {
			return c < 0
		}
		return out[i].Peer.Compare(out[j].Peer) < 0
	})
	return out
}

func (s *Stack) endpointsLocked() []*endpoint {
	var out []*endpoint
	s.est.All(func(_ hashtable.FourTuple, e *endpoint) bool {
		out = append(out, e)
		return true
	})
	return out
}

func (s *Stack) listenersLocked() []*listener {
	var out []*listener
	s.lis.All(func(_ hashtable.Addr, _ uint16, l *listener) bool {
		out = append(out, l)
		return true
	})
	return out
}

// String describes the stack for logs.
func (s *Stack) String() string {
	switch {
	case !s.has4:
		return fmt.Sprintf("ustack %v mtu %d", s.opts.Addr6, s.mtu)
	case s.has6:
		return fmt.Sprintf("ustack %v %v mtu %d", s.opts.Addr, s.opts.Addr6, s.mtu)
	}
	return fmt.Sprintf("ustack %v mtu %d", s.opts.Addr, s.mtu)
}

// SocketInfo is one line of `ustack ss`.
type SocketInfo struct {
	Proto       string `json:",omitempty"` // "tcp" or "udp" ("" from engines that know only TCP)
	State       string // ss's names: UNCONN, LISTEN, SYN-SENT, ESTAB, ...
	RecvQ       int    // bytes received and not yet read (LISTEN: accept queue length)
	SendQ       int    // bytes not yet acknowledged (LISTEN: backlog)
	Local       netip.AddrPort
	Peer        netip.AddrPort
	Timer       string        // "on", "keepalive", "timewait", "persist", or ""
	TimerLeft   time.Duration // until the timer fires
	Retransmits int           // consecutive retransmissions of the running timer
}
