package drill

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Script is a parsed packetdrill script.
type Script struct {
	Path    string
	Options []Option // --name=value lines, in order
	// Init is the init shell command (the first back-quoted block before any
	// event), or nil.
	Init   *Shell
	Events []*Event
	// Cleanup is the back-quoted command after the last event (packetdrill's
	// cleanup command), or nil. It is not run: every run's stack, and the
	// Linux namespace, is thrown away afterwards.
	Cleanup *Shell
	// Unsupported names the features the script uses that drill does not
	// implement, in order of first use. A script with any is skipped.
	Unsupported []Feature
	// Divergences are the `// divergence: STACK: reason` comments: an
	// explained difference of STACK from Linux. A note stands right above
	// the event where STACK departs, and only a FAIL at that event's line
	// (DivergenceLine) is the expected one; any other is a failure.
	Divergences    map[string]string
	DivergenceLine map[string]int
}

// Feature is an unsupported feature and where the script first uses it.
type Feature struct {
	Pos  Pos
	Name string
}

func (f Feature) String() string { return fmt.Sprintf("%s (line %d)", f.Name, f.Pos.Line) }

// Pos is a position in a script, 1-based.
type Pos struct{ Line, Col int }

// Option is one --name=value line.
type Option struct {
	Pos   Pos
	Name  string
	Value string
}

// TimeKind says how an event's time is written.
type TimeKind int

const (
	TimeAbsolute TimeKind = iota // 0.100
	TimeRelative                 // +0.1
	TimeAny                      // *
)

// Timing is an event's time: a point or a range [Start, End] (End == Start
// for a point), absolute or relative to the previous event. A blocking
// syscall (T...E) also has a return time Return, measured from the same base
// as Start.
type Timing struct {
	Kind     TimeKind
	Start    time.Duration
	End      time.Duration
	Blocking bool
	Return   time.Duration
}

// EventKind tells which of an Event's fields is set.
type EventKind int

const (
	EventSyscall EventKind = iota
	EventPacket
	EventShell
)

// Event is one line of the script: a time and an action.
type Event struct {
	Pos     Pos
	Time    Timing
	Kind    EventKind
	Syscall *Syscall
	Packet  *Packet
	Shell   *Shell
}

// Syscall is `name(args) = result [ERRNO [(note)]]`.
type Syscall struct {
	Name   string
	Args   []*Expr
	Result int64
	Errno  string // "" when none is written
}

// Shell is a back-quoted command.
type Shell struct {
	Pos     Pos
	Command string
}

// ExprKind is the kind of a syscall argument.
type ExprKind int

const (
	ExprInt      ExprKind = iota // 3, 0x2, -1, and symbols resolved to numbers
	ExprEllipsis                 // ...
	ExprList                     // [a, b]
	ExprStruct                   // {name=value, ...}
	ExprString                   // "text"
)

// Expr is a syscall argument.
type Expr struct {
	Pos    Pos
	Kind   ExprKind
	Int    int64
	Symbol string // the symbol(s) an ExprInt was written with, for messages
	List   []*Expr
	Fields []Field
	Str    string
}

// Field is one name=value of a struct argument.
type Field struct {
	Name string
	// Arg is the parenthesized part of `msg_iov(1)=...`, or nil.
	Arg   *Expr
	Value *Expr
}

