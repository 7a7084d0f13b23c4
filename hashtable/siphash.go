package hashtable

import (
	"encoding/binary"
	"math/bits"
)

// sipKey is a 128-bit SipHash key.
type sipKey struct{ k0, k1 uint64 }

func newSipKey(seed [16]byte) sipKey {
	return sipKey{binary.LittleEndian.Uint64(seed[0:8]), binary.LittleEndian.Uint64(seed[8:16])}
}

// sum is SipHash-2-4 (Aumasson and Bernstein) of m. RFC 6056 section 3.3.3
// asks for a keyed hash whose output an attacker cannot predict without the
// secret; SipHash is the keyed PRF Linux uses for the same job
// (secure_ipv4_port_ephemeral). hash/maphash cannot be keyed with a caller
// supplied seed, hence this small implementation. It does not allocate.
func (k sipKey) sum(m []byte) uint64 {
	v0 := k.k0 ^ 0x736f6d6570736575
	v1 := k.k1 ^ 0x646f72616e646f6d
	v2 := k.k0 ^ 0x6c7967656e657261
	v3 := k.k1 ^ 0x7465646279746573

	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}

	n := len(m)
	for len(m) >= 8 {
		w := binary.LittleEndian.Uint64(m)
		v3 ^= w
		round()
		round()
		v0 ^= w
		m = m[8:]
	}
	w := uint64(n) << 56
	for i, c := range m {
		w |= uint64(c) << (8 * i)
	}
	v3 ^= w
	round()
	round()
	v0 ^= w

	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}
