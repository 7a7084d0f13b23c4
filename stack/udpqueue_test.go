package stack

import (
	"fmt"
	"net/netip"
	"syscall"
	"testing"

	"ustack/hashtable"
)

// The queue is first in, first out across its compactions and reuse, and
// counts its bytes.
func TestDgramQueueOrder(t *testing.T) {
	var q dgramQueue
	from := netip.MustParseAddrPort("10.0.0.1:5000")
	next, want := 0, 0
	for round := 0; round < 50; round++ {
		for i := 0; i < round%7+1; i++ {
			q.push(from, hashtable.Addr{}, []byte(fmt.Sprint(next)))
			next++
		}
		for i := 0; i < round%5+1 && q.len() > 0; i++ {
			if got := string(q.front().data); got != fmt.Sprint(want) {
				t.Fatalf("round %d: took %q, want %d", round, got, want)
			}
			q.pop()
			want++
		}
	}
	bytes := 0
	for i := want; i < next; i++ {
		bytes += len(fmt.Sprint(i))
	}
	if q.len() != next-want || q.bytes != bytes {
		t.Errorf("%d datagrams of %d bytes queued, want %d of %d", q.len(), q.bytes, next-want, bytes)
	}
	big := make([]byte, 9000)
	big[8999] = 7
	q.push(from, hashtable.Addr{}, big)
	for q.len() > 1 {
		q.pop()
	}
	if d := q.front(); len(d.data) != 9000 || d.data[8999] != 7 {
		t.Errorf("a jumbo datagram came out as %d bytes", len(d.data))
	}
}

// A steady flow of datagrams in and out of a socket allocates nothing
// once the queue has its buffers.
func TestUDPReceiveDoesNotAllocate(t *testing.T) {
	h := newHarness(t)
	so := udpSocket(t, h, 6000)
	pkt := udp4(5000, 6000, string(make([]byte, 1400)), false)
	scratch := make([]byte, len(pkt))
	buf := make([]byte, 2048)
	step := func() {
		copy(scratch, pkt)
		h.s.Inject(scratch)
		if n, _, err := so.RecvFrom(buf, 0); n != 1400 || err != nil {
			t.Fatalf("RecvFrom: %d, %v", n, err)
		}
	}
	step()
	if a := testing.AllocsPerRun(200, step); a != 0 {
		t.Errorf("%.1f allocations per datagram received, want 0", a)
	}
	if _, _, err := so.RecvFrom(buf, 0); err != syscall.EAGAIN {
		t.Errorf("an empty queue: %v, want EAGAIN", err)
	}
}

// BenchmarkUDPReceive is a 1400-byte datagram through input to RecvFrom.
func BenchmarkUDPReceive(b *testing.B) {
	h := newHarness(b)
	so := h.s.NewUDPSocket()
	if err := so.Bind(netip.AddrPortFrom(netip.IPv4Unspecified(), 6000)); err != nil {
		b.Fatal(err)
	}
	pkt := udp4(5000, 6000, string(make([]byte, 1400)), false)
	scratch := make([]byte, len(pkt))
	buf := make([]byte, 2048)
	b.ReportAllocs()
	b.SetBytes(1400)
	for b.Loop() {
		copy(scratch, pkt)
		h.s.Inject(scratch)
		so.RecvFrom(buf, 0)
	}
}
