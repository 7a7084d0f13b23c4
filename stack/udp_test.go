package stack

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"ustack/stack/header"
)

// UDP packet in, packet out (B70-B72): the peer is 10.0.0.1 (fd00::1 over
// IPv6), the stack 10.0.0.2 (fd00::2).

// udpBytes builds a UDP header and data from the peer's sport to the
// stack's dport, with the checksum for pseudo (none when zeroSum).
func udpBytes(sport, dport uint16, data string, pseudo func(n int) uint32, zeroSum bool) []byte {
	u := make([]byte, udpHeaderLen+len(data))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[udpHeaderLen:], data)
	if !zeroSum {
		header.SetChecksumAt(u, 6, pseudo(len(u)))
	}
	return u
}

// udp4 is a datagram over IPv4 from the peer (10.0.0.1).
func udp4(sport, dport uint16, data string, zeroSum bool) []byte {
	u := udpBytes(sport, dport, data, func(n int) uint32 {
		return header.PseudoHeaderSum(peerAddr, stackAddr, header.ProtoUDP, n)
	}, zeroSum)
	pkt := make([]byte, header.IPv4MinSize+len(u))
	header.EncodeIPv4(pkt, header.IPv4Fields{TotalLen: len(pkt), TTL: 64, Protocol: header.ProtoUDP, Src: peerAddr, Dst: stackAddr})
	copy(pkt[header.IPv4MinSize:], u)
	return pkt
}

// udp6 is a datagram over IPv6 from the peer (fd00::1).
func udp6(sport, dport uint16, data string, zeroSum bool) []byte {
	u := udpBytes(sport, dport, data, func(n int) uint32 {
		return header.PseudoHeaderSum6(peer6.As16(), stack6.As16(), header.ProtoUDP, n)
	}, zeroSum)
	return pkt6(stack6, header.ProtoUDP, 64, u)
}

// udpSocket is a UDP socket bound to the stack's port.
func udpSocket(t *testing.T, h *harness, port uint16) *Socket {
	so := h.s.NewUDPSocket()
	if err := so.Bind(netip.AddrPortFrom(netip.IPv6Unspecified(), port)); err != nil {
		t.Fatal(err)
	}
	return so
}

// A datagram reaches the bound socket with its sender; the reply goes back
// with both ports and a valid checksum.
func TestUDPEcho(t *testing.T) {
	h := newHarness6(t)
	so := udpSocket(t, h, 7)
	h.s.Inject(udp4(5000, 7, "ping", false))
	buf := make([]byte, 64)
	n, from, err := so.RecvFrom(buf, 0)
	if err != nil || string(buf[:n]) != "ping" || from != netip.AddrPortFrom(netip.AddrFrom4(peerAddr), 5000) {
		t.Fatalf("recvfrom: %q from %v, %v", buf[:n], from, err)
	}
	if n, err := so.SendTo([]byte("pong"), from); n != 4 || err != nil {
		t.Fatalf("sendto: %d, %v", n, err)
	}
	out := h.link.Outbound()
	if len(out) != 1 {
		t.Fatalf("sent %d packets", len(out))
	}
	ip := header.IPv4(out[0])
	u := ip.Payload()
	if ip.Protocol() != header.ProtoUDP || binary.BigEndian.Uint16(u[0:]) != 7 || binary.BigEndian.Uint16(u[2:]) != 5000 || string(u[8:]) != "pong" ||
		!header.ChecksumValidWith(u, header.PseudoHeaderSum(stackAddr, peerAddr, header.ProtoUDP, len(u))) {
		t.Fatalf("reply % x", out[0])
	}
	if _, _, err := so.RecvFrom(buf, 0); err != syscall.EAGAIN {
		t.Fatalf("empty queue: %v, want EAGAIN", err)
	}
	// The same socket over IPv6 (dual stack).
	h.s.Inject(udp6(5001, 7, "ping6", false))
	n, from, err = so.RecvFrom(buf, 0)
	if err != nil || string(buf[:n]) != "ping6" || from != netip.AddrPortFrom(peer6, 5001) {
		t.Fatalf("recvfrom over IPv6: %q from %v, %v", buf[:n], from, err)
	}
	so.SendTo([]byte("pong6"), from)
	u6 := h.out6(header.ProtoUDP).Payload()
	if string(u6[8:]) != "pong6" || !header.ChecksumValidWith(u6, header.PseudoHeaderSum6(stack6.As16(), peer6.As16(), header.ProtoUDP, len(u6))) {
		t.Fatalf("IPv6 reply % x", u6)
	}
}

