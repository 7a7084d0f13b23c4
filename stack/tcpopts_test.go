package stack

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// Per-socket TCP options (tcp(7)), each against the segments it changes.

// listenSocket binds a Socket on port 80 with the options set, and listens.
func (h *harness) listenSocket(opts map[SockOpt]int) *Socket {
	h.t.Helper()
	l := h.s.NewSocket()
	for o, v := range opts {
		if err := l.SetOption(o, v); err != nil {
			h.t.Fatalf("option %d = %d: %v", o, v, err)
		}
	}
	if err := l.Bind(netip.AddrPortFrom(netip.AddrFrom4(stackAddr), 80)); err != nil {
		h.t.Fatal(err)
	}
	if err := l.Listen(5); err != nil {
		h.t.Fatal(err)
	}
	return l
}

// acceptSocket completes a passive open (no options) and accepts it.
func (h *harness) acceptSocket(l *Socket) *Socket {
	h.t.Helper()
	h.threeWay(mssOpt)
	c, err := l.Accept()
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// wantTimedOutAt checks that the connection is open a moment before d and
// gone a moment after it, without a segment (no RST), and that a read then
// fails with ETIMEDOUT. The RTO is a hair over 200 ms (a microsecond of
// RTT), hence the 2 ms.
func (h *harness) wantTimedOutAt(d time.Duration, c *Socket) {
	h.t.Helper()
	h.advance(d - h.now() - time.Millisecond)
	h.wantState("ESTAB")
	h.advance(2 * time.Millisecond)
	h.expectNone()
	h.wantState("gone")
	wantReadErr(h.t, c, syscall.ETIMEDOUT)
}

// expectKeepalivesThenReset checks keepalive at idle 2 s, interval 1 s,
// count 2 on an idle connection: probes (ACK 0 ack 1, one below SND.NXT)
// at 2 s and 3 s, no answer, then RST|ACK 1 ack 1 at 4 s, and a read
// fails with ETIMEDOUT.
func (h *harness) expectKeepalivesThenReset(c io.Reader) {
	h.t.Helper()
	h.expectAt(2*time.Second, seg{flags: flagACK, seq: 0, ack: 1})
	h.expectAt(3*time.Second, seg{flags: flagACK, seq: 0, ack: 1})
	h.expectAt(4*time.Second, seg{flags: flagRST | flagACK, seq: 1, ack: 1})
	wantReadErr(h.t, c, syscall.ETIMEDOUT)
}

func wantOption(t *testing.T, so *Socket, o SockOpt, want int) {
	t.Helper()
	if v, err := so.Option(o); err != nil || v != want {
		t.Fatalf("option %d: %d, %v; want %d", o, v, err, want)
	}
}

// TCP_MAXSEG on a listener: the SYN|ACK announces it and the connection
// sends no larger segments, though the peer offered 1460; getsockopt reads
// user_mss, then the MSS in use.
func TestTCPMaxSegCapsAnnouncedAndSentMSS(t *testing.T) {
	h := newHarness(t)
	l := h.s.NewSocket()
	wantOption(t, l, OptMaxSeg, 536) // TCP_MSS_DEFAULT
	for _, bad := range []int{87, 32768, -1} {
		if err := l.SetOption(OptMaxSeg, bad); err != syscall.EINVAL {
			t.Fatalf("TCP_MAXSEG %d: %v, want EINVAL", bad, err)
		}
	}
	l.Close()
	l = h.listenSocket(map[SockOpt]int{OptMaxSeg: 1100})
	wantOption(t, l, OptMaxSeg, 1100)

	h.send(seg{flags: flagSYN, seq: 0, opts: []byte{2, 4, 0x05, 0xb4}})
	synack := h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	if o := tcpOptions(t, synack); !o.HasMSS || o.MSS != 1100 {
		t.Fatalf("SYN|ACK MSS option %v %d, want 1100", o.HasMSS, o.MSS)
	}
	h.send(seg{flags: flagACK, seq: 1, ack: 1})
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	wantOption(t, c, OptMaxSeg, 1100)
	c.SetOption(OptNoDelay, 1)
	if n, err := c.Write(make([]byte, 2000)); n != 2000 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	h.expect(seg{flags: flagACK, seq: 1, ack: 1, n: 1100})
	h.expect(seg{flags: flagACK | flagPSH, seq: 1101, ack: 1, n: 900})
}

// TCP_USER_TIMEOUT: the RTO after the second retransmission is cut to end
// when the time since the first retransmission (Linux's retrans_stamp) is
// up, and the connection fails there with ETIMEDOUT and no RST.
func TestTCPUserTimeoutCutsRetransmissions(t *testing.T) {
	h := newHarness(t)
	c := h.acceptSocket(h.listenSocket(nil))
	if err := c.SetOption(OptUserTimeout, -1); err != syscall.EINVAL {
		t.Fatalf("TCP_USER_TIMEOUT -1: %v, want EINVAL", err)
	}
	c.SetOption(OptUserTimeout, 1000)
	wantOption(t, c, OptUserTimeout, 1000)
	c.Write([]byte("data"))
	h.expect(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("data")})
	h.expectAt(200*time.Millisecond, seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("data")})
	h.expectAt(600*time.Millisecond, seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("data")})
	// Without the option the next would come at 1.4 s.
	h.wantTimedOutAt(1200*time.Millisecond, c)
}

