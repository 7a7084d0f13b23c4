package stack

import (
	"net/netip"
	"syscall"
	"testing"
)

// The non-blocking socket API over the loopback path: EINPROGRESS,
// EAGAIN, readiness, data, EOF, and SO_ERROR after a refused connect.
func TestSocketNonBlocking(t *testing.T) {
	h := newHarness(t)
	s := h.s
	ln := s.NewSocket()
	ln.SetOption(OptReuseAddr, 1)
	if err := ln.Bind(netip.MustParseAddrPort("10.0.0.2:8080")); err != nil {
		t.Fatal(err)
	}
	if err := ln.Listen(1); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(); err != syscall.EAGAIN {
		t.Fatalf("accept on an empty queue: %v, want EAGAIN", err)
	}
	c := s.NewSocket()
	if err := c.Connect(netip.MustParseAddrPort("10.0.0.2:8080")); err != syscall.EINPROGRESS {
		t.Fatalf("connect: %v, want EINPROGRESS", err)
	}
	// Loopback completes the handshake synchronously.
	if c.State() != "ESTAB" || c.Events()&EventOut == 0 {
		t.Fatalf("client %s events %b", c.State(), c.Events())
	}
	if ln.Events()&EventIn == 0 {
		t.Fatal("listener not readable with a connection queued")
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := a.Read(buf); err != syscall.EAGAIN {
		t.Fatalf("read with nothing queued: %v, want EAGAIN", err)
	}
	if n, err := c.Write([]byte("hi")); n != 2 || err != nil {
		t.Fatalf("write %d %v", n, err)
	}
	if a.InQ() != 2 || a.Events()&EventIn == 0 {
		t.Fatalf("InQ %d events %b", a.InQ(), a.Events())
	}
	if n, _ := a.Read(buf); string(buf[:n]) != "hi" {
		t.Fatalf("read %q", buf[:n])
	}
	c.Shutdown(syscall.SHUT_WR)
	if n, err := a.Read(buf); n != 0 || err != nil {
		t.Fatalf("read at EOF: %d %v, want 0 nil", n, err)
	}
	// A connect to a port nobody listens on: refused, reported by SO_ERROR.
	r := s.NewSocket()
	r.Connect(netip.MustParseAddrPort("10.0.0.2:9"))
	if err := r.SockError(); err != syscall.ECONNREFUSED {
		t.Fatalf("SO_ERROR %v, want ECONNREFUSED", err)
	}
}

// getsockopt reads options back; an accepted socket inherits its
// listener's, SO_REUSEADDR included (Linux sk_clone).
func TestSocketOptionsReadBackAndInherited(t *testing.T) {
	h := newHarness(t)
	l := h.s.NewSocket()
	for _, o := range []SockOpt{OptReuseAddr, OptKeepAlive, OptNoDelay} {
		if v, err := l.Option(o); err != nil || v != 0 {
			t.Fatalf("option %d on a new socket: %d, %v; want 0", o, v, err)
		}
		if err := l.SetOption(o, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Bind(netip.AddrPortFrom(netip.AddrFrom4(stackAddr), 80)); err != nil {
		t.Fatal(err)
	}
	if err := l.Listen(5); err != nil {
		t.Fatal(err)
	}
	h.send(seg{flags: flagSYN, seq: 0})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.send(seg{flags: flagACK, seq: 1, ack: 1})
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []SockOpt{OptReuseAddr, OptKeepAlive, OptNoDelay} {
		if v, err := c.Option(o); err != nil || v != 1 {
			t.Fatalf("option %d on the accepted socket: %d, %v; want 1 (inherited)", o, v, err)
		}
	}
}

// recv(MSG_PEEK) leaves the bytes queued and the window where it was; an
// unknown flag is EOPNOTSUPP.
func TestRecvPeek(t *testing.T) {
	h := newHarness(t)
	c := h.acceptSocket(h.listenSocket(nil))
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("hello")})
	h.out()
	buf := make([]byte, 3)
	if n, err := c.Recv(buf, syscall.MSG_PEEK); n != 3 || err != nil || string(buf) != "hel" {
		t.Fatalf("peek: %d %q %v", n, buf[:n], err)
	}
	if c.InQ() != 5 {
		t.Fatalf("SIOCINQ after a peek: %d, want 5", c.InQ())
	}
	buf = make([]byte, 10)
	if n, _ := c.Read(buf); string(buf[:n]) != "hello" {
		t.Fatalf("read after peek: %q", buf[:n])
	}
	if _, err := c.Recv(buf, syscall.MSG_OOB); err != syscall.EOPNOTSUPP {
		t.Fatalf("MSG_OOB: %v, want EOPNOTSUPP", err)
	}
}

// Closing is what a lingering close waits out: true from close() until
// the FIN is acknowledged.
func TestSocketClosing(t *testing.T) {
	h := newHarness(t)
	c := h.acceptSocket(h.listenSocket(nil))
	if c.Closing() {
		t.Fatal("closing while established")
	}
	h.closeToFinWait1(c)
	if !c.Closing() {
		t.Fatal("not closing in FIN-WAIT-1")
	}
	h.send(seg{flags: flagACK, seq: 1, ack: 2})
	if c.Closing() {
		t.Fatal("still closing in FIN-WAIT-2")
	}
}

// SO_RCVLOWAT: below it the socket does not poll readable; at it, or at
// EOF, it does. Values above half the receive buffer are capped.
func TestSocketRcvLowat(t *testing.T) {
	h := newHarness(t)
	c := h.acceptSocket(h.listenSocket(nil))
	c.SetOption(OptRcvLowat, 5)
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("abc")})
	if c.Events()&EventIn != 0 || c.Readable(10) {
		t.Fatal("readable with 3 bytes under SO_RCVLOWAT 5")
	}
	if !c.Readable(2) {
		t.Fatal("a read of 2 must not wait for SO_RCVLOWAT 5 (the smaller counts)")
	}
	h.send(seg{flags: flagACK | flagPSH, seq: 4, ack: 1, data: []byte("de")})
	if c.Events()&EventIn == 0 {
		t.Fatal("not readable with 5 bytes at SO_RCVLOWAT 5")
	}
	c.SetOption(OptRcvLowat, -1)
	if v, _ := c.Option(OptRcvLowat); v != h.s.opts.RecvBuffer/2 {
		t.Fatalf("SO_RCVLOWAT -1 reads back %d, want half the buffer %d", v, h.s.opts.RecvBuffer/2)
	}
	h.send(seg{flags: flagACK | flagFIN, seq: 6, ack: 1})
	if c.Events()&EventIn == 0 {
		t.Fatal("not readable at EOF")
	}
}