// B70: a datagram to a port with no socket gets ICMP port unreachable
// quoting it, at most icmp_msgs_burst at once.
func TestUDPPortUnreachable(t *testing.T) {
	h := newHarness6(t)
	h.s.Inject(udp4(5000, 9, "nobody", false))
	out := h.link.Outbound()
	if len(out) != 1 {
		t.Fatalf("sent %d packets", len(out))
	}
	m := header.IPv4(out[0]).Payload()
	if m[0] != header.ICMPDestUnreach || m[1] != icmpPortUnreach || !header.ICMPChecksumValid(m) {
		t.Fatalf("ICMP % x", m)
	}
	inner := header.IPv4(m[8:])
	if inner.Protocol() != header.ProtoUDP || inner.Src() != peerAddr || binary.BigEndian.Uint16(inner[20+2:]) != 9 {
		t.Fatalf("quoted % x", m[8:])
	}
	h.s.Inject(udp6(5000, 9, "nobody", false))
	if m := h.out6(header.ProtoICMPv6).Payload(); m[0] != header.ICMPv6DestUnreach || m[1] != 4 {
		t.Fatalf("ICMPv6 % x", m)
	}
	for range 100 {
		h.s.Inject(udp4(5000, 9, "flood", false))
	}
	if sent := len(h.link.Outbound()); sent != icmpMsgsBurst-2 {
		t.Fatalf("%d answers to a flood at one instant, want the burst's %d", sent, icmpMsgsBurst-2)
	}
	h.wantCounter("icmp.errors_rate_limited", 100-(icmpMsgsBurst-2))
}

// B71: the checksum is optional on IPv4 and required on IPv6; a wrong one,
// a short header or a length field past the packet is dropped and counted.
func TestUDPChecksumAndLength(t *testing.T) {
	h := newHarness6(t)
	so := udpSocket(t, h, 7)
	buf := make([]byte, 64)
	h.s.Inject(udp4(5000, 7, "no sum", true))
	if n, _, err := so.RecvFrom(buf, 0); err != nil || string(buf[:n]) != "no sum" {
		t.Fatalf("zero checksum over IPv4: %q, %v", buf[:n], err)
	}
	h.s.Inject(udp6(5000, 7, "no sum", true))
	bad := udp4(5000, 7, "bad", false)
	bad[len(bad)-1] ^= 1
	h.s.Inject(bad)
	long := udp4(5000, 7, "long", false)
	long[20+5] = 200 // a length field past the packet
	h.s.Inject(long)
	short := udp4(5000, 7, "", false)[:24] // 4 bytes of UDP header
	header.EncodeIPv4(short, header.IPv4Fields{TotalLen: 24, TTL: 64, Protocol: header.ProtoUDP, Src: peerAddr, Dst: stackAddr})
	h.s.Inject(short)
	if _, _, err := so.RecvFrom(buf, 0); err != syscall.EAGAIN {
		t.Fatalf("something bad was delivered: %v", err)
	}
	h.wantCounter("udp.drop.no_checksum_ipv6", 1)
	h.wantCounter("udp.drop.checksum", 1)
	h.wantCounter("udp.drop.malformed", 2)
	h.expectNone()
}

