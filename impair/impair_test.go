package impair

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// memLink is an in-memory stack.Link: the test plays the kernel side,
// injecting packets with inject and collecting what the stack wrote.
type memLink struct {
	in     chan []byte
	mu     sync.Mutex
	out    [][]byte
	closed chan struct{}
	once   sync.Once
}

func newMemLink() *memLink {
	return &memLink{in: make(chan []byte, 4096), closed: make(chan struct{})}
}

func (m *memLink) inject(p []byte) { m.in <- p }

func (m *memLink) ReadPacket(b []byte) (int, error) {
	select {
	case p := <-m.in:
		return copy(b, p), nil
	case <-m.closed:
		return 0, net.ErrClosed
	}
}

func (m *memLink) WritePacket(b []byte) error {
	m.mu.Lock()
	m.out = append(m.out, append([]byte(nil), b...))
	m.mu.Unlock()
	return nil
}

func (m *memLink) written() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]byte(nil), m.out...)
}

func (m *memLink) MTU() int { return 1500 }

func (m *memLink) Close() error {
	m.once.Do(func() { close(m.closed) })
	return nil
}

// readAll reads inbound packets from l until none arrives for quiet.
func readAll(t *testing.T, l *Link, quiet time.Duration) [][]byte {
	t.Helper()
	ch := make(chan []byte)
	go func() {
		for {
			b := make([]byte, 2000)
			n, err := l.ReadPacket(b)
			if err != nil {
				close(ch)
				return
			}
			ch <- b[:n]
		}
	}()
	var got [][]byte
	for {
		select {
		case p, ok := <-ch:
			if !ok {
				return got
			}
			got = append(got, p)
		case <-time.After(quiet):
			return got
		}
	}
}

func pkt(i int) []byte { return []byte{byte(i >> 8), byte(i), 0xaa} }

// impaired returns a memLink and the Link spec makes of it, closed when
// the test ends.
func impaired(t *testing.T, spec Spec) (*memLink, *Link) {
	m := newMemLink()
	l := New(m, spec)
	t.Cleanup(func() { l.Close() })
	return m, l
}

// sendBoth writes packets 0..n-1 out through l and injects the same ones
// inbound.
func sendBoth(l *Link, m *memLink, n int) {
	for i := range n {
		l.WritePacket(pkt(i))
		m.inject(pkt(i))
	}
}

