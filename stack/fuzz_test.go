package stack

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"ustack/stack/header"
	"ustack/timers"
)

// FuzzInput feeds arbitrary bytes into the stack's input (B51: nothing
// panics, nothing leaks) and, so that the fuzzer reaches deep into the TCP
// state machine rather than stopping at checksums, also turns them into a
// script of steps against a stack with a listener on port 80 and one
// established active connection:
//
//	raw      an arbitrary IPv4 or IPv6 packet, as is
//	segment  a TCP segment with valid IP and TCP checksums, over IPv4 or
//	         IPv6, to the (dual-stack) listener or the active connection,
//	         its seq and ack near what the stack last said (so it is often
//	         acceptable), any flags, options and payload
//	time     advance the virtual clock, firing due timers
//	app      accept, read, write, shutdown, close, abortive close, keepalive
//	sock     close or reopen the listener, bind or listen on another port
//
// After every step the number of sockets stays within a bound and queues
// within their buffers. At the end the application closes everything and
// the peer falls silent: after three virtual hours every connection must be
// gone by itself (no orphan lives forever), and after Close no socket, table
// entry or timer is left.
func FuzzInput(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fz := newFuzzer(t)
		defer fz.s.Close()
		fz.run(data)
		fz.finish()
	})
}

const (
	fzPeerISN    = 1000000
	fzDialPort   = 50000 // the stack's port for its active connection
	fzActivePeer = 5000  // the peer's port for it
	fzMaxSteps   = 256
	fzMaxFires   = 100000 // timer firings per advance before we call it a storm
	fzBacklog    = 4
)

