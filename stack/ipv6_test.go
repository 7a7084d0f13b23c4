package stack

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"ustack/stack/header"
)

// IPv6 packet in, packet out: the peer is fd00::1, the stack fd00::2 (and
// 10.0.0.2 for IPv4).

var (
	peer6  = netip.MustParseAddr("fd00::1")
	stack6 = netip.MustParseAddr("fd00::2")
)

func newHarness6(t *testing.T) *harness {
	return newHarness(t, func(o *Options) { o.Addr6 = stack6 })
}

// pkt6 is an IPv6 packet from the peer to dst with next header nh.
func pkt6(dst netip.Addr, nh uint8, hop uint8, payload []byte) []byte {
	b := make([]byte, header.IPv6HeaderSize+len(payload))
	header.EncodeIPv6(b, header.IPv6Fields{PayloadLen: len(payload), NextHeader: nh, HopLimit: hop, Src: peer6.As16(), Dst: dst.As16()})
	copy(b[header.IPv6HeaderSize:], payload)
	return b
}

func echoRequest6(id, seq uint16, data string) []byte {
	m := append([]byte{header.ICMPv6EchoRequest, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq)}, data...)
	header.SetICMPv6Checksum(m, peer6.As16(), stack6.As16())
	return m
}

// tcp6 is a TCP segment from the peer's port 40000 to the stack's port.
func tcp6(port uint16, seq, ack uint32, flags uint8, opts []byte, data []byte) []byte {
	olen := (len(opts) + 3) &^ 3
	b := make([]byte, header.TCPMinSize+olen+len(data))
	copy(b[header.TCPMinSize:], opts)
	copy(b[header.TCPMinSize+olen:], data)
	header.EncodeTCP(b, header.TCPFields{SrcPort: 40000, DstPort: port, Seq: seq, Ack: ack, Flags: flags, Window: 65535}, olen)
	header.SetChecksumAt(b, 16, header.PseudoHeaderSum6(peer6.As16(), stack6.As16(), header.ProtoTCP, len(b)))
	return b
}

// out6 takes the one packet the stack sent and checks it is IPv6 from us
// to the peer.
func (h *harness) out6(proto uint8) header.IPv6 {
	h.t.Helper()
	out := h.link.Outbound()
	if len(out) != 1 {
		h.t.Fatalf("sent %d packets, want 1", len(out))
	}
	ip := header.IPv6(out[0])
	if err := ip.Validate(); err != nil {
		h.t.Fatalf("not IPv6: %v", err)
	}
	if ip.Src() != stack6.As16() || ip.Dst() != peer6.As16() || ip.NextHeader() != proto || ip.HopLimit() != 64 {
		h.t.Fatalf("IPv6 header %x", out[0][:40])
	}
	return ip
}

func (h *harness) wantCounter(name string, want uint64) {
	h.t.Helper()
	if got := h.s.Counter(name); got != want {
		h.t.Fatalf("%s = %d, want %d", name, got, want)
	}
}

// B62: an echo request is answered with its identifier, sequence and data.
func TestIPv6EchoAnswered(t *testing.T) {
	h := newHarness6(t)
	h.s.Inject(pkt6(stack6, header.ProtoICMPv6, 64, echoRequest6(7, 3, "ping6")))
	ip := h.out6(header.ProtoICMPv6)
	m := ip.Payload()
	if m[0] != header.ICMPv6EchoReply || binary.BigEndian.Uint16(m[4:]) != 7 || binary.BigEndian.Uint16(m[6:]) != 3 || string(m[8:]) != "ping6" {
		t.Fatalf("reply %x", m)
	}
	if !header.ICMPv6ChecksumValid(stack6.As16(), peer6.As16(), m) {
		t.Fatal("reply checksum")
	}
}

// B61: what the kernel sends on a new TUN (router solicitation, MLD report,
// a DAD neighbour solicitation) goes to multicast groups: ignored, counted.
func TestIPv6NeighbourTrafficIgnored(t *testing.T) {
	h := newHarness6(t)
	for _, g := range []string{"ff02::2", "ff02::16", "ff02::1:ff00:2"} {
		h.s.Inject(pkt6(netip.MustParseAddr(g), header.ProtoICMPv6, 255, []byte{header.ICMPv6RouterSolicit, 0, 0, 0, 0, 0, 0, 0}))
	}
	h.expectNone()
	h.wantCounter("ip6.drop.multicast", 3)
}

