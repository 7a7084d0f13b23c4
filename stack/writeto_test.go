package stack

import (
	"bytes"
	"errors"
	"io"
	"os"
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
	if a, b := c.so.e.rcv.buf.readable(1 << 20); len(b) == 0 || len(a)+len(b) != 4000 {
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

// readingWriter is handed the receive buffer by WriteTo; while it holds
// it, it tries a Read on the same Conn (with a short deadline), then takes
// two bytes and fails.
type readingWriter struct {
	c       *Conn
	got     string
	readN   int
	readErr error
}

var errStop = errors.New("stop")

func (w *readingWriter) Write(p []byte) (int, error) {
	w.got = string(p)
	w.c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	w.readN, w.readErr = w.c.Read(make([]byte, 16))
	w.c.SetReadDeadline(time.Time{})
	return 2, errStop
}

// A writer's error ends WriteTo and leaves what it did not take readable;
// a Read while the writer holds the bytes waits (here until its deadline)
// instead of taking them a second time.
func TestWriteToWriterErrorAndConcurrentRead(t *testing.T) {
	h := newHarness(t)
	c := h.handshake(h.listen(8))
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("hello")})
	w := &readingWriter{c: c}
	if _, err := c.WriteTo(w); !errors.Is(err, errStop) {
		t.Fatalf("WriteTo: %v, want the writer's error", err)
	}
	if w.got != "hello" {
		t.Fatalf("writer got %q", w.got)
	}
	if w.readN != 0 || !errors.Is(w.readErr, os.ErrDeadlineExceeded) {
		t.Fatalf("Read while the writer held the bytes: %d, %v; want 0 and a deadline error", w.readN, w.readErr)
	}
	wantRead(t, c, "llo") // after WriteTo: the writer took "he"
}
