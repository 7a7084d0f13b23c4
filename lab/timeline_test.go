package lab

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"ustack/stack"
	"ustack/stack/header"
)

// pkt builds an IPv4 packet carrying one TCP segment. syn adds Linux's SYN
// options (mss 1460, sackOK, TS, wscale 7); sacks adds SACK blocks.
type pktSpec struct {
	src, dst string // "10.0.0.1:40000"
	flags    uint8
	seq, ack uint32
	win      uint16
	payload  string
	syn      bool
	sacks    []header.SACKBlock
}

func pkt(t *testing.T, p pktSpec) []byte {
	t.Helper()
	src, dst := netip.MustParseAddrPort(p.src), netip.MustParseAddrPort(p.dst)
	var opts [40]byte
	n := 0
	if p.syn {
		n = header.PutSYNOptions(opts[:], 1460, 7, true, true, 1000, 0)
	} else if len(p.sacks) > 0 {
		n = header.PutDataOptions(opts[:], false, 0, 0, p.sacks)
	}
	tcpLen := header.TCPMinSize + n + len(p.payload)
	b := make([]byte, header.IPv4MinSize+tcpLen)
	header.EncodeIPv4(b, header.IPv4Fields{TotalLen: len(b), TTL: 64, Protocol: header.ProtoTCP, Src: src.Addr().As4(), Dst: dst.Addr().As4()})
	tcp := b[header.IPv4MinSize:]
	header.EncodeTCP(tcp, header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), Seq: p.seq, Ack: p.ack, Flags: p.flags, Window: p.win}, n)
	copy(tcp[header.TCPMinSize:], opts[:n])
	copy(tcp[header.TCPMinSize+n:], p.payload)
	header.SetTCPChecksum(tcp, src.Addr().As4(), dst.Addr().As4())
	return b
}

const (
	kAP = "10.0.0.1:40000"
	uAP = "10.0.0.2:7"
)

// handshake records a connection's life from the kernel's SYN to the
// first data, with ISNs 1000 (kernel) and 5000 (ustack).
func handshake(t *testing.T, tl *Timeline) {
	tl.Packet(false, pkt(t, pktSpec{src: kAP, dst: uAP, flags: fS, seq: 1000, win: 64240, syn: true}))
	tl.Packet(true, pkt(t, pktSpec{src: uAP, dst: kAP, flags: fSA, seq: 5000, ack: 1001, win: 65535, syn: true}))
	tl.Packet(false, pkt(t, pktSpec{src: kAP, dst: uAP, flags: fA, seq: 1001, ack: 5001, win: 502}))
	tl.Packet(false, pkt(t, pktSpec{src: kAP, dst: uAP, flags: fA | fPSH, seq: 1001, ack: 5001, win: 502, payload: "hello"}))
	tl.Packet(true, pkt(t, pktSpec{src: uAP, dst: kAP, flags: fA, seq: 5001, ack: 1006, win: 1000,
		sacks: []header.SACKBlock{{Start: 1010, End: 1020}}}))
}

func TestRelativeNumbering(t *testing.T) {
	tl := newTimeline(time.Now())
	handshake(t, tl)
	got := segs(tl.Segments())
	want := []string{
		"S 0:0(0) win 64240 <mss 1460,sackOK,TS,wscale 7>",
		"S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS,wscale 7>",
		". 1:1(0) ack 1 win 502",
		"P. 1:6(5) ack 1 win 502",
		". 1:1(0) ack 6 win 1000 <sack 10:20>",
	}
	if len(got) != len(want) {
		t.Fatalf("%d segments, want %d", len(got), len(want))
	}
	for i, s := range got {
		if s.TCP() != want[i] {
			t.Errorf("segment %d: %q, want %q", i, s.TCP(), want[i])
		}
	}
	if s := got[3]; s.RelSeq() != 1 || s.RelAck() != 1 || s.Seq != 1001 || s.Len != 5 || string(s.Payload) != "hello" || s.Out {
		t.Errorf("data segment %+v", s)
	}
	if !got[1].Out || !got[1].Has(fSA) || !got[1].Is(fSA) || got[1].Is(fS) || got[3].Is(fA) == false {
		t.Errorf("flag helpers wrong on %v / %v", got[1].TCP(), got[3].TCP())
	}
	if got[0].SeqLen() != 1 || got[3].SeqLen() != 5 {
		t.Errorf("SeqLen %d %d", got[0].SeqLen(), got[3].SeqLen())
	}
}

