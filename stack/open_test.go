package stack

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"ustack/stack/header"
)

// B10: SYN -> SYN|ACK carrying MSS and mirroring the peer's options in
// Linux's layout -> ACK -> ESTABLISHED, before any accept().
func TestB10PassiveOpenMirrorsOptions(t *testing.T) {
	h := newHarness(t)
	l := h.listen(5)
	h.send(seg{flags: flagSYN, seq: 0, opts: linuxSYNOpts(100)})
	synack := h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1, win: 65535})
	o := tcpOptions(t, synack)
	if !o.HasMSS || o.MSS != 1460 || !o.SACKPermitted || !o.HasTS || o.TSEcr != 100 || !o.HasWScale {
		t.Fatalf("SYN|ACK options %+v: want mss 1460, sackOK, TS ecr 100, wscale", o)
	}
	// Linux's layout: mss, sackOK, TS, nop, wscale.
	if opt := synack.Options(); len(opt) != 20 || opt[0] != 2 || opt[4] != 4 || opt[6] != 8 || opt[16] != 1 || opt[17] != 3 {
		t.Fatalf("SYN|ACK option layout % x", opt)
	}
	h.wantState("SYN-RECV")
	h.send(seg{flags: flagACK, seq: 1, ack: 1, opts: tsOpts(101, o.TSVal)})
	h.expectNone()
	h.wantState("ESTAB")
	c, err := l.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	if c.RemoteAddr().String() != "10.0.0.1:40000" || c.LocalAddr().String() != "10.0.0.2:80" {
		t.Fatalf("addresses %v %v", c.LocalAddr(), c.RemoteAddr())
	}
}

// B10 without options: MSS only, and the peer's MSS defaults to 536.
func TestB10PassiveOpenNoOptions(t *testing.T) {
	h := newHarness(t)
	h.listen(5)
	h.send(seg{flags: flagSYN, seq: 0})
	synack := h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	if opt := synack.Options(); len(opt) != 4 || opt[0] != 2 {
		t.Fatalf("SYN|ACK options % x, want MSS only", opt)
	}
}

// B11: data sent before accept() is ACKed, buffered (Recv-Q) and read
// in order after accept().
func TestB11DataBeforeAccept(t *testing.T) {
	h := newHarness(t)
	l := h.listen(5)
	h.threeWay(nil)
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("hello")})
	h.expect(seg{flags: flagACK, seq: 1, ack: 6}) // quick ACK at start
	for _, si := range h.s.Sockets() {
		if si.State == "ESTAB" && si.RecvQ != 5 {
			t.Fatalf("Recv-Q %d, want 5", si.RecvQ)
		}
		if si.State == "LISTEN" && si.RecvQ != 1 {
			t.Fatalf("listener Recv-Q %d, want 1 waiting connection", si.RecvQ)
		}
	}
	c, err := l.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	wantRead(t, c, "hello")
}

// B11: with the accept queue full (backlog+1), a new SYN is dropped
// silently, and a final ACK is dropped so the SYN|ACK is retransmitted.
func TestB11AcceptQueueFull(t *testing.T) {
	h := newHarness(t)
	h.listen(1) // two connections fit in each queue (backlog + 1)
	handshake := func(port uint16) uint32 {
		h.port, h.known = port, false
		h.send(seg{flags: flagSYN, seq: 0})
		h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
		return h.ourISN
	}
	handshake(40001)
	h.send(seg{flags: flagACK, seq: 1, ack: 1})
	h.wantState("ESTAB")
	// A second SYN|ACK is in flight before the queue fills.
	second := handshake(40002)
	handshake(40004)
	h.send(seg{flags: flagACK, seq: 1, ack: 1})
	h.expectNone()
	h.wantState("ESTAB")

	// The accept queue (backlog 1 + 1) is full: a new SYN gets nothing.
	h.port = 40003
	h.send(seg{flags: flagSYN, seq: 0})
	h.expectNone()
	if h.s.Counter("tcp.listen_drops") == 0 {
		t.Fatal("listen drop not counted")
	}
	// The second client's ACK is dropped; its SYN|ACK comes again at 1 s.
	h.port = 40002
	h.ourISN = second
	h.send(seg{flags: flagACK, seq: 1, ack: 1})
	h.expectNone()
	h.wantState("SYN-RECV")
	h.advance(time.Second)
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
}

