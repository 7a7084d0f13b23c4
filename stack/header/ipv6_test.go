package header

import (
	"errors"
	"net/netip"
	"testing"
)

var (
	v6src = netip.MustParseAddr("fd00::1").As16()
	v6dst = netip.MustParseAddr("fd00::2").As16()
)

// ipv6Pkt is a fixed header with next header nh in front of payload.
func ipv6Pkt(nh uint8, payload []byte) []byte {
	b := make([]byte, 40+len(payload))
	EncodeIPv6(b, IPv6Fields{PayloadLen: len(payload), NextHeader: nh, HopLimit: 64, Src: v6src, Dst: v6dst})
	copy(b[40:], payload)
	return b
}

func TestIPv6Validate(t *testing.T) {
	good := ipv6Pkt(ProtoTCP, make([]byte, 20))
	if err := IPv6(good).Validate(); err != nil {
		t.Fatal(err)
	}
	ip := IPv6(good)
	if ip.Src() != v6src || ip.Dst() != v6dst || ip.HopLimit() != 64 || ip.NextHeader() != ProtoTCP || len(ip.Payload()) != 20 {
		t.Fatal("accessors do not read back what EncodeIPv6 wrote")
	}
	padded := append(append([]byte(nil), good...), 0, 0, 0)
	if err := IPv6(padded).Validate(); err != nil || len(IPv6(padded).Payload()) != 20 {
		t.Fatalf("link padding after the payload: %v", err)
	}
	v4 := append([]byte(nil), good...)
	v4[0] = 0x45
	long := append([]byte(nil), good...)
	long[5] = 21 // one byte more than there is
	jumbo := ipv6Pkt(ProtoHopByHop, make([]byte, 8))
	jumbo[4], jumbo[5] = 0, 0
	for _, c := range []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:39], ErrIPv6Short},
		{"version 4", v4, ErrIPv6Version},
		{"payload length past the end", long, ErrIPv6PayloadLen},
		{"jumbo payload length", jumbo, ErrIPv6Jumbo},
	} {
		if err := IPv6(c.b).Validate(); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// ext is an extension header: next header, then body padded to 8n bytes.
func ext(next uint8, body ...byte) []byte {
	n := (2 + len(body) + 7) / 8 * 8
	b := make([]byte, n)
	b[0], b[1] = next, byte(n/8-1)
	copy(b[2:], body)
	return b
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func TestWalkExtensions(t *testing.T) {
	frag := []byte{ProtoTCP, 0, 0x00, 0x09, 0, 0, 0, 1} // offset 8 (1<<3), M set
	for _, c := range []struct {
		name    string
		next    uint8
		p       []byte
		proto   uint8
		off     int
		err     error
		errAt   int
		option  int
		action  uint8
		nextAt  int
		isFrag  bool
		fragOff int
	}{
		{name: "TCP right away", next: ProtoTCP, p: make([]byte, 20), proto: ProtoTCP, option: -1},
		{name: "hop-by-hop, routing, dst options", next: ProtoHopByHop, p: cat(ext(ProtoRouting), ext(ProtoDstOpts), ext(ProtoTCP)), proto: ProtoTCP, off: 24, option: -1},
		{name: "padding options are known", next: ProtoDstOpts, p: ext(ProtoTCP, 0, 1, 2, 0, 0), proto: ProtoTCP, off: 8, option: -1},
		{name: "unknown option, skip (00)", next: ProtoDstOpts, p: ext(ProtoTCP, 0x05, 0), proto: ProtoTCP, off: 8, option: -1, nextAt: 40},
		{name: "unknown option, drop (01)", next: ProtoDstOpts, p: ext(ProtoTCP, 0x45, 0), proto: ProtoTCP, off: 8, option: 2, action: 1},
		{name: "unknown option, answer (10)", next: ProtoDstOpts, p: ext(ProtoTCP, 1, 0, 0x85, 0), proto: ProtoTCP, off: 8, option: 4, action: 2},
		{name: "unknown option, not to multicast (11)", next: ProtoHopByHop, p: ext(ProtoTCP, 0xc2, 0), proto: ProtoTCP, off: 8, option: 2, action: 3},
		{name: "fragment", next: ProtoFragment, p: cat(frag, make([]byte, 8)), proto: ProtoTCP, off: 8, option: -1, isFrag: true, fragOff: 8},
		{name: "unknown next header", next: 99, p: make([]byte, 8), proto: 99, option: -1, nextAt: 6},
		{name: "unknown next header after options", next: ProtoDstOpts, p: cat(ext(ProtoDstOpts), ext(99)), proto: 99, off: 16, option: -1, nextAt: 48},
		{name: "no next header", next: ProtoDstOpts, p: ext(ProtoNoNext), proto: ProtoNoNext, off: 8, option: -1},
		{name: "hop-by-hop not first", next: ProtoDstOpts, p: cat(ext(ProtoHopByHop), ext(ProtoTCP)), err: ErrExtHopByHop, errAt: 8, option: -1},
		{name: "truncated header", next: ProtoRouting, p: make([]byte, 4), err: ErrExtTruncated, option: -1},
		{name: "length past the end", next: ProtoRouting, p: []byte{ProtoTCP, 3, 0, 0, 0, 0, 0, 0}, err: ErrExtTruncated, errAt: 1, option: -1},
		{name: "a looping chain", next: ProtoDstOpts, p: cat(ext(ProtoDstOpts), ext(ProtoDstOpts), ext(ProtoDstOpts), ext(ProtoDstOpts), ext(ProtoDstOpts), ext(ProtoDstOpts), ext(ProtoDstOpts), ext(ProtoDstOpts), ext(ProtoDstOpts)), err: ErrExtTooMany, errAt: 64, option: -1},
	} {
		x, err := WalkExtensions(c.next, c.p)
		if !errors.Is(err, c.err) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.err)
			continue
		}
		if err != nil {
			if x.ErrAt != c.errAt {
				t.Errorf("%s: fault at %d, want %d", c.name, x.ErrAt, c.errAt)
			}
			continue
		}
		if x.Proto != c.proto || x.Offset != c.off || x.OptionAt != c.option || x.OptionAction != c.action || c.nextAt != 0 && x.NextAt != c.nextAt || x.Fragment != c.isFrag || x.FragOffset != c.fragOff {
			t.Errorf("%s: got %+v", c.name, x)
		}
	}
}

