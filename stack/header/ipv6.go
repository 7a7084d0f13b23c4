package header

import (
	"encoding/binary"
	"errors"
)

// IPv6 (RFC 8200) and ICMPv6 (RFC 4443) sizes and numbers.
const (
	IPv6HeaderSize = 40
	// IPv6MinMTU is the smallest link MTU IPv6 allows (RFC 8200 5).
	IPv6MinMTU  = 1280
	ProtoICMPv6 = 58
	// Extension headers and "no next header" (RFC 8200 4).
	ProtoHopByHop  = 0
	ProtoRouting   = 43
	ProtoFragment  = 44
	ProtoNoNext    = 59
	ProtoDstOpts   = 60
	ICMPv6MinSize  = 8
	maxExtHeaders  = 8 // a longer chain is dropped (Linux has no fixed limit; every real chain is short)
	fragHeaderSize = 8
)

// IPv6 is a view of an IPv6 packet (RFC 8200 3). Call Validate before the
// accessors.
type IPv6 []byte

// Errors returned by IPv6.Validate.
var (
	ErrIPv6Short      = errors.New("header: IPv6 packet shorter than 40 bytes")
	ErrIPv6Version    = errors.New("header: IP version is not 6")
	ErrIPv6PayloadLen = errors.New("header: IPv6 payload length larger than the packet")
	ErrIPv6Jumbo      = errors.New("header: IPv6 payload length 0 with a payload (jumbogram, RFC 2675, not supported)")
)

// Validate checks version 6 and that the payload length fits in b; bytes
// past it (link padding) are allowed and ignored. A payload length of 0
// with bytes after the header would be a jumbogram, which only a hop-by-hop
// option can announce: rejected.
func (b IPv6) Validate() error {
	if len(b) < IPv6HeaderSize {
		return ErrIPv6Short
	}
	if b[0]>>4 != 6 {
		return ErrIPv6Version
	}
	pl := b.PayloadLen()
	if IPv6HeaderSize+pl > len(b) {
		return ErrIPv6PayloadLen
	}
	if pl == 0 && b[6] == ProtoHopByHop && len(b) > IPv6HeaderSize {
		return ErrIPv6Jumbo
	}
	return nil
}

// PayloadLen is the Payload Length field: what follows the fixed header.
func (b IPv6) PayloadLen() int { return int(binary.BigEndian.Uint16(b[4:6])) }

// NextHeader is the protocol of what follows the fixed header.
func (b IPv6) NextHeader() uint8 { return b[6] }

// HopLimit is the Hop Limit field.
func (b IPv6) HopLimit() uint8 { return b[7] }

// Src is the source address.
func (b IPv6) Src() [16]byte { return [16]byte(b[8:24]) }

// Dst is the destination address.
func (b IPv6) Dst() [16]byte { return [16]byte(b[24:40]) }

// Payload is what follows the fixed header, up to the payload length.
func (b IPv6) Payload() []byte { return b[IPv6HeaderSize : IPv6HeaderSize+b.PayloadLen()] }

// IPv6Fields are the values EncodeIPv6 writes.
type IPv6Fields struct {
	PayloadLen int
	NextHeader uint8
	HopLimit   uint8
	Src, Dst   [16]byte
}

// EncodeIPv6 writes a fixed IPv6 header (traffic class and flow label 0)
// into b[:40].
func EncodeIPv6(b []byte, f IPv6Fields) {
	_ = b[IPv6HeaderSize-1]
	binary.BigEndian.PutUint32(b[0:4], 6<<28)
	binary.BigEndian.PutUint16(b[4:6], uint16(f.PayloadLen))
	b[6] = f.NextHeader
	b[7] = f.HopLimit
	copy(b[8:24], f.Src[:])
	copy(b[24:40], f.Dst[:])
}

// Errors of WalkExtensions, each with where the fault is.
var (
	ErrExtTruncated = errors.New("header: IPv6 extension header truncated")
	ErrExtTooMany   = errors.New("header: IPv6 extension header chain too long")
	ErrExtHopByHop  = errors.New("header: IPv6 hop-by-hop options not first")
)

// Extensions is what WalkExtensions found in front of the upper layer.
type Extensions struct {
	Proto    uint8 // the upper-layer protocol (or ProtoNoNext)
	Offset   int   // where it starts in the payload
	Fragment bool  // a fragment header was present (RFC 8200 4.5)
	// FragOffset and MoreFragments are the fragment header's, when
	// Fragment: offset 0 with M clear is an atomic fragment (RFC 6946).
	FragOffset    int
	MoreFragments bool
	// NextAt is where, in the packet, the next-header field that named
	// Proto is: 6 for the fixed header's, else inside the last extension
	// header (what a parameter problem about Proto points at).
	NextAt int
	// OptionAt is the payload offset of the first option we do not know
	// whose type says to drop the packet (RFC 8200 4.2: high bits 01, 10
	// or 11), or -1; OptionAction is those two bits (1: silently; 2: with
	// a parameter problem; 3: with one unless the destination is
	// multicast).
	OptionAt     int
	OptionAction uint8
	// ErrAt is the payload offset of the field a parameter problem
	// points at when err is not nil.
	ErrAt int
}