// B60: header faults are dropped and counted by reason, without an answer;
// an unknown next header gets Linux's parameter problem, pointing at it.
func TestIPv6InputChecks(t *testing.T) {
	h := newHarness6(t)
	long := pkt6(stack6, header.ProtoICMPv6, 64, echoRequest6(1, 1, ""))
	long[5]++ // payload length one past the packet
	for _, c := range []struct {
		name    string
		pkt     []byte
		counter string
	}{
		{"short", pkt6(stack6, header.ProtoICMPv6, 64, nil)[:39], "ip6.drop.malformed"},
		{"payload length", long, "ip6.drop.malformed"},
		{"hop limit 0", pkt6(stack6, header.ProtoICMPv6, 0, echoRequest6(1, 1, "")), "ip6.drop.hop_limit_0"},
		{"not ours", pkt6(netip.MustParseAddr("fd00::9"), header.ProtoICMPv6, 64, echoRequest6(1, 1, "")), "ip.drop.not_for_us"},
		{"truncated extension", pkt6(stack6, header.ProtoDstOpts, 64, []byte{header.ProtoTCP, 4, 0, 0, 0, 0, 0, 0}), "ip6.drop.bad_extension_header"},
		{"non-atomic fragment", pkt6(stack6, header.ProtoFragment, 64, []byte{header.ProtoICMPv6, 0, 0, 1, 0, 0, 0, 9}), "ip6.drop.fragment"},
		{"option to drop silently (01)", pkt6(stack6, header.ProtoDstOpts, 64, []byte{header.ProtoICMPv6, 0, 0x41, 0, 1, 2, 0, 0}), "ip6.drop.unknown_option"},
	} {
		h.s.Inject(c.pkt)
		if out := h.link.Outbound(); len(out) != 0 {
			t.Errorf("%s: answered", c.name)
		}
		if h.s.Counter(c.counter) == 0 {
			t.Errorf("%s: %s not counted", c.name, c.counter)
		}
	}
}

// Parameter problems (RFC 4443 3.4) for an unknown next header (code 1,
// pointing at the field that named it) and an unknown option whose type
// asks for one (code 2, pointing at the option).
func TestIPv6ParameterProblem(t *testing.T) {
	h := newHarness6(t)
	unknown := pkt6(stack6, 99, 64, make([]byte, 8))
	h.s.Inject(unknown)
	m := h.out6(header.ProtoICMPv6).Payload()
	if m[0] != header.ICMPv6ParamProblem || m[1] != header.ICMPv6UnknownHeader || binary.BigEndian.Uint32(m[4:]) != 6 || string(m[8:]) != string(unknown) {
		t.Fatalf("for an unknown next header: %x", m)
	}
	opt := pkt6(stack6, header.ProtoDstOpts, 64, append([]byte{header.ProtoICMPv6, 0, 1, 0, 0x85, 0, 0, 0}, echoRequest6(1, 1, "")...))
	h.s.Inject(opt)
	m = h.out6(header.ProtoICMPv6).Payload()
	if m[1] != header.ICMPv6UnknownOption || binary.BigEndian.Uint32(m[4:]) != 40+4 {
		t.Fatalf("for an unknown option: %x", m[:8])
	}
	// An atomic fragment (offset 0, no more) is a whole packet (RFC 6946).
	h.s.Inject(pkt6(stack6, header.ProtoFragment, 64, append([]byte{header.ProtoICMPv6, 0, 0, 0, 0, 0, 0, 5}, echoRequest6(2, 2, "a")...)))
	if m := h.out6(header.ProtoICMPv6).Payload(); m[0] != header.ICMPv6EchoReply {
		t.Fatalf("an atomic fragment's echo: %x", m)
	}
}

