package stack

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"ustack/stack/header"
)

// The TCP forwarder, packet in / packet out: the peer (10.0.0.1) connects
// to 93.184.216.34:443, an address that is not the stack's, through a
// promiscuous stack whose forwarder decides.

var farAddr = [4]byte{93, 184, 216, 34}

// forwarding is a promiscuous harness whose forwarder hands each request
// to the returned channel.
func forwarding(t *testing.T, maxPending int, tweak ...func(*Options)) (*harness, chan *TCPRequest) {
	h := newHarness(t, append([]func(*Options){func(o *Options) { o.Promiscuous = true }}, tweak...)...)
	reqs := make(chan *TCPRequest, 16)
	h.s.SetTCPForwarder(maxPending, func(r *TCPRequest) { reqs <- r })
	return h, reqs
}

// farSYN is the peer's SYN to farAddr:443.
func farSYN() seg { return seg{flags: flagSYN, seq: 0, opts: mssOpt, to: farAddr, dport: 443} }

func request(t *testing.T, reqs chan *TCPRequest) *TCPRequest {
	t.Helper()
	select {
	case r := <-reqs:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the forwarder's handler was not called")
		return nil
	}
}

func noRequest(t *testing.T, reqs chan *TCPRequest) {
	t.Helper()
	select {
	case r := <-reqs:
		t.Fatalf("unexpected request from %v to %v", r.Src(), r.Dst())
	case <-time.After(20 * time.Millisecond):
	}
}

// waitOut waits for the stack to send something (from another goroutine).
func (h *harness) waitOut() {
	h.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		h.link.mu.Lock()
		n := len(h.link.out)
		h.link.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatal("the stack sent nothing in 5 s")
		}
	}
}

// srcOf is the source address of the next packet the stack sends, which
// stays queued.
func (h *harness) srcOf() [4]byte {
	h.t.Helper()
	pkts := h.link.Outbound()
	if len(pkts) == 0 {
		h.t.Fatal("expected a packet, stack sent nothing")
	}
	h.link.out = append(pkts, h.link.out...)
	return header.IPv4(pkts[0]).Src()
}

// Nothing is answered until the handler decides; Accept then completes
// the handshake from the address the client dialled, and the connection's
// LocalAddr is that address.
func TestForwardAccept(t *testing.T) {
	h, reqs := forwarding(t, 8)
	h.send(farSYN())
	r := request(t, reqs)
	if r.Src() != netip.MustParseAddrPort("10.0.0.1:40000") || r.Dst() != netip.MustParseAddrPort("93.184.216.34:443") {
		t.Fatalf("request from %v to %v", r.Src(), r.Dst())
	}
	h.expectNone()
	type result struct {
		c   *Conn
		err error
	}
	done := make(chan result, 1)
	go func() { c, err := r.Accept(); done <- result{c, err} }()
	h.waitOut()
	if src := h.srcOf(); src != farAddr {
		t.Fatalf("SYN|ACK from %v, want %v", src, farAddr)
	}
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1, dport: 443})
	h.send(seg{flags: flagACK, seq: 1, ack: 1, to: farAddr, dport: 443})
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	c := res.c
	if got := c.LocalAddr().String(); got != "93.184.216.34:443" {
		t.Errorf("LocalAddr = %s, want the dialled 93.184.216.34:443", got)
	}
	if got := c.RemoteAddr().String(); got != "10.0.0.1:40000" {
		t.Errorf("RemoteAddr = %s", got)
	}
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("GET /"), to: farAddr, dport: 443})
	wantRead(t, c, "GET /")
	h.expect(seg{flags: flagACK, seq: 1, ack: 6, dport: 443}) // a quick ACK
	if _, err := c.Write([]byte("200")); err != nil {
		t.Fatal(err)
	}
	if src := h.srcOf(); src != farAddr {
		t.Fatalf("data from %v, want %v", src, farAddr)
	}
	h.expect(seg{flags: flagACK | flagPSH, seq: 1, ack: 6, data: []byte("200"), dport: 443})
	if got := h.s.Counter("tcp.forward.accepted"); got != 1 {
		t.Errorf("tcp.forward.accepted = %d", got)
	}
}