// TCP_USER_TIMEOUT bounds zero-window probing from the first probe, even
// when the peer answers every probe.
func TestTCPUserTimeoutEndsAnsweredWindowProbes(t *testing.T) {
	h := newHarness(t)
	l := h.listenSocket(map[SockOpt]int{OptUserTimeout: 1000})
	h.send(seg{flags: flagSYN, seq: 0, opts: []byte{2, 4, 0x05, 0xb4}})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.send(seg{flags: flagACK, seq: 1, ack: 1, win: zeroWin}) // a zero window
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	wantOption(t, c, OptUserTimeout, 1000) // inherited
	c.Write([]byte("data"))
	h.expectAt(200*time.Millisecond, seg{flags: flagACK, seq: 0, ack: 1})
	h.send(seg{flags: flagACK, seq: 1, ack: 1, win: zeroWin})
	h.expectAt(600*time.Millisecond, seg{flags: flagACK, seq: 0, ack: 1})
	h.send(seg{flags: flagACK, seq: 1, ack: 1, win: zeroWin})
	// The next probe would be at 1.4 s; 1 s after the first (1.2 s) the
	// connection is gone.
	h.wantTimedOutAt(1200*time.Millisecond, c)
}

// TCP_LINGER2 -1: the ACK of an orphan's FIN kills it and is answered
// with a RST as for no socket (seq = SEG.ACK, no ACK flag).
func TestTCPLinger2NegativeResetsOnFINACK(t *testing.T) {
	h := newHarness(t)
	c := h.acceptSocket(h.listenSocket(nil))
	c.SetOption(OptLinger2, -1)
	wantOption(t, c, OptLinger2, -1)
	c.Close()
	h.expect(seg{flags: flagFIN | flagACK, seq: 1, ack: 1})
	h.send(seg{flags: flagACK, seq: 1, ack: 2})
	h.expect(seg{flags: flagRST, seq: 2, ack: 0, win: 0})
	h.wantState("gone")
}

// TCP_LINGER2 -1: close() in FIN-WAIT-2 (after shutdown) resets at once.
func TestTCPLinger2NegativeResetsOnCloseInFinWait2(t *testing.T) {
	h := newHarness(t)
	c := h.acceptSocket(h.listenSocket(map[SockOpt]int{OptLinger2: -1}))
	c.Shutdown(syscall.SHUT_WR)
	h.expect(seg{flags: flagFIN | flagACK, seq: 1, ack: 1})
	h.send(seg{flags: flagACK, seq: 1, ack: 2})
	h.expectNone()
	h.wantState("FIN-WAIT-2")
	c.Close()
	h.expect(seg{flags: flagRST | flagACK, seq: 2, ack: 1})
	h.wantState("gone")
}

