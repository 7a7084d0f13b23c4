package stack

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"

	"ustack/timers"
)

// A stack over a BatchLink, as an embedder (wireguard-go) drives it: the
// peer's packets go in with Write at an offset, the stack's come out with
// Read into the caller's buffers at that offset.

const batchOffset = 16 // wireguard-go's transport header room

func newBatchStack(t *testing.T) (*Stack, *BatchLink) {
	t.Helper()
	link := NewBatchLink(1500)
	o := DefaultOptions()
	o.Clock = timers.NewVirtual(testStart)
	s, err := New(link, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, link
}

// at puts pkt at batchOffset in a buffer, as wireguard-go hands it over.
func at(pkt []byte) []byte { return append(make([]byte, batchOffset), pkt...) }

func batchBufs(n int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, batchOffset+1500)
	}
	return bufs, make([]int, n)
}

// A batch of datagrams written in is received by the socket in order; the
// replies come out of one Read, each at the offset.
func TestBatchLinkWriteAndRead(t *testing.T) {
	s, link := newBatchStack(t)
	c, err := s.ListenUDP(netip.AddrPortFrom(netip.Addr{}, 7))
	if err != nil {
		t.Fatal(err)
	}
	in := [][]byte{at(udp4(5000, 7, "one", false)), at(udp4(5000, 7, "two", false)), at(udp4(5000, 7, "three", false))}
	if n, err := link.Write(in, batchOffset); n != 3 || err != nil {
		t.Fatalf("Write = %d, %v; want 3, nil", n, err)
	}
	buf := make([]byte, 100)
	for _, want := range []string{"one", "two", "three"} {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != want || from != netip.MustParseAddrPort("10.0.0.1:5000") {
			t.Fatalf("ReadFrom = %q from %v (%v), want %q from 10.0.0.1:5000", buf[:n], from, err, want)
		}
		if _, err := c.WriteToUDPAddrPort([]byte("re:"+want), from); err != nil {
			t.Fatal(err)
		}
	}
	bufs, sizes := batchBufs(8)
	n, err := link.Read(bufs, sizes, batchOffset)
	if n != 3 || err != nil {
		t.Fatalf("Read = %d, %v; want the 3 replies", n, err)
	}
	for i, want := range []string{"re:one", "re:two", "re:three"} {
		pkt := bufs[i][batchOffset : batchOffset+sizes[i]]
		if got := string(pkt[28:]); got != want || sizes[i] != 28+len(want) {
			t.Errorf("packet %d carries %q (%d bytes), want %q", i, got, sizes[i], want)
		}
	}
}

// While nobody reads, the stack keeps BatchQueueLen packets and counts
// the rest as dropped; a Read then gets the oldest first.
func TestBatchLinkQueueBound(t *testing.T) {
	s, link := newBatchStack(t)
	c, err := s.DialUDP(netip.AddrPort{}, netip.MustParseAddrPort("10.0.0.1:9"))
	if err != nil {
		t.Fatal(err)
	}
	const extra = 10
	for i := range BatchQueueLen + extra {
		if _, err := c.Write([]byte{byte(i >> 8), byte(i)}); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
	if got := s.Counter("link.drop.tx_queue_full"); got != extra {
		t.Errorf("link.drop.tx_queue_full = %d, want %d", got, extra)
	}
	bufs, sizes := batchBufs(link.BatchSize())
	total := 0
	for total < BatchQueueLen {
		n, err := link.Read(bufs, sizes, batchOffset)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			pkt := bufs[i][batchOffset:]
			if seq := int(pkt[28])<<8 | int(pkt[29]); seq != total+i {
				t.Fatalf("packet %d carries datagram %d", total+i, seq)
			}
		}
		total += n
	}
}

// A buffer too short for the packet loses that packet, counted; the next
// one still comes.
func TestBatchLinkShortBuffer(t *testing.T) {
	s, link := newBatchStack(t)
	c, err := s.DialUDP(netip.AddrPort{}, netip.MustParseAddrPort("10.0.0.1:9"))
	if err != nil {
		t.Fatal(err)
	}
	c.Write(make([]byte, 1000))
	c.Write([]byte("small"))
	bufs := [][]byte{make([]byte, batchOffset+100)}
	sizes := []int{0}
	n, err := link.Read(bufs, sizes, batchOffset)
	if n != 1 || err != nil || sizes[0] != 28+5 {
		t.Fatalf("Read = %d (%d bytes), %v; want the small datagram", n, sizes[0], err)
	}
	if got := s.Counter("link.drop.short_buffer"); got != 1 {
		t.Errorf("link.drop.short_buffer = %d, want 1", got)
	}
}