// TCP over IPv6 (B10, B13 and B64): a dual-stack listener on :80 takes an
// IPv6 SYN with an MSS from the IPv6 MTU and the IPv6 pseudo-header, and an
// IPv4 SYN too; a "tcp6" (IPV6_V6ONLY) listener refuses IPv4.
func TestTCPOverIPv6(t *testing.T) {
	h := newHarness6(t)
	ln, err := h.s.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	mss := []byte{2, 4, 0x05, 0xa0} // 1440
	h.s.Inject(pkt6(stack6, header.ProtoTCP, 64, tcp6(80, 1000, 0, header.SYN, mss, nil)))
	sa := header.TCP(h.out6(header.ProtoTCP).Payload())
	if sa.Flags() != header.SYN|header.ACK || sa.Ack() != 1001 || !header.ChecksumValidWith(sa, header.PseudoHeaderSum6(stack6.As16(), peer6.As16(), header.ProtoTCP, len(sa))) {
		t.Fatalf("SYN|ACK: flags %x ack %d", sa.Flags(), sa.Ack())
	}
	var o header.TCPOptions
	header.ParseTCPOptions(sa.Options(), &o)
	if !o.HasMSS || o.MSS != 1500-60 {
		t.Fatalf("MSS %d, want 1440 (the IPv6 MTU less 60)", o.MSS)
	}
	iss := sa.Seq()
	h.s.Inject(pkt6(stack6, header.ProtoTCP, 64, tcp6(80, 1001, iss+1, header.ACK|header.PSH, nil, []byte("hello6"))))
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RemoteAddr().(*net.TCPAddr); !got.IP.Equal(peer6.AsSlice()) || got.Port != 40000 {
		t.Fatalf("remote %v", got)
	}
	buf := make([]byte, 16)
	if n, _ := c.Read(buf); string(buf[:n]) != "hello6" {
		t.Fatalf("read %q", buf[:n])
	}
	h.link.Outbound()

	// The same listener, an IPv4 SYN.
	h.send(seg4(80))
	h.expect(segSynAck())
	// A v6-only listener: the IPv4 SYN gets the "no socket" RST (B01).
	if _, err := h.s.Listen("tcp6", ":81"); err != nil {
		t.Fatal(err)
	}
	h.port = 40001
	h.send(seg{flags: header.SYN, seq: 0, dport: 81})
	h.expect(seg{flags: header.RST | header.ACK, seq: 0, ack: peerISN + 1, raw: true})
}

func seg4(port uint16) seg { return seg{flags: header.SYN, seq: 0, dport: port} }
func segSynAck() seg       { return seg{flags: header.SYN | header.ACK, seq: 0, ack: 1} }

// B01 over IPv6: a SYN to a closed port gets RST|ACK.
func TestIPv6SynClosedPort(t *testing.T) {
	h := newHarness6(t)
	h.s.Inject(pkt6(stack6, header.ProtoTCP, 64, tcp6(9, 5, 0, header.SYN, nil, nil)))
	rst := header.TCP(h.out6(header.ProtoTCP).Payload())
	if rst.Flags() != header.RST|header.ACK || rst.Seq() != 0 || rst.Ack() != 6 {
		t.Fatalf("answer %x seq %d ack %d", rst.Flags(), rst.Seq(), rst.Ack())
	}
	// B03: a bad checksum is dropped and counted, with no answer.
	bad := tcp6(9, 5, 0, header.SYN, nil, nil)
	bad[17] ^= 1
	h.s.Inject(pkt6(stack6, header.ProtoTCP, 64, bad))
	h.expectNone()
	h.wantCounter("tcp.drop.checksum", 1)
}

// B65: ICMPv6 errors reach TCP as tcp_v6_err takes them: port unreachable
// fails a connect; Packet Too Big (B63) lowers the MSS, never below what
// 1280 bytes allow, and resends what no longer fits.
func TestICMPv6ErrorsToTCP(t *testing.T) {
	h := newHarness6(t)
	so := h.s.NewSocket()
	if err := so.Connect(netip.AddrPortFrom(peer6, 9000)); err != syscall.EINPROGRESS {
		t.Fatalf("connect: %v", err)
	}
	syn := h.out6(header.ProtoTCP)
	h.s.Inject(icmp6ErrorAbout(header.ICMPv6DestUnreach, 4, 0, syn))
	if err := so.SockError(); err != syscall.ECONNREFUSED {
		t.Fatalf("SO_ERROR %v, want ECONNREFUSED", err)
	}

	c := dial6(t, h)
	c.Write(make([]byte, 1400))
	data := h.out6(header.ProtoTCP)
	h.s.Inject(icmp6ErrorAbout(header.ICMPv6PacketTooBig, 0, 1000, data))
	out := h.link.Outbound()
	start := header.TCP(data.Payload()).Seq()
	if len(out) != 2 {
		t.Fatalf("resent %d packets, want the 1400 bytes cut in two", len(out))
	}
	for i, want := range []struct{ seq, n uint32 }{{start, 1280 - 60 - 12}, {start + 1208, 1400 - 1208}} {
		re := header.TCP(header.IPv6(out[i]).Payload())
		if re.Seq() != want.seq || uint32(len(re.Payload())) != want.n {
			t.Fatalf("resent segment %d: %d bytes at %d, want %d at %d (1280 less headers and timestamps)", i, len(re.Payload()), re.Seq(), want.n, want.seq)
		}
	}
	h.wantCounter("tcp.pmtu_reductions", 1)
}

