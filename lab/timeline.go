package lab

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"ustack/stack"
	"ustack/stack/header"
)

// The addresses every experiment uses: the kernel's side of tun0 and the
// stack's own address, in a namespace of the experiment's own.
var (
	kernelAddr = netip.MustParseAddr("10.0.0.1")
	ustackAddr = netip.MustParseAddr("10.0.0.2")
	tunPrefix  = netip.MustParsePrefix("10.0.0.1/24")
)

// Segment is one TCP segment seen by the stack's packet observer: sent by
// ustack (to the TUN device or, for its own address, on the loopback path)
// or received from the TUN device.
type Segment struct {
	T        time.Duration // since the experiment started
	Out      bool          // sent by ustack
	Src, Dst netip.AddrPort
	Flags    uint8
	Seq, Ack uint32
	Win      uint16
	Len      int
	Payload  []byte
	Opts     header.TCPOptions

	// The ISNs the sequence and acknowledgment numbers are relative to,
	// when the SYN of that direction was seen (as tcpdump numbers them).
	SeqISN, AckISN     uint32
	SeqKnown, AckKnown bool
}

// In reports whether ustack received the segment.
func (s Segment) In() bool { return !s.Out }

// Has reports whether every flag in f is set.
func (s Segment) Has(f uint8) bool { return s.Flags&f == f }

// Is reports whether the flags are exactly f (PSH and ECN bits ignored).
func (s Segment) Is(f uint8) bool {
	return s.Flags&^(header.PSH|header.ECE|header.CWR|header.URG) == f
}

// RelSeq is the sequence number relative to the sender's ISN (absolute if
// its SYN was not seen).
func (s Segment) RelSeq() uint32 {
	if s.SeqKnown {
		return s.Seq - s.SeqISN
	}
	return s.Seq
}

// RelAck is the acknowledgment number relative to the receiver's ISN.
func (s Segment) RelAck() uint32 {
	if s.AckKnown {
		return s.Ack - s.AckISN
	}
	return s.Ack
}

// SeqLen is the sequence space the segment occupies: data, SYN and FIN.
func (s Segment) SeqLen() uint32 {
	n := uint32(s.Len)
	if s.Flags&header.SYN != 0 {
		n++
	}
	if s.Flags&header.FIN != 0 {
		n++
	}
	return n
}

// Flow reports whether the segment belongs to the connection a-b, in
// either direction.
func (s Segment) Flow(a, b netip.AddrPort) bool {
	return s.Src == a && s.Dst == b || s.Src == b && s.Dst == a
}