// Read blocks until the stack sends, and a Close wakes it with
// net.ErrClosed; Write on a closed stack fails alike.
func TestBatchLinkClose(t *testing.T) {
	s, link := newBatchStack(t)
	done := make(chan error, 1)
	go func() {
		bufs, sizes := batchBufs(1)
		_, err := link.Read(bufs, sizes, 0)
		done <- err
	}()
	waitBlockedIn(t, "(*BatchLink).Read")
	select {
	case err := <-done:
		t.Fatalf("Read returned %v with nothing sent", err)
	default:
	}
	s.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close = %v, want net.ErrClosed", err)
	}
	if _, err := link.Write([][]byte{udp4(1, 7, "x", false)}, 0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
}

// A BatchLink belongs to one stack, and does nothing before it has one.
func TestBatchLinkOwnership(t *testing.T) {
	link := NewBatchLink(1500)
	if _, err := link.Write([][]byte{udp4(1, 7, "x", false)}, 0); err == nil {
		t.Error("Write before New succeeded")
	}
	s, err := New(link, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := New(link, DefaultOptions()); err == nil {
		t.Error("a second stack took the same BatchLink")
	}
}

// Neither direction allocates per packet once warm.
func TestBatchLinkDoesNotAllocate(t *testing.T) {
	s, link := newBatchStack(t)
	c, err := s.ListenUDP(netip.AddrPortFrom(netip.Addr{}, 7))
	if err != nil {
		t.Fatal(err)
	}
	in := [][]byte{at(udp4(5000, 7, string(make([]byte, 1400)), false))}
	scratch := [][]byte{make([]byte, len(in[0]))}
	bufs, sizes := batchBufs(1)
	buf := make([]byte, 2000)
	to := netip.MustParseAddrPort("10.0.0.1:5000")
	step := func() {
		copy(scratch[0], in[0])
		link.Write(scratch, batchOffset)
		if n, _, err := c.ReadFromUDPAddrPort(buf); n != 1400 || err != nil {
			t.Fatalf("ReadFrom: %d, %v", n, err)
		}
		c.WriteToUDPAddrPort(buf[:1400], to)
		if n, err := link.Read(bufs, sizes, batchOffset); n != 1 || err != nil {
			t.Fatalf("Read: %d, %v", n, err)
		}
	}
	step()
	if a := testing.AllocsPerRun(200, step); a != 0 {
		t.Errorf("%.1f allocations per datagram in and out, want 0", a)
	}
}

// sendBatch gives the stack sgs as one BatchLink.Write batch would.
func (h *harness) sendBatch(sgs ...seg) {
	h.t.Helper()
	bufs := make([][]byte, len(sgs))
	for i, sg := range sgs {
		bufs[i] = h.build(sg)
	}
	h.s.mu.Lock()
	h.s.inputBatchLocked(h.clock.Now(), bufs, 0)
	h.s.mu.Unlock()
}

// fullSegments are n in-order segments of 1460 bytes from peer byte 1.
func fullSegments(n int) []seg {
	sgs := make([]seg, n)
	for i := range sgs {
		sgs[i] = seg{flags: flagACK, seq: 1 + uint32(i)*1460, ack: 1, n: 1460}
	}
	return sgs
}

// A batch's in-order segments are one GRO packet to Linux: one ACK for
// all of them, at the end, quick-ACK mode or not.
func TestBatchOneACKPerBatch(t *testing.T) {
	h, c := established(t)
	h.sendBatch(fullSegments(10)...)
	h.expect(seg{flags: flagACK, seq: 1, ack: 1 + 10*1460})
	h.expectNone()
	buf := make([]byte, 20000)
	if n, err := io.ReadFull(c, buf[:10*1460]); n != 10*1460 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
}

// A batch holding more than a GRO packet's 64 KB is ACKed at least that
// often: 60 segments, an ACK after the 45th (65,700 bytes), one at the end.
func TestBatchACKsEvery64KB(t *testing.T) {
	h, _ := established(t)
	h.sendBatch(fullSegments(60)...)
	h.expect(seg{flags: flagACK, seq: 1, ack: 1 + 45*1460})
	h.expect(seg{flags: flagACK, seq: 1, ack: 1 + 60*1460})
	h.expectNone()
}

// An out-of-order segment in a batch is ACKed at once, as ever (RFC 5681
// 4.2): the duplicate ACK is not held for the batch.
func TestBatchOutOfOrderACKedAtOnce(t *testing.T) {
	h, _ := established(t)
	sgs := fullSegments(4)
	h.sendBatch(sgs[0], sgs[2], sgs[3])
	h.expect(seg{flags: flagACK, seq: 1, ack: 1 + 1460}) // the dup ACK for segment 3
	h.expect(seg{flags: flagACK, seq: 1, ack: 1 + 1460}) // and for segment 4
	h.expectNone()
}
