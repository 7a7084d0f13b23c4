package drill

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"ustack/stack/header"
)

// SyntaxError is a script that does not parse: `file:line:col: expected X,
// found Y`.
type SyntaxError struct {
	Path string
	Pos  Pos
	Msg  string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.Path, e.Pos.Line, e.Pos.Col, e.Msg)
}

// ParseFile reads and parses a script.
func ParseFile(path string) (*Script, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, src)
}

// supportedSyscalls are the calls the interpreter runs. Any other name makes
// the script SKIP (the rest of its line is not parsed).
var supportedSyscalls = map[string]bool{
	"socket": true, "bind": true, "listen": true, "accept": true,
	"connect": true, "read": true, "write": true, "send": true, "recv": true,
	"close": true, "shutdown": true, "setsockopt": true, "getsockopt": true,
	"fcntl": true, "ioctl": true, "poll": true, "sendto": true, "recvfrom": true,
}

// Parse parses a script held in src; path is used in messages only.
//
// The grammar is packetdrill's (parser.y), restricted to what TCP tests
// use. Newlines are whitespace, as in packetdrill: an event ends where the
// next one's time begins.
func Parse(path string, src []byte) (*Script, error) {
	p := &parser{path: path, src: src, line: 1, col: 1}
	p.script = &Script{Path: path, Divergences: map[string]string{}, DivergenceLine: map[string]int{}}
	if err := p.parseScript(); err != nil {
		return nil, err
	}
	return p.script, nil
}

type parser struct {
	path      string
	src       []byte
	off       int
	line, col int
	script    *Script
	// pending are divergence notes waiting for the event below them.
	pending []pendingNote
	// Where the last skipSpace started: a token missing at the end of a
	// line is reported there, not at the start of the next one.
	spaceTo, spaceLine, spaceCol int
}

// pendingNote is a divergence note for stack, written on line.
type pendingNote struct {
	stack string
	line  int
}

// bail carries a *SyntaxError out of the recursive descent.
type bail struct{ err *SyntaxError }

func (p *parser) parseScript() (err error) {
	defer func() {
		if r := recover(); r != nil {
			b, ok := r.(bail)
			if !ok {
				panic(r)
			}
			err = b.err
		}
	}()
	for {
		p.skipSpace()
		if p.eof() {
			return nil
		}
		pos := p.pos()
		switch {
		case p.hasPrefix("--") && len(p.script.Events) == 0 && p.script.Init == nil:
			p.parseOption()
		case p.peek() == '`' && len(p.script.Events) == 0 && p.script.Init == nil:
			p.script.Init = p.parseShell()
		case p.peek() == '`' && len(p.script.Events) > 0 && p.script.Cleanup == nil:
			// An untimed command after the events: the cleanup command,
			// which must end the script.
			p.script.Cleanup = p.parseShell()
			p.skipSpace()
			if !p.eof() {
				p.failAt(p.pos(), "expected the end of the script after the cleanup command on line %d (an untimed `command` must come last)", pos.Line)
			}
		default:
			ev := p.parseEvent()
			if len(p.script.Events) == 0 && ev.Time.Kind == TimeAbsolute && ev.Time.Start != 0 {
				p.failAt(pos, "the first event must be at time 0, found %s", fmtSeconds(ev.Time.Start))
			}
			p.script.Events = append(p.script.Events, ev)
			// A note belongs to the first event below it (comments can be
			// scanned while the event above is still being parsed).
			var left []pendingNote
			for _, n := range p.pending {
				if ev.Pos.Line > n.line {
					p.script.DivergenceLine[n.stack] = ev.Pos.Line
				} else {
					left = append(left, n)
				}
			}
			p.pending = left
		}
	}
}

// ---- scanning ----

func (p *parser) eof() bool { return p.off >= len(p.src) }

func (p *parser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.src[p.off]
}

func (p *parser) peekAt(i int) byte {
	if p.off+i >= len(p.src) {
		return 0
	}
	return p.src[p.off+i]
}