// Without the SYN of a direction, its numbers stay absolute (tcpdump's
// rule): the RST for a closed port has seq 0 and acks ISN+1.
func TestNumberingWithoutSYN(t *testing.T) {
	tl := newTimeline(time.Now())
	tl.Packet(false, pkt(t, pktSpec{src: kAP, dst: "10.0.0.2:9", flags: fS, seq: 77777, win: 64240, syn: true}))
	tl.Packet(true, pkt(t, pktSpec{src: "10.0.0.2:9", dst: kAP, flags: fRA, seq: 0, ack: 77778}))
	tl.Packet(true, pkt(t, pktSpec{src: "10.0.0.2:9", dst: "10.0.0.1:40001", flags: fR, seq: 123456}))
	got := tl.Segments()
	if s := got[1].TCP(); s != "R. 0:0(0) ack 1 win 0" {
		t.Errorf("RST|ACK for a closed port: %q", s)
	}
	if s := got[2].TCP(); s != "R 123456:123456(0) win 0" {
		t.Errorf("RST of an unknown connection: %q", s)
	}
}

// A new SYN from the same side (a new incarnation) resets the base.
func TestNumberingNewSYN(t *testing.T) {
	tl := newTimeline(time.Now())
	tl.Packet(false, pkt(t, pktSpec{src: kAP, dst: uAP, flags: fS, seq: 1000, syn: true}))
	tl.Packet(false, pkt(t, pktSpec{src: kAP, dst: uAP, flags: fS, seq: 9000, syn: true}))
	tl.Packet(false, pkt(t, pktSpec{src: kAP, dst: uAP, flags: fA, seq: 9001}))
	if got := tl.Segments()[2].RelSeq(); got != 1 {
		t.Errorf("relative seq after a new SYN: %d, want 1", got)
	}
}

// A self-connected socket numbers both directions from its one ISN.
func TestNumberingSelfConnect(t *testing.T) {
	tl := newTimeline(time.Now())
	self := "10.0.0.2:5000"
	tl.Packet(true, pkt(t, pktSpec{src: self, dst: self, flags: fS, seq: 42, syn: true}))
	tl.Packet(true, pkt(t, pktSpec{src: self, dst: self, flags: fSA, seq: 42, ack: 43, syn: true}))
	got := tl.Segments()
	if s := FormatSegment(got[1]); !strings.HasPrefix(s, "ustack > ustack  :5000 > :5000   S. 0:0(0) ack 1 ") {
		t.Errorf("self-connect SYN|ACK line %q", s)
	}
}

func TestParseSegmentIgnoresOthers(t *testing.T) {
	tl := newTimeline(time.Now())
	tl.Packet(false, []byte{0x60, 0, 0, 0}) // IPv6
	icmp := pkt(t, pktSpec{src: kAP, dst: uAP, flags: fA})
	icmp[9] = header.ProtoICMP
	tl.Packet(false, icmp)
	tl.Packet(false, []byte{0x45}) // truncated
	if n := len(tl.Events()); n != 0 {
		t.Errorf("%d events from non-TCP packets", n)
	}
}

func TestTraceHandler(t *testing.T) {
	tl := newTimeline(time.Now())
	log := slog.New(tl.Handler())
	log.Info("tcp state", "local", "10.0.0.2:7", "peer", "10.0.0.1:40000", "from", "ESTAB", "to", "CLOSE-WAIT", "cause", "FIN", "segment", "F. seq 1 ack 2")
	log.With("x", 1).WithGroup("g").Info("something else")
	trs := tl.Transitions()
	want := Transition{Local: netip.MustParseAddrPort("10.0.0.2:7"), Peer: netip.MustParseAddrPort("10.0.0.1:40000"), From: "ESTAB", To: "CLOSE-WAIT", Cause: "FIN"}
	if len(trs) != 1 {
		t.Fatalf("%d transitions", len(trs))
	}
	got := trs[0]
	got.T = 0
	if got != want {
		t.Errorf("transition %+v, want %+v", got, want)
	}
	if line := FormatTransition(trs[0]); line != "ustack           10.0.0.2:7 ESTAB -> CLOSE-WAIT (FIN)   peer :40000" {
		t.Errorf("line %q", line)
	}
	evs := tl.Events()
	if len(evs) != 2 || evs[1].Kind != evNote || evs[1].Text != "something else" {
		t.Errorf("other records should become notes: %+v", evs)
	}
}