// dial6 opens a connection to the peer over IPv6 and answers its SYN.
func dial6(t *testing.T, h *harness) *Socket {
	so := h.s.NewSocket()
	so.Connect(netip.AddrPortFrom(peer6, 9001))
	syn := header.TCP(h.out6(header.ProtoTCP).Payload())
	ts := []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0}
	copy(ts[8:], syn.Options()[len(syn.Options())-8:len(syn.Options())-4]) // echo its TSval
	synack := tcp6(syn.SrcPort(), 5000, syn.Seq()+1, header.SYN|header.ACK, append([]byte{2, 4, 0x05, 0xa0}, ts...), nil)
	binary.BigEndian.PutUint16(synack[0:], 9001)
	binary.BigEndian.PutUint16(synack[2:], syn.SrcPort())
	header.SetChecksumAt(synack, 16, header.PseudoHeaderSum6(peer6.As16(), stack6.As16(), header.ProtoTCP, len(synack)))
	h.s.Inject(pkt6(stack6, header.ProtoTCP, 64, synack))
	h.out6(header.ProtoTCP) // the ACK
	if so.State() != "ESTAB" {
		t.Fatalf("state %s", so.State())
	}
	return so
}

// icmp6ErrorAbout is an ICMPv6 error from the peer quoting our packet.
func icmp6ErrorAbout(typ, code uint8, mtu uint32, ours header.IPv6) []byte {
	m := append([]byte{typ, code, 0, 0, 0, 0, 0, 0}, ours[:min(len(ours), 1000)]...)
	binary.BigEndian.PutUint32(m[4:], mtu)
	header.SetICMPv6Checksum(m, peer6.As16(), stack6.As16())
	return pkt6(stack6, header.ProtoICMPv6, 64, m)
}

// The Go API's address handling over IPv6: "tcp6" wants an IPv6 address,
// "tcp4" an IPv4 one; Dial("tcp6") sends its SYN from our IPv6 address.
func TestIPv6GoAPI(t *testing.T) {
	h := newHarness6(t)
	if _, err := h.s.Listen("tcp4", "[fd00::2]:80"); err == nil {
		t.Fatal("tcp4 with an IPv6 address")
	}
	if _, err := h.s.Listen("tcp6", "10.0.0.2:80"); err == nil {
		t.Fatal("tcp6 with an IPv4 address")
	}
	if _, err := h.s.Listen("tcp6", "[fd00::3]:80"); !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Fatalf("an address not ours: %v", err)
	}
	go h.s.DialContext(t.Context(), "tcp6", "[fd00::1]:9000") // blocks in SYN-SENT until the test ends
	for deadline := time.Now().Add(5 * time.Second); h.s.Counter("tcp.active_opens") == 0; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatal("Dial(tcp6) sent no SYN")
		}
	}
	syn := h.out6(header.ProtoTCP) // from fd00::2 to fd00::1
	if tcp := header.TCP(syn.Payload()); tcp.Flags() != header.SYN || tcp.DstPort() != 9000 {
		t.Fatalf("Dial(tcp6) sent %x to port %d", tcp.Flags(), tcp.DstPort())
	}
}

// An IPv6-only stack (Options.Addr zero): IPv4 is dropped and counted,
// IPv4 destinations are unreachable, IPv6 serves as ever.
func TestIPv6OnlyStack(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Addr, o.Addr6 = netip.Addr{}, stack6 })
	h.s.Inject(echoTo(stackAddr, 1, 1, "v4?"))
	h.wantCounter("ip.drop.no_ipv4_address", 1)
	h.expectNone()
	h.s.Inject(pkt6(stack6, header.ProtoICMPv6, 64, echoRequest6(7, 3, "v6")))
	if m := h.out6(header.ProtoICMPv6).Payload(); m[0] != header.ICMPv6EchoReply {
		t.Fatalf("reply %x", m)
	}
	if _, err := h.s.DialUDP(netip.AddrPort{}, netip.MustParseAddrPort("10.0.0.1:53")); !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("UDP to IPv4: %v, want ENETUNREACH", err)
	}
	so := h.s.NewSocket()
	if err := so.Connect(netip.MustParseAddrPort("10.0.0.1:80")); !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("TCP to IPv4: %v, want ENETUNREACH", err)
	}
	if _, err := New(NewMemLink(1500), Options{}); err == nil {
		t.Error("a stack with no address at all was made")
	}
}