func (p *parser) hasPrefix(s string) bool { return strings.HasPrefix(string(p.src[p.off:]), s) }

func (p *parser) pos() Pos { return Pos{p.line, p.col} }

func (p *parser) advance() byte {
	c := p.src[p.off]
	p.off++
	if c == '\n' {
		p.line++
		p.col = 1
	} else {
		p.col++
	}
	return c
}

func (p *parser) advanceN(n int) {
	for range n {
		p.advance()
	}
}

// skipSpace skips whitespace and comments, collecting divergence notes.
func (p *parser) skipSpace() {
	if p.off != p.spaceTo {
		// Fresh text since the last skip: remember where this one starts.
		p.spaceLine, p.spaceCol = p.line, p.col
	}
	defer func() { p.spaceTo = p.off }()
	for !p.eof() {
		c := p.peek()
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			p.advance()
		case p.hasPrefix("//"):
			start := p.off
			for !p.eof() && p.peek() != '\n' {
				p.advance()
			}
			p.noteComment(string(p.src[start+2 : p.off]))
		case p.hasPrefix("/*"):
			pos := p.pos()
			p.advanceN(2)
			p.skipPast(pos, "*/", "this comment")
		default:
			return
		}
	}
}

// noteComment records `// divergence: STACK: reason`, for the event that
// follows it. Only gVisor may diverge: ustack follows Linux, and Linux is
// the reference.
func (p *parser) noteComment(text string) {
	text = strings.TrimSpace(text)
	rest, ok := strings.CutPrefix(text, "divergence:")
	if !ok {
		return
	}
	stack, reason, ok := strings.Cut(rest, ":")
	if !ok {
		p.failAt(p.pos(), "a divergence note reads `// divergence: gvisor: reason`")
	}
	stack = strings.TrimSpace(stack)
	reason = strings.TrimSpace(reason)
	if stack != "gvisor" {
		p.failAt(p.pos(), "divergence note for %q: only gvisor may diverge (ustack follows Linux, the reference)", stack)
	}
	if prev := p.script.Divergences[stack]; prev != "" {
		if p.script.DivergenceLine[stack] != 0 {
			p.failAt(p.pos(), "a second divergence note for %s: one event per script may diverge", stack)
		}
		reason = prev + " " + reason
	} else {
		p.pending = append(p.pending, pendingNote{stack, p.line})
	}
	p.script.Divergences[stack] = reason
}

// found describes what is at the current position, for error messages.
func (p *parser) found() string {
	if p.eof() {
		return "end of file"
	}
	c := p.peek()
	if c == '\n' || c == '\r' {
		return "end of line"
	}
	end := p.off
	for end < len(p.src) && end-p.off < 20 {
		ch := p.src[end]
		if ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' {
			break
		}
		if end > p.off && !isWordByte(ch) && !isWordByte(p.src[end-1]) {
			break
		}
		if end > p.off && isWordByte(ch) != isWordByte(p.src[p.off]) {
			break
		}
		end++
	}
	if end == p.off {
		end++
	}
	return fmt.Sprintf("%q", string(p.src[p.off:end]))
}

func (p *parser) failAt(pos Pos, format string, args ...any) {
	panic(bail{&SyntaxError{Path: p.path, Pos: pos, Msg: fmt.Sprintf(format, args...)}})
}

// expected fails with "expected WHAT, found ..." at the current position.
func (p *parser) expected(what string) {
	if p.line > p.spaceLine {
		// The line ended before the token: say so where it ended.
		pos := p.pos()
		pos.Line, pos.Col = p.spaceLine, p.spaceCol
		p.failAt(pos, "expected %s, found end of line", what)
	}
	p.failAt(p.pos(), "expected %s, found %s", what, p.found())
}

func (p *parser) expect(s string) {
	p.skipSpace()
	if !p.hasPrefix(s) {
		p.expected(strconv.Quote(s))
	}
	p.advanceN(len(s))
}

func (p *parser) accept(s string) bool {
	p.skipSpace()
	if p.hasPrefix(s) {
		p.advanceN(len(s))
		return true
	}
	return false
}