// Reject is a closed port's RST|ACK, from the dialled address.
func TestForwardReject(t *testing.T) {
	h, reqs := forwarding(t, 8)
	h.send(farSYN())
	r := request(t, reqs)
	r.Reject()
	if src := h.srcOf(); src != farAddr {
		t.Fatalf("RST from %v, want %v", src, farAddr)
	}
	h.expect(seg{flags: flagRST | flagACK, seq: 0, ack: peerISN + 1, raw: true, dport: 443})
	// A second decision does nothing and fails.
	r.Reject()
	r.Drop()
	h.expectNone()
	if _, err := r.Accept(); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Accept after Reject = %v, want EINVAL", err)
	}
}

// RejectWith sends ICMP destination unreachable of the caller's code,
// from the stack's own address, quoting the SYN's ports and sequence.
func TestForwardRejectWithICMP(t *testing.T) {
	h, reqs := forwarding(t, 8)
	h.send(farSYN())
	request(t, reqs).RejectWith(1) // host unreachable
	pkts := h.link.Outbound()
	if len(pkts) != 1 {
		t.Fatalf("%d packets, want one ICMP error", len(pkts))
	}
	ip := header.IPv4(pkts[0])
	icmp := ip.Payload()
	if ip.Protocol() != header.ProtoICMP || ip.Src() != stackAddr || icmp[0] != header.ICMPDestUnreach || icmp[1] != 1 {
		t.Fatalf("sent proto %d from %v, type %d code %d; want ICMP 3/1 from %v", ip.Protocol(), ip.Src(), icmp[0], icmp[1], stackAddr)
	}
	quoted := header.IPv4(icmp[8:])
	tcp := header.TCP(icmp[8+20:])
	if quoted.Src() != peerAddr || quoted.Dst() != farAddr || tcp.SrcPort() != 40000 || tcp.DstPort() != 443 || tcp.Seq() != peerISN {
		t.Errorf("quote: %v -> %v ports %d -> %d seq %d", quoted.Src(), quoted.Dst(), tcp.SrcPort(), tcp.DstPort(), tcp.Seq())
	}
}

// Drop answers nothing; the client's retransmitted SYN is a new request.
func TestForwardDrop(t *testing.T) {
	h, reqs := forwarding(t, 8)
	h.send(farSYN())
	request(t, reqs).Drop()
	h.expectNone()
	h.send(farSYN())
	request(t, reqs).Reject()
	h.expect(seg{flags: flagRST | flagACK, seq: 0, ack: peerISN + 1, raw: true, dport: 443})
}

// Requests waiting for a decision are bounded: without SYN cookies a SYN
// past the bound is dropped and counted; the pending SYN's retransmission
// is absorbed.
func TestForwardPendingBound(t *testing.T) {
	h, reqs := forwarding(t, 2, func(o *Options) { o.SynCookies = SynCookiesOff })
	for _, port := range []uint16{40001, 40002, 40003} {
		sg := farSYN()
		sg.port = port
		h.send(sg)
	}
	a, b := request(t, reqs), request(t, reqs)
	noRequest(t, reqs)
	if got := h.s.Counter("tcp.forward.drop.pending_full"); got != 1 {
		t.Errorf("tcp.forward.drop.pending_full = %d, want 1", got)
	}
	sg := farSYN()
	sg.port = a.Src().Port()
	h.send(sg) // the client retransmits
	noRequest(t, reqs)
	if got := h.s.Counter("tcp.forward.syn_retransmits"); got != 1 {
		t.Errorf("tcp.forward.syn_retransmits = %d, want 1", got)
	}
	// Deciding one frees a place.
	b.Drop()
	sg.port = 40003
	h.send(sg)
	request(t, reqs)
	h.expectNone()
}

// A handler that never decides: after ForwardTimeout the client gets RST,
// and a decision after that fails.
func TestForwardTimeout(t *testing.T) {
	h, reqs := forwarding(t, 8, func(o *Options) { o.ForwardTimeout = 10 * time.Second })
	h.send(farSYN())
	r := request(t, reqs)
	h.advance(10*time.Second - time.Millisecond)
	h.expectNone()
	h.advance(time.Millisecond)
	h.expect(seg{flags: flagRST | flagACK, seq: 0, ack: peerISN + 1, raw: true, dport: 443})
	if got := h.s.Counter("tcp.forward.timeouts"); got != 1 {
		t.Errorf("tcp.forward.timeouts = %d", got)
	}
	if _, err := r.Accept(); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Accept after the timeout = %v, want EINVAL", err)
	}
	h.expectNone()
}