var (
	fzPeer   = [4]byte{10, 0, 0, 1}
	fzStack  = [4]byte{10, 0, 0, 2}
	fzPeer6  = netip.MustParseAddr("fd00::1")
	fzStack6 = netip.MustParseAddr("fd00::2")
	fzStart  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// fzTrack is what the stack last said to one peer port.
type fzTrack struct {
	sndNxt uint32 // the stack's seq + length of its last segment
	rcvNxt uint32 // the stack's last ACK: what it expects from the peer
	known  bool
}

type fuzzer struct {
	t     *testing.T
	s     *Stack
	link  *MemLink
	clock *timers.Virtual

	mu     sync.Mutex // guards track and synSeen (written by OnWrite)
	track  map[uint16]*fzTrack
	synOut chan uint32 // the active open's SYN seq

	ln      *Listener
	extraLn []*Listener
	bound   []*Bound
	conns   []*Conn
	packets int // TCP segments injected: each may create one socket
	steps   int
	trace   bool // USTACK_FUZZ_TRACE: print the sockets after each step
}

func newFuzzer(t *testing.T) *fuzzer {
	clock := timers.NewVirtual(fzStart)
	link := NewMemLink(1500)
	o := DefaultOptions()
	o.Clock = clock
	o.Addr6 = fzStack6
	o.RecvBuffer = 64 << 10
	o.SendBuffer = 64 << 10
	if os.Getenv("USTACK_FUZZ_TRACE") != "" {
		// Replaying one input: log every state transition.
		o.Trace = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := New(link, o)
	if err != nil {
		t.Fatal(err)
	}
	fz := &fuzzer{t: t, s: s, link: link, clock: clock, track: map[uint16]*fzTrack{}, synOut: make(chan uint32, 1)}
	link.OnWrite = fz.sniff
	ln, err := s.ListenTCP(netip.AddrPortFrom(netip.IPv6Unspecified(), 80), fzBacklog) // both families
	if err != nil {
		t.Fatal(err)
	}
	fz.ln = ln
	fz.trace = o.Trace != nil
	fz.dial()
	return fz
}

// sniff records what the stack sends (called with the stack's lock held;
// it keeps nothing else, so memory stays bounded).
func (fz *fuzzer) sniff(pkt []byte) {
	tcp, pseudo, ok := fzTCPOf(pkt)
	if !ok {
		fz.t.Errorf("the stack sent an invalid IP packet: % x", pkt)
		return
	}
	if tcp == nil {
		return // not TCP
	}
	if tcp.Validate() != nil || !header.ChecksumValidWith(tcp, pseudo) {
		fz.t.Errorf("the stack sent a bad TCP segment: % x", pkt)
		return
	}
	fz.mu.Lock()
	defer fz.mu.Unlock()
	tr := fz.track[tcp.DstPort()]
	if tr == nil {
		tr = &fzTrack{}
		fz.track[tcp.DstPort()] = tr
	}
	n := uint32(len(tcp.Payload()))
	if tcp.Flags()&(header.SYN) != 0 {
		n++
	}
	if tcp.Flags()&header.FIN != 0 {
		n++
	}
	if tcp.Flags()&header.RST == 0 {
		tr.sndNxt = tcp.Seq() + n
	}
	if tcp.Flags()&header.ACK != 0 {
		tr.rcvNxt = tcp.Ack()
	}
	tr.known = true
	if tcp.DstPort() == fzActivePeer && tcp.Flags() == header.SYN {
		select {
		case fz.synOut <- tcp.Seq():
		default:
		}
	}
}

// fzTCPOf is the TCP segment of an IPv4 or IPv6 packet and its
// pseudo-header sum; nil for another protocol, !ok for a bad IP header.
func fzTCPOf(pkt []byte) (header.TCP, uint32, bool) {
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		ip := header.IPv6(pkt)
		if ip.Validate() != nil {
			return nil, 0, false
		}
		if ip.NextHeader() != header.ProtoTCP {
			return nil, 0, true
		}
		return header.TCP(ip.Payload()), header.PseudoHeaderSum6(ip.Src(), ip.Dst(), header.ProtoTCP, len(ip.Payload())), true
	}
	ip := header.IPv4(pkt)
	if ip.Validate() != nil {
		return nil, 0, false
	}
	if ip.Protocol() != header.ProtoTCP {
		return nil, 0, true
	}
	return header.TCP(ip.Payload()), header.PseudoHeaderSum(ip.Src(), ip.Dst(), header.ProtoTCP, len(ip.Payload())), true
}

// dial makes the active connection 10.0.0.2:50000 -> 10.0.0.1:5000,
// playing the peer's SYN|ACK with every option.
func (fz *fuzzer) dial() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		c   *Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := fz.s.DialTCP(ctx, netip.AddrPortFrom(netip.AddrFrom4(fzStack), fzDialPort), netip.AddrPortFrom(netip.AddrFrom4(fzPeer), fzActivePeer))
		ch <- result{c, err}
	}()
	var iss uint32
	select {
	case iss = <-fz.synOut:
	case <-ctx.Done():
		fz.t.Fatal("DialTCP sent no SYN")
	}
	opts := make([]byte, 40)
	n := header.PutSYNOptions(opts, 1460, 7, true, true, 1, 0)
	fz.inject(fzSegment(fzPeer, fzActivePeer, fzDialPort, fzPeerISN, iss+1, header.SYN|header.ACK, 65535, opts[:n], nil))
	r := <-ch
	if r.err != nil {
		fz.t.Fatalf("DialTCP: %v", r.err)
	}
	fz.conns = append(fz.conns, r.c)
}

// segment builds an IPv4 packet carrying a TCP segment with correct
// checksums.
func fzSegment(src [4]byte, sport, dport uint16, seq, ack uint32, flags uint8, win uint16, opts, payload []byte) []byte {
	olen := (len(opts) + 3) &^ 3
	if olen > 40 {
		olen = 40
		opts = opts[:40]
	}
	pkt := make([]byte, 20+20+olen+len(payload))
	tcp := pkt[20:]
	header.EncodeTCP(tcp, header.TCPFields{SrcPort: sport, DstPort: dport, Seq: seq, Ack: ack, Flags: flags, Window: win}, olen)
	copy(tcp[20:], opts) // the padding stays zero: EOL
	copy(tcp[20+olen:], payload)
	header.SetTCPChecksum(tcp, src, fzStack)
	header.EncodeIPv4(pkt, header.IPv4Fields{TotalLen: len(pkt), TTL: 64, Protocol: header.ProtoTCP, Src: src, Dst: fzStack})
	return pkt
}