// skipPast skips to the end of close, which ends the comment or block
// (what) that opened at pos.
func (p *parser) skipPast(pos Pos, close, what string) {
	for !p.eof() && !p.hasPrefix(close) {
		p.advance()
	}
	if p.eof() {
		p.failAt(pos, "expected %s to close %s, found end of file", close, what)
	}
	p.advanceN(len(close))
}

// items parses a comma-separated list, perhaps empty, whose opening token
// is already consumed, up to and including close: item parses one item, and
// anything but "," or close after it fails with "expected what".
func (p *parser) items(close, what string, item func()) {
	if p.accept(close) {
		return
	}
	for {
		item()
		if !p.more(close, what) {
			return
		}
	}
}

// more follows an item of a comma-separated list that close ends: it
// consumes a "," and reports that another item follows, or consumes close
// and reports the end; anything else fails with "expected what".
func (p *parser) more(close, what string) bool {
	if p.accept(",") {
		return true
	}
	if !p.accept(close) {
		p.expected(what)
	}
	return false
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// word scans an identifier at the current position ("" if none).
func (p *parser) word() string {
	p.skipSpace()
	start := p.off
	if p.eof() || !(isWordByte(p.peek()) && !isDigit(p.peek())) {
		return ""
	}
	for !p.eof() && isWordByte(p.peek()) {
		p.advance()
	}
	return string(p.src[start:p.off])
}

// peekWord returns the identifier at the current position without
// consuming it.
func (p *parser) peekWord() string {
	p.skipSpace()
	end := p.off
	if end >= len(p.src) || !(isWordByte(p.src[end]) && !isDigit(p.src[end])) {
		return ""
	}
	for end < len(p.src) && isWordByte(p.src[end]) {
		end++
	}
	return string(p.src[p.off:end])
}

// number scans an unsigned decimal or 0x hex integer.
// numberAtMost is number (what names it) for a field of at most max: a
// larger value fails at pos, naming the field.
func (p *parser) numberAtMost(pos Pos, max uint64, what, field string) uint64 {
	v := p.number(what)
	if v > max {
		p.failAt(pos, "expected %s of at most %d, found %d", field, max, v)
	}
	return v
}

func (p *parser) number(what string) uint64 {
	p.skipSpace()
	start := p.off
	if !isDigit(p.peek()) {
		p.expected(what)
	}
	base := 10
	if p.peek() == '0' && (p.peekAt(1) == 'x' || p.peekAt(1) == 'X') {
		base = 16
		p.advanceN(2)
	}
	digits := p.off
	for !p.eof() && (isDigit(p.peek()) || base == 16 && strings.IndexByte("abcdefABCDEF", p.peek()) >= 0) {
		p.advance()
	}
	v, err := strconv.ParseUint(string(p.src[digits:p.off]), base, 64)
	if err != nil {
		p.failAt(posOf(p, start), "expected %s, found %q", what, string(p.src[start:p.off]))
	}
	return v
}

// posOf recomputes the position of byte offset off (rarely needed).
func posOf(p *parser, off int) Pos {
	line, col := 1, 1
	for i := 0; i < off && i < len(p.src); i++ {
		if p.src[i] == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return Pos{line, col}
}

// u32 scans a number that must fit in 32 bits.
func (p *parser) u32(what string) uint32 {
	pos := p.pos()
	v := p.number(what)
	if v > math.MaxUint32 {
		p.failAt(pos, "expected %s (at most %d), found %d", what, uint32(math.MaxUint32), v)
	}
	return uint32(v)
}

// seconds scans a time in seconds: 0, 1.5, .1, 0.100. A '.' followed by
// another '.' ends the number (`0...0.1`).
func (p *parser) seconds(what string) time.Duration {
	p.skipSpace()
	start := p.off
	pos := p.pos()
	sawDigit := false
	for !p.eof() && isDigit(p.peek()) {
		p.advance()
		sawDigit = true
	}
	if p.peek() == '.' && p.peekAt(1) != '.' {
		p.advance()
		for !p.eof() && isDigit(p.peek()) {
			p.advance()
			sawDigit = true
		}
	}
	if !sawDigit {
		p.off, p.line, p.col = start, pos.Line, pos.Col
		p.expected(what)
	}
	f, err := strconv.ParseFloat(string(p.src[start:p.off]), 64)
	if err != nil || f > 1e6 {
		p.failAt(pos, "expected %s, found %q", what, string(p.src[start:p.off]))
	}
	return time.Duration(math.Round(f*1e6)) * time.Microsecond
}

// restOfLine consumes and returns the text up to the end of the line.
func (p *parser) restOfLine() string {
	start := p.off
	for !p.eof() && p.peek() != '\n' {
		p.advance()
	}
	return strings.TrimSpace(string(p.src[start:p.off]))
}

func (p *parser) unsupported(pos Pos, name string) {
	for _, f := range p.script.Unsupported {
		if f.Name == name {
			return
		}
	}
	p.script.Unsupported = append(p.script.Unsupported, Feature{Pos: pos, Name: name})
}

// ---- script structure ----

// parseOption parses `--name[=value]`.
func (p *parser) parseOption() {
	pos := p.pos()
	p.advanceN(2)
	start := p.off
	for !p.eof() && (isWordByte(p.peek()) || p.peek() == '-') {
		p.advance()
	}
	name := string(p.src[start:p.off])
	if name == "" {
		p.expected("an option name after --")
	}
	value := ""
	if p.peek() == '=' {
		p.advance()
		start := p.off
		for !p.eof() && p.peek() != ' ' && p.peek() != '\t' && p.peek() != '\n' && p.peek() != '\r' {
			p.advance()
		}
		value = string(p.src[start:p.off])
	}
	p.script.Options = append(p.script.Options, Option{Pos: pos, Name: name, Value: value})
}

// parseShell parses a back-quoted command.
func (p *parser) parseShell() *Shell {
	pos := p.pos()
	p.advance() // `
	start := p.off
	for !p.eof() && p.peek() != '`' {
		p.advance()
	}
	if p.eof() {
		p.failAt(pos, "expected ` to close this command, found end of file")
	}
	cmd := string(p.src[start:p.off])
	p.advance()
	return &Shell{Pos: pos, Command: strings.TrimSpace(cmd)}
}

func (p *parser) parseEvent() *Event {
	ev := &Event{Pos: p.pos()}
	ev.Time = p.parseTime()
	p.skipSpace()
	actionPos := p.pos()
	switch {
	case p.eof():
		p.expected("a syscall, packet or command after the time")
	case p.peek() == '<' || p.peek() == '>':
		ev.Kind = EventPacket
		ev.Packet = p.parsePacket()
		if ev.Packet == nil { // unsupported packet kind: treated as a no-op shell
			ev.Kind = EventShell
			ev.Shell = &Shell{Pos: actionPos}
		}
	case p.peek() == '`':
		ev.Kind = EventShell
		ev.Shell = p.parseShell()
	case p.hasPrefix("%{"):
		p.unsupported(actionPos, "python block %{ }%")
		p.advanceN(2)
		p.skipPast(actionPos, "}%", "this python block")
		ev.Kind = EventShell
		ev.Shell = &Shell{Pos: actionPos}
	default:
		name := p.peekWord()
		if name == "" {
			p.expected("a syscall, packet (< or >) or `command`")
		}
		ev.Kind = EventSyscall
		ev.Syscall = p.parseSyscall()
		if ev.Syscall == nil {
			ev.Kind = EventShell
			ev.Shell = &Shell{Pos: actionPos}
		}
	}
	if ev.Time.Blocking && ev.Kind != EventSyscall {
		p.failAt(ev.Pos, "a blocking time (T...E) is allowed on syscalls only")
	}
	return ev
}

// parseTime parses `*`, `T`, `+T`, `A~B`, `+A~+B` and `T...E`.
func (p *parser) parseTime() Timing {
	p.skipSpace()
	if p.accept("*") {
		return Timing{Kind: TimeAny}
	}
	var t Timing
	if p.peek() == '+' {
		p.advance()
		t.Kind = TimeRelative
	}
	if !(isDigit(p.peek()) || p.peek() == '.' && isDigit(p.peekAt(1))) {
		p.expected("a time (0, +0.1, *)")
	}
	t.Start = p.seconds("a time in seconds")
	t.End = t.Start
	if p.peek() == '~' {
		p.advance()
		endPos := p.pos()
		rel := p.peek() == '+'
		if rel {
			p.advance()
		}
		if rel != (t.Kind == TimeRelative) {
			p.failAt(endPos, "expected the range's end written like its start (both relative or both absolute), found %s", p.found())
		}
		t.End = p.seconds("the end of the time range")
		if t.End < t.Start {
			p.failAt(endPos, "expected a range end at or after %s, found %s", fmtSeconds(t.Start), fmtSeconds(t.End))
		}
	}
	if p.hasPrefix("...") {
		p.advanceN(3)
		p.skipSpace()
		if p.peek() == '+' {
			p.advance()
		}
		t.Blocking = true
		t.Return = p.seconds("the return time of the blocking call")
		if t.Return < t.Start {
			p.failAt(p.pos(), "expected a return time at or after the start time %s, found %s", fmtSeconds(t.Start), fmtSeconds(t.Return))
		}
	}
	return t
}

// ---- packets ----

var flagBits = map[byte]uint8{
	'F': header.FIN, 'S': header.SYN, 'R': header.RST, 'P': header.PSH,
	'.': header.ACK, 'U': header.URG, 'E': header.ECE, 'W': header.CWR,
}

// parsePacket parses a TCP packet line. It returns nil (after recording the
// feature) for packet kinds drill does not run: ICMP, UDP, ECN checks.
func (p *parser) parsePacket() *Packet {
	pk := &Packet{Dir: Inbound}
	if p.advance() == '>' {
		pk.Dir = Outbound
	}
	p.skipSpace()
	pos := p.pos()
	if p.peek() == '[' {
		p.restOfLine()
		p.unsupported(pos, "IP header check [...] (ECN/TOS/TTL)")
		return nil
	}
	if p.peekWord() == "icmp" && pk.Dir == Inbound {
		if spec := p.parseICMP(pos); spec != nil {
			pk.ICMP = spec
			return pk
		}
		return nil
	}
	if p.peekWord() == "udp" {
		pk.UDP = p.parseUDP()
		return pk
	}
	if w := p.peekWord(); w == "icmp" || w == "ipv4" || w == "ipv6" || w == "gre" || w == "mpls" {
		p.restOfLine()
		p.unsupported(pos, w+" packet")
		return nil
	}
	// Flags: a run of flag letters, or "-" for none.
	start := p.off
	if p.peek() == '-' {
		p.advance()
	} else {
		for !p.eof() {
			c := p.peek()
			if c == 'A' {
				pk.AE = true
			} else if bit, ok := flagBits[c]; ok {
				pk.Flags |= bit
			} else {
				break
			}
			p.advance()
		}
		if p.off == start {
			p.expected("TCP flags (S, S., ., P., F., R, ... or -)")
		}
		if isWordByte(p.peek()) {
			p.expected("TCP flags (letters FSRP.UEWA)")
		}
	}
	// SEQ:END(LEN)
	p.skipSpace()
	seqPos := p.pos()
	seq := p.u32("a sequence number (SEQ:END(LEN))")
	p.expect(":")
	end := p.u32("the end sequence number (SEQ:END(LEN))")
	p.expect("(")
	lenPos := p.pos()
	n := p.number("the payload length (SEQ:END(LEN))")
	p.expect(")")
	if n > 65535 {
		p.failAt(lenPos, "expected a payload length of at most 65535, found %d", n)
	}
	if want := seq + uint32(n); end != want {
		p.failAt(seqPos, "expected end sequence number %d (= %d + %d), found %d", want, seq, n, end)
	}
	pk.Seq, pk.Len = seq, int(n)
	for {
		switch p.peekWord() {
		case "ack":
			p.word()
			pk.Ack = p.u32("an ack number")
			continue
		case "win":
			p.word()
			pk.Win, pk.HasWin = uint16(p.numberAtMost(p.pos(), 65535, "a window", "a window")), true
			continue
		case "urg":
			p.word()
			pk.Urg = uint16(p.numberAtMost(p.pos(), 65535, "an urgent pointer", "an urgent pointer"))
			continue
		}
		break
	}
	p.skipSpace()
	if p.peek() == '<' {
		p.parseOptions(pk)
	}
	if pk.Dir == Inbound && !pk.HasWin {
		p.failAt(seqPos, "expected win N on an inbound packet (the window is required on < lines)")
	}
	if pk.Dir == Inbound && pk.AnyOptions {
		p.failAt(seqPos, "<...> (options not checked) is allowed on outbound packets only")
	}
	return pk
}

// parseOptions parses `<opt, opt, ...>` or `<...>`.
func (p *parser) parseOptions(pk *Packet) {
	open := p.pos()
	p.advance() // <
	if p.accept("...") {
		p.expect(">")
		pk.AnyOptions = true
		return
	}
	pk.Options = []TCPOption{}
	for {
		p.skipSpace()
		pos := p.pos()
		name := p.word()
		switch name {
		case "nop":
			pk.Options = append(pk.Options, TCPOption{Kind: OptNOP})
		case "eol":
			pk.Options = append(pk.Options, TCPOption{Kind: OptEOL})
		case "mss":
			v := p.numberAtMost(pos, 65535, "an MSS value", "an MSS")
			pk.Options = append(pk.Options, TCPOption{Kind: OptMSS, Value: uint32(v)})
		case "wscale":
			v := p.numberAtMost(pos, 255, "a window scale shift", "a window scale")
			pk.Options = append(pk.Options, TCPOption{Kind: OptWScale, Value: uint32(v)})
		case "sackOK":
			pk.Options = append(pk.Options, TCPOption{Kind: OptSACKOK})
		case "sack":
			o := TCPOption{Kind: OptSACK}
			for {
				p.skipSpace()
				if !isDigit(p.peek()) {
					break
				}
				a := p.u32("a SACK block start")
				p.expect(":")
				b := p.u32("a SACK block end")
				o.Blocks = append(o.Blocks, [2]uint32{a, b})
			}
			if len(o.Blocks) == 0 || len(o.Blocks) > 4 {
				p.failAt(pos, "expected 1 to 4 SACK blocks A:B after sack, found %d", len(o.Blocks))
			}
			pk.Options = append(pk.Options, o)
		case "TS":
			if p.word() != "val" {
				p.expected("val after TS")
			}
			val := p.u32("a TS val")
			if p.word() != "ecr" {
				p.expected("ecr after TS val N")
			}
			ecr := p.u32("a TS ecr")
			pk.Options = append(pk.Options, TCPOption{Kind: OptTS, TSVal: val, TSEcr: ecr})
		case "":
			p.expected("a TCP option (mss, nop, eol, wscale, sackOK, sack, TS)")
		default:
			// FO, md5, exp, mpcapable, ...: skip to the next , or >.
			p.unsupported(pos, "TCP option "+name)
			for !p.eof() && p.peek() != ',' && p.peek() != '>' && p.peek() != '\n' {
				p.advance()
			}
		}
		p.skipSpace()
		if !p.more(">", ", or > in the option list") {
			break
		}
	}
	total := 0
	for _, o := range pk.Options {
		total += o.wireLen()
	}
	if total > 40 {
		p.failAt(open, "TCP options take %d bytes, more than the 40 a header holds", total)
	}
	if total%4 != 0 && len(p.script.Unsupported) == 0 {
		p.failAt(open, "TCP options take %d bytes, not a multiple of 4 (pad with nop)", total)
	}
}

// ---- syscalls ----

// parseSyscall parses `name(args) = result [ERRNO [(note)]]`; it returns
// nil for a call drill does not run (recorded as unsupported).
func (p *parser) parseSyscall() *Syscall {
	pos := p.pos()
	name := p.word()
	if !supportedSyscalls[name] {
		for p.peek() == ' ' || p.peek() == '\t' {
			p.advance()
		}
		if p.peek() != '(' {
			p.expected("( after the syscall name " + name)
		}
		p.skipBalanced() // the arguments may span lines (recvmsg's msghdr)
		p.restOfLine()
		p.unsupported(pos, "syscall "+name+"()")
		return nil
	}
	sc := &Syscall{Name: name}
	p.expect("(")
	p.items(")", ", or ) in the argument list", func() { sc.Args = append(sc.Args, p.parseExpr()) })
	p.expect("=")
	p.skipSpace()
	neg := false
	if p.peek() == '-' {
		p.advance()
		neg = true
	}
	v := p.number("a result (an integer)")
	if v > math.MaxInt32 {
		p.failAt(pos, "expected a 32-bit result, found %d", v)
	}
	sc.Result = int64(v)
	if neg {
		sc.Result = -sc.Result
	}
	// An optional errno name, then an optional (free text) note.
	if w := p.peekWord(); w != "" && strings.HasPrefix(w, "E") && strings.ToUpper(w) == w {
		epos := p.pos()
		p.word()
		if _, ok := errnos[w]; !ok {
			p.failAt(epos, "expected an errno name (EAGAIN, EINPROGRESS, ...), found %q", w)
		}
		sc.Errno = w
	}
	p.skipSpace()
	if p.peek() == '(' {
		npos := p.pos()
		for !p.eof() && p.peek() != ')' && p.peek() != '\n' {
			p.advance()
		}
		if p.peek() != ')' {
			p.failAt(npos, "expected ) to close the note, found %s", p.found())
		}
		p.advance()
	}
	return sc
}

// skipBalanced skips from an opening bracket to the one that closes it,
// across lines, nested (), [] and {} and strings included.
func (p *parser) skipBalanced() {
	pos := p.pos()
	depth := 0
	for !p.eof() {
		switch c := p.advance(); c {
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			if depth--; depth == 0 {
				return
			}
		case '"':
			for !p.eof() && p.peek() != '"' && p.peek() != '\n' {
				p.advance()
			}
			if !p.eof() && p.peek() == '"' {
				p.advance()
			}
		}
	}
	p.failAt(pos, "expected ) to close this argument list, found end of file")
}

// parseExpr parses an argument: integers, symbols, `...`, [list],
// {name=value, ...}, "string", joined with |.
func (p *parser) parseExpr() *Expr {
	e := p.parsePrimary()
	for p.accept("|") {
		pos := p.pos()
		r := p.parsePrimary()
		if e.Kind != ExprInt || r.Kind != ExprInt {
			p.failAt(pos, "expected integers or symbols on both sides of |")
		}
		sym := e.String() + "|" + r.String()
		e = &Expr{Pos: e.Pos, Kind: ExprInt, Int: e.Int | r.Int, Symbol: sym}
	}
	return e
}

func (p *parser) parsePrimary() *Expr {
	p.skipSpace()
	pos := p.pos()
	switch c := p.peek(); {
	case p.hasPrefix("..."):
		p.advanceN(3)
		return &Expr{Pos: pos, Kind: ExprEllipsis}
	case c == '[':
		p.advance()
		e := &Expr{Pos: pos, Kind: ExprList}
		p.items("]", ", or ] in the list", func() { e.List = append(e.List, p.parseExpr()) })
		return e
	case c == '{':
		p.advance()
		e := &Expr{Pos: pos, Kind: ExprStruct}
		p.items("}", ", or } in the struct", func() {
			name := p.word()
			if name == "" {
				p.expected("a field name in {name=value}")
			}
			f := Field{Name: name}
			if p.accept("(") { // msg_iov(1)=[...], msg_name(...)=...
				f.Arg = p.parseExpr()
				p.expect(")")
			}
			p.expect("=")
			f.Value = p.parseExpr()
			e.Fields = append(e.Fields, f)
		})
		return e
	case c == '"':
		p.advance()
		start := p.off
		for !p.eof() && p.peek() != '"' && p.peek() != '\n' {
			p.advance()
		}
		if p.peek() != '"' {
			p.failAt(pos, "expected \" to close the string, found %s", p.found())
		}
		s := string(p.src[start:p.off])
		p.advance()
		return &Expr{Pos: pos, Kind: ExprString, Str: s}
	case c == '-':
		p.advance()
		v := p.number("a number after -")
		return &Expr{Pos: pos, Kind: ExprInt, Int: -int64(v)}
	case isDigit(c):
		v := p.number("a number")
		return &Expr{Pos: pos, Kind: ExprInt, Int: int64(v)}
	default:
		name := p.word()
		if name == "" {
			p.expected("an argument (a number, a symbol, ..., [..] or {..})")
		}
		v, ok := symbols[name]
		if !ok {
			// getsockopt(fd, SOL_SOCKET, SO_ERROR, [ECONNREFUSED], [4])
			if e, isErrno := errnos[name]; isErrno {
				v, ok = int64(e), true
			}
		}
		if !ok {
			p.unsupported(pos, "symbol "+name)
		}
		return &Expr{Pos: pos, Kind: ExprInt, Int: v, Symbol: name}
	}
}

// fmtSeconds formats a duration the way scripts write times.
func fmtSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// parseUDP parses `udp [SRC>DST] (N)` (packetdrill's udp_packet_spec).
func (p *parser) parseUDP() *UDPSpec {
	p.word() // udp
	spec := &UDPSpec{}
	p.skipSpace()
	if p.peek() != '(' {
		spec.SrcPort = uint16(p.numberAtMost(p.pos(), 0xffff, "a source port", "src port"))
		p.expect(">")
		spec.DstPort = uint16(p.numberAtMost(p.pos(), 0xffff, "a destination port", "dst port"))
	}
	p.expect("(")
	spec.Len = int(p.numberAtMost(p.pos(), 0xffff-8, "the UDP payload length", "UDP payload size"))
	p.expect(")")
	return spec
}

// parseICMP parses the rest of `< icmp TYPE [CODE] [mtu N] [start:end(len)]`:
// an ICMP error about our segment that starts at start. Types and codes
// outside packetdrill's TCP-related set are unsupported features.
func (p *parser) parseICMP(pos Pos) *ICMPSpec {
	p.word() // icmp
	name := p.word()
	if !knownICMPType(name) {
		p.restOfLine()
		p.unsupported(pos, "icmp "+name+" packet")
		return nil
	}
	spec := &ICMPSpec{Type: name}
	if w := p.peekWord(); w != "" && w != "mtu" {
		spec.Code = p.word()
		if !knownICMPCode(name, spec.Code) {
			p.failAt(pos, "expected a code of icmp %s (port_unreachable, frag_needed, ...), found %q", name, spec.Code)
		}
	}
	if p.peekWord() == "mtu" {
		p.word()
		spec.MTU = uint32(p.number("an MTU"))
	}
	p.expect("[")
	if p.peekWord() == "udp" {
		p.word()
		p.expect("(")
		spec.UDP, spec.UDPLen = true, int(p.numberAtMost(p.pos(), 0xffff-8, "the quoted datagram's length", "UDP payload size"))
		p.expect(")")
		p.expect("]")
		return spec
	}
	spec.Seq = p.u32("the quoted segment's start sequence number")
	p.expect(":")
	end := p.u32("the quoted segment's end sequence number")
	p.expect("(")
	n := p.number("the quoted segment's length")
	p.expect(")")
	p.expect("]")
	if uint64(end-spec.Seq) != n {
		p.failAt(pos, "expected the quoted segment's length %d (= %d - %d), found %d", end-spec.Seq, end, spec.Seq, n)
	}
	return spec
}