// waitWritten waits until at least n packets reached the memLink, or d passes.
func waitWritten(m *memLink, n int, d time.Duration) [][]byte {
	deadline := time.Now().Add(d)
	for {
		w := m.written()
		if len(w) >= n || time.Now().After(deadline) {
			return w
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestImpairLossAll(t *testing.T) {
	m, l := impaired(t, Spec{Loss: 1, Seed: 1})
	sendBoth(l, m, 100)
	if got := readAll(t, l, 100*time.Millisecond); len(got) != 0 {
		t.Errorf("loss=100%%: %d packets came in", len(got))
	}
	if w := m.written(); len(w) != 0 {
		t.Errorf("loss=100%%: %d packets went out", len(w))
	}
	out, in := l.Stats()
	if out.Packets != 100 || out.Lost != 100 || in.Packets != 100 || in.Lost != 100 {
		t.Errorf("stats out %v, in %v", out, in)
	}
}

func TestImpairDupAll(t *testing.T) {
	m, l := impaired(t, Spec{Dup: 1, Seed: 1})
	sendBoth(l, m, 50)
	got := readAll(t, l, 100*time.Millisecond)
	if len(got) != 100 {
		t.Errorf("dup=100%%: %d packets came in, want 100", len(got))
	}
	if w := waitWritten(m, 100, time.Second); len(w) != 100 {
		t.Errorf("dup=100%%: %d packets went out, want 100", len(w))
	}
	// Without delay, the copy follows its original.
	for i := 0; i+1 < len(got); i += 2 {
		if string(got[i]) != string(got[i+1]) || string(got[i]) != string(pkt(i/2)) {
			t.Fatalf("in: packets %d,%d = %x,%x, want two copies of %x", i, i+1, got[i], got[i+1], pkt(i/2))
		}
	}
}

func TestImpairPassThroughInOrder(t *testing.T) {
	m, l := impaired(t, Spec{Seed: 1})
	sendBoth(l, m, 300)
	got := readAll(t, l, 100*time.Millisecond)
	w := waitWritten(m, 300, time.Second)
	if len(got) != 300 || len(w) != 300 {
		t.Fatalf("in %d, out %d, want 300 each", len(got), len(w))
	}
	for i := range 300 {
		if string(got[i]) != string(pkt(i)) || string(w[i]) != string(pkt(i)) {
			t.Fatalf("packet %d out of order", i)
		}
	}
}

func TestImpairDelayHolds(t *testing.T) {
	const delay = 300 * time.Millisecond
	m, l := impaired(t, Spec{Delay: delay, Seed: 1})
	start := time.Now()
	l.WritePacket(pkt(1))
	m.inject(pkt(2))

	got := make(chan time.Time, 1)
	go func() {
		b := make([]byte, 100)
		if _, err := l.ReadPacket(b); err == nil {
			got <- time.Now()
		}
	}()
	time.Sleep(delay / 3)
	if w := m.written(); len(w) != 0 {
		t.Errorf("out: packet left after %v, before the %v delay", time.Since(start), delay)
	}
	select {
	case <-got:
		t.Errorf("in: packet arrived after %v, before the %v delay", time.Since(start), delay)
	default:
	}
	select {
	case at := <-got:
		if d := at.Sub(start); d < delay {
			t.Errorf("in: arrived after %v, want >= %v", d, delay)
		}
	case <-time.After(5 * delay):
		t.Fatal("in: delayed packet never arrived")
	}
	if w := waitWritten(m, 1, 5*delay); len(w) != 1 {
		t.Fatal("out: delayed packet never left")
	}
	if d := time.Since(start); d < delay {
		t.Errorf("out: left after %v, want >= %v", d, delay)
	}
}

// With a delay, a reordered packet skips it and overtakes the held ones.
func TestImpairReorderWithDelay(t *testing.T) {
	m, l := impaired(t, Spec{Delay: 100 * time.Millisecond, Reorder: 1, Seed: 1})
	// All packets reordered means all skip the delay: arrival order kept.
	for i := range 10 {
		l.WritePacket(pkt(i))
	}
	w := waitWritten(m, 10, 50*time.Millisecond)
	if len(w) != 10 {
		t.Fatalf("reorder=100%%: %d packets left before the delay, want all 10", len(w))
	}
	out, _ := l.Stats()
	if out.Reordered != 10 {
		t.Errorf("stats %v", out)
	}
}

// With no delay, a reordered packet is held so later ones overtake it.
func TestImpairReorderWithoutDelay(t *testing.T) {
	m, l := impaired(t, Spec{Reorder: 0.5, Seed: 7})
	for i := range 200 {
		l.WritePacket(pkt(i))
	}
	w := waitWritten(m, 200, time.Second)
	if len(w) != 200 {
		t.Fatalf("%d packets, want 200", len(w))
	}
	inversions := 0
	for i := 1; i < len(w); i++ {
		if string(w[i]) < string(w[i-1]) {
			inversions++
		}
	}
	if inversions == 0 {
		t.Error("reorder=50%: no packet was overtaken")
	}
}

func TestImpairLimit(t *testing.T) {
	_, l := impaired(t, Spec{Delay: time.Hour, Limit: 5, Seed: 1})
	for i := range 8 {
		l.WritePacket(pkt(i))
	}
	if out, _ := l.Stats(); out.Overflow != 3 {
		t.Errorf("overflow %d, want 3", out.Overflow)
	}
}

func TestImpairClose(t *testing.T) {
	m := newMemLink()
	l := New(m, Spec{Delay: time.Hour, Seed: 1})
	errc := make(chan error, 1)
	go func() {
		_, err := l.ReadPacket(make([]byte, 10))
		errc <- err
	}()
	l.WritePacket(pkt(1))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Error("ReadPacket after Close: nil error")
		}
	case <-time.After(time.Second):
		t.Fatal("Close did not unblock ReadPacket")
	}
	if err := l.WritePacket(pkt(2)); err == nil {
		t.Error("WritePacket after Close: nil error")
	}
	if len(m.written()) != 0 {
		t.Error("held packet was sent after Close")
	}
	l.Close() // idempotent
}

func TestParse(t *testing.T) {
	s, err := Parse("loss=2%,dup=1%,reorder=0.5%,delay=50ms,jitter=10ms")
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{Loss: 0.02, Dup: 0.01, Reorder: 0.005, Delay: 50 * time.Millisecond, Jitter: 10 * time.Millisecond, Limit: DefaultLimit}
	if s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
	if got := s.String(); got != "loss=2%,dup=1%,reorder=0.5%,delay=50ms,jitter=10ms" {
		t.Errorf("String %q", got)
	}
	if got := (Spec{}).String(); got != "none" {
		t.Errorf("zero Spec String %q, want none", got)
	}
	s, err = Parse("delay=1s, limit=10,seed=42")
	if err != nil || s.Delay != time.Second || s.Limit != 10 || s.Seed != 42 || s.Loss != 0 {
		t.Errorf("subset: %+v %v", s, err)
	}
	for _, tc := range []struct{ spec, want string }{
		{"", "empty spec"},
		{"loss", "want KEY=VALUE"},
		{"loss=", "want KEY=VALUE"},
		{"loss=2", "want a percentage like loss=2%"},
		{"loss=101%", "0% to 100%"},
		{"dup=-1%", "0% to 100%"},
		{"reorder=x%", "0% to 100%"},
		{"delay=50", "want a duration"},
		{"jitter=-5ms", "want a duration"},
		{"limit=0", "positive packet count"},
		{"seed=-1", "non-negative integer"},
		{"loss=1%,loss=2%", "loss given twice"},
		{"rate=1mbit", `unknown key "rate"`},
	} {
		_, err := Parse(tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.spec, err, tc.want)
		}
	}
}
