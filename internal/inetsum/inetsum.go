// Package inetsum is the Internet checksum (RFC 1071) as the tests compute
// it to build packets, independently of the stack's own code.
package inetsum

import "encoding/binary"

// Checksum is the Internet checksum of b, starting from the partial sum
// sum (a pseudo-header's, or 0).
func Checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