// A client that resets while the handler decides: Accept fails, nothing
// is sent.
func TestForwardClientResets(t *testing.T) {
	h, reqs := forwarding(t, 8)
	h.send(farSYN())
	r := request(t, reqs)
	h.send(seg{flags: flagRST, seq: 1, to: farAddr, dport: 443})
	if _, err := r.Accept(); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Accept after the client's RST = %v, want EINVAL", err)
	}
	h.expectNone()
}

// An accepted request whose client never completes the handshake: Accept
// fails with ETIMEDOUT once the SYN|ACK retransmissions run out.
func TestForwardAcceptTimesOut(t *testing.T) {
	h, reqs := forwarding(t, 8, func(o *Options) { o.SynAckRetries = 1 })
	h.send(farSYN())
	r := request(t, reqs)
	done := make(chan error, 1)
	go func() { _, err := r.Accept(); done <- err }()
	h.waitOut()
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1, dport: 443})
	h.advance(time.Second)
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1, dport: 443})
	h.advance(2 * time.Second)
	if err := <-done; !errors.Is(err, syscall.ETIMEDOUT) {
		t.Errorf("Accept = %v, want ETIMEDOUT", err)
	}
}

// Without Promiscuous only the stack's own address is forwarded: a SYN to
// another address is not ours; one to a closed port of ours goes to the
// handler instead of RST. A listener still comes first.
func TestForwardOwnAddressOnly(t *testing.T) {
	h := newHarness(t)
	reqs := make(chan *TCPRequest, 4)
	h.s.SetTCPForwarder(8, func(r *TCPRequest) { reqs <- r })
	h.send(farSYN())
	noRequest(t, reqs)
	h.expectNone()
	if got := h.s.Counter("ip.drop.not_for_us"); got != 1 {
		t.Errorf("ip.drop.not_for_us = %d, want 1", got)
	}
	h.send(seg{flags: flagSYN, seq: 0, opts: mssOpt, dport: 8080})
	if r := request(t, reqs); r.Dst() != netip.MustParseAddrPort("10.0.0.2:8080") {
		t.Errorf("request to %v", r.Dst())
	}
	h.listen(5)
	h.send(seg{flags: flagSYN, seq: 0, opts: mssOpt})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	noRequest(t, reqs)
}

// With Promiscuous, the stack's own address is not forwarded: its closed
// ports answer RST (B01) and port unreachable as ever.
func TestForwardSkipsOwnAddressWhenPromiscuous(t *testing.T) {
	h, reqs := forwarding(t, 8)
	h.s.SetUDPForwarder(UDPConnected, 8, func(*UDPFlow) { t.Error("a flow to our own address was forwarded") })
	h.send(seg{flags: flagSYN, seq: 0, opts: mssOpt, dport: 8080})
	h.expect(seg{flags: flagRST | flagACK, seq: 0, ack: peerISN + 1, raw: true, dport: 8080})
	noRequest(t, reqs)
	h.s.Inject(udpTo(stackAddr, 5000, 53, "q"))
	if got := h.s.Counter("udp.port_unreachable_sent"); got != 1 {
		t.Errorf("udp.port_unreachable_sent = %d, want 1", got)
	}
}

// Removing the forwarder answers the waiting requests with RST.
func TestForwardRemoved(t *testing.T) {
	h, reqs := forwarding(t, 8)
	h.send(farSYN())
	r := request(t, reqs)
	h.s.SetTCPForwarder(0, nil)
	h.expect(seg{flags: flagRST | flagACK, seq: 0, ack: peerISN + 1, raw: true, dport: 443})
	if _, err := r.Accept(); err == nil {
		t.Error("Accept after the forwarder went away succeeded")
	}
	h.send(farSYN())
	h.expect(seg{flags: flagRST | flagACK, seq: 0, ack: peerISN + 1, raw: true, dport: 443})
}