// WalkExtensions follows the extension headers of an IPv6 payload in order
// (RFC 8200 4.1): hop-by-hop (first only), routing, destination options,
// fragment. It stops at the first upper-layer header, an unknown next
// header (returned as Proto, for the caller to answer), or a fault.
// Options other than Pad1 and PadN are unknown to us; the first whose type
// demands a parameter problem is reported in OptionAt.
func WalkExtensions(next uint8, p []byte) (Extensions, error) {
	x := Extensions{OptionAt: -1, NextAt: 6}
	off := 0
	for n := 0; ; n++ {
		switch next {
		case ProtoHopByHop, ProtoRouting, ProtoDstOpts, ProtoFragment:
		default:
			x.Proto, x.Offset = next, off
			return x, nil
		}
		if next == ProtoHopByHop && n > 0 {
			x.ErrAt = off
			return x, ErrExtHopByHop
		}
		if n >= maxExtHeaders {
			x.ErrAt = off
			return x, ErrExtTooMany
		}
		if len(p)-off < 8 {
			x.ErrAt = off
			return x, ErrExtTruncated
		}
		size := fragHeaderSize
		if next != ProtoFragment {
			size = (int(p[off+1]) + 1) * 8
		}
		if len(p)-off < size {
			x.ErrAt = off + 1
			return x, ErrExtTruncated
		}
		switch next {
		case ProtoFragment:
			fo := binary.BigEndian.Uint16(p[off+2 : off+4])
			x.Fragment, x.FragOffset, x.MoreFragments = true, int(fo>>3)*8, fo&1 != 0
		case ProtoHopByHop, ProtoDstOpts:
			if x.OptionAt < 0 {
				x.OptionAt, x.OptionAction = unknownOption(p[off+2:off+size], off+2)
			}
		}
		next = p[off]
		x.NextAt = IPv6HeaderSize + off
		off += size
	}
}

// unknownOption scans TLV options (RFC 8200 4.2) for the first one we do
// not know whose action bits drop the packet: its offset (base +
// position) and the bits. Pad1 and PadN are the only options we know.
func unknownOption(opts []byte, base int) (int, uint8) {
	for i := 0; i < len(opts); {
		t := opts[i]
		if t == 0 { // Pad1
			i++
			continue
		}
		if i+1 >= len(opts) {
			return -1, 0
		}
		if t != 1 && t>>6 != 0 {
			return base + i, t >> 6
		}
		i += 2 + int(opts[i+1])
	}
	return -1, 0
}

// ICMPv6 message types (RFC 4443, RFC 4861, RFC 3810).
const (
	ICMPv6DestUnreach     = 1
	ICMPv6PacketTooBig    = 2
	ICMPv6TimeExceeded    = 3
	ICMPv6ParamProblem    = 4
	ICMPv6EchoRequest     = 128
	ICMPv6EchoReply       = 129
	ICMPv6MLDQuery        = 130
	ICMPv6MLDReport       = 131
	ICMPv6MLDDone         = 132
	ICMPv6RouterSolicit   = 133
	ICMPv6RouterAdvert    = 134
	ICMPv6NeighborSolicit = 135
	ICMPv6NeighborAdvert  = 136
	ICMPv6Redirect        = 137
	ICMPv6MLDv2Report     = 143
)

// ICMPv6 parameter problem codes (RFC 4443 3.4).
const (
	ICMPv6ErroneousField = 0
	ICMPv6UnknownHeader  = 1
	ICMPv6UnknownOption  = 2
)

// PseudoHeaderSum6 is the partial sum of the IPv6 pseudo header that TCP,
// UDP and ICMPv6 checksums cover (RFC 8200 8.1).
func PseudoHeaderSum6(src, dst [16]byte, proto uint8, length int) uint32 {
	s := PartialChecksum(0, src[:])
	s = PartialChecksum(s, dst[:])
	s += uint32(length>>16) + uint32(uint16(length))
	s += uint32(proto)
	return s
}

// ICMPv6ChecksumValid checks an ICMPv6 message against its pseudo header;
// anything shorter than the 8-byte header is invalid.
func ICMPv6ChecksumValid(src, dst [16]byte, b []byte) bool {
	return len(b) >= ICMPv6MinSize && Checksum(b, PseudoHeaderSum6(src, dst, ProtoICMPv6, len(b))) == 0
}

// SetICMPv6Checksum computes and stores an ICMPv6 message's checksum.
func SetICMPv6Checksum(b []byte, src, dst [16]byte) {
	b[2], b[3] = 0, 0
	binary.BigEndian.PutUint16(b[2:4], Checksum(b, PseudoHeaderSum6(src, dst, ProtoICMPv6, len(b))))
}
