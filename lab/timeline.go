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
	// The same over IPv6, for the experiments that run over both.
	kernelAddr6 = netip.MustParseAddr("fd00::1")
	ustackAddr6 = netip.MustParseAddr("fd00::2")
	tunPrefix6  = netip.MustParsePrefix("fd00::1/64")
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

// parseSegment parses an IPv4 or IPv6 packet carrying TCP; ok is false for
// anything else (the kernel's neighbour discovery, ICMP, malformed packets).
func parseSegment(pkt []byte) (Segment, bool) {
	var src, dst netip.Addr
	var payload []byte
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		ip := header.IPv6(pkt)
		if ip.Validate() != nil || ip.NextHeader() != header.ProtoTCP {
			return Segment{}, false
		}
		src, dst, payload = netip.AddrFrom16(ip.Src()), netip.AddrFrom16(ip.Dst()), ip.Payload()
	} else {
		ip := header.IPv4(pkt)
		if ip.Validate() != nil || ip.Protocol() != header.ProtoTCP || ip.IsFragment() {
			return Segment{}, false
		}
		src, dst, payload = netip.AddrFrom4(ip.Src()), netip.AddrFrom4(ip.Dst()), ip.Payload()
	}
	tcp := header.TCP(payload)
	if tcp.Validate() != nil {
		return Segment{}, false
	}
	s := Segment{
		Src:     netip.AddrPortFrom(src, tcp.SrcPort()),
		Dst:     netip.AddrPortFrom(dst, tcp.DstPort()),
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

// Passive reports a passive open's first step: the stack makes the
// listener's child socket in CLOSED and moves it to SYN-RECV at once.
func (tr Transition) Passive() bool { return tr.From == "CLOSE" && tr.To == "SYN-RECV" }

// Start is the state the transition is shown leaving: LISTEN for a passive
// open's first step, as in RFC 9293's diagram (LISTEN -> SYN-RECEIVED),
// since the child socket is the listener's doing; From otherwise.
func (tr Transition) Start() string {
	if tr.Passive() {
		return "LISTEN"
	}
	return tr.From
}

// Event kinds of the timeline.
const (
	evSegment = iota
	evTransition
	evNote
	evDatagram
)

// Event is one line (or block) of the timeline.
type Event struct {
	T     time.Duration
	Kind  int
	Seg   Segment
	Tr    Transition
	Dgram Datagram
	Who   string // notes: "kernel", "ustack" or "lab"
	Text  string // notes; may span lines (ss tables)
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
	if ev.Kind == evDatagram {
		ev.Dgram.T = ev.T
	}
	tl.events = append(tl.events, ev)
}

// Packet is the stack's packet observer (stack.Options.Packet). It runs
// with the stack locked, so it only copies and appends.
func (tl *Timeline) Packet(out bool, pkt []byte) {
	if s, ok := parseSegment(pkt); ok {
		s.Out = out
		tl.add(Event{Kind: evSegment, Seg: s})
		return
	}
	if d, ok := parseDatagram(pkt); ok {
		d.Out = out
		tl.add(Event{Kind: evDatagram, Dgram: d})
	}
}

// Datagrams returns the recorded UDP datagrams and ICMP errors about
// them, in order.
func (tl *Timeline) Datagrams() []Datagram {
	var out []Datagram
	for _, ev := range tl.Events() {
		if ev.Kind == evDatagram {
			out = append(out, ev.Dgram)
		}
	}
	return out
}

// Note adds a line said by who ("kernel", "ustack", "lab").
func (tl *Timeline) Note(who, format string, args ...any) {
	tl.add(Event{Kind: evNote, Who: who, Text: fmt.Sprintf(format, args...)})
}

// NoteAt adds a line about a call that began at start (a Now() taken
// before it) and has returned: the line, with the call's result, goes
// where the call began, before the segments and transitions it caused.
func (tl *Timeline) NoteAt(start time.Duration, who, format string, args ...any) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.frozen {
		return
	}
	i := len(tl.events)
	for i > 0 && tl.events[i-1].T > start {
		i--
	}
	ev := Event{T: start, Kind: evNote, Who: who, Text: fmt.Sprintf(format, args...)}
	tl.events = append(tl.events, Event{})
	copy(tl.events[i+1:], tl.events[i:])
	tl.events[i] = ev
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
	case kernelAddr, kernelAddr6:
		return "kernel"
	case ustackAddr, ustackAddr6:
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
	// The segment starts in column 33 even when dir is wider than its 16
	// (an address nobody has, in syn-timeout).
	return fmt.Sprintf("%-32s %s", fmt.Sprintf("%-16s %s", dir, ports), s.TCP())
}