// The IPv6 pseudo header: the reference sum of RFC 8200 8.1's layout
// (source, destination, 32-bit length, 3 zero bytes, next header).
func TestPseudoHeaderSum6(t *testing.T) {
	seg := make([]byte, 20+5)
	for i := range seg {
		seg[i] = byte(i * 7)
	}
	ph := cat(v6src[:], v6dst[:], []byte{0, 0, 0, byte(len(seg)), 0, 0, 0, ProtoTCP})
	want := refChecksum(cat(ph, seg), 0)
	if got := Checksum(seg, PseudoHeaderSum6(v6src, v6dst, ProtoTCP, len(seg))); got != want {
		t.Fatalf("checksum with the IPv6 pseudo header %#04x, reference %#04x", got, want)
	}
	SetChecksumAt(seg, 16, PseudoHeaderSum6(v6src, v6dst, ProtoTCP, len(seg)))
	if !ChecksumValidWith(seg, PseudoHeaderSum6(v6src, v6dst, ProtoTCP, len(seg))) {
		t.Fatal("a checksum SetChecksumAt stored does not verify")
	}
	msg := []byte{ICMPv6EchoRequest, 0, 0, 0, 0, 1, 0, 1, 'h', 'i'}
	SetICMPv6Checksum(msg, v6src, v6dst)
	if !ICMPv6ChecksumValid(v6src, v6dst, msg) || ICMPv6ChecksumValid(v6dst, v6dst, msg) {
		t.Fatal("ICMPv6 checksum")
	}
}
