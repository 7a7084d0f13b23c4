package lab

import (
	"fmt"
	"net/netip"
	"strings"

	"ustack/stack"
	"ustack/stack/header"
)

// Flag combinations the checks look for.
const (
	fS   = header.SYN
	fSA  = header.SYN | header.ACK
	fA   = header.ACK
	fR   = header.RST
	fRA  = header.RST | header.ACK
	fF   = header.FIN
	fFA  = header.FIN | header.ACK
	fPSH = header.PSH
)

// segs is a list of segments with filters for the checks.
type segs []Segment

func (ss segs) where(f func(Segment) bool) segs {
	var out segs
	for _, s := range ss {
		if f(s) {
			out = append(out, s)
		}
	}
	return out
}

func (ss segs) first(f func(Segment) bool) (Segment, bool) {
	for _, s := range ss {
		if f(s) {
			return s, true
		}
	}
	return Segment{}, false
}

// from is the segments from position i on (in recording order).
func (ss segs) from(i int) segs {
	if i >= len(ss) {
		return nil
	}
	return ss[i:]
}

// index is the position of s in ss, or -1.
func (ss segs) index(s Segment) int {
	for i := range ss {
		if ss[i].T == s.T && ss[i].Seq == s.Seq && ss[i].Flags == s.Flags && ss[i].Src == s.Src && ss[i].Dst == s.Dst {
			return i
		}
	}
	return -1
}

// lines renders segments for a check's "seen".
func (ss segs) lines() string {
	if len(ss) == 0 {
		return "no segments"
	}
	var parts []string
	for _, s := range ss {
		parts = append(parts, fmt.Sprintf("%s %s at %.3f", dirShort(s), s.TCP(), s.T.Seconds()))
	}
	return strings.Join(parts, "; ")
}

// describe renders one segment for a check's "seen".
func describe(s Segment) string { return segs{s}.lines() }

func dirShort(s Segment) string {
	return endpointName(s.Src.Addr()) + ">" + endpointName(s.Dst.Addr())
}

func out(s Segment) bool { return s.Out }
func in(s Segment) bool  { return !s.Out }

// flow matches the segments of the connection a-b (either direction).
func flow(a, b netip.AddrPort) func(Segment) bool {
	return func(s Segment) bool { return s.Flow(a, b) }
}

// toPort matches segments to a port of ours.
func toPort(p uint16) func(Segment) bool {
	return func(s Segment) bool { return !s.Out && s.Dst.Port() == p }
}

// and combines filters.
func and(fs ...func(Segment) bool) func(Segment) bool {
	return func(s Segment) bool {
		for _, f := range fs {
			if !f(s) {
				return false
			}
		}
		return true
	}
}

// is matches exact flags (PSH ignored).
func is(f uint8) func(Segment) bool { return func(s Segment) bool { return s.Is(f) } }

// has matches segments with every flag in f.
func has(f uint8) func(Segment) bool { return func(s Segment) bool { return s.Has(f) } }

// trans is a list of transitions with filters.
type trans []Transition

func (ts trans) of(local, peer netip.AddrPort) trans {
	var out trans
	for _, t := range ts {
		if t.Conn(local, peer) {
			out = append(out, t)
		}
	}
	return out
}

// path is "CLOSE -> SYN-SENT -> ESTAB": the states in order, starting with
// the first transition's from.
func (ts trans) path() string {
	if len(ts) == 0 {
		return "(no transitions)"
	}
	states := []string{ts[0].Start()}
	for _, t := range ts {
		if t.Start() != states[len(states)-1] {
			states = append(states, "?"+t.Start())
		}
		states = append(states, t.To)
	}
	return strings.Join(states, " -> ")
}

// hasPath reports whether the states want appear in ts in order, each
// step a transition from the one before (the path may go on after). States
// are named as the timeline shows them (a passive open starts in LISTEN).
func (ts trans) hasPath(want ...string) bool {
	for i := 0; i+len(want)-1 <= len(ts); i++ {
		ok := true
		for k := 0; k+1 < len(want); k++ {
			if i+k >= len(ts) || ts[i+k].Start() != want[k] || ts[i+k].To != want[k+1] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// find returns the first transition into state to.
func (ts trans) find(from, to string) (Transition, bool) {
	for _, t := range ts {
		if (from == "" || t.From == from) && t.To == to {
			return t, true
		}
	}
	return Transition{}, false
}

// sockFor finds the socket local-peer in an ss snapshot.
func sockFor(socks []stack.SocketInfo, local, peer netip.AddrPort) (stack.SocketInfo, bool) {
	for _, s := range socks {
		if s.Local == local && (s.Peer == peer || !peer.IsValid()) {
			return s, true
		}
	}
	return stack.SocketInfo{}, false
}

// sockLine renders one socket for a check's "seen".
func sockLine(s stack.SocketInfo) string {
	l := fmt.Sprintf("%s Recv-Q %d Send-Q %d %s %s", s.State, s.RecvQ, s.SendQ, s.Local, peerName(s.Peer))
	if s.Timer != "" {
		l += fmt.Sprintf(" timer %s (%.1fs)", s.Timer, s.TimerLeft.Seconds())
	}
	return l
}

// sockLines renders an ss snapshot for a check's "seen".
func sockLines(socks []stack.SocketInfo) string {
	if len(socks) == 0 {
		return "ss shows no sockets"
	}
	var parts []string
	for _, s := range socks {
		parts = append(parts, sockLine(s))
	}
	return "ss: " + strings.Join(parts, "; ")
}

// ap is shorthand for an address and port.
func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