// A passive open's first step, CLOSE -> SYN-RECV in the stack's trace (the
// listener's child starts in CLOSED), shows as RFC 9293's LISTEN ->
// SYN-RECV; nested parentheses in a cause are flattened.
func TestFormatTransitionNames(t *testing.T) {
	local, peer := netip.MustParseAddrPort("10.0.0.2:7"), netip.MustParseAddrPort("10.0.0.1:40000")
	for _, tc := range []struct {
		from, to, cause, want string
	}{
		{"CLOSE", "SYN-RECV", "SYN", "10.0.0.2:7 LISTEN -> SYN-RECV (SYN: the listener's new child socket)   peer :40000"},
		{"SYN-SENT", "SYN-RECV", "SYN (simultaneous open)", "10.0.0.2:7 SYN-SENT -> SYN-RECV (SYN, simultaneous open)   peer :40000"},
		{"CLOSE", "SYN-SENT", "connect()", "10.0.0.2:7 CLOSE -> SYN-SENT (connect())   peer :40000"},
		{"ESTAB", "CLOSE", "close() with unread data: RST sent", "10.0.0.2:7 ESTAB -> CLOSE (close() with unread data: RST sent)   peer :40000"},
	} {
		tr := Transition{Local: local, Peer: peer, From: tc.from, To: tc.to, Cause: tc.cause}
		if got := strings.TrimLeft(strings.TrimPrefix(FormatTransition(tr), "ustack"), " "); got != tc.want {
			t.Errorf("%s -> %s (%s):\n got %q\nwant %q", tc.from, tc.to, tc.cause, got, tc.want)
		}
	}
}

// A call noted at its start goes before what it caused, with its time.
func TestNoteAt(t *testing.T) {
	tl := newTimeline(time.Now())
	tl.Note("ustack", "bind")
	start := tl.Now()
	time.Sleep(time.Millisecond)
	handshake(t, tl)
	tl.NoteAt(start, "ustack", "connect() = EINPROGRESS")
	tl.Note("ustack", "after")
	evs := tl.Events()
	if len(evs) != 8 || evs[1].Text != "connect() = EINPROGRESS" || evs[1].T != start || evs[2].Kind != evSegment || evs[7].Text != "after" {
		t.Errorf("events: %+v", evs)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].T < evs[i-1].T {
			t.Errorf("event %d at %v before event %d at %v", i, evs[i].T, i-1, evs[i-1].T)
		}
	}
	tl.Freeze()
	tl.NoteAt(start, "ustack", "frozen")
	if len(tl.Events()) != 8 {
		t.Error("NoteAt after Freeze")
	}
}

// The legend explains what the timeline holds: the segments' notation,
// ss's state names that appear, and each side's window scale once both
// SYNs offered one.
func TestLegend(t *testing.T) {
	tl := newTimeline(time.Now())
	if l := tl.Legend(); l != "" {
		t.Errorf("legend of nothing: %q", l)
	}
	handshake(t, tl) // both SYNs with wscale 7; the kernel's win 502, ustack's 1000
	log := slog.New(tl.Handler())
	log.Info("tcp state", "local", uAP, "peer", kAP, "from", "CLOSE", "to", "SYN-RECV", "cause", "SYN")
	log.Info("tcp state", "local", uAP, "peer", kAP, "from", "SYN-RECV", "to", "ESTAB", "cause", "ACK of SYN|ACK")
	l := tl.Legend()
	if !strings.HasPrefix(l, "  segments  as tcpdump writes them: flags S SYN, F FIN, R RST, P PSH, . ACK;\n") {
		t.Errorf("legend's first line:\n%s", l)
	}
	words := strings.Join(strings.Fields(l), " ")
	for _, want := range []string{
		"states as ss names them: ESTAB, SYN-RECV are RFC 9293's ESTABLISHED, SYN-RECEIVED",
		"the kernel's counts 128-byte units (wscale 7: win 502 = 64256 bytes), ustack's 128-byte units (wscale 7: win 1000 = 128000 bytes)",
	} {
		if !strings.Contains(words, want) {
			t.Errorf("legend lacks %q:\n%s", want, l)
		}
	}
	for _, line := range strings.Split(l, "\n") {
		if len(line) > 78 {
			t.Errorf("legend line too long (%d): %q", len(line), line)
		}
	}
	if strings.Contains(l, "CLOSE ") || strings.Contains(l, "LISTEN") {
		t.Errorf("legend names states that need no explaining:\n%s", l)
	}
}

// Windows are scaled only once both SYNs offered it, and never on a SYN.
func TestScaledWindows(t *testing.T) {
	tl := newTimeline(time.Now())
	tl.Packet(false, pkt(t, pktSpec{src: kAP, dst: uAP, flags: fS, seq: 1000, win: 64240, syn: true}))
	tl.Packet(true, pkt(t, pktSpec{src: uAP, dst: kAP, flags: fRA, seq: 0, ack: 1001}))
	if got := scaledWindows(tl.Segments()); len(got) != 0 {
		t.Errorf("a refused SYN: %q", got)
	}
	// A SYN|ACK without options: no scaling either way.
	tl.Packet(true, pkt(t, pktSpec{src: uAP, dst: kAP, flags: fSA, seq: 5000, ack: 1001, win: 65535}))
	tl.Packet(false, pkt(t, pktSpec{src: kAP, dst: uAP, flags: fA, seq: 1001, ack: 5001, win: 65535}))
	if got := scaledWindows(tl.Segments()); len(got) != 0 {
		t.Errorf("one side without wscale: %q", got)
	}
}