// B72: past SO_RCVBUF, datagrams are dropped and counted, never queued
// without bound; reading makes room again.
func TestUDPReceiveBuffer(t *testing.T) {
	h := newHarness6(t)
	so := udpSocket(t, h, 7)
	so.SetOption(OptRcvBuf, 1024) // 2048 bytes, as Linux doubles it
	payload := string(make([]byte, 500))
	for range 10 {
		h.s.Inject(udp4(5000, 7, payload, false))
	}
	h.wantCounter("udp.drop.rcvbuf_full", 6)
	buf := make([]byte, 1000)
	for i := range 4 {
		if n, _, err := so.RecvFrom(buf, 0); n != 500 || err != nil {
			t.Fatalf("datagram %d: %d, %v", i, n, err)
		}
	}
	h.s.Inject(udp4(5000, 7, payload, false))
	if n, _, err := so.RecvFrom(buf, 0); n != 500 || err != nil {
		t.Fatalf("after reading: %d, %v", n, err)
	}
}

// B70: a connected socket hears only its peer, and an ICMP error for its
// datagram surfaces as ECONNREFUSED on its next call; an unconnected
// socket does not see it.
func TestUDPConnectedErrors(t *testing.T) {
	h := newHarness6(t)
	c := udpSocket(t, h, 6000)
	peer := netip.AddrPortFrom(netip.AddrFrom4(peerAddr), 53)
	if err := c.Connect(peer); err != nil {
		t.Fatal(err)
	}
	h.s.Inject(udp4(5000, 6000, "stranger", false)) // not its peer
	h.link.Outbound()                               // the port unreachable
	buf := make([]byte, 64)
	if _, _, err := c.RecvFrom(buf, 0); err != syscall.EAGAIN {
		t.Fatalf("a connected socket took another peer's datagram: %v", err)
	}
	if n, err := c.SendTo([]byte("query"), netip.AddrPort{}); n != 5 || err != nil {
		t.Fatalf("send to the connected peer: %d, %v", n, err)
	}
	sent := h.link.Outbound()[0]
	h.s.Inject(icmpErrorAbout(3, 3, sent))
	if _, err := c.SendTo([]byte("again"), netip.AddrPort{}); err != syscall.ECONNREFUSED {
		t.Fatalf("the next send after port unreachable: %v, want ECONNREFUSED", err)
	}
	if _, err := c.SendTo([]byte("again"), netip.AddrPort{}); err != nil {
		t.Fatalf("the error is reported once: %v", err)
	}
	u := udpSocket(t, h, 6001)
	u.SendTo([]byte("query"), peer)
	h.s.Inject(icmpErrorAbout(3, 3, h.link.Outbound()[0]))
	if _, _, err := u.RecvFrom(buf, 0); err != syscall.EAGAIN {
		t.Fatalf("an unconnected socket saw the ICMP error: %v", err)
	}
}

// icmpErrorAbout is an ICMP error from the peer quoting our packet.
func icmpErrorAbout(typ, code uint8, ours []byte) []byte {
	m := make([]byte, header.ICMPv4MinSize+len(ours))
	n := header.PutICMPError(m, typ, code, 0, ours)
	pkt := make([]byte, header.IPv4MinSize+n)
	header.EncodeIPv4(pkt, header.IPv4Fields{TotalLen: len(pkt), TTL: 64, Protocol: header.ProtoICMP, Src: peerAddr, Dst: stackAddr})
	copy(pkt[header.IPv4MinSize:], m[:n])
	return pkt
}

// UDP and TCP have separate port spaces; two UDP sockets cannot share a
// port without SO_REUSEADDR, and Close gives it back.
func TestUDPBindPorts(t *testing.T) {
	h := newHarness6(t)
	h.listen(5) // TCP 10.0.0.2:80
	u := udpSocket(t, h, 80)
	if err := h.s.NewUDPSocket().Bind(netip.AddrPortFrom(netip.IPv6Unspecified(), 80)); err != syscall.EADDRINUSE {
		t.Fatalf("a second UDP socket on :80: %v, want EADDRINUSE", err)
	}
	u.Close()
	udpSocket(t, h, 80)
	e := h.s.NewUDPSocket()
	if _, err := e.SendTo([]byte("x"), netip.MustParseAddrPort("10.0.0.1:9")); err != nil {
		t.Fatal(err)
	}
	if p := e.LocalAddr().Port(); p < 32768 || p > 60999 {
		t.Fatalf("an unbound socket's first send took port %d, want an ephemeral one", p)
	}
}