func (fz *fuzzer) inject(pkt []byte) {
	fz.s.Inject(pkt)
}

// reader hands out the script's bytes; past the end it yields zeros.
type fzReader struct {
	b []byte
	i int
}

func (r *fzReader) done() bool { return r.i >= len(r.b) }

func (r *fzReader) byte() byte {
	if r.i >= len(r.b) {
		r.i++
		return 0
	}
	r.i++
	return r.b[r.i-1]
}

func (r *fzReader) u16() uint16 { return uint16(r.byte())<<8 | uint16(r.byte()) }

func (r *fzReader) bytes(n int) []byte {
	if r.i >= len(r.b) {
		return nil
	}
	end := min(r.i+n, len(r.b))
	p := r.b[r.i:end]
	r.i = end
	return p
}

func (fz *fuzzer) run(data []byte) {
	r := &fzReader{b: data}
	for !r.done() && fz.steps < fzMaxSteps {
		fz.steps++
		op := r.byte()
		switch op % 5 {
		case 0: // raw packet
			n := int(r.byte())
			if op&0x80 != 0 {
				n *= 16
			}
			fz.packets++
			fz.inject(r.bytes(n))
		case 1:
			fz.segmentStep(r)
		case 2:
			fz.timeStep(r.byte())
		case 3:
			fz.appStep(r)
		case 4:
			fz.sockStep(r.byte())
		}
		fz.check()
		if fz.trace {
			fmt.Fprintf(os.Stderr, "step %d (op %d):\n%s", fz.steps, op%5, fzDescribe(fz.s.Sockets()))
		}
	}
}

// segmentStep builds a segment from the script: who sends it and to which
// socket, flags, seq and ack relative to what the stack last said, window,
// options and payload.
func (fz *fuzzer) segmentStep(r *fzReader) {
	who := r.byte()
	flags := r.byte()
	seqDelta := int16(r.u16())
	ackDelta := int16(r.u16())
	win := r.u16()
	ob := r.byte()
	v6 := ob&0x80 != 0 // over IPv6, from fd00::1
	olen := int(ob&0x7f) % 41
	opts := r.bytes(olen)
	plen := int(r.byte())
	if who&0x40 != 0 {
		plen *= 8
	}
	payload := make([]byte, plen)
	for i := range payload {
		payload[i] = byte(i)
	}
	var sport, dport uint16
	switch who % 4 {
	case 0, 1: // a client of the listener, one of a few ports
		sport, dport = 40000+uint16(who>>2)%8, 80
	case 2: // the active connection's peer
		sport, dport = fzActivePeer, fzDialPort
	case 3: // anything
		sport, dport = r.u16(), r.u16()
	}
	src := fzPeer
	if who&0x80 != 0 {
		src = fzStack // from ourselves: exercises the loopback path (B16)
	}
	fz.mu.Lock()
	tr := fz.track[sport]
	var seq, ack uint32 = fzPeerISN, 0
	if tr != nil && tr.known {
		seq, ack = tr.rcvNxt, tr.sndNxt
	}
	fz.mu.Unlock()
	seq += uint32(int32(seqDelta))
	ack += uint32(int32(ackDelta))
	fz.packets++
	if who&0x20 != 0 {
		// An ICMP error from a router about the stack's segment to this
		// peer (ack stands for its sequence number): the type and code
		// from flags, the next-hop MTU from win.
		fz.inject(fzICMPError([]uint8{3, 11, 12, 4, 5}[flags%5], flags>>4, win, src, sport, dport, ack))
		return
	}
	if v6 {
		fz.inject(fzSegment6(sport, dport, seq, ack, flags, win, opts, payload))
		return
	}
	fz.inject(fzSegment(src, sport, dport, seq, ack, flags, win, opts, payload))
}

