package stack

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net"
	"testing"
	"time"

	"ustack/timers"
)

// Two sockets of one stack over the loopback path move 8 MB each way
// intact, with the real clock and the stack's own goroutines (B20).
func TestLoopbackBulkBothWays(t *testing.T) {
	s, l, err := listenRealStack(":7")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c) // echo
		c.(*Conn).CloseWrite()
	}()
	c, err := s.Dial("tcp", "10.0.0.2:7")
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	go func() {
		c.Write(data)
		c.(*Conn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) || !bytes.Equal(got[:100], data[:100]) {
		t.Fatalf("echoed %d bytes, content differs", len(got))
	}
	c.Close()
}

// listenRealStack starts a stack on a MemLink with the real clock and its
// own goroutines, listening on addr; the loopback path joins its sockets.
func listenRealStack(addr string) (*Stack, net.Listener, error) {
	o := DefaultOptions()
	o.Clock = timers.Real{}
	s, err := New(NewMemLink(1500), o)
	if err != nil {
		return nil, nil, err
	}
	s.Start()
	l, err := s.Listen("tcp", addr)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, l, nil
}