// TCP_LINGER2 > 0 replaces tcp_fin_timeout for the orphan's FIN-WAIT-2,
// capped at 120 s; 0 reads back the sysctl.
func TestTCPLinger2SetsFinWait2Time(t *testing.T) {
	h := newHarness(t) // tcp_fin_timeout 60 s
	c := h.acceptSocket(h.listenSocket(nil))
	wantOption(t, c, OptLinger2, 60)
	c.SetOption(OptLinger2, 500)
	wantOption(t, c, OptLinger2, 120)
	c.SetOption(OptLinger2, 2)
	c.Close()
	h.expect(seg{flags: flagFIN | flagACK, seq: 1, ack: 1})
	h.send(seg{flags: flagACK, seq: 1, ack: 2})
	h.advance(2*time.Second - time.Millisecond)
	h.wantState("FIN-WAIT-2")
	h.advance(time.Millisecond)
	h.expectNone()
	h.wantState("gone")
}

// TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT replace the sysctls for one
// socket: probes after 2 s of silence, then every second; the third probe
// is never sent, a RST is.
func TestTCPKeepaliveSocketOptions(t *testing.T) {
	h := newHarness(t)
	c := h.acceptSocket(h.listenSocket(nil))
	wantOption(t, c, OptKeepIdle, 7200)
	wantOption(t, c, OptKeepCnt, 9)
	for o, bad := range map[SockOpt]int{OptKeepIdle: 0, OptKeepIntvl: 32768, OptKeepCnt: 128} {
		if err := c.SetOption(o, bad); err != syscall.EINVAL {
			t.Fatalf("option %d = %d: %v, want EINVAL", o, bad, err)
		}
	}
	c.SetOption(OptKeepIdle, 2)
	c.SetOption(OptKeepIntvl, 1)
	c.SetOption(OptKeepCnt, 2)
	c.SetOption(OptKeepAlive, 1)
	h.expectKeepalivesThenReset(c)
}

// TCP_SYNCNT replaces tcp_syn_retries for one connect(): with 1 (and the
// default four linear timeouts) SYNs go at 0, 1 and 2 s, and the exponential
// model's 3 s end it.
func TestTCPSynCntLimitsConnect(t *testing.T) {
	h := newHarness(t)
	so := h.s.NewSocket()
	if err := so.SetOption(OptSynCnt, 0); err != syscall.EINVAL {
		t.Fatalf("TCP_SYNCNT 0: %v, want EINVAL", err)
	}
	so.SetOption(OptSynCnt, 1)
	wantOption(t, so, OptSynCnt, 1)
	so.Bind(netip.AddrPortFrom(netip.AddrFrom4(stackAddr), 80))
	if err := so.Connect(netip.AddrPortFrom(netip.AddrFrom4(peerAddr), 40000)); err != syscall.EINPROGRESS {
		t.Fatalf("connect: %v", err)
	}
	h.expect(seg{flags: flagSYN, seq: 0, win: 65535})
	h.expectAt(time.Second, seg{flags: flagSYN, seq: 0, win: 65535})
	h.expectAt(2*time.Second, seg{flags: flagSYN, seq: 0, win: 65535})
	h.advance(3*time.Second - h.now())
	h.expectNone()
	if err := so.SockError(); err != syscall.ETIMEDOUT {
		t.Fatalf("SO_ERROR %v, want ETIMEDOUT", err)
	}
}