// fzSegment6 is fzSegment over IPv6, from fd00::1 to the stack's fd00::2.
func fzSegment6(sport, dport uint16, seq, ack uint32, flags uint8, win uint16, opts, payload []byte) []byte {
	v4 := fzSegment(fzPeer, sport, dport, seq, ack, flags, win, opts, payload)
	tcp := v4[header.IPv4MinSize:]
	pkt := make([]byte, header.IPv6HeaderSize+len(tcp))
	copy(pkt[header.IPv6HeaderSize:], tcp)
	seg := pkt[header.IPv6HeaderSize:]
	header.SetChecksumAt(seg, 16, header.PseudoHeaderSum6(fzPeer6.As16(), fzStack6.As16(), header.ProtoTCP, len(seg)))
	header.EncodeIPv6(pkt, header.IPv6Fields{PayloadLen: len(seg), NextHeader: header.ProtoTCP, HopLimit: 64, Src: fzPeer6.As16(), Dst: fzStack6.As16()})
	return pkt
}

// fzICMPError builds an ICMP error about a segment from the stack's port
// dport to peer:sport with sequence number seq.
func fzICMPError(typ, code uint8, mtu uint16, peer [4]byte, sport, dport uint16, seq uint32) []byte {
	orig := make([]byte, 40)
	header.EncodeIPv4(orig, header.IPv4Fields{TotalLen: 40, TTL: 64, Protocol: header.ProtoTCP, Src: fzStack, Dst: peer})
	header.EncodeTCP(orig[20:], header.TCPFields{SrcPort: dport, DstPort: sport, Seq: seq, Flags: header.ACK}, 0)
	pkt := make([]byte, 20+8+28)
	n := header.PutICMPError(pkt[20:], typ, code, uint32(mtu), orig)
	header.EncodeIPv4(pkt, header.IPv4Fields{TotalLen: 20 + n, TTL: 64, Protocol: header.ProtoICMP, Src: [4]byte{10, 0, 0, 254}, Dst: fzStack})
	return pkt[:20+n]
}

// timeStep moves the clock by 1..64 units of 1 ms, 100 ms, 10 s or 5 min.
func (fz *fuzzer) timeStep(b byte) {
	unit := []time.Duration{time.Millisecond, 100 * time.Millisecond, 10 * time.Second, 5 * time.Minute}[b>>6]
	fz.advance(time.Duration(b&63+1) * unit)
}

// advance moves the virtual clock forward by d, firing every timer at its
// own deadline, and fails on a timer that keeps firing without time moving.
func (fz *fuzzer) advance(d time.Duration) {
	target := fz.clock.Now().Add(d)
	for fires := 0; ; fires++ {
		next, ok := fz.s.NextTimer()
		if !ok || next.After(target) {
			break
		}
		if fires >= fzMaxFires {
			fz.t.Fatalf("timer storm: %d timer firings within %v (next at %v)", fires, d, next.Sub(fzStart))
		}
		fz.clock.Set(next)
		fz.s.RunTimers()
	}
	fz.clock.Set(target)
	fz.s.RunTimers()
}

// info returns the socket line of c, if it still has one.
func (fz *fuzzer) info(c *Conn) (SocketInfo, bool) {
	for _, si := range fz.s.Sockets() {
		if si.Local.String() == c.LocalAddr().String() && si.Peer.String() == c.RemoteAddr().String() && si.State != "LISTEN" {
			return si, true
		}
	}
	return SocketInfo{}, false
}

