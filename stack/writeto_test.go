package stack

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// io.Copy from a Conn goes through WriteTo, which hands the writer the
// received bytes in order and returns a nil error at the peer's FIN.
func TestWriteToUntilEOF(t *testing.T) {
	h := newHarness(t)
	c := h.handshake(h.listen(8))
	h.send(seg{flags: flagACK, seq: 1, ack: 1, data: []byte("hello, ")})
	h.send(seg{flags: flagACK | flagPSH, seq: 8, ack: 1, data: []byte("world")})
	h.send(seg{flags: flagACK | flagFIN, seq: 13, ack: 1})
	var buf bytes.Buffer
	n, err := io.Copy(&buf, c)
	if n != 12 || err != nil || buf.String() != "hello, world" {
		t.Fatalf("io.Copy = %d, %v, %q; want 12, nil, %q", n, err, buf.String(), "hello, world")
	}
}

// Bytes that wrap around the end of the receive ring come out in order.
func TestWriteToAcrossRingWrap(t *testing.T) {
	h := newHarness(t)
	c := h.handshake(h.listen(8))
	first := bytes.Repeat([]byte("a"), 3000)
	h.send(seg{flags: flagACK, seq: 1, ack: 1, data: first})
	if n, _ := c.Read(make([]byte, 2000)); n != 2000 {
		t.Fatalf("Read %d, want 2000", n)
	}
	second := bytes.Repeat([]byte("b"), 3000)
	h.send(seg{flags: flagACK, seq: 3001, ack: 1, data: second})
	if a, b := c.e.rcvBuf.readable(1 << 20); len(b) == 0 || len(a)+len(b) != 4000 {
		t.Fatalf("readable %d+%d bytes: the test wants them to wrap", len(a), len(b))
	}
	h.send(seg{flags: flagACK | flagFIN, seq: 6001, ack: 1})
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, c); err != nil {
		t.Fatal(err)
	}
	want := append(first[2000:], second...)
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("got %d bytes, not the %d in order", buf.Len(), len(want))
	}
}

// blockingWriter shows p to the test and, once the test lets go, takes
// two bytes of it and fails.
type blockingWriter struct {
	got     chan []byte
	release chan struct{}
}

var errStop = errors.New("stop")

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.got <- append([]byte(nil), p...)
	<-w.release
	return 2, errStop
}

// A writer's error ends WriteTo and leaves what it did not take readable;
// a Read while the writer holds the bytes waits instead of taking them
// again.
func TestWriteToWriterErrorAndConcurrentRead(t *testing.T) {
	h := newHarness(t)
	c := h.handshake(h.listen(8))
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("hello")})
	w := &blockingWriter{got: make(chan []byte), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := c.WriteTo(w)
		done <- err
	}()
	if p := <-w.got; string(p) != "hello" {
		t.Fatalf("writer got %q", p)
	}
	read := make(chan string, 1)
	go func() {
		buf := make([]byte, 16)
		n, _ := c.Read(buf)
		read <- string(buf[:n])
	}()
	// Let the Read reach its wait; were it not to wait, it would take
	// "hello" while the writer still holds it.
	time.Sleep(20 * time.Millisecond)
	close(w.release)
	if err := <-done; !errors.Is(err, errStop) {
		t.Fatalf("WriteTo: %v, want the writer's error", err)
	}
	if got := <-read; got != "llo" {
		t.Fatalf("Read beside WriteTo: %q, want llo (the writer took he)", got)
	}
}