// Closing the stack answers waiting requests with RST and ends UDP flows;
// decisions and forwarders after that fail quietly, without a panic.
func TestForwardersOnClosedStack(t *testing.T) {
	h, reqs := forwarding(t, 8)
	flows := make(chan *UDPFlow, 1)
	h.s.SetUDPForwarder(UDPConnected, 8, func(f *UDPFlow) { flows <- f })
	h.send(farSYN())
	r := request(t, reqs)
	h.s.Inject(udpTo(farAddr, 5000, 53, "q"))
	f := <-flows
	h.s.Close()
	h.expect(seg{flags: flagRST | flagACK, seq: 0, ack: peerISN + 1, raw: true, dport: 443})
	if _, err := r.Accept(); err == nil {
		t.Error("Accept on a closed stack succeeded")
	}
	r.Reject()
	r.RejectWith(1)
	r.Drop()
	if _, _, err := f.ReadFromUDPAddrPort(make([]byte, 10)); err == nil {
		t.Error("a flow of a closed stack still reads")
	}
	h.s.SetTCPForwarder(8, func(*TCPRequest) {})
	h.s.SetUDPForwarder(UDPConnected, 8, nil)
	h.expectNone()
}

// With SYN cookies (the default), a SYN past the bound gets a cookie
// SYN|ACK and nothing is kept; the cookie's ACK completes the handshake
// and the handler decides about the open connection: Accept returns it
// at once.
func TestForwardSYNCookieWhenFull(t *testing.T) {
	h, reqs := forwarding(t, 1)
	h.send(farSYN())
	first := request(t, reqs)
	sg := farSYN()
	sg.port = 40002
	h.send(sg)
	tcp := h.out()
	if tcp.Flags() != flagSYN|flagACK || tcp.Ack() != peerISN+1 || tcp.DstPort() != 40002 {
		t.Fatalf("got %s, want a cookie SYN|ACK to port 40002", describe(tcp, 0, 0))
	}
	iss := tcp.Seq()
	noRequest(t, reqs)
	if got := h.s.Counter("tcp.syncookies_sent"); got != 1 {
		t.Errorf("tcp.syncookies_sent = %d", got)
	}
	h.send(seg{flags: flagACK, seq: peerISN + 1, ack: iss + 1, raw: true, port: 40002, to: farAddr, dport: 443})
	r := request(t, reqs)
	if r.Src().Port() != 40002 || r.Dst() != netip.MustParseAddrPort("93.184.216.34:443") {
		t.Fatalf("request from %v to %v", r.Src(), r.Dst())
	}
	c, err := r.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if c.LocalAddr().String() != "93.184.216.34:443" {
		t.Errorf("LocalAddr %v", c.LocalAddr())
	}
	h.expectNone()
	c.Write([]byte("hi"))
	tcp = h.out()
	if tcp.Seq() != iss+1 || string(tcp.Payload()) != "hi" || tcp.DstPort() != 40002 {
		t.Errorf("data %s %q", describe(tcp, iss, peerISN), tcp.Payload())
	}
	first.Drop()
}

// A SYN flood at the forwarder: the pending table stays at its bound and
// every SYN past it gets a cookie and leaves no state behind.
func TestForwardSYNFlood(t *testing.T) {
	h, reqs := forwarding(t, 8)
	const n = 2000
	for i := range n {
		sg := farSYN()
		sg.port = uint16(10000 + i)
		h.send(sg)
	}
	for range 8 {
		request(t, reqs)
	}
	noRequest(t, reqs)
	if got := h.s.Counter("tcp.syncookies_sent"); got != n-8 {
		t.Errorf("tcp.syncookies_sent = %d, want %d", got, n-8)
	}
	if got := len(h.s.Sockets()); got != 0 {
		t.Errorf("%d sockets after the flood, want none", got)
	}
	h.s.mu.Lock()
	pending := len(h.s.fwdTCP.pending)
	h.s.mu.Unlock()
	if pending != 8 {
		t.Errorf("%d pending requests, want the bound, 8", pending)
	}
}

// A request a cookie opened, refused: the open connection is reset.
func TestForwardSYNCookieRejected(t *testing.T) {
	h, reqs := forwarding(t, 1)
	h.send(farSYN())
	request(t, reqs)
	sg := farSYN()
	sg.port = 40002
	h.send(sg)
	iss := h.out().Seq()
	h.send(seg{flags: flagACK, seq: peerISN + 1, ack: iss + 1, raw: true, port: 40002, to: farAddr, dport: 443})
	request(t, reqs).RejectWith(1)
	tcp := h.out()
	if tcp.Flags()&flagRST == 0 || tcp.Seq() != iss+1 || tcp.DstPort() != 40002 {
		t.Fatalf("got %s, want RST at %d", describe(tcp, 0, 0), iss+1)
	}
	if got := len(h.s.Sockets()); got != 0 {
		t.Errorf("%d sockets left", got)
	}
}
