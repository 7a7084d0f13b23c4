package header

import (
	"encoding/binary"
	"errors"
)

// TCP flag bits (byte 13 of the TCP header, RFC 9293 section 3.1; ECE and
// CWR from RFC 3168).
const (
	FIN uint8 = 1 << iota
	SYN
	RST
	PSH
	ACK
	URG
	ECE
	CWR
)

// TCP is a view of a TCP segment (header and payload). Call Validate before
// the accessors.
type TCP []byte

// Errors returned by TCP.Validate.
var (
	ErrTCPShort      = errors.New("header: TCP segment shorter than 20 bytes")
	ErrTCPDataOffset = errors.New("header: TCP data offset below 5 or past the end of the segment")
)

// Validate checks len(b) >= 20 and 20 <= data offset*4 <= len(b).
func (b TCP) Validate() error {
	if len(b) < TCPMinSize {
		return ErrTCPShort
	}
	if hl := b.HeaderLen(); hl < TCPMinSize || hl > len(b) {
		return ErrTCPDataOffset
	}
	return nil
}

// SrcPort is the source port.
func (b TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(b[0:2]) }

// DstPort is the destination port.
func (b TCP) DstPort() uint16 { return binary.BigEndian.Uint16(b[2:4]) }

// Seq is the sequence number.
func (b TCP) Seq() uint32 { return binary.BigEndian.Uint32(b[4:8]) }

// Ack is the acknowledgment number (meaningful only with the ACK flag).
func (b TCP) Ack() uint32 { return binary.BigEndian.Uint32(b[8:12]) }

// HeaderLen is the data offset in bytes (data offset * 4).
func (b TCP) HeaderLen() int { return int(b[12]>>4) * 4 }

// Flags is byte 13: CWR ECE URG ACK PSH RST SYN FIN.
func (b TCP) Flags() uint8 { return b[13] }

// Reserved is the low nibble of byte 12: three reserved bits and AE
// (RFC 9293 section 3.1; AE is AccECN's); packetdrill compares them.
func (b TCP) Reserved() uint8 { return b[12] & 0x0f }

// Window is the raw, unscaled window field.
func (b TCP) Window() uint16 { return binary.BigEndian.Uint16(b[14:16]) }

// Checksum is the stored checksum field.
func (b TCP) Checksum() uint16 { return binary.BigEndian.Uint16(b[16:18]) }

// Urgent is the urgent pointer.
func (b TCP) Urgent() uint16 { return binary.BigEndian.Uint16(b[18:20]) }

// Options is b[20:HeaderLen()]; pass it to ParseTCPOptions.
func (b TCP) Options() []byte { return b[TCPMinSize:b.HeaderLen()] }

// Payload is the data after the header.
func (b TCP) Payload() []byte { return b[b.HeaderLen():] }

// TCPFields are the values EncodeTCP writes.
type TCPFields struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window           uint16
	Urgent           uint16
}

// EncodeTCP writes the fixed 20-byte header into b[:20] with data offset
// (20+optLen)/4; optLen must be a multiple of 4, at most MaxOptionsLen. The
// options themselves go separately into b[20:20+optLen]. The checksum is
// left zero for SetTCPChecksum. b must hold at least 20 bytes.
func EncodeTCP(b []byte, f TCPFields, optLen int) {
	b = b[:TCPMinSize]
	binary.BigEndian.PutUint16(b[0:2], f.SrcPort)
	binary.BigEndian.PutUint16(b[2:4], f.DstPort)
	binary.BigEndian.PutUint32(b[4:8], f.Seq)
	binary.BigEndian.PutUint32(b[8:12], f.Ack)
	b[12] = uint8((TCPMinSize+optLen)/4) << 4
	b[13] = f.Flags
	binary.BigEndian.PutUint16(b[14:16], f.Window)
	b[16], b[17] = 0, 0
	binary.BigEndian.PutUint16(b[18:20], f.Urgent)
}
