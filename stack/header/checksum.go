// Package header parses and builds IPv4, IPv6 (with its extension
// headers), ICMPv4, ICMPv6 and TCP headers without allocating. Views (IPv4, TCP, ICMPv4) are plain byte slices: call Validate
// first, after which every accessor stays in bounds.
package header

import (
	"encoding/binary"
	"math/bits"
)

// Checksum returns the Internet checksum (RFC 1071) of b added to the partial
// sum initial: the ones-complement of the folded sum, ready to store. Over
// data that already holds a correct checksum it returns 0.
func Checksum(b []byte, initial uint32) uint16 {
	return ^fold16(uint64(initial) + uint64(sum16(b)))
}

// PartialChecksum adds b to sum without the final fold and complement, for
// pseudo headers and data split over several buffers. Every chunk but the
// last must have even length: an odd chunk is padded with a zero byte
// (RFC 1071 section 4). The result is congruent modulo 0xffff to the full
// ones-complement sum, which is all Checksum needs.
func PartialChecksum(sum uint32, b []byte) uint32 {
	s := uint64(sum) + uint64(sum16(b))
	// s < 2^33 and its low word is small whenever the high bit is set, so
	// one end-around carry is enough to fit 32 bits.
	return uint32(s) + uint32(s>>32)
}

// PseudoHeaderSum is the partial sum of the IPv4 pseudo header that TCP and
// UDP checksums cover (RFC 9293 section 3.1): addresses, protocol, length.
func PseudoHeaderSum(src, dst [4]byte, proto uint8, length int) uint32 {
	s := uint32(src[0])<<8 | uint32(src[1])
	s += uint32(src[2])<<8 | uint32(src[3])
	s += uint32(dst[0])<<8 | uint32(dst[1])
	s += uint32(dst[2])<<8 | uint32(dst[3])
	s += uint32(proto)
	// The field is 16 bits; larger lengths cannot occur on the wire.
	s += uint32(uint16(length))
	return s
}

// sum16 returns the ones-complement sum of b folded to 16 bits, in network
// byte order. It adds little-endian 64-bit words with carry: RFC 1071
// section 2(B) shows the sum is byte-order independent up to a final swap,
// and 2^64 = 1 (mod 0xffff) lets wide words fold like 16-bit ones.
func sum16(b []byte) uint16 {
	var acc, c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[0:8]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[8:16]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[16:24]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[24:32]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[0:8]), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, c = bits.Add64(acc, uint64(binary.LittleEndian.Uint32(b[0:4])), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, c = bits.Add64(acc, uint64(binary.LittleEndian.Uint16(b[0:2])), c)
		b = b[2:]
	}
	if len(b) == 1 {
		// Odd trailing byte: the high byte of a zero-padded word, which
		// is the low byte in little-endian lanes.
		acc, c = bits.Add64(acc, uint64(b[0]), c)
	}
	acc, c = bits.Add64(acc, c, 0)
	acc += c // cannot overflow: a carry here leaves acc == 0
	s := fold16(acc)
	return s<<8 | s>>8
}

// fold16 folds a 64-bit ones-complement sum to 16 bits with end-around
// carries (RFC 1071 section 4.1).
func fold16(x uint64) uint16 {
	x = x>>32 + x&0xffffffff
	x = x>>32 + x&0xffffffff
	x = x>>16 + x&0xffff
	x = x>>16 + x&0xffff
	return uint16(x)
}

// TCPChecksumValid checks seg (TCP header and payload) against the pseudo
// header for src and dst.
func TCPChecksumValid(src, dst [4]byte, seg []byte) bool {
	return Checksum(seg, PseudoHeaderSum(src, dst, ProtoTCP, len(seg))) == 0
}

// The same three for either IP version: pseudo is the pseudo-header sum
// (PseudoHeaderSum or PseudoHeaderSum6) for the segment's length.

// ChecksumValidWith checks a TCP or UDP segment against its pseudo header.
func ChecksumValidWith(seg []byte, pseudo uint32) bool { return Checksum(seg, pseudo) == 0 }

// SetChecksumAt zeroes the 2-byte checksum field at off, then computes and
// stores the checksum over seg and the pseudo header (TCP: off 16; UDP: 6).
func SetChecksumAt(seg []byte, off int, pseudo uint32) {
	seg[off], seg[off+1] = 0, 0
	binary.BigEndian.PutUint16(seg[off:off+2], Checksum(seg, pseudo))
}

// SetPseudoChecksumAt stores only the folded pseudo-header sum, for a
// device that offloads the rest (CHECKSUM_PARTIAL).
func SetPseudoChecksumAt(seg []byte, off int, pseudo uint32) {
	binary.BigEndian.PutUint16(seg[off:off+2], fold16(uint64(pseudo)))
}

// SetTCPChecksum zeroes the checksum field of seg (header and payload), then
// computes and stores the checksum. Segments shorter than a TCP header are
// left untouched.
func SetTCPChecksum(seg []byte, src, dst [4]byte) {
	if len(seg) < TCPMinSize {
		return
	}
	seg[16], seg[17] = 0, 0
	c := Checksum(seg, PseudoHeaderSum(src, dst, ProtoTCP, len(seg)))
	binary.BigEndian.PutUint16(seg[16:18], c)
}

// SetTCPPseudoChecksum stores in seg's checksum field only the folded
// pseudo-header sum, not complemented: what Linux leaves in a
// CHECKSUM_PARTIAL segment (__tcp_v4_send_check) for a device that
// offloads the rest of the sum.
func SetTCPPseudoChecksum(seg []byte, src, dst [4]byte) {
	if len(seg) < TCPMinSize {
		return
	}
	binary.BigEndian.PutUint16(seg[16:18], fold16(uint64(PseudoHeaderSum(src, dst, ProtoTCP, len(seg)))))
}
