package gvisor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"ustack/stack"
)

var (
	clientAddr = netip.MustParseAddr("10.0.0.1")
	serverAddr = netip.MustParseAddr("10.0.0.2")
)

// pair wires a ustack client (10.0.0.1) to a gVisor server (10.0.0.2) with
// two in-memory links.
func pair(t *testing.T) (*stack.Stack, *Stack) {
	t.Helper()
	cl, sl := stack.NewMemLink(1500), stack.NewMemLink(1500)
	cl.OnWrite = sl.Deliver
	sl.OnWrite = cl.Deliver
	return startPair(t, cl, sl)
}

// startPair starts a ustack client on cl and a gVisor server on sl, both
// closed when the test ends.
func startPair(t *testing.T, cl, sl *stack.MemLink) (*stack.Stack, *Stack) {
	t.Helper()
	opts := stack.DefaultOptions()
	opts.Addr = clientAddr
	c, err := stack.New(cl, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	s, err := New(sl, Options{Addr: serverAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		c.Close()
	})
	return c, s
}

// listen listens on the server's port, until the test ends.
func listen(t *testing.T, s *Stack, port uint16) net.Listener {
	t.Helper()
	ln, err := s.ListenTCP(netip.AddrPortFrom(serverAddr, port), 16)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func dial(t *testing.T, c *stack.Stack, port uint16) (*stack.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.DialTCP(ctx, netip.AddrPortFrom(clientAddr, 0), netip.AddrPortFrom(serverAddr, port))
}

// echoes sends msg on conn to an echo server, then closes its writing
// side, and checks that msg comes back before EOF.
func echoes(t *testing.T, conn *stack.Conn, msg []byte) {
	t.Helper()
	go func() {
		conn.Write(msg)
		conn.CloseWrite()
	}()
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echoed %d bytes, want the %d sent", len(got), len(msg))
	}
}

func TestEchoAndSockets(t *testing.T) {
	c, s := pair(t)
	ln := listen(t, s, 7)
	accepted := make(chan net.Conn, 1)
	go func() {
		sc, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- sc
		io.Copy(sc, sc)
		sc.(interface{ CloseWrite() error }).CloseWrite()
	}()
	conn, err := dial(t, c, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// While the connection is up, Sockets shows it and the listener.
	if _, err := conn.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	for _, si := range s.Sockets() {
		states[si.State]++
	}
	if states["LISTEN"] != 1 || states["ESTAB"] != 1 {
		t.Errorf("Sockets: %v, want one LISTEN and one ESTAB", s.Sockets())
	}
	echoes(t, conn, bytes.Repeat([]byte("0123456789"), 50000)) // several windows' worth
	if _, ok := <-accepted; !ok {
		t.Fatal("accept failed")
	}
	cnt := map[string]uint64{}
	for _, k := range s.Counters() {
		cnt[k.Name] = k.Value
	}
	if cnt["tcp.passive_opens"] != 1 || cnt["tcp.in"] == 0 || cnt["ip.out"] == 0 {
		t.Errorf("Counters: %v", s.Counters())
	}
}

func TestBoundRefuses(t *testing.T) {
	c, s := pair(t)
	b, err := s.Bind(netip.AddrPortFrom(serverAddr, 9))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := s.Bind(netip.AddrPortFrom(serverAddr, 9)); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second Bind: %v, want EADDRINUSE", err)
	}
	found := false
	for _, si := range s.Sockets() {
		if si.State == "UNCONN" && si.Local.Port() == 9 {
			found = true
		}
	}
	if !found {
		t.Errorf("Sockets: %v, want UNCONN :9", s.Sockets())
	}
	if _, err := dial(t, c, 9); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial to a bound port: %v, want ECONNREFUSED", err)
	}
}
