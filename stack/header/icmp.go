package header

import "encoding/binary"

// ICMPv4 is a view of an ICMP message (RFC 792), the IPv4 payload.
type ICMPv4 []byte

// ICMP message types this stack handles (RFC 792).
const (
	ICMPEchoReply   = 0
	ICMPEchoRequest = 8
)

// Type is the message type, or 0 if b is empty.
func (b ICMPv4) Type() uint8 {
	if len(b) < 1 {
		return 0
	}
	return b[0]
}

// Code is the message code, or 0 if b is too short.
func (b ICMPv4) Code() uint8 {
	if len(b) < 2 {
		return 0
	}
	return b[1]
}

// EchoID is the identifier of an echo message, or 0 if b is too short.
func (b ICMPv4) EchoID() uint16 {
	if len(b) < ICMPv4MinSize {
		return 0
	}
	return binary.BigEndian.Uint16(b[4:6])
}

// EchoSeq is the sequence number of an echo message, or 0 if b is too short.
func (b ICMPv4) EchoSeq() uint16 {
	if len(b) < ICMPv4MinSize {
		return 0
	}
	return binary.BigEndian.Uint16(b[6:8])
}

// ICMPChecksumValid checks the checksum over the whole message; anything
// shorter than the 8-byte ICMP header is invalid.
func ICMPChecksumValid(b []byte) bool {
	return len(b) >= ICMPv4MinSize && Checksum(b, 0) == 0
}

// MakeEchoReply turns an echo request message in place into a reply (type 0,
// code 0, same identifier, sequence and data, RFC 792) and recomputes its
// checksum. Messages shorter than 8 bytes are left untouched.
func MakeEchoReply(msg []byte) {
	if len(msg) < ICMPv4MinSize {
		return
	}
	msg[0] = ICMPEchoReply
	msg[1] = 0
	msg[2], msg[3] = 0, 0
	binary.BigEndian.PutUint16(msg[2:4], Checksum(msg, 0))
}

// ICMP error types (RFC 792).
const (
	ICMPDestUnreach  = 3
	ICMPTimeExceeded = 11
	ICMPParamProblem = 12
)

// PutICMPError writes into b an ICMP error message of type typ and code
// about the datagram orig (its IPv4 header and the first 8 bytes after it
// are quoted, RFC 792); info is the 32-bit field after the checksum (the
// next-hop MTU in its low 16 bits for "fragmentation needed", RFC 1191).
// It returns the message length; b must hold ICMPv4MinSize plus the quote.
func PutICMPError(b []byte, typ, code uint8, info uint32, orig []byte) int {
	quote := min(len(orig), IPv4(orig).HeaderLen()+8)
	n := ICMPv4MinSize + quote
	b = b[:n]
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint16(b[2:4], 0)
	binary.BigEndian.PutUint32(b[4:8], info)
	copy(b[ICMPv4MinSize:], orig[:quote])
	binary.BigEndian.PutUint16(b[2:4], Checksum(b, 0))
	return n
}
