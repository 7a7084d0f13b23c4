package stack

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
}

const ringMinSize = 4096

func newRing(limit int) ring { return ring{limit: limit} }

func (r *ring) Len() int { return r.n }

// Free is how many more bytes fit, counting unallocated capacity.
func (r *ring) Free() int { return r.limit - r.n }

// grow makes room for need bytes from the head, preserving content. Bytes
// beyond n (out-of-order data) are preserved too, up to the old capacity.
func (r *ring) grow(need int) {
	if need <= len(r.buf) {
		return
	}
	size := len(r.buf)
	if size < ringMinSize {
		size = ringMinSize
	}
	for size < need {
		size *= 2
	}
	if size > r.limit {
		size = r.limit
	}
	nb := make([]byte, size)
	if len(r.buf) > 0 {
		// Unroll the whole old ring starting at head.
		k := copy(nb, r.buf[r.head:])
		copy(nb[k:], r.buf[:r.head])
	}
	r.buf = nb
	r.head = 0
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
	if r.n == 0 {
		r.buf, r.head = nil, 0
	}
}