// flagString writes flags the way packetdrill and tcpdump do: S, F, R, P,
// U, E, W, then "." for ACK; "-" for none.
func flagString(f uint8) string {
	var b strings.Builder
	for _, x := range []struct {
		bit uint8
		c   byte
	}{{header.SYN, 'S'}, {header.FIN, 'F'}, {header.RST, 'R'}, {header.PSH, 'P'}, {header.URG, 'U'}, {header.ECE, 'E'}, {header.CWR, 'W'}, {header.ACK, '.'}} {
		if f&x.bit != 0 {
			b.WriteByte(x.c)
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// TCP renders the segment like packetdrill: flags, start:end(len) in
// relative sequence numbers, ack, win, and the options worth reading
// (those of a SYN, and SACK blocks).
func (s Segment) TCP() string {
	var b strings.Builder
	seq := s.RelSeq()
	fmt.Fprintf(&b, "%s %d:%d(%d)", flagString(s.Flags), seq, seq+uint32(s.Len), s.Len)
	if s.Flags&header.ACK != 0 {
		fmt.Fprintf(&b, " ack %d", s.RelAck())
	}
	fmt.Fprintf(&b, " win %d", s.Win)
	var opts []string
	if s.Opts.HasMSS {
		opts = append(opts, fmt.Sprintf("mss %d", s.Opts.MSS))
	}
	if s.Opts.SACKPermitted {
		opts = append(opts, "sackOK")
	}
	if s.Opts.HasTS && s.Flags&header.SYN != 0 {
		opts = append(opts, "TS")
	}
	if s.Opts.HasWScale {
		opts = append(opts, fmt.Sprintf("wscale %d", s.Opts.WScale))
	}
	for i := 0; i < s.Opts.NumSACK; i++ {
		blk := s.Opts.SACK[i]
		// SACK blocks cover the receiver's data: relative to the ISN of
		// the direction the ack numbers refer to.
		st, en := blk.Start, blk.End
		if s.AckKnown {
			st, en = st-s.AckISN, en-s.AckISN
		}
		opts = append(opts, fmt.Sprintf("sack %d:%d", st, en))
	}
	if len(opts) > 0 {
		fmt.Fprintf(&b, " <%s>", strings.Join(opts, ","))
	}
	return b.String()
}

// parseSegment parses an IPv4 packet carrying TCP; ok is false for
// anything else (IPv6 noise from the kernel, ICMP, malformed packets).
func parseSegment(pkt []byte) (Segment, bool) {
	ip := header.IPv4(pkt)
	if ip.Validate() != nil || ip.Protocol() != header.ProtoTCP || ip.IsFragment() {
		return Segment{}, false
	}
	tcp := header.TCP(ip.Payload())
	if tcp.Validate() != nil {
		return Segment{}, false
	}
	s := Segment{
		Src:     netip.AddrPortFrom(netip.AddrFrom4(ip.Src()), tcp.SrcPort()),
		Dst:     netip.AddrPortFrom(netip.AddrFrom4(ip.Dst()), tcp.DstPort()),
		Flags:   tcp.Flags(),
		Seq:     tcp.Seq(),
		Ack:     tcp.Ack(),
		Win:     tcp.Window(),
		Payload: append([]byte(nil), tcp.Payload()...),
	}
	s.Len = len(s.Payload)
	_ = header.ParseTCPOptions(tcp.Options(), &s.Opts) // keep what parsed
	return s, true
}

// numbering remembers each direction's ISN, as tcpdump does for its
// relative sequence numbers: a SYN from src to dst sets src's ISN for that
// connection.
type numbering map[[2]netip.AddrPort]uint32

func (n numbering) number(s *Segment) {
	if s.Flags&header.SYN != 0 {
		n[[2]netip.AddrPort{s.Src, s.Dst}] = s.Seq
	}
	if isn, ok := n[[2]netip.AddrPort{s.Src, s.Dst}]; ok {
		s.SeqISN, s.SeqKnown = isn, true
	}
	if isn, ok := n[[2]netip.AddrPort{s.Dst, s.Src}]; ok {
		s.AckISN, s.AckKnown = isn, true
	}
}

// Transition is one state change traced by the stack.
type Transition struct {
	T           time.Duration
	Local, Peer netip.AddrPort
	From, To    string // ss's names: SYN-SENT, ESTAB, ...
	Cause       string
}

// Conn reports whether the transition is of the connection local-peer.
func (tr Transition) Conn(local, peer netip.AddrPort) bool {
	return tr.Local == local && tr.Peer == peer
}

// Event kinds of the timeline.
const (
	evSegment = iota
	evTransition
	evNote
)

// Event is one line (or block) of the timeline.
type Event struct {
	T    time.Duration
	Kind int
	Seg  Segment
	Tr   Transition
	Who  string // notes: "kernel", "ustack" or "lab"
	Text string // notes; may span lines (ss tables)
}

// Timeline records what happened during an experiment: segments from the
// stack's packet observer, transitions from its trace logger, and notes
// about what the kernel and the applications did. Recording stops at
// Freeze, before the experiment's teardown.
type Timeline struct {
	mu     sync.Mutex
	start  time.Time
	frozen bool
	events []Event
	num    numbering
}

func newTimeline(start time.Time) *Timeline {
	return &Timeline{start: start, num: numbering{}}
}

// Now is the current experiment time.
func (tl *Timeline) Now() time.Duration { return time.Since(tl.start) }

func (tl *Timeline) add(ev Event) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.frozen {
		return
	}
	ev.T = time.Since(tl.start)
	if ev.Kind == evSegment {
		tl.num.number(&ev.Seg)
		ev.Seg.T = ev.T
	}
	if ev.Kind == evTransition {
		ev.Tr.T = ev.T
	}
	tl.events = append(tl.events, ev)
}

// Packet is the stack's packet observer (stack.Options.Packet). It runs
// with the stack locked, so it only copies and appends.
func (tl *Timeline) Packet(out bool, pkt []byte) {
	s, ok := parseSegment(pkt)
	if !ok {
		return
	}
	s.Out = out
	tl.add(Event{Kind: evSegment, Seg: s})
}

// Note adds a line said by who ("kernel", "ustack", "lab").
func (tl *Timeline) Note(who, format string, args ...any) {
	tl.add(Event{Kind: evNote, Who: who, Text: fmt.Sprintf(format, args...)})
}

// Freeze stops recording.
func (tl *Timeline) Freeze() {
	tl.mu.Lock()
	tl.frozen = true
	tl.mu.Unlock()
}

// Events returns a copy of everything recorded, in order.
func (tl *Timeline) Events() []Event {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return append([]Event(nil), tl.events...)
}

// Segments returns the recorded segments, in order.
func (tl *Timeline) Segments() []Segment {
	var out []Segment
	for _, ev := range tl.Events() {
		if ev.Kind == evSegment {
			out = append(out, ev.Seg)
		}
	}
	return out
}

// Transitions returns the recorded state transitions, in order.
func (tl *Timeline) Transitions() []Transition {
	var out []Transition
	for _, ev := range tl.Events() {
		if ev.Kind == evTransition {
			out = append(out, ev.Tr)
		}
	}
	return out
}

// Handler is the slog.Handler for stack.Options.Trace: it turns each
// "tcp state" record into a transition.
func (tl *Timeline) Handler() slog.Handler { return traceHandler{tl} }

type traceHandler struct{ tl *Timeline }

func (h traceHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h traceHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h traceHandler) WithGroup(string) slog.Handler            { return h }

func (h traceHandler) Handle(_ context.Context, r slog.Record) error {
	var tr Transition
	r.Attrs(func(a slog.Attr) bool {
		v := a.Value.String()
		switch a.Key {
		case "local":
			tr.Local, _ = netip.ParseAddrPort(v)
		case "peer":
			tr.Peer, _ = netip.ParseAddrPort(v)
		case "from":
			tr.From = v
		case "to":
			tr.To = v
		case "cause":
			tr.Cause = v
		}
		return true
	})
	if tr.From == "" && tr.To == "" {
		h.tl.Note("ustack", "%s", r.Message)
		return nil
	}
	h.tl.add(Event{Kind: evTransition, Tr: tr})
	return nil
}

// endpointName names an address for the direction column.
func endpointName(a netip.Addr) string {
	switch a {
	case kernelAddr:
		return "kernel"
	case ustackAddr:
		return "ustack"
	}
	return a.String()
}

// portName is ":port": the direction column names the address.
func portName(ap netip.AddrPort) string { return fmt.Sprintf(":%d", ap.Port()) }

// FormatSegment is a segment's timeline line without the time:
// "kernel > ustack  :41234 > :7       S 0:0(0) win 64240 <mss 1460,...>".
func FormatSegment(s Segment) string {
	dir := endpointName(s.Src.Addr()) + " > " + endpointName(s.Dst.Addr())
	ports := portName(s.Src) + " > " + portName(s.Dst)
	return fmt.Sprintf("%-16s %-15s %s", dir, ports, s.TCP())
}

// FormatTransition is a transition's timeline line without the time:
// "ustack           10.0.0.2:7 ESTAB -> CLOSE-WAIT (FIN)   peer :41234".
func FormatTransition(tr Transition) string {
	line := fmt.Sprintf("%-16s %s %s -> %s", "ustack", tr.Local, tr.From, tr.To)
	if tr.Cause != "" {
		line += " (" + tr.Cause + ")"
	}
	if tr.Peer.IsValid() && tr.Peer.Port() != 0 {
		peer := tr.Peer.String()
		if tr.Peer.Addr() == kernelAddr || tr.Peer.Addr() == ustackAddr {
			peer = portName(tr.Peer)
		}
		line += "   peer " + peer
	}
	return line
}

// timeCol is the width of the time column, "%8.3f  ".
const timeCol = 10

// noteWidth is where a long one-line note wraps.
const noteWidth = 72

// FormatEvent renders one event as timeline lines.
func FormatEvent(ev Event) string {
	t := fmt.Sprintf("%8.3f  ", ev.T.Seconds())
	switch ev.Kind {
	case evSegment:
		return t + FormatSegment(ev.Seg)
	case evTransition:
		return t + FormatTransition(ev.Tr)
	}
	text := ev.Text
	if !strings.Contains(text, "\n") && len(text) > noteWidth {
		text = strings.TrimLeft(wrap(text, noteWidth, ""), " ")
	}
	lines := strings.Split(text, "\n")
	var b strings.Builder
	b.WriteString(t)
	fmt.Fprintf(&b, "%-16s %s", ev.Who, lines[0])
	for _, l := range lines[1:] {
		b.WriteString("\n")
		b.WriteString(strings.Repeat(" ", timeCol+17))
		b.WriteString(l)
	}
	return b.String()
}

// Render writes the timeline.
func (tl *Timeline) Render(w io.Writer) {
	for _, ev := range tl.Events() {
		fmt.Fprintln(w, FormatEvent(ev))
	}
}

// formatSockets renders the stack's sockets like ss -tan, one per line.
func formatSockets(socks []stack.SocketInfo) string {
	if len(socks) == 0 {
		return "(no sockets)"
	}
	rows := [][]string{{"State", "Recv-Q", "Send-Q", "Local:Port", "Peer:Port", "Timer"}}
	for _, s := range socks {
		peer := s.Peer.String()
		if !s.Peer.Addr().IsValid() || s.Peer.Addr().IsUnspecified() {
			peer = "*:*"
		}
		timer := ""
		if s.Timer != "" {
			timer = fmt.Sprintf("%s (%.1fs)", s.Timer, max(s.TimerLeft, 0).Seconds())
		}
		rows = append(rows, []string{s.State, fmt.Sprint(s.RecvQ), fmt.Sprint(s.SendQ), s.Local.String(), peer, timer})
	}
	return formatTable(rows)
}

// formatTable left-aligns columns, two spaces apart.
func formatTable(rows [][]string) string {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(c))
		}
	}
	var lines []string
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
			} else {
				fmt.Fprintf(&b, "%-*s  ", widths[i], c)
			}
		}
		lines = append(lines, strings.TrimRight(b.String(), " "))
	}
	return strings.Join(lines, "\n")
}

// wrap breaks text into lines of at most width columns, each prefixed
// with indent; blank lines in text separate paragraphs.
func wrap(text string, width int, indent string) string {
	var out []string
	for _, para := range strings.Split(strings.TrimSpace(text), "\n\n") {
		if len(out) > 0 {
			out = append(out, "")
		}
		line := indent
		for _, word := range strings.Fields(para) {
			if len(line) > len(indent) && len(line)+1+len(word) > width {
				out = append(out, line)
				line = indent
			}
			if len(line) > len(indent) {
				line += " "
			}
			line += word
		}
		if len(line) > len(indent) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