// appStep does what an application might, without ever blocking: reads
// only when Sockets shows queued bytes, small writes, and a short real-time
// deadline as a safety net.
func (fz *fuzzer) appStep(r *fzReader) {
	action := r.byte()
	if action%8 == 0 { // accept
		for _, si := range fz.s.Sockets() {
			if si.State == "LISTEN" && si.Local.Port() == 80 && si.RecvQ > 0 && fz.ln != nil {
				c, err := fz.ln.AcceptTCP()
				if err != nil {
					fz.t.Fatalf("accept with a non-empty accept queue: %v", err)
				}
				fz.conns = append(fz.conns, c)
				break
			}
		}
		return
	}
	if len(fz.conns) == 0 {
		return
	}
	c := fz.conns[int(r.byte())%len(fz.conns)]
	dl := time.Now().Add(5 * time.Millisecond)
	switch action % 8 {
	case 1: // read what is queued
		if si, ok := fz.info(c); ok && si.RecvQ > 0 {
			c.SetReadDeadline(dl)
			buf := make([]byte, 1+int(action))
			c.Read(buf)
		}
	case 2: // write
		n := int(r.byte()) * 4
		c.SetWriteDeadline(dl)
		c.Write(make([]byte, n))
	case 3:
		c.CloseWrite()
	case 4:
		c.CloseRead()
	case 5:
		c.Close()
	case 6:
		c.SetLinger(0)
		c.Close()
	case 7:
		c.SetKeepAlive(action&0x80 != 0)
	}
}

// sockStep closes or reopens the listener, or binds and listens elsewhere.
func (fz *fuzzer) sockStep(b byte) {
	switch b % 4 {
	case 0:
		if fz.ln != nil {
			fz.ln.Close()
			fz.ln = nil
		}
	case 1:
		if fz.ln == nil {
			ln, err := fz.s.ListenTCP(netip.AddrPortFrom(netip.AddrFrom4(fzStack), 80), int(b>>2)%8)
			if err == nil {
				fz.ln = ln
			}
		}
	case 2:
		if len(fz.bound) < 4 {
			if bd, err := fz.s.Bind(netip.AddrPortFrom(netip.AddrFrom4(fzStack), 8000+uint16(b>>2))); err == nil {
				fz.bound = append(fz.bound, bd)
			}
		}
	case 3:
		if len(fz.extraLn) < 4 {
			if ln, err := fz.s.ListenTCP(netip.AddrPortFrom(netip.AddrFrom4(fzStack), 9000+uint16(b>>2)), 1); err == nil {
				fz.extraLn = append(fz.extraLn, ln)
			}
		}
	}
}

// check asserts the invariants that hold after every step.
func (fz *fuzzer) check() {
	socks := fz.s.Sockets()
	// Listeners and bound sockets the script made, the active connection,
	// and at most one connection per segment injected.
	bound := 1 + 4 + 4 + 1 + fz.packets
	if len(socks) > bound {
		fz.t.Fatalf("%d sockets after %d steps and %d packets, want at most %d:\n%s", len(socks), fz.steps, fz.packets, bound, fzDescribe(socks))
	}
	for _, si := range socks {
		if si.State == "LISTEN" || si.State == "UNCONN" {
			continue
		}
		if si.RecvQ < 0 || si.RecvQ > fz.s.opts.RecvBuffer || si.SendQ < 0 || si.SendQ > fz.s.opts.SendBuffer+2 {
			fz.t.Fatalf("queues out of bounds: %+v", si)
		}
	}
}

