package stack

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"ustack/stack/header"
	"ustack/timers"
)

// The test harness plays the peer (10.0.0.1) of a stack at 10.0.0.2 over a
// MemLink on a virtual clock. Sequence numbers in seg are relative, as in
// packetdrill: the peer's ISN is peerISN, ours is learned from our SYN or
// SYN|ACK.

var (
	testStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	peerAddr  = [4]byte{10, 0, 0, 1}
	stackAddr = [4]byte{10, 0, 0, 2}
)

const peerISN = 1000000

type harness struct {
	t      testing.TB
	s      *Stack
	link   *MemLink
	clock  *timers.Virtual
	port   uint16 // peer's port
	ourISN uint32
	known  bool // ourISN learned
}

func newHarness(t testing.TB, tweak ...func(*Options)) *harness {
	t.Helper()
	clock := timers.NewVirtual(testStart)
	link := NewMemLink(1500)
	o := DefaultOptions()
	o.Clock = clock
	for _, f := range tweak {
		f(&o)
	}
	s, err := New(link, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &harness{t: t, s: s, link: link, clock: clock, port: 40000}
}

// seg describes a segment; seq and ack are relative unless raw is set.
// zeroWin is a window field of 0 in a seg.
const zeroWin = -1

type seg struct {
	flags uint8
	seq   uint32
	ack   uint32
	win   int // the window field: 0 is 65535 inbound and unchecked outbound; zeroWin is 0
	data  []byte
	n     int    // payload length, when data is nil (zero bytes)
	opts  []byte // inbound raw options
	raw   bool
	port  uint16  // inbound source port override
	dport uint16  // destination port; default 80
	to    [4]byte // destination address; default the stack's
}

func (sg seg) payload() []byte {
	if sg.data != nil {
		return sg.data
	}
	return make([]byte, sg.n)
}

// linuxSYNOpts is what a Linux client puts in its SYN.
func linuxSYNOpts(tsval uint32) []byte {
	b := make([]byte, 40)
	n := header.PutSYNOptions(b, 1460, 7, true, true, tsval, 0)
	return b[:n]
}

// tsOpts is a data segment's timestamp option.
func tsOpts(val, ecr uint32) []byte {
	b := make([]byte, 40)
	n := header.PutDataOptions(b, true, val, ecr, nil)
	return b[:n]
}

// build makes an IPv4 packet from the peer carrying sg.
func (h *harness) build(sg seg) []byte {
	p := sg.payload()
	port := h.port
	if sg.port != 0 {
		port = sg.port
	}
	dport := sg.dport
	if dport == 0 {
		dport = 80
	}
	seq, ack := sg.seq, sg.ack
	if !sg.raw {
		seq += peerISN
		if sg.flags&flagACK != 0 {
			ack += h.ourISN
		}
	}
	win := sg.win
	if win == 0 {
		win = 65535
	}
	if win == zeroWin {
		win = 0
	}
	olen := (len(sg.opts) + 3) &^ 3
	pkt := make([]byte, 20+20+olen+len(p))
	tcp := pkt[20:]
	header.EncodeTCP(tcp, header.TCPFields{SrcPort: port, DstPort: dport, Seq: seq, Ack: ack, Flags: sg.flags, Window: uint16(win)}, olen)
	copy(tcp[20:], sg.opts)
	copy(tcp[20+olen:], p)
	dst := stackAddr
	if sg.to != [4]byte{} {
		dst = sg.to
	}
	header.SetTCPChecksum(tcp, peerAddr, dst)
	header.EncodeIPv4(pkt, header.IPv4Fields{TotalLen: len(pkt), TTL: 64, Protocol: header.ProtoTCP, Src: peerAddr, Dst: dst})
	return pkt
}

// send injects sg as if the peer sent it.
func (h *harness) send(sg seg) {
	h.t.Helper()
	h.s.Inject(h.build(sg))
}

// out returns the next segment the stack sent, failing if there is none.
func (h *harness) out() header.TCP {
	h.t.Helper()
	pkts := h.link.Outbound()
	if len(pkts) == 0 {
		h.t.Fatalf("expected a segment, stack sent nothing")
	}
	for _, p := range pkts[1:] {
		h.link.out = append(h.link.out, p) // keep the rest in order
	}
	ip := header.IPv4(pkts[0])
	if err := ip.Validate(); err != nil {
		h.t.Fatalf("stack sent a bad IPv4 packet: %v", err)
	}
	if ip.Protocol() != header.ProtoTCP {
		h.t.Fatalf("stack sent protocol %d, want TCP", ip.Protocol())
	}
	tcp := header.TCP(ip.Payload())
	if !header.TCPChecksumValid(ip.Src(), ip.Dst(), tcp) {
		h.t.Fatalf("stack sent a bad TCP checksum")
	}
	return tcp
}

func describe(tcp header.TCP, ourISN, peer uint32) string {
	return fmt.Sprintf("%s %d:%d(%d) ack %d win %d", flagString(tcp.Flags()),
		tcp.Seq()-ourISN, tcp.Seq()-ourISN+uint32(len(tcp.Payload())), len(tcp.Payload()),
		tcp.Ack()-peer, tcp.Window())
}

// expect checks the next outbound segment against want.
func (h *harness) expect(want seg) header.TCP {
	h.t.Helper()
	tcp := h.out()
	if !h.known && tcp.Flags()&flagSYN != 0 {
		h.ourISN = tcp.Seq()
		h.known = true
	}
	seq, ack := tcp.Seq(), tcp.Ack()
	if !want.raw {
		seq -= h.ourISN
		if tcp.Flags()&flagACK != 0 {
			ack -= peerISN
		}
	}
	got := fmt.Sprintf("%s %d:%d(%d) ack %d win %d", flagString(tcp.Flags()), seq, seq+uint32(len(tcp.Payload())), len(tcp.Payload()), ack, tcp.Window())
	plen := len(want.payload())
	wantS := fmt.Sprintf("%s %d:%d(%d) ack %d", flagString(want.flags), want.seq, want.seq+uint32(plen), plen, want.ack)
	ok := tcp.Flags() == want.flags && seq == want.seq && ack == want.ack && len(tcp.Payload()) == plen
	if want.win > 0 && int(tcp.Window()) != want.win {
		ok = false
	}
	if want.win == zeroWin && tcp.Window() != 0 {
		ok = false
	}
	if want.data != nil && string(tcp.Payload()) != string(want.data) {
		ok = false
	}
	if !ok {
		h.t.Fatalf("segment mismatch\n  want %s (win %d)\n   got %s", wantS, want.win, got)
	}
	if tcp.DstPort() != h.port && want.port == 0 && want.dport == 0 {
		h.t.Fatalf("segment to port %d, want %d", tcp.DstPort(), h.port)
	}
	return tcp
}

// expectNone checks that the stack sent nothing.
func (h *harness) expectNone() {
	h.t.Helper()
	if pkts := h.link.Outbound(); len(pkts) > 0 {
		var b strings.Builder
		for _, p := range pkts {
			tcp := header.TCP(header.IPv4(p).Payload())
			fmt.Fprintf(&b, "\n  %s", describe(tcp, h.ourISN, peerISN))
		}
		h.t.Fatalf("expected no segment, stack sent:%s", b.String())
	}
}

// advance moves the virtual clock forward by d, firing every timer at its
// own deadline on the way.
func (h *harness) advance(d time.Duration) {
	target := h.clock.Now().Add(d)
	for {
		next, ok := h.s.NextTimer()
		if !ok || next.After(target) {
			break
		}
		h.clock.Set(next)
		h.s.RunTimers()
	}
	h.clock.Set(target)
	h.s.RunTimers()
}

// expectAt checks that want leaves at d since the start (to the
// millisecond: RTOs carry the SRTT's microseconds) and not before.
func (h *harness) expectAt(d time.Duration, want seg) header.TCP {
	h.t.Helper()
	h.advance(d - time.Millisecond - h.now())
	h.expectNone()
	h.advance(2 * time.Millisecond)
	return h.expect(want)
}

// now is the virtual time since the test started.
func (h *harness) now() time.Duration { return h.clock.Now().Sub(testStart) }

// listen opens a listener on port 80 with the given backlog.
func (h *harness) listen(backlog int) *Listener {
	h.t.Helper()
	l, err := h.s.ListenTCP(netip.AddrPortFrom(netip.AddrFrom4(stackAddr), 80), backlog)
	if err != nil {
		h.t.Fatal(err)
	}
	return l
}

// handshake runs a passive open from the peer's port and returns the
// accepted connection (no options: plain 20-byte headers throughout).
func (h *harness) handshake(l *Listener) *Conn {
	h.t.Helper()
	h.threeWay(mssOpt)
	h.expectNone()
	c, err := l.AcceptTCP()
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// established is a new harness holding one ESTABLISHED connection, passively
// opened on a backlog-5 listener and accepted (see handshake).
func established(t testing.TB, tweak ...func(*Options)) (*harness, *Conn) {
	t.Helper()
	h := newHarness(t, tweak...)
	return h, h.handshake(h.listen(5))
}

// state returns the state of the connection to the peer's current port.
func (h *harness) state() string {
	for _, si := range h.s.Sockets() {
		if si.Peer.Port() == h.port {
			return si.State
		}
	}
	return "gone"
}

func (h *harness) wantState(st string) {
	h.t.Helper()
	if got := h.state(); got != st {
		h.t.Fatalf("state %s, want %s", got, st)
	}
}

// mssOpt is an MSS option of 1460 alone.
var mssOpt = []byte{2, 4, 0x05, 0xb4}

// threeWay plays the peer's side of a passive open on port 80: SYN (with
// opts) -> SYN|ACK 0 ack 1 -> ACK 1 ack 1.
func (h *harness) threeWay(opts []byte) {
	h.t.Helper()
	h.send(seg{flags: flagSYN, seq: 0, opts: opts})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.send(seg{flags: flagACK, seq: 1, ack: 1})
}

// The close helpers start from a fresh ESTABLISHED connection (nothing sent
// or received since the handshake: both sides at relative sequence 1).

// closeToFinWait1: close() -> FIN|ACK 1 ack 1; FIN-WAIT-1.
func (h *harness) closeToFinWait1(c io.Closer) {
	h.t.Helper()
	c.Close()
	h.expect(seg{flags: flagFIN | flagACK, seq: 1, ack: 1})
	h.wantState("FIN-WAIT-1")
}

// closeToFinWait2: close() -> FIN|ACK 1 ack 1; <- ACK 1 ack 2; FIN-WAIT-2.
func (h *harness) closeToFinWait2(c io.Closer) {
	h.t.Helper()
	h.closeToFinWait1(c)
	h.send(seg{flags: flagACK, seq: 1, ack: 2})
	h.wantState("FIN-WAIT-2")
}

// closeToTimeWait: close() -> FIN|ACK 1 ack 1; <- FIN|ACK 1 ack 2 (the
// peer's FIN and the ACK of ours) -> ACK 2 ack 2; TIME-WAIT.
func (h *harness) closeToTimeWait(c io.Closer) {
	h.t.Helper()
	h.closeThenPeerFIN(c, 2, "TIME-WAIT")
}

// closeToClosing: close() -> FIN|ACK 1 ack 1; <- FIN|ACK 1 ack 1 (the
// peer's FIN, ours not yet acked) -> ACK 2 ack 2; CLOSING.
func (h *harness) closeToClosing(c io.Closer) {
	h.t.Helper()
	h.closeThenPeerFIN(c, 1, "CLOSING")
}

// closeThenPeerFIN: close() -> FIN|ACK 1 ack 1; <- FIN|ACK 1 ack (2 acks
// our FIN, 1 does not) -> ACK 2 ack 2; then the connection is in st.
func (h *harness) closeThenPeerFIN(c io.Closer, ack uint32, st string) {
	h.t.Helper()
	h.closeToFinWait1(c)
	h.send(seg{flags: flagFIN | flagACK, seq: 1, ack: ack})
	h.expect(seg{flags: flagACK, seq: 2, ack: 2})
	h.wantState(st)
}

// peerCloses: <- FIN|ACK 1 ack 1 -> ACK 1 ack 2, delayed one timer tick
// (pingpong after a FIN, no data received: Linux's ato is 0); CLOSE-WAIT.
func (h *harness) peerCloses() {
	h.t.Helper()
	h.send(seg{flags: flagFIN | flagACK, seq: 1, ack: 1})
	h.expectAt(h.now()+delackNoData, seg{flags: flagACK, seq: 1, ack: 2})
	h.wantState("CLOSE-WAIT")
}

// lastsFor checks that the connection stays in st for d from now (to the
// millisecond), then is gone without sending anything.
func (h *harness) lastsFor(d time.Duration, st string) {
	h.t.Helper()
	h.advance(d - time.Millisecond)
	h.wantState(st)
	h.advance(time.Millisecond)
	h.wantState("gone")
	h.expectNone()
}

// wantEOF checks that a read returns io.EOF itself.
func wantEOF(t testing.TB, r io.Reader) {
	t.Helper()
	wantErr(t, "read", r.Read, io.EOF)
}

// wantReadErr checks that a read fails with want.
func wantReadErr(t testing.TB, r io.Reader, want error) {
	t.Helper()
	wantErr(t, "read", r.Read, want)
}

// wantWriteErr checks that a one-byte write fails with want.
func wantWriteErr(t testing.TB, w io.Writer, want error) {
	t.Helper()
	wantErr(t, "write", w.Write, want)
}

// wantErr checks that op (a read or write of one byte) fails with want:
// io.EOF exactly (readers test for it with ==), an errno anywhere in the
// chain.
func wantErr(t testing.TB, op string, f func([]byte) (int, error), want error) {
	t.Helper()
	_, err := f([]byte("x"))
	if err != want && (want == io.EOF || !errors.Is(err, want)) {
		t.Fatalf("%s: %v, want %v", op, err, want)
	}
}

// tcpOptions parses the options of a segment the stack sent, failing on
// malformed ones.
func tcpOptions(t testing.TB, tcp header.TCP) header.TCPOptions {
	t.Helper()
	var o header.TCPOptions
	if err := header.ParseTCPOptions(tcp.Options(), &o); err != nil {
		t.Fatal(err)
	}
	return o
}

// sackBlocks is the SACK blocks a segment we sent carries, in order,
// relative to the peer's ISN.
func (h *harness) sackBlocks(tcp header.TCP) [][2]uint32 {
	h.t.Helper()
	o := tcpOptions(h.t, tcp)
	var out [][2]uint32
	for _, b := range o.SACK[:o.NumSACK] {
		out = append(out, [2]uint32{b.Start - peerISN, b.End - peerISN})
	}
	return out
}

// expectSACK is expect(want), then checks that the segment carries exactly
// the SACK blocks given (relative, in order; none for no SACK option).
func (h *harness) expectSACK(want seg, blocks ...[2]uint32) header.TCP {
	h.t.Helper()
	tcp := h.expect(want)
	if got := h.sackBlocks(tcp); fmt.Sprint(got) != fmt.Sprint(blocks) {
		h.t.Fatalf("SACK blocks %v, want %v", got, blocks)
	}
	return tcp
}

// wantRead checks that one read returns want, all of it and no more, and
// no error.
func wantRead(t testing.TB, r io.Reader, want string) {
	t.Helper()
	buf := make([]byte, len(want)+16)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != want {
		t.Fatalf("read %q, %v; want %q", buf[:n], err, want)
	}
}

// tsHandshake opens a connection from a Linux client (timestamps from
// TSval 1000, SACK, window scale) and accepts it: <- SYN TSval 1000 ->
// SYN|ACK 0 ack 1 <- ACK 1 ack 1 TSval 1001.
func (h *harness) tsHandshake() *Conn {
	h.t.Helper()
	l := h.listen(5)
	h.send(seg{flags: flagSYN, seq: 0, opts: linuxSYNOpts(1000)})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.send(seg{flags: flagACK, seq: 1, ack: 1, opts: tsOpts(1001, 0)})
	c, err := l.AcceptTCP()
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}
