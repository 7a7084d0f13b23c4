package main

import (
	"bytes"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// The services' connection handlers only need a net.Listener, so they are
// tested here over the kernel's loopback TCP, which behaves as the stack
// must (the integration tests run them on the stack itself).

// syncBuffer is a log destination safe for the handlers' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func serveLoopback(t *testing.T, name string, lg *log.Logger, handle func(net.Conn)) (string, *acceptService) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if lg == nil {
		lg = log.New(io.Discard, "", 0)
	}
	s := serveConns(ln, name, lg, handle)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String(), s
}

func dialT(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func TestEchoHalfClose(t *testing.T) {
	addr, _ := serveLoopback(t, "echo", nil, echoConn)
	c := dialT(t, addr)
	msg := strings.Repeat("0123456789", 50000)
	go func() {
		io.WriteString(c, msg)
		c.CloseWrite() // our FIN: echo must answer with its own after the data
	}()
	got, err := io.ReadAll(c) // ends only at echo's FIN
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Errorf("echoed %d bytes of %d", len(got), len(msg))
	}
}

func TestHalfCloseService(t *testing.T) {
	var logbuf syncBuffer
	lg := log.New(&logbuf, "", 0)
	addr, s := serveLoopback(t, "halfclose", lg, func(c net.Conn) { halfCloseConn(c, lg) })
	c := dialT(t, addr)
	got, err := io.ReadAll(c) // the greeting, then the service's FIN
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != halfCloseGreeting {
		t.Errorf("got %q", got)
	}
	// After its FIN the service still reads what we send (B34).
	if _, err := c.Write(make([]byte, 12345)); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logbuf.String(), "halfclose: read 12345 bytes\n") {
		if time.Now().After(deadline) {
			t.Fatalf("log %q", logbuf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Close()
}

func TestSourceAndDiscard(t *testing.T) {
	addr, _ := serveLoopback(t, "source", nil, sourceConn)
	c := dialT(t, addr)
	buf := make([]byte, 300000)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	for i, b := range buf {
		if b != byte(i) {
			t.Fatalf("byte %d = %d, want %d", i, b, byte(i))
		}
	}
	// Our FIN does not stop the stream (the peer may only be done talking).
	c.CloseWrite()
	if _, err := io.ReadFull(c, buf[:1000]); err != nil {
		t.Fatalf("after our FIN: %v", err)
	}

	daddr, _ := serveLoopback(t, "discard", nil, discardConn)
	d := dialT(t, daddr)
	if _, err := d.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	d.CloseWrite()
	if n, err := io.Copy(io.Discard, d); n != 0 || err != nil {
		t.Errorf("discard answered %d bytes, %v", n, err)
	}
}

// Close ends the accept loop and every open connection.
func TestAcceptServiceClose(t *testing.T) {
	addr, s := serveLoopback(t, "echo", nil, echoConn)
	c := dialT(t, addr)
	io.WriteString(c, "x")
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownWait + time.Second):
		t.Fatal("Close hung")
	}
	if _, err := c.Read(b); err == nil {
		t.Error("connection still open after Close")
	}
	if _, err := net.DialTimeout("tcp4", addr, time.Second); err == nil {
		t.Error("listener still accepting after Close")
	}
}
