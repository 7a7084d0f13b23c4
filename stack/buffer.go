package stack

import (
	"math/bits"
	"sync"
)

// Backing arrays for rings come from size-classed pools (powers of two from
// 4 KiB to 64 MiB), so a connection that drains its buffer can give the
// memory back and take it again without allocating (zero allocations per
// packet in steady state).
const (
	minClassShift = 12
	maxClassShift = 26
)

var bufPools [maxClassShift - minClassShift + 1]sync.Pool

func classOf(size int) int {
	if size <= 1<<minClassShift {
		return 0
	}
	return bits.Len(uint(size-1)) - minClassShift
}

// getBuf returns an array of at least size bytes from the pools.
func getBuf(size int) []byte {
	c := classOf(size)
	if c >= len(bufPools) {
		return make([]byte, size)
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return (*p)[:cap(*p)]
	}
	return make([]byte, 1<<(c+minClassShift))
}

// putBuf gives an array from getBuf back.
func putBuf(b []byte) {
	b = b[:cap(b)]
	c := classOf(len(b))
	if c >= len(bufPools) || len(b) != 1<<(c+minClassShift) {
		return
	}
	bufPools[c].Put(&b)
}

// ring is a byte FIFO that grows on demand up to a fixed limit, so an idle
// connection costs almost no memory while a busy one gets its full buffer.
//
// Besides the readable bytes [0, Len), the receive side stores out-of-order
// data beyond them with writeAt and makes it readable with commit.
type ring struct {
	buf   []byte
	head  int // index of the first readable byte
	n     int // readable bytes
	limit int // capacity never exceeds this
	hint  int // the size last used: regrow to it at once after release
	// pinned: a slice of buf is in use outside the stack's lock (Conn.WriteTo),
	// so an array given up by grow or release goes to the GC, not the pools.
	pinned bool
}

const ringMinSize = 1 << minClassShift

func newRing(limit int) ring { return ring{limit: limit} }

func (r *ring) Len() int { return r.n }

// Free is how many more bytes fit, counting unallocated capacity.
func (r *ring) Free() int { return max(r.limit-r.n, 0) }

// grow makes room for need bytes from the head, preserving content. Bytes
// beyond n (out-of-order data) are preserved too, up to the old capacity.
func (r *ring) grow(need int) {
	if need <= len(r.buf) {
		return
	}
	size := max(len(r.buf), ringMinSize, r.hint)
	for size < need {
		size *= 2
	}
	size = min(size, r.limit)
	nb := getBuf(size)[:size]
	if len(r.buf) > 0 {
		// Unroll the whole old ring starting at head.
		k := copy(nb, r.buf[r.head:])
		copy(nb[k:], r.buf[:r.head])
		if !r.pinned {
			putBuf(r.buf)
		}
	}
	r.buf = nb
	r.head = 0
	r.hint = size
}

// Write appends as much of p as fits and returns how many bytes it took.
func (r *ring) Write(p []byte) int {
	if len(p) > r.Free() {
		p = p[:r.Free()]
	}
	if len(p) == 0 {
		return 0
	}
	r.writeAt(0, p)
	r.n += len(p)
	return len(p)
}

// writeAt stores p at offset off past the readable bytes (off+len(p) must
// fit in Free).
func (r *ring) writeAt(off int, p []byte) {
	r.grow(r.n + off + len(p))
	pos := (r.head + r.n + off) % len(r.buf)
	k := copy(r.buf[pos:], p)
	copy(r.buf, p[k:])
}

// commit makes k bytes stored by writeAt readable.
func (r *ring) commit(k int) { r.n += k }

// Read copies out and consumes up to len(p) bytes.
func (r *ring) Read(p []byte) int {
	k := r.Peek(p, 0)
	r.Discard(k)
	return k
}

// Peek copies bytes starting off bytes into the readable data, without
// consuming them.
func (r *ring) Peek(p []byte, off int) int {
	if off >= r.n {
		return 0
	}
	if len(p) > r.n-off {
		p = p[:r.n-off]
	}
	pos := (r.head + off) % len(r.buf)
	k := copy(p, r.buf[pos:])
	copy(p[k:], r.buf[:len(p)-k])
	return len(p)
}

// Discard drops the first k readable bytes.
func (r *ring) Discard(k int) {
	if k > r.n {
		k = r.n
	}
	r.n -= k
	if len(r.buf) > 0 {
		r.head = (r.head + k) % len(r.buf)
	}
}

// release gives the memory of an empty ring back; the caller knows no
// out-of-order data is stored beyond the readable bytes.
func (r *ring) release() {
	if r.n == 0 && r.buf != nil {
		if !r.pinned {
			putBuf(r.buf)
		}
		r.buf, r.head = nil, 0
	}
}

// readable returns up to max readable bytes in place, in one or two
// slices (the second when they wrap around the end of the array).
func (r *ring) readable(max int) (a, b []byte) {
	n := min(r.n, max)
	if n == 0 {
		return nil, nil
	}
	end := r.head + n
	if end <= len(r.buf) {
		return r.buf[r.head:end], nil
	}
	return r.buf[r.head:], r.buf[:end-len(r.buf)]
}
