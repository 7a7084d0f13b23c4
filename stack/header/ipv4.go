package header

import (
	"encoding/binary"
	"errors"
)

// Sizes and protocol numbers (RFC 791, RFC 792, RFC 9293).
const (
	IPv4MinSize   = 20
	TCPMinSize    = 20
	ICMPv4MinSize = 8
	ProtoICMP     = 1
	ProtoTCP      = 6
	ProtoUDP      = 17
)

// IPv4 flag and fragment-offset bits in bytes 6-7 (RFC 791 section 3.1).
const (
	ipv4FlagDF     = 0x4000
	ipv4FlagMF     = 0x2000
	ipv4FragOffset = 0x1fff
)

// IPv4 is a view of an IPv4 packet (RFC 791). Call Validate before the
// accessors.
type IPv4 []byte

// Errors returned by IPv4.Validate.
var (
	ErrIPv4Short     = errors.New("header: IPv4 packet shorter than 20 bytes")
	ErrIPv4Version   = errors.New("header: IP version is not 4")
	ErrIPv4HeaderLen = errors.New("header: IPv4 header length (IHL) below 5 or past the end of the packet")
	ErrIPv4TotalLen  = errors.New("header: IPv4 total length smaller than the header or larger than the packet")
	ErrIPv4Checksum  = errors.New("header: bad IPv4 header checksum")
)

// Validate checks version 4, IHL >= 5, len(b) >= IHL*4,
// IHL*4 <= TotalLength <= len(b), and the header checksum (RFC 1071).
// Bytes past TotalLength (link padding) are allowed and ignored.
func (b IPv4) Validate() error {
	if len(b) < IPv4MinSize {
		return ErrIPv4Short
	}
	if b[0]>>4 != 4 {
		return ErrIPv4Version
	}
	hl := b.HeaderLen()
	if hl < IPv4MinSize || hl > len(b) {
		return ErrIPv4HeaderLen
	}
	if tl := b.TotalLen(); tl < hl || tl > len(b) {
		return ErrIPv4TotalLen
	}
	if Checksum(b[:hl], 0) != 0 {
		return ErrIPv4Checksum
	}
	return nil
}

// HeaderLen is IHL*4, the header length in bytes including options.
func (b IPv4) HeaderLen() int { return int(b[0]&0x0f) * 4 }

// TotalLen is the Total Length field: header plus payload.
func (b IPv4) TotalLen() int { return int(binary.BigEndian.Uint16(b[2:4])) }

// ID is the Identification field.
func (b IPv4) ID() uint16 { return binary.BigEndian.Uint16(b[4:6]) }

// DF reports the Don't Fragment flag.
func (b IPv4) DF() bool { return binary.BigEndian.Uint16(b[6:8])&ipv4FlagDF != 0 }

// IsFragment reports whether the packet is part of a fragmented datagram:
// More Fragments set or a non-zero fragment offset.
func (b IPv4) IsFragment() bool {
	return binary.BigEndian.Uint16(b[6:8])&(ipv4FlagMF|ipv4FragOffset) != 0
}

// SetFragment makes the packet the fragment at byte offset off (a multiple
// of 8) of its datagram, more saying that others follow (RFC 791 §3.2):
// DF clear, MF and the offset set, the header checksum made again.
func (b IPv4) SetFragment(off int, more bool) {
	v := uint16(off/8) & ipv4FragOffset
	if more {
		v |= ipv4FlagMF
	}
	binary.BigEndian.PutUint16(b[6:8], v)
	b[10], b[11] = 0, 0
	binary.BigEndian.PutUint16(b[10:12], Checksum(b[:b.HeaderLen()], 0))
}

// TTL is the Time to Live field.
func (b IPv4) TTL() uint8 { return b[8] }

// Protocol is the payload protocol number.
func (b IPv4) Protocol() uint8 { return b[9] }

// Src is the source address.
func (b IPv4) Src() [4]byte { return [4]byte(b[12:16]) }

// Dst is the destination address.
func (b IPv4) Dst() [4]byte { return [4]byte(b[16:20]) }

// Payload is b[HeaderLen():TotalLen()], excluding any link-layer padding.
func (b IPv4) Payload() []byte { return b[b.HeaderLen():b.TotalLen()] }

// IPv4Fields are the values EncodeIPv4 writes.
type IPv4Fields struct {
	TotalLen int
	ID       uint16
	DF       bool
	TTL      uint8
	Protocol uint8
	Src, Dst [4]byte
}

// EncodeIPv4 writes a 20-byte header (no options, TOS 0) into b[:20],
// checksum included. b must hold at least 20 bytes.
func EncodeIPv4(b []byte, f IPv4Fields) {
	b = b[:IPv4MinSize]
	b[0] = 4<<4 | IPv4MinSize/4
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:4], uint16(f.TotalLen))
	binary.BigEndian.PutUint16(b[4:6], f.ID)
	var flags uint16
	if f.DF {
		flags = ipv4FlagDF
	}
	binary.BigEndian.PutUint16(b[6:8], flags)
	b[8] = f.TTL
	b[9] = f.Protocol
	b[10], b[11] = 0, 0
	copy(b[12:16], f.Src[:])
	copy(b[16:20], f.Dst[:])
	binary.BigEndian.PutUint16(b[10:12], Checksum(b, 0))
}
