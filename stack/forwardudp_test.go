package stack

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"ustack/stack/header"
)

// The UDP forwarder, datagram in / datagram out, through a promiscuous
// stack: the peer (10.0.0.1) sends to addresses that are not the stack's.

var farAddr2 = [4]byte{198, 51, 100, 7}

// udpTo is a datagram from the peer's sport to dst:dport.
func udpTo(dst [4]byte, sport, dport uint16, data string) []byte {
	u := udpBytes(sport, dport, data, func(n int) uint32 {
		return header.PseudoHeaderSum(peerAddr, dst, header.ProtoUDP, n)
	}, false)
	pkt := make([]byte, header.IPv4MinSize+len(u))
	header.EncodeIPv4(pkt, header.IPv4Fields{TotalLen: len(pkt), TTL: 64, Protocol: header.ProtoUDP, Src: peerAddr, Dst: dst})
	copy(pkt[header.IPv4MinSize:], u)
	return pkt
}

func udpForwarding(t *testing.T, mode UDPForwardMode, maxFlows int) (*harness, chan *UDPFlow) {
	h := newHarness(t, func(o *Options) { o.Promiscuous = true })
	flows := make(chan *UDPFlow, 16)
	h.s.SetUDPForwarder(mode, maxFlows, func(f *UDPFlow) { flows <- f })
	return h, flows
}

func nextFlow(t *testing.T, flows chan *UDPFlow) *UDPFlow {
	t.Helper()
	select {
	case f := <-flows:
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("the UDP forwarder's handler was not called")
		return nil
	}
}

func noFlow(t *testing.T, flows chan *UDPFlow) {
	t.Helper()
	select {
	case f := <-flows:
		t.Fatalf("unexpected flow from %v to %v", f.Client(), f.Dst())
	case <-time.After(20 * time.Millisecond):
	}
}

// wantDatagram reads one datagram of f: its bytes and destination.
func wantDatagram(t *testing.T, f *UDPFlow, data string, to string) {
	t.Helper()
	f.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, dst, err := f.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != data || dst.String() != to {
		t.Fatalf("ReadFrom = %q to %v (%v), want %q to %s", buf[:n], dst, err, data, to)
	}
}

// wantUDPOut checks the next packet: a datagram from `from` to the peer's
// port, carrying data, its checksum valid.
func (h *harness) wantUDPOut(from string, dport uint16, data string) {
	h.t.Helper()
	pkts := h.link.Outbound()
	if len(pkts) != 1 {
		h.t.Fatalf("%d packets out, want one datagram", len(pkts))
	}
	ip := header.IPv4(pkts[0])
	u := ip.Payload()
	src := netip.AddrPortFrom(netip.AddrFrom4(ip.Src()), binary.BigEndian.Uint16(u[0:2]))
	if ip.Protocol() != header.ProtoUDP || src.String() != from || binary.BigEndian.Uint16(u[2:4]) != dport || string(u[8:]) != data {
		h.t.Fatalf("sent proto %d from %v to port %d: %q; want UDP from %s to port %d: %q", ip.Protocol(), src, binary.BigEndian.Uint16(u[2:4]), u[8:], from, dport, data)
	}
	if !header.ChecksumValidWith(u, header.PseudoHeaderSum(ip.Src(), ip.Dst(), header.ProtoUDP, len(u))) {
		h.t.Fatal("bad UDP checksum")
	}
}

// Connected mode: a flow per destination; the answer comes from it.
func TestUDPForwardConnected(t *testing.T) {
	h, flows := udpForwarding(t, UDPConnected, 16)
	h.s.Inject(udpTo(farAddr, 5000, 53, "query"))
	f := nextFlow(t, flows)
	if f.Client().String() != "10.0.0.1:5000" || f.Dst().String() != "93.184.216.34:53" || f.LocalAddr().String() != "93.184.216.34:53" {
		t.Fatalf("flow %v -> %v (local %v)", f.Client(), f.Dst(), f.LocalAddr())
	}
	wantDatagram(t, f, "query", "93.184.216.34:53")
	h.s.Inject(udpTo(farAddr, 5000, 53, "again"))
	noFlow(t, flows)
	wantDatagram(t, f, "again", "93.184.216.34:53")
	if _, err := f.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	h.wantUDPOut("93.184.216.34:53", 5000, "answer")
	// Only its destination may answer a connected flow.
	if _, err := f.WriteToUDPAddrPort([]byte("x"), netip.MustParseAddrPort("198.51.100.7:53")); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("a write from another address = %v, want EINVAL", err)
	}
	h.s.Inject(udpTo(farAddr2, 5000, 53, "other"))
	if g := nextFlow(t, flows); g.Dst().String() != "198.51.100.7:53" {
		t.Errorf("second flow to %v", g.Dst())
	}
	h.expectNone()
}

// Endpoint-independent mode: one flow per client port, whatever the
// destination; the answer comes from whichever address the embedder names.
func TestUDPForwardEndpointIndependent(t *testing.T) {
	h, flows := udpForwarding(t, UDPEndpointIndependent, 16)
	h.s.Inject(udpTo(farAddr, 5000, 3478, "stun"))
	h.s.Inject(udpTo(farAddr2, 5000, 9000, "game"))
	f := nextFlow(t, flows)
	noFlow(t, flows)
	wantDatagram(t, f, "stun", "93.184.216.34:3478")
	wantDatagram(t, f, "game", "198.51.100.7:9000")
	if _, err := f.WriteToUDPAddrPort([]byte("from a third"), netip.MustParseAddrPort("203.0.113.9:4000")); err != nil {
		t.Fatal(err)
	}
	h.wantUDPOut("203.0.113.9:4000", 5000, "from a third")
}