// The Go API: a PacketConn from ListenPacket and a connected UDPConn from
// DialUDP talk through the stack's own loopback path, with deadlines and
// net.ErrClosed as Go's net package gives them.
func TestUDPConnGoAPI(t *testing.T) {
	h := newHarness6(t)
	pc, err := h.s.ListenPacket("udp", ":5353")
	if err != nil {
		t.Fatal(err)
	}
	c, err := h.s.DialUDP(netip.AddrPort{}, netip.MustParseAddrPort("10.0.0.2:5353"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("question")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, from, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "question" || from.String() != c.LocalAddr().(*net.UDPAddr).AddrPort().String() && from.(*net.UDPAddr).Port != c.LocalAddr().(*net.UDPAddr).Port {
		t.Fatalf("ReadFrom: %q from %v, %v", buf[:n], from, err)
	}
	if _, err := pc.WriteTo([]byte("answer"), from); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "answer" {
		t.Fatalf("Read: %q, %v", buf[:n], err)
	}
	pc.SetReadDeadline(time.Now().Add(-time.Second))
	if _, _, err := pc.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom past its deadline: %v", err)
	}
	pc.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, _, err := pc.ReadFrom(buf); done <- err }()
	waitBlocked(t)
	pc.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a ReadFrom blocked across Close: %v, want net.ErrClosed", err)
	}
}

func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// The deadline rules of x/net/nettest's suite, which is written for
// streams (EOF on close, bytes reassembled) and so does not run on UDP
// as a whole: a future deadline ends a blocked read with a timeout error
// that says so, a deadline moved to now wakes it at once, one in the past
// fails a write too, and a zero deadline clears them.
func TestUDPConnDeadlines(t *testing.T) {
	h := newHarness6(t)
	pc, err := h.s.ListenPacket("udp", ":5353")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	buf := make([]byte, 64)

	pc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, _, err = pc.ReadFrom(buf)
	var ne net.Error
	var oe *net.OpError
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.As(err, &oe) || oe.Op != "read" || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom past a future deadline: %#v, want a read *net.OpError that times out", err)
	}

	pc.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, _, err := pc.ReadFrom(buf); done <- err }()
	waitBlocked(t)
	pc.SetReadDeadline(time.Now())
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a blocked ReadFrom when its deadline moved to now: %v, want os.ErrDeadlineExceeded", err)
	}

	to := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.0.0.1:53"))
	pc.SetDeadline(time.Now().Add(-time.Second))
	if _, err := pc.WriteTo([]byte("late"), to); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WriteTo past its deadline: %v", err)
	}
	if len(h.link.Outbound()) != 0 {
		t.Fatalf("a write past its deadline sent a datagram")
	}
	pc.SetDeadline(time.Time{})
	if _, err := pc.WriteTo([]byte("on time"), to); err != nil {
		t.Fatalf("WriteTo with the deadline cleared: %v", err)
	}
	if len(h.link.Outbound()) != 1 {
		t.Fatalf("the datagram did not leave")
	}
}

// waitBlocked returns once a goroutine is blocked in the socket core's
// wait, as a read with nothing queued should be.
func waitBlocked(t *testing.T) { waitBlockedIn(t, "(*Socket).waitLocked") }

// waitBlockedIn waits until some goroutine's stack shows fn.
func waitBlockedIn(t *testing.T, fn string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(stacks(), fn); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("the read never blocked")
		}
	}
}