// TCP_DEFER_ACCEPT: a bare ACK leaves the connection in SYN-RECV and
// unaccepted, with no SYN|ACK until the last deferred try; data completes
// it. 5 s is three retransmissions (1 + 2 + 4 s), read back as 7.
func TestTCPDeferAcceptWaitsForData(t *testing.T) {
	h := newHarness(t)
	l := h.listenSocket(map[SockOpt]int{OptDeferAccept: 5})
	wantOption(t, l, OptDeferAccept, 7)
	h.send(seg{flags: flagSYN, seq: 0})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.send(seg{flags: flagACK, seq: 1, ack: 1})
	h.expectNone()
	h.wantState("SYN-RECV")
	if _, err := l.Accept(); err != syscall.EAGAIN {
		t.Fatalf("accept after a bare ACK: %v, want EAGAIN", err)
	}
	// Silence at 1 s and 3 s; the last deferred try at 7 s.
	h.expectAt(7*time.Second, seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.send(seg{flags: flagACK, seq: 1, ack: 1, data: []byte("late")})
	h.expect(seg{flags: flagACK, seq: 1, ack: 5})
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	wantOption(t, c, OptDeferAccept, 0)
	wantRead(t, c, "late")
}

// IP_LOCAL_PORT_RANGE narrows the ephemeral range of bind(port 0) and
// connect() to the part inside the stack's; bounds outside it are ignored,
// crossed ones refused.
func TestLocalPortRangeNarrowsEphemeralPorts(t *testing.T) {
	h := newHarness(t) // 32768-60999
	so := h.s.NewSocket()
	if err := so.SetOption(OptLocalPortRange, 50000|40000<<16); err != syscall.EINVAL {
		t.Fatalf("crossed range: %v, want EINVAL", err)
	}
	for i := 0; i < 20; i++ {
		so := h.s.NewSocket()
		so.SetOption(OptLocalPortRange, 40000|40009<<16)
		if err := so.Bind(netip.AddrPort{}); err != nil {
			t.Fatal(err)
		}
		if p := so.LocalAddr().Port(); p < 40000 || p > 40009 {
			t.Fatalf("bind(0) got port %d, want 40000-40009", p)
		}
		so.Close()
	}
	// A low bound below the stack's range is ignored: 32768..32770.
	for i := 0; i < 3; i++ {
		so := h.s.NewSocket()
		so.SetOption(OptLocalPortRange, 1000|32770<<16)
		if err := so.Connect(netip.AddrPortFrom(netip.AddrFrom4(peerAddr), 9)); err != syscall.EINPROGRESS {
			t.Fatalf("connect %d: %v", i, err)
		}
		if p := so.LocalAddr().Port(); p < 32768 || p > 32770 {
			t.Fatalf("connect got port %d, want 32768-32770", p)
		}
	}
	so = h.s.NewSocket()
	so.SetOption(OptLocalPortRange, 1000|32770<<16)
	if err := so.Connect(netip.AddrPortFrom(netip.AddrFrom4(peerAddr), 9)); err != syscall.EADDRNOTAVAIL {
		t.Fatalf("fourth connect into three ports: %v, want EADDRNOTAVAIL", err)
	}
}

// IP_BIND_ADDRESS_NO_PORT: bind(port 0) takes the address only; connect()
// then picks the port, and a second bind is refused as for a bound socket.
func TestBindAddressNoPortDefersThePort(t *testing.T) {
	h := newHarness(t)
	so := h.s.NewSocket()
	so.SetOption(OptBindAddressNoPort, 1)
	wantOption(t, so, OptBindAddressNoPort, 1)
	if err := so.Bind(netip.AddrPortFrom(netip.AddrFrom4(stackAddr), 0)); err != nil {
		t.Fatal(err)
	}
	if p := so.LocalAddr().Port(); p != 0 {
		t.Fatalf("port %d after bind, want 0 (deferred)", p)
	}
	if h.s.bind.Len() != 0 {
		t.Fatalf("bind table holds %d entries, want none before connect", h.s.bind.Len())
	}
	if err := so.Bind(netip.AddrPortFrom(netip.AddrFrom4(stackAddr), 0)); err != syscall.EINVAL {
		t.Fatalf("second bind: %v, want EINVAL", err)
	}
	if err := so.Connect(netip.AddrPortFrom(netip.AddrFrom4(peerAddr), 9)); err != syscall.EINPROGRESS {
		t.Fatal(err)
	}
	if p := so.LocalAddr().Port(); p < 32768 || p > 60999 {
		t.Fatalf("port %d after connect, want an ephemeral one", p)
	}
}

// Conn.SetKeepAliveConfig is net.TCPConn's: with Idle 2 s, Interval 1 s
// and Count 2 the probes go at 2 s and 3 s of silence and the RST at 4 s;
// out-of-range values are EINVAL in an *OpError.
func TestConnSetKeepAliveConfig(t *testing.T) {
	h, c := established(t)
	if err := c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Count: 200}); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Count 200: %v, want EINVAL", err)
	}
	if err := c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 1500 * time.Millisecond, Interval: time.Second, Count: 2}); err != nil {
		t.Fatal(err)
	}
	// Idle rounds up to 2 s, as Go's net package does.
	h.expectKeepalivesThenReset(c)
}