// finish closes everything the application holds, lets the peer fall
// silent for three virtual hours, and checks that nothing is left.
func (fz *fuzzer) finish() {
	for _, c := range fz.conns {
		c.Close()
	}
	for _, l := range append(fz.extraLn, fz.ln) {
		if l != nil {
			l.Close()
		}
	}
	for _, b := range fz.bound {
		b.Close()
	}
	// Accepted-queue children are reset by the listener's close; the rest
	// time out: SYN|ACK and FIN retransmissions give up, FIN_WAIT_2 and
	// TIME_WAIT expire.
	for i := 0; i < 36; i++ {
		fz.advance(5 * time.Minute)
	}
	if socks := fz.s.Sockets(); len(socks) != 0 {
		fz.t.Fatalf("3 h after the application closed everything and the peer fell silent, sockets remain (leak):\n%s", fzDescribe(socks))
	}
	fz.s.Close()
	if socks := fz.s.Sockets(); len(socks) != 0 {
		fz.t.Fatalf("sockets after Close:\n%s", fzDescribe(socks))
	}
	fz.s.mu.Lock()
	est, lis, bnd := fz.s.est.Len(), fz.s.lis.Len(), fz.s.bind.Len()
	fz.s.mu.Unlock()
	if est != 0 || lis != 0 || bnd != 0 {
		fz.t.Fatalf("after Close: %d established, %d listener, %d bind table entries left", est, lis, bnd)
	}
	if next, ok := fz.s.NextTimer(); ok {
		fz.t.Fatalf("after Close: a timer is still pending (at %v)", next.Sub(fzStart))
	}
}

func fzDescribe(socks []SocketInfo) string {
	var b strings.Builder
	for _, si := range socks {
		fmt.Fprintf(&b, "  %-11s %6d %6d %v %v %s %v\n", si.State, si.RecvQ, si.SendQ, si.Local, si.Peer, si.Timer, si.TimerLeft)
	}
	return b.String()
}