// read(2) and write(2) on a UDP socket, as the drill and a C program use
// them: write sends one datagram to the connected peer (EDESTADDRREQ
// before connect), read takes one datagram and cuts what does not fit.
func TestUDPReadWrite(t *testing.T) {
	h := newHarness6(t)
	so := udpSocket(t, h, 7)
	if _, err := so.Write([]byte("x")); err != syscall.EDESTADDRREQ {
		t.Fatalf("write before connect: %v, want EDESTADDRREQ", err)
	}
	if err := so.Connect(netip.AddrPortFrom(netip.AddrFrom4(peerAddr), 5000)); err != nil {
		t.Fatal(err)
	}
	if n, err := so.Write([]byte("hello")); n != 5 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	if out := h.link.Outbound(); len(out) != 1 || string(header.IPv4(out[0]).Payload()[8:]) != "hello" {
		t.Fatalf("sent %q", out)
	}
	if _, err := so.Send([]byte("x"), syscall.MSG_MORE); err != syscall.EOPNOTSUPP {
		t.Fatalf("MSG_MORE: %v, want EOPNOTSUPP", err)
	}
	h.s.Inject(udp4(5000, 7, "first", false))
	h.s.Inject(udp4(5000, 7, "second", false))
	buf := make([]byte, 3)
	if n, err := so.Read(buf); n != 3 || err != nil || string(buf) != "fir" {
		t.Fatalf("read: %q, %v", buf[:n], err)
	}
	buf = make([]byte, 64)
	if n, err := so.Read(buf); err != nil || string(buf[:n]) != "second" {
		t.Fatalf("second read: %q, %v (the cut datagram's rest must be gone)", buf[:n], err)
	}
	if _, err := so.Read(buf); err != syscall.EAGAIN {
		t.Fatalf("empty: %v, want EAGAIN", err)
	}
}

// IP_RECVERR: an unconnected socket that asks for errors gets them, both
// as the pending error of its next call and in its error queue with the
// ICMP message, its sender and the failed datagram's destination; reading
// the queue clears the pending error. Turning it off empties the queue.
func TestUDPRecvErr(t *testing.T) {
	h := newHarness6(t)
	u := udpSocket(t, h, 6001)
	if err := u.SetOption(OptRecvErr, 1); err != nil {
		t.Fatal(err)
	}
	if v, err := u.Option(OptRecvErr); v != 1 || err != nil {
		t.Fatalf("IP_RECVERR reads %d, %v", v, err)
	}
	if _, err := u.RecvErr(); err != syscall.EAGAIN {
		t.Fatalf("empty error queue: %v, want EAGAIN", err)
	}
	peer := netip.AddrPortFrom(netip.AddrFrom4(peerAddr), 53)
	u.SendTo([]byte("query"), peer)
	h.s.Inject(icmpErrorAbout(3, 3, h.link.Outbound()[0]))
	if _, err := u.SendTo([]byte("query"), peer); err != syscall.ECONNREFUSED {
		t.Fatalf("the next sendto: %v, want ECONNREFUSED (sk_err first)", err)
	}
	u.SendTo([]byte("query"), peer)
	h.s.Inject(icmpErrorAbout(11, 0, h.link.Outbound()[0])) // time exceeded
	buf := make([]byte, 64)
	if _, _, err := u.RecvFrom(buf, 0); err != syscall.EHOSTUNREACH {
		t.Fatalf("recvfrom: %v, want the latest error, EHOSTUNREACH", err)
	}
	e, err := u.RecvErr()
	want := SockExtendedErr{Errno: syscall.ECONNREFUSED, Origin: SOEEOriginICMP, Type: 3, Code: 3, Offender: netip.AddrFrom4(peerAddr), Dest: peer}
	if err != nil || e != want {
		t.Fatalf("first queued error %+v, %v; want %+v", e, err, want)
	}
	if _, _, err := u.RecvFrom(buf, 0); err != syscall.EHOSTUNREACH {
		t.Fatalf("after one dequeue the pending error is the next one's: %v", err)
	}
	if e, err := u.RecvErr(); err != nil || e.Type != 11 || e.Errno != syscall.EHOSTUNREACH {
		t.Fatalf("second queued error %+v, %v", e, err)
	}
	if _, _, err := u.RecvFrom(buf, 0); err != syscall.EAGAIN {
		t.Fatalf("queue drained: %v, want EAGAIN", err)
	}
	u.SendTo([]byte("query"), peer)
	h.s.Inject(icmpErrorAbout(3, 3, h.link.Outbound()[0]))
	u.SetOption(OptRecvErr, 0)
	if _, err := u.RecvErr(); err != syscall.EAGAIN {
		t.Fatalf("IP_RECVERR off keeps a queued error: %v", err)
	}
}