// Conn.SetUserTimeout is TCP_USER_TIMEOUT for Go programs.
func TestConnSetUserTimeout(t *testing.T) {
	h, c := established(t)
	if err := c.SetUserTimeout(-time.Second); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("negative: %v, want EINVAL", err)
	}
	c.SetUserTimeout(500 * time.Millisecond)
	c.Write([]byte("data"))
	h.expect(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("data")})
	h.expectAt(200*time.Millisecond, seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("data")})
	h.expectAt(600*time.Millisecond, seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("data")})
	// 500 ms after the first retransmission: the next timer is cut to 700 ms.
	h.advance(702*time.Millisecond - h.now())
	h.expectNone()
	wantReadErr(t, c, syscall.ETIMEDOUT)
}

// TCP_CORK holds a partial segment with nothing in flight until the probe
// timer (the RTO) sends it with PSH; a full segment goes at once and its
// short tail waits; clearing the cork sends the tail.
func TestTCPCorkHoldsPartialSegments(t *testing.T) {
	h := newHarness(t)
	c := h.acceptSocket(h.listenSocket(nil))
	c.SetOption(OptCork, 1)
	wantOption(t, c, OptCork, 1)
	c.Write(make([]byte, 100))
	h.expectNone()
	h.expectAt(200*time.Millisecond, seg{flags: flagACK | flagPSH, seq: 1, ack: 1, n: 100}) // RTO 200 ms
	h.send(seg{flags: flagACK, seq: 1, ack: 101})
	c.Write(make([]byte, smss+400))
	h.expect(seg{flags: flagACK, seq: 101, ack: 1, n: smss})
	h.expectNone()
	h.send(seg{flags: flagACK, seq: 1, ack: 101 + smss})
	h.expectNone()
	c.SetOption(OptCork, 0)
	h.expect(seg{flags: flagACK | flagPSH, seq: 101 + smss, ack: 1, n: 400})
}

// MSG_MORE holds the tail of that send only: the next send without it
// pushes everything; and a FIN is never held.
func TestSendMSGMore(t *testing.T) {
	h := newHarness(t)
	c := h.acceptSocket(h.listenSocket(nil))
	if _, err := c.Send(make([]byte, 300), syscall.MSG_MORE); err != nil {
		t.Fatal(err)
	}
	h.expectNone()
	c.Send(make([]byte, 100), 0)
	h.expect(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, n: 400})
	h.send(seg{flags: flagACK, seq: 1, ack: 401})
	c.Send(make([]byte, 50), syscall.MSG_MORE)
	h.expectNone()
	c.Shutdown(syscall.SHUT_WR)
	h.expect(seg{flags: flagACK | flagPSH | flagFIN, seq: 401, ack: 1, n: 50})
	if _, err := c.Send([]byte("x"), syscall.MSG_OOB); err != syscall.EOPNOTSUPP {
		t.Fatalf("MSG_OOB: %v, want EOPNOTSUPP", err)
	}
}

// TCP_QUICKACK 0 delays even the first ACKs (interactive mode); 1 sends
// the owed ACK once the data is read.
func TestTCPQuickAck(t *testing.T) {
	h := newHarness(t)
	c := h.acceptSocket(h.listenSocket(nil))
	wantOption(t, c, OptQuickAck, 1)
	c.SetOption(OptQuickAck, 0)
	wantOption(t, c, OptQuickAck, 0)
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("abc")})
	h.expectNone()
	c.SetOption(OptQuickAck, 1) // unread data: the ACK still waits
	h.expectNone()
	c.Read(make([]byte, 10))
	h.expectNone() // reading alone does not send it
	c.SetOption(OptQuickAck, 1)
	h.expect(seg{flags: flagACK, seq: 1, ack: 4})
}