func (e *Expr) String() string {
	switch e.Kind {
	case ExprInt:
		if e.Symbol != "" {
			return e.Symbol
		}
		return fmt.Sprint(e.Int)
	case ExprEllipsis:
		return "..."
	case ExprList:
		var parts []string
		for _, x := range e.List {
			parts = append(parts, x.String())
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case ExprStruct:
		var parts []string
		for _, f := range e.Fields {
			parts = append(parts, f.Name+"="+f.Value.String())
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case ExprString:
		return fmt.Sprintf("%q", e.Str)
	}
	return "?"
}

// Field returns the value of the named struct field, or nil.
func (e *Expr) Field(name string) *Expr {
	for _, f := range e.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return nil
}

// Direction of a packet line.
type Direction int

const (
	Inbound  Direction = iota // < : injected into the stack
	Outbound                  // > : expected from the stack
)

// Packet is a TCP packet line.
type Packet struct {
	Dir   Direction
	Flags uint8 // header.FIN ... header.CWR
	AE    bool  // the AE (AccECN) bit, a reserved bit in RFC 9293
	Seq   uint32
	Len   int
	Ack   uint32
	// Win is the raw window; HasWin is false when the line has no `win`
	// (allowed on outbound lines only: the window is then not checked).
	Win    uint16
	HasWin bool
	Urg    uint16
	// Options is nil for "no options"; AnyOptions is set for `<...>`.
	Options    []TCPOption
	AnyOptions bool
	// ICMP, when set, makes this an inbound ICMP error about the TCP
	// segment it quotes (`< icmp unreachable frag_needed mtu 1200
	// [1:1461(1460)]`); the TCP fields above are unused.
	ICMP *ICMPSpec
	// UDP, when set, makes this a UDP datagram line (`< udp (100)`, with
	// optional ports `udp 2000>8080 (100)`); the TCP fields are unused.
	UDP *UDPSpec
}

// UDPSpec is a UDP datagram line: the payload length and, when written,
// the ports (0: the connection's own, as packetdrill maps them).
type UDPSpec struct {
	Len              int
	SrcPort, DstPort uint16
}

// ICMPSpec is an ICMP error line: its type and code as written (the wire
// numbers depend on the run's IP version, as in packetdrill's
// icmp_packet.c), the MTU (frag_needed, packet_too_big), and the sequence
// number of the quoted segment of ours (relative, like the script's
// outbound lines).
type ICMPSpec struct {
	Type, Code string // Code is "" when none is written
	MTU        uint32
	Seq        uint32
	// UDP is set for an error quoting a datagram of ours (`[udp (N)]`),
	// of UDPLen payload bytes, instead of a TCP segment.
	UDP    bool
	UDPLen int
}

// icmpType is one ICMP or ICMPv6 type with its named codes.
type icmpType struct {
	num   uint8
	codes map[string]uint8
}

// packetdrill's names (icmp_packet.c), ICMPv4 and ICMPv6 (RFC 4443).
var (
	icmpv4Types = map[string]icmpType{
		"unreachable": {3, map[string]uint8{
			"net_unreachable": 0, "host_unreachable": 1, "protocol_unreachable": 2,
			"port_unreachable": 3, "frag_needed": 4, "source_route_failed": 5,
			"net_unknown": 6, "host_unknown": 7, "source_host_isolated": 8,
			"net_prohibited": 9, "host_prohibited": 10, "net_unreachable_for_tos": 11,
			"host_unreachable_for_tos": 12, "packet_filtered": 13,
			"precedence_violation": 14, "precedence_cutoff": 15,
		}},
		"time_exceeded":     {11, nil},
		"parameter_problem": {12, nil},
	}
	icmpv6Types = map[string]icmpType{
		"unreachable": {1, map[string]uint8{
			"net_unreachable": 0, "no_route": 0, "admin_prohibited": 1,
			"not_neighbour": 2, "address_unreachable": 3, "port_unreachable": 4,
		}},
		"packet_too_big":    {2, nil},
		"time_exceeded":     {3, map[string]uint8{"exceeded_hop_limit": 0, "exceeded_frag_time": 1}},
		"parameter_problem": {4, map[string]uint8{"header_field": 0, "unknown_next_header": 1, "unknown_option": 2}},
	}
)

// knownICMPType reports whether name is an error type of either family.
func knownICMPType(name string) bool {
	_, v4 := icmpv4Types[name]
	_, v6 := icmpv6Types[name]
	return v4 || v6
}

// knownICMPCode reports whether code is a code of type typ in either
// family; which one applies is known only when the script runs.
func knownICMPCode(typ, code string) bool {
	_, v4 := icmpv4Types[typ].codes[code]
	_, v6 := icmpv6Types[typ].codes[code]
	return v4 || v6
}

// wire is the type and code on the wire, for ICMPv6 when v6. A name the
// family does not have is an error, as packetdrill's is.
func (ic *ICMPSpec) wire(v6 bool) (typ, code uint8, err error) {
	table, family := icmpv4Types, "ICMPv4"
	if v6 {
		table, family = icmpv6Types, "ICMPv6"
	}
	t, ok := table[ic.Type]
	if !ok {
		return 0, 0, fmt.Errorf("%s has no type %q", family, ic.Type)
	}
	if ic.Code != "" {
		if code, ok = t.codes[ic.Code]; !ok {
			return 0, 0, fmt.Errorf("%s type %s has no code %q", family, ic.Type, ic.Code)
		}
	} else if t.codes != nil {
		return 0, 0, fmt.Errorf("%s type %s needs a code", family, ic.Type)
	}
	switch {
	case ic.MTU == 0:
	case v6 && t.num != 2:
		return 0, 0, errors.New("an MTU is only valid for packet_too_big")
	case !v6 && (t.num != 3 || code != 4):
		return 0, 0, errors.New("an MTU is only valid for unreachable frag_needed")
	}
	return t.num, code, nil
}

// OptionKind is a TCP option kind as scripts write it.
type OptionKind int

const (
	OptNOP OptionKind = iota
	OptEOL
	OptMSS
	OptWScale
	OptSACKOK
	OptSACK
	OptTS
)

// TCPOption is one option of a packet line.
type TCPOption struct {
	Kind   OptionKind
	Value  uint32      // mss, wscale
	Blocks [][2]uint32 // sack edges (relative)
	TSVal  uint32
	TSEcr  uint32
}

func (o TCPOption) String() string {
	switch o.Kind {
	case OptNOP:
		return "nop"
	case OptEOL:
		return "eol"
	case OptMSS:
		return fmt.Sprintf("mss %d", o.Value)
	case OptWScale:
		return fmt.Sprintf("wscale %d", o.Value)
	case OptSACKOK:
		return "sackOK"
	case OptSACK:
		var b strings.Builder
		b.WriteString("sack")
		for _, blk := range o.Blocks {
			fmt.Fprintf(&b, " %d:%d", blk[0], blk[1])
		}
		return b.String()
	case OptTS:
		return fmt.Sprintf("TS val %d ecr %d", o.TSVal, o.TSEcr)
	}
	return "?"
}

// wireLen is the option's length on the wire.
func (o TCPOption) wireLen() int {
	switch o.Kind {
	case OptNOP, OptEOL:
		return 1
	case OptMSS:
		return 4
	case OptWScale:
		return 3
	case OptSACKOK:
		return 2
	case OptSACK:
		return 2 + 8*len(o.Blocks)
	case OptTS:
		return 10
	}
	return 0
}