// FormatTransition is a transition's timeline line without the time:
// "ustack           10.0.0.2:7 ESTAB -> CLOSE-WAIT (FIN)   peer :41234".
// A passive open's first step shows as LISTEN -> SYN-RECV (see Start).
func FormatTransition(tr Transition) string {
	line := fmt.Sprintf("%-16s %s %s -> %s", "ustack", tr.Local, tr.Start(), tr.To)
	cause := tr.Cause
	// "SYN (simultaneous open)" reads "SYN, simultaneous open" inside the
	// line's own parentheses.
	if i := strings.Index(cause, " ("); i >= 0 && strings.HasSuffix(cause, ")") {
		cause = cause[:i] + ", " + cause[i+2:len(cause)-1]
	}
	if tr.Passive() {
		cause = strings.TrimPrefix(cause+": the listener's new child socket", ": ")
	}
	if cause != "" {
		line += " (" + cause + ")"
	}
	if tr.Peer.IsValid() && tr.Peer.Port() != 0 {
		peer := tr.Peer.String()
		if endpointName(tr.Peer.Addr()) != tr.Peer.Addr().String() {
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
	case evDatagram:
		return t + FormatDatagram(ev.Dgram)
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

// rfcStates are RFC 9293's names for the states ss abbreviates.
var rfcStates = []struct{ ss, rfc string }{
	{"ESTAB", "ESTABLISHED"}, {"SYN-RECV", "SYN-RECEIVED"}, {"CLOSE", "CLOSED"},
}

// Legend explains the notation of the timeline's lines, as far as they
// need it: the segments', ss's state names, and the window field when
// window scaling was in effect.
func (tl *Timeline) Legend() string {
	var sg segs
	names := map[string]bool{}
	for _, ev := range tl.Events() {
		switch ev.Kind {
		case evSegment:
			sg = append(sg, ev.Seg)
		case evTransition:
			names[ev.Tr.Start()], names[ev.Tr.To] = true, true
		}
	}
	var items []string
	item := func(head, text string) {
		l := wrap(text, 78, strings.Repeat(" ", 12))
		items = append(items, fmt.Sprintf("  %-9s ", head)+l[12:])
	}
	if len(sg) > 0 {
		item("segments", "as tcpdump writes them: flags S SYN, F FIN, R RST, P PSH, . ACK; "+
			"seq start:end(length) and ack relative to each side's ISN, absolute when that side's SYN was not seen")
	}
	var ss, rfc []string
	for _, n := range rfcStates {
		if names[n.ss] {
			ss, rfc = append(ss, n.ss), append(rfc, n.rfc)
		}
	}
	switch {
	case len(ss) == 1:
		item("states", "as ss names them: "+ss[0]+" is RFC 9293's "+rfc[0])
	case len(ss) > 1:
		item("states", "as ss names them: "+strings.Join(ss, ", ")+" are RFC 9293's "+strings.Join(rfc, ", "))
	}
	if sc := scaledWindows(sg); len(sc) > 0 {
		item("win", "the raw window field. A SYN's window is never scaled; after the SYNs, as both offered wscale (RFC 7323), "+
			strings.Join(sc, ", "))
	}
	return strings.Join(items, "\n")
}

// scaledWindows describes, for each side whose windows were scaled in
// sg, what its win field counts: "the kernel's counts 1024-byte units
// (wscale 10: win 63 = 64512 bytes)". Scaling is in effect on a connection
// once both of its SYNs offered it (RFC 7323 2.2), for every segment but
// a SYN.
func scaledWindows(sg segs) []string {
	shift := map[[2]netip.AddrPort]int{} // a direction's SYN: its wscale, -1 for none
	type side struct {
		name  string
		shift int
	}
	var order []side
	example := map[side]uint16{}
	for _, s := range sg {
		dir := [2]netip.AddrPort{s.Src, s.Dst}
		if s.Has(header.SYN) {
			shift[dir] = -1
			if s.Opts.HasWScale {
				shift[dir] = int(s.Opts.WScale)
			}
			continue
		}
		mine, ok1 := shift[dir]
		theirs, ok2 := shift[[2]netip.AddrPort{s.Dst, s.Src}]
		if !ok1 || !ok2 || mine < 0 || theirs < 0 || s.Win == 0 {
			continue
		}
		k := side{endpointName(s.Src.Addr()), mine}
		if _, seen := example[k]; !seen {
			order = append(order, k)
			example[k] = s.Win
		}
	}
	var out []string
	for i, k := range order {
		whose := k.name + "'s"
		if k.name == "kernel" {
			whose = "the kernel's"
		}
		if i == 0 {
			whose += " counts"
		}
		out = append(out, fmt.Sprintf("%s %d-byte units (wscale %d: win %d = %d bytes)", whose, 1<<k.shift, k.shift, example[k], int(example[k])<<k.shift))
	}
	return out
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
	orphanTimer := false
	for _, s := range socks {
		timer := ""
		if s.Timer != "" {
			timer = fmt.Sprintf("%s (%.1fs)", s.Timer, max(s.TimerLeft, 0).Seconds())
		}
		orphanTimer = orphanTimer || s.State == "FIN-WAIT-2" && s.Timer == "timewait"
		rows = append(rows, []string{s.State, fmt.Sprint(s.RecvQ), fmt.Sprint(s.SendQ), s.Local.String(), peerName(s.Peer), timer})
	}
	t := formatTable(rows)
	if orphanTimer {
		t += "\n(timewait: the orphan's fin_timeout, on the TIME-WAIT timer as in Linux)"
	}
	return t
}

// peerName is a socket's peer as ss writes it: "*:*" when there is none
// (a listener, a bound socket).
func peerName(p netip.AddrPort) string {
	if !p.Addr().IsValid() || p.Addr().IsUnspecified() {
		return "*:*"
	}
	return p.String()
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