// A flow idle for UDPFlowTimeout ends (ErrFlowExpired, a net.ErrClosed);
// activity moves the deadline; the client's next datagram is a new flow.
func TestUDPForwardIdleTimeout(t *testing.T) {
	h, flows := udpForwarding(t, UDPConnected, 16)
	h.s.Inject(udpTo(farAddr, 5000, 53, "a"))
	f := nextFlow(t, flows)
	wantDatagram(t, f, "a", "93.184.216.34:53")
	h.advance(4 * time.Minute)
	f.Write([]byte("b")) // activity: the mapping lives on
	h.link.Outbound()
	h.advance(4 * time.Minute)
	if _, err := f.Write([]byte("c")); err != nil {
		t.Fatalf("8 minutes in, 4 after the last datagram: %v", err)
	}
	h.link.Outbound()
	h.advance(5 * time.Minute)
	if _, err := f.Read(make([]byte, 10)); !errors.Is(err, ErrFlowExpired) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after 5 idle minutes = %v, want ErrFlowExpired", err)
	}
	if got := h.s.Counter("udp.forward.idle_expired"); got != 1 {
		t.Errorf("udp.forward.idle_expired = %d", got)
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close of an expired flow: %v", err)
	}
	h.s.Inject(udpTo(farAddr, 5000, 53, "d"))
	nextFlow(t, flows)
}

// The table is bounded: a new flow past maxFlows evicts the least recently
// active one, counted.
func TestUDPForwardEvictsLeastRecent(t *testing.T) {
	h, flows := udpForwarding(t, UDPConnected, 2)
	h.s.Inject(udpTo(farAddr, 5001, 53, "1"))
	f1 := nextFlow(t, flows)
	h.s.Inject(udpTo(farAddr, 5002, 53, "2"))
	f2 := nextFlow(t, flows)
	h.advance(time.Second)
	h.s.Inject(udpTo(farAddr, 5001, 53, "1 again")) // f2 is now the least recent
	h.s.Inject(udpTo(farAddr, 5003, 53, "3"))
	nextFlow(t, flows)
	if _, err := f2.Read(make([]byte, 10)); !errors.Is(err, ErrFlowExpired) {
		t.Errorf("the least recent flow: Read = %v, want ErrFlowExpired", err)
	}
	wantDatagram(t, f1, "1", "93.184.216.34:53")
	wantDatagram(t, f1, "1 again", "93.184.216.34:53")
	if got := h.s.Counter("udp.forward.evicted"); got != 1 {
		t.Errorf("udp.forward.evicted = %d", got)
	}
}

// Closing a flow lets the client's next datagram start another; a second
// Close says it is closed; without a forwarder the port is unreachable.
func TestUDPForwardClose(t *testing.T) {
	h, flows := udpForwarding(t, UDPConnected, 4)
	h.s.Inject(udpTo(farAddr, 5000, 53, "a"))
	f := nextFlow(t, flows)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	if _, err := f.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v", err)
	}
	h.s.Inject(udpTo(farAddr, 5000, 53, "b"))
	g := nextFlow(t, flows)
	h.s.SetUDPForwarder(UDPConnected, 0, nil)
	if _, err := g.Read(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after the forwarder went away = %v", err)
	}
	h.s.Inject(udpTo(stackAddr, 5000, 53, "c"))
	if got := h.s.Counter("udp.port_unreachable_sent"); got != 1 {
		t.Errorf("udp.port_unreachable_sent = %d, want 1", got)
	}
}

// Thousands of flows against a bounded table: it holds maxFlows, the
// oldest are evicted and counted, and every flow still open reads.
func TestUDPForwardManyFlows(t *testing.T) {
	const n = 5000
	h := newHarness(t, func(o *Options) { o.Promiscuous = true })
	flows := make(chan *UDPFlow, n)
	h.s.SetUDPForwarder(UDPConnected, 1000, func(f *UDPFlow) { flows <- f })
	for i := range n {
		h.s.Inject(udpTo(farAddr, uint16(10000+i), 53, "q"))
	}
	if got := h.s.Counter("udp.forward.evicted"); got != n-1000 {
		t.Errorf("udp.forward.evicted = %d, want %d", got, n-1000)
	}
	h.s.mu.Lock()
	live := len(h.s.fwdUDP.flows)
	h.s.mu.Unlock()
	if live != 1000 {
		t.Errorf("%d live flows, want 1000", live)
	}
	open := 0
	for range n {
		f := nextFlow(t, flows)
		f.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := f.ReadFromUDPAddrPort(make([]byte, 10)); err == nil {
			open++
		} else if !errors.Is(err, ErrFlowExpired) {
			t.Fatalf("flow %v: %v", f.Client(), err)
		}
	}
	if open != 1000 {
		t.Errorf("%d flows read their datagram, want the 1000 live ones", open)
	}
}