func TestFreeze(t *testing.T) {
	tl := newTimeline(time.Now())
	tl.Note("lab", "before")
	tl.Freeze()
	tl.Note("lab", "after")
	handshake(t, tl)
	if evs := tl.Events(); len(evs) != 1 || evs[0].Text != "before" {
		t.Errorf("events after Freeze: %+v", evs)
	}
}

func TestFormatEvent(t *testing.T) {
	tl := newTimeline(time.Now())
	handshake(t, tl)
	ev := tl.Events()[0]
	ev.T = 1234567 * time.Microsecond
	if got, want := FormatEvent(ev), "   1.235  kernel > ustack  :40000 > :7     S 0:0(0) win 64240 <mss 1460,sackOK,TS,wscale 7>"; got != want {
		t.Errorf("segment line\n got %q\nwant %q", got, want)
	}
	table := Event{T: 2 * time.Second, Kind: evNote, Who: "ustack", Text: "ss:\nState  Recv-Q\nESTAB  5"}
	want := "   2.000  ustack           ss:\n" +
		"                           State  Recv-Q\n" +
		"                           ESTAB  5"
	if got := FormatEvent(table); got != want {
		t.Errorf("table\n got %q\nwant %q", got, want)
	}
	long := Event{Kind: evNote, Who: "lab", Text: strings.Repeat("word ", 30)}
	lines := strings.Split(FormatEvent(long), "\n")
	if len(lines) < 2 {
		t.Fatalf("a long note is not wrapped: %q", lines)
	}
	for _, l := range lines {
		if len(l) > timeCol+17+noteWidth {
			t.Errorf("line too long (%d): %q", len(l), l)
		}
	}
	if !strings.HasPrefix(lines[1], strings.Repeat(" ", timeCol+17)+"word") {
		t.Errorf("continuation not aligned: %q", lines[1])
	}
}

func TestFormatSockets(t *testing.T) {
	socks := []stack.SocketInfo{
		{State: "LISTEN", RecvQ: 2, SendQ: 1, Local: netip.MustParseAddrPort("10.0.0.2:8000"), Peer: netip.MustParseAddrPort("0.0.0.0:0")},
		{State: "FIN-WAIT-2", Local: netip.MustParseAddrPort("10.0.0.2:7"), Peer: netip.MustParseAddrPort("10.0.0.1:40000"), Timer: "timewait", TimerLeft: 2700 * time.Millisecond},
	}
	want := "State       Recv-Q  Send-Q  Local:Port     Peer:Port       Timer\n" +
		"LISTEN      2       1       10.0.0.2:8000  *:*\n" +
		"FIN-WAIT-2  0       0       10.0.0.2:7     10.0.0.1:40000  timewait (2.7s)\n" +
		"(timewait: the orphan's fin_timeout, on the TIME-WAIT timer as in Linux)"
	if got := formatSockets(socks); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// Without an orphan's timer, no note; a verdict's "seen" names the
	// listener's peer as the table does.
	if got := formatSockets(socks[:1]); strings.Contains(got, "timewait") {
		t.Errorf("a note without an orphan: %q", got)
	}
	if got := sockLine(socks[0]); got != "LISTEN Recv-Q 2 Send-Q 1 10.0.0.2:8000 *:*" {
		t.Errorf("sockLine %q", got)
	}
	if got := formatSockets(nil); got != "(no sockets)" {
		t.Errorf("empty: %q", got)
	}
}

func TestWrap(t *testing.T) {
	got := wrap("one two three\nfour five\n\nsix", 12, "  ")
	want := "  one two\n  three four\n  five\n\n  six"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestErrName(t *testing.T) {
	wrapped := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "0"},
		{io.EOF, "0 (EOF)"},
		{wrapped, "ECONNRESET"},
		{syscall.EPIPE, "EPIPE"},
		{os.ErrDeadlineExceeded, "timed out (the lab's deadline)"},
		{errors.New("boom"), "boom"},
	} {
		if got := errName(tc.err); got != tc.want {
			t.Errorf("errName(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	if !isErrno(wrapped, syscall.ECONNRESET) || isErrno(wrapped, syscall.EPIPE) {
		t.Error("isErrno")
	}
}