// fuzzSeeds are scripts and packets that start the fuzzer in interesting
// places: a handshake with data and FIN, a RST, raw SYNs, a land attack.
func fuzzSeeds() [][]byte {
	seg := func(who, flags byte, seqD, ackD int16, win uint16, opts []byte, plen byte) []byte {
		b := []byte{1, who, flags}
		b = binary.BigEndian.AppendUint16(b, uint16(seqD))
		b = binary.BigEndian.AppendUint16(b, uint16(ackD))
		b = binary.BigEndian.AppendUint16(b, win)
		b = append(b, byte(len(opts)))
		b = append(b, opts...)
		return append(b, plen)
	}
	synOpts := make([]byte, 40)
	synOpts = synOpts[:header.PutSYNOptions(synOpts, 1460, 7, true, true, 100, 0)]
	mssOnly := []byte{2, 4, 0x05, 0xb4}
	const S, A, F, R, P = flagSYN, flagACK, flagFIN, flagRST, flagPSH
	var seeds [][]byte
	// Passive open, data, read, FIN both ways.
	var s []byte
	s = append(s, seg(0, S, 0, 0, 65535, synOpts, 0)...)
	s = append(s, seg(0, A, 0, 0, 65535, nil, 0)...)
	s = append(s, seg(0, A|P, 0, 0, 65535, nil, 100)...)
	s = append(s, 3, 0) // accept
	s = append(s, 3, 1, 1)
	s = append(s, 2, 5) // 6 ms
	s = append(s, seg(0, A|F, 0, 0, 65535, nil, 0)...)
	s = append(s, 3, 5, 1) // close it
	s = append(s, seg(0, A, 0, 0, 65535, nil, 0)...)
	seeds = append(seeds, s)
	// Active connection: data both ways, then a RST.
	s = nil
	s = append(s, 3, 2, 0, 50)
	s = append(s, seg(2, A|P, 0, 0, 65535, nil, 10)...)
	s = append(s, 2, 0x41)
	s = append(s, seg(2, R, 0, 0, 0, nil, 0)...)
	seeds = append(seeds, s)
	// Zero window then silence: the persist timer.
	s = nil
	s = append(s, seg(2, A, 0, 0, 0, nil, 0)...)
	s = append(s, 3, 2, 0, 200)
	s = append(s, 2, 0xff, 2, 0xff)
	seeds = append(seeds, s)
	// A SYN with only MSS, an out-of-window RST, a SYN in ESTABLISHED.
	s = nil
	s = append(s, seg(1, S, 0, 0, 1024, mssOnly, 0)...)
	s = append(s, seg(1, A, 0, 0, 1024, nil, 0)...)
	s = append(s, seg(1, R, 30000, 0, 0, nil, 0)...)
	s = append(s, seg(1, S, 5, 0, 1024, mssOnly, 0)...)
	s = append(s, 4, 0) // close the listener with the connection queued
	seeds = append(seeds, s)
	// Land attack: a SYN from our own address and port to ourselves.
	s = nil
	s = append(s, 1, 0x80|3, S, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 80, 0, 80)
	seeds = append(seeds, s)
	// Raw packets: a SYN to port 80, a truncated header, an ICMP echo.
	syn := fzSegment(fzPeer, 40000, 80, fzPeerISN, 0, S, 65535, mssOnly, nil)
	seeds = append(seeds, append([]byte{0, byte(len(syn))}, syn...))
	seeds = append(seeds, []byte{0, 10, 0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6})
	ping := make([]byte, 28)
	header.EncodeIPv4(ping, header.IPv4Fields{TotalLen: 28, TTL: 64, Protocol: 1, Src: fzPeer, Dst: fzStack})
	ping[20] = 8
	binary.BigEndian.PutUint16(ping[22:], header.Checksum(ping[20:], 0))
	seeds = append(seeds, append([]byte{0, byte(len(ping))}, ping...))
	// IPv6: a passive open with data and a close over IPv6; raw packets
	// with an echo request, a chain of extension headers, a fragment and
	// an unknown next header (B60-B62).
	seg6 := func(who, flags byte, plen byte) []byte {
		b := seg(who, flags, 0, 0, 65535, nil, plen)
		b[9] |= 0x80 // the options-length byte's high bit: over IPv6
		return b
	}
	s = nil
	s = append(s, seg6(0, S, 0)...)
	s = append(s, seg6(0, A, 0)...)
	s = append(s, seg6(0, A|P, 50)...)
	s = append(s, 3, 0)
	s = append(s, seg6(0, A|F, 0)...)
	seeds = append(seeds, s)
	raw6 := func(nh uint8, payload []byte) []byte {
		p := make([]byte, header.IPv6HeaderSize+len(payload))
		header.EncodeIPv6(p, header.IPv6Fields{PayloadLen: len(payload), NextHeader: nh, HopLimit: 64, Src: fzPeer6.As16(), Dst: fzStack6.As16()})
		copy(p[header.IPv6HeaderSize:], payload)
		return append([]byte{0, byte(len(p))}, p...)
	}
	echo6 := []byte{header.ICMPv6EchoRequest, 0, 0, 0, 0, 1, 0, 1}
	header.SetICMPv6Checksum(echo6, fzPeer6.As16(), fzStack6.As16())
	seeds = append(seeds, raw6(header.ProtoICMPv6, echo6))
	seeds = append(seeds, raw6(header.ProtoHopByHop, append([]byte{header.ProtoDstOpts, 0, 1, 4, 0, 0, 0, 0, header.ProtoRouting, 0, 0xc5, 0, 0, 0, 0, 0, header.ProtoICMPv6, 0, 0, 0, 0, 0, 0, 0}, echo6...)))
	seeds = append(seeds, raw6(header.ProtoFragment, append([]byte{header.ProtoICMPv6, 0, 0, 9, 0, 0, 0, 7}, echo6...)))
	seeds = append(seeds, raw6(200, make([]byte, 16)))
	// UDP to a port nobody has (B70), over both families.
	udp := []byte{0x13, 0x88, 0, 53, 0, 12, 0, 0, 'd', 'n', 's', '?'}
	dg := make([]byte, header.IPv4MinSize+len(udp))
	header.EncodeIPv4(dg, header.IPv4Fields{TotalLen: len(dg), TTL: 64, Protocol: header.ProtoUDP, Src: fzPeer, Dst: fzStack})
	copy(dg[header.IPv4MinSize:], udp)
	seeds = append(seeds, append([]byte{0, byte(len(dg))}, dg...))
	seeds = append(seeds, raw6(header.ProtoUDP, udp))
	return seeds
}