// B12: closing a listener resets connections waiting in its accept queue.
func TestB12CloseListenerResetsQueue(t *testing.T) {
	h := newHarness(t)
	l := h.listen(5)
	h.threeWay(nil)
	l.Close()
	h.expect(seg{flags: flagRST | flagACK, seq: 1, ack: 1})
	h.wantState("gone")
	// The peer's next segment meets no socket (B04).
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, n: 3})
	h.expect(seg{flags: flagRST, seq: 1, ack: 0})
}

// dial starts an active open from port 50000 to the peer's port and
// returns a channel with the result.
func (h *harness) dial(ctx context.Context) chan dialResult {
	ch := make(chan dialResult, 1)
	go func() {
		c, err := h.s.DialTCP(ctx, netip.AddrPortFrom(netip.AddrFrom4(stackAddr), 50000),
			netip.AddrPortFrom(netip.AddrFrom4(peerAddr), h.port))
		ch <- dialResult{c, err}
	}()
	// Wait for the SYN to leave (Dial runs on its own goroutine).
	for i := 0; i < 1000; i++ {
		h.link.mu.Lock()
		n := len(h.link.out)
		h.link.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return ch
}

type dialResult struct {
	c   *Conn
	err error
}

// activeSend injects a segment addressed to our dialing port 50000.
func (h *harness) activeSend(sg seg) {
	sg.dport = 50000
	h.send(sg)
}

func (h *harness) activeExpect(sg seg) header.TCP {
	h.t.Helper()
	sg.port = 50000
	return h.expect(sg)
}

// B13: connect() sends SYN; SYN|ACK with an acceptable ACK -> ESTABLISHED
// and an ACK.
func TestB13ActiveOpen(t *testing.T) {
	h := newHarness(t)
	ch := h.dial(context.Background())
	syn := h.activeExpect(seg{flags: flagSYN, seq: 0, ack: 0, raw: false})
	if o := tcpOptions(t, syn); !o.HasMSS || !o.SACKPermitted || !o.HasTS || !o.HasWScale || len(syn.Options()) != 20 {
		t.Fatalf("SYN options %+v: want mss,sackOK,TS,nop,wscale", o)
	}
	h.activeSend(seg{flags: flagSYN | flagACK, seq: 0, ack: 1, opts: []byte{2, 4, 5, 0xb4}})
	h.activeExpect(seg{flags: flagACK, seq: 1, ack: 1})
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.c.State() != "ESTAB" {
		t.Fatalf("state %s", r.c.State())
	}
}

// B13: RST|ACK with an acceptable ACK -> ECONNREFUSED.
func TestB13Refused(t *testing.T) {
	h := newHarness(t)
	ch := h.dial(context.Background())
	h.activeExpect(seg{flags: flagSYN, seq: 0})
	// A RST without ACK, and a RST|ACK with a wrong ACK, are ignored.
	h.activeSend(seg{flags: flagRST, seq: 0})
	h.activeSend(seg{flags: flagRST | flagACK, seq: 0, ack: 5})
	h.expectNone()
	h.activeSend(seg{flags: flagRST | flagACK, seq: 0, ack: 1})
	r := <-ch
	if !errors.Is(r.err, syscall.ECONNREFUSED) {
		t.Fatalf("err %v, want ECONNREFUSED", r.err)
	}
	h.expectNone()
}

// B13: SYN|ACK with an unacceptable ACK -> RST seq=SEG.ACK; still SYN-SENT.
func TestB13BadSynAck(t *testing.T) {
	h := newHarness(t)
	h.dial(context.Background())
	h.activeExpect(seg{flags: flagSYN, seq: 0})
	h.activeSend(seg{flags: flagSYN | flagACK, seq: 0, ack: 100})
	h.activeExpect(seg{flags: flagRST, seq: 100, ack: 0})
	if h.s.Sockets()[0].State != "SYN-SENT" {
		t.Fatalf("state %s", h.s.Sockets()[0].State)
	}
}

// B14: SYN retransmissions at 0,1,2,3,4,5,7,11,19,35,67 s, ETIMEDOUT at 131.
func TestB14SynRetransmissionSchedule(t *testing.T) {
	for _, tc := range []struct {
		linear int
		at     []int
		fail   int
	}{
		{4, []int{0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67}, 131},
		{0, []int{0, 1, 3, 7, 15, 31, 63}, 127},
	} {
		h := newHarness(t, func(o *Options) { o.SynLinearTimeouts = tc.linear })
		ch := h.dial(context.Background())
		for _, sec := range tc.at {
			h.advance(time.Duration(sec)*time.Second - h.now())
			h.activeExpect(seg{flags: flagSYN, seq: 0})
			h.expectNone()
		}
		h.advance(time.Duration(tc.fail)*time.Second - h.now() - time.Millisecond)
		select {
		case r := <-ch:
			t.Fatalf("linear %d: dial ended early at %v: %v", tc.linear, h.now(), r.err)
		default:
		}
		h.advance(time.Millisecond)
		r := <-ch
		if !errors.Is(r.err, syscall.ETIMEDOUT) {
			t.Fatalf("linear %d: err %v, want ETIMEDOUT", tc.linear, r.err)
		}
		h.expectNone()
	}
}

// B14: a SYN|ACK whose ACK never comes is retransmitted tcp_synack_retries
// times with exponential backoff, then the half-open connection goes.
func TestB14SynAckRetransmission(t *testing.T) {
	h := newHarness(t)
	h.listen(5)
	h.send(seg{flags: flagSYN, seq: 0})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	for _, sec := range []int{1, 3, 7, 15, 31} {
		h.advance(time.Duration(sec)*time.Second - h.now())
		h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	}
	h.advance(63*time.Second - h.now())
	h.expectNone()
	h.wantState("gone")
}

// B15: simultaneous open: SYN, SYN, SYN|ACK, SYN|ACK; no listener. The
// SYN|ACK's SYN duplicates one we have, so, as Linux does, we ACK it.
func TestB15SimultaneousOpen(t *testing.T) {
	h := newHarness(t)
	ch := h.dial(context.Background())
	h.activeExpect(seg{flags: flagSYN, seq: 0})
	h.activeSend(seg{flags: flagSYN, seq: 0, opts: []byte{2, 4, 5, 0xb4}})
	h.activeExpect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	if st := h.s.Sockets()[0].State; st != "SYN-RECV" {
		t.Fatalf("state %s, want SYN-RECV", st)
	}
	h.activeSend(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.activeExpect(seg{flags: flagACK, seq: 1, ack: 1})
	h.expectNone()
	r := <-ch
	if r.err != nil || r.c.State() != "ESTAB" {
		t.Fatalf("dial: %v", r.err)
	}
}

// B16: a socket bound to A:p connecting to A:p reaches ESTABLISHED through
// the loopback path and reads back what it writes; closing it is a
// simultaneous close (B36).
func TestB16SelfConnect(t *testing.T) {
	h := newHarness(t)
	var seen []string
	h.s.opts.Packet = func(out bool, pkt []byte) {
		tcp := header.TCP(header.IPv4(pkt).Payload())
		seen = append(seen, flagString(tcp.Flags()))
	}
	ap := netip.AddrPortFrom(netip.AddrFrom4(stackAddr), 5000)
	c, err := h.s.DialTCP(context.Background(), ap, ap)
	if err != nil {
		t.Fatal(err)
	}
	// Linux on lo: SYN, SYN|ACK, then the ACK of the duplicated SYN.
	if strings.Join(seen, " ") != "S S. ." {
		t.Fatalf("handshake segments %v, want [S S. .]", seen)
	}
	if _, err := c.Write([]byte("self")); err != nil {
		t.Fatal(err)
	}
	wantRead(t, c, "self")
	seen = nil
	c.Close()
	if len(seen) != 2 || seen[0] != "F." || seen[1] != "." {
		t.Fatalf("close segments %v, want [F. .]", seen)
	}
	if st := h.s.Sockets(); len(st) != 1 || st[0].State != "TIME-WAIT" {
		t.Fatalf("after close: %+v, want TIME-WAIT", st)
	}
}

// B16: Dial to our own address with an ephemeral port works (a listener
// answers), and never returns a self-connected socket.
func TestDialLoopbackToListener(t *testing.T) {
	h := newHarness(t)
	l := h.listen(5)
	c, err := h.s.Dial("tcp", "10.0.0.2:80")
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q %v", buf, err)
	}
}

// B17: a dialer that gave up is gone; its late SYN|ACK gets RST seq=SEG.ACK.
func TestB17SynAckAfterDialerGaveUp(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	ch := h.dial(ctx)
	h.activeExpect(seg{flags: flagSYN, seq: 0})
	cancel()
	<-ch
	h.expectNone()
	h.activeSend(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.activeExpect(seg{flags: flagRST, seq: 1, ack: 0})
}

// RFC 7323 2.2: the window of the SYN|ACK is not scaled, later ones are.
func TestActiveOpenWindowScaling(t *testing.T) {
	h := newHarness(t)
	ch := h.dial(context.Background())
	h.activeExpect(seg{flags: flagSYN, seq: 0})
	opts := []byte{2, 4, 5, 0xb4, 1, 3, 3, 4} // mss 1460, nop, wscale 4
	h.activeSend(seg{flags: flagSYN | flagACK, seq: 0, ack: 1, win: 1000, opts: opts})
	h.activeExpect(seg{flags: flagACK, seq: 1, ack: 1})
	r := <-ch
	h.s.mu.Lock()
	wnd := r.c.so.e.snd.wnd
	h.s.mu.Unlock()
	if wnd != 1000 {
		t.Fatalf("send window %d after SYN|ACK win 1000, want 1000 (unscaled)", wnd)
	}
	h.activeSend(seg{flags: flagACK, seq: 1, ack: 1, win: 1000})
	h.s.mu.Lock()
	wnd = r.c.so.e.snd.wnd
	h.s.mu.Unlock()
	if wnd != 16000 {
		t.Fatalf("send window %d after ACK win 1000 << 4, want 16000", wnd)
	}
}

// B14: tcp_syn_retries also bounds the time (Linux tcp_model_timeout): with
// 2 retries and linear timeouts the SYNs go at 0, 1, 2, 3, 4, 5 s, and the
// connect fails at (2^3 - 1) x 1 s = 7 s.
func TestB14SynRetriesBoundTime(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.SynRetries = 2 })
	ch := h.dial(context.Background())
	for _, sec := range []int{0, 1, 2, 3, 4, 5} {
		h.advance(time.Duration(sec)*time.Second - h.now())
		h.activeExpect(seg{flags: flagSYN, seq: 0})
	}
	h.advance(7*time.Second - h.now() - time.Millisecond)
	h.expectNone()
	select {
	case r := <-ch:
		t.Fatalf("dial ended at %v: %v", h.now(), r.err)
	default:
	}
	h.advance(time.Millisecond)
	if r := <-ch; !errors.Is(r.err, syscall.ETIMEDOUT) {
		t.Fatalf("err %v, want ETIMEDOUT at 7 s", r.err)
	}
}

// B16: a Dial whose ephemeral port happens to equal the port it dials on
// its own address is a self-connect by accident: it is closed and the
// dial retried with another port, as Go's net package does. With two
// ephemeral ports and nobody listening, the retry ends in ECONNREFUSED,
// never in the self-connected socket.
func TestB16AccidentalSelfConnectRetried(t *testing.T) {
	self := netip.AddrPortFrom(netip.AddrFrom4(stackAddr), 40000)
	for try := 0; try < 64; try++ {
		h := newHarness(t, func(o *Options) { o.LocalPortRange = [2]uint16{40000, 40001} })
		c, err := h.s.DialTCP(context.Background(), netip.AddrPort{}, self)
		if h.s.Counter("tcp.self_connects_retried") == 0 {
			if c != nil {
				c.Close()
			}
			continue // port 40001 came first: no accident this time
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("after the accidental self-connect: conn %v, err %v; want ECONNREFUSED from port 40001", c != nil, err)
		}
		return
	}
	t.Fatal("port 40000 never came first in 64 dials")
}
