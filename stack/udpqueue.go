package stack

import (
	"net/netip"

	"ustack/hashtable"
)

// udpDatagram is one received datagram and where it came from.
type udpDatagram struct {
	from   netip.AddrPort
	to     hashtable.Addr
	toPort uint16 // for a forwarded flow (forwardudp.go)
	data   []byte
}

// dgramQueue is a datagram socket's receive queue. It reuses what it
// holds: the slots of taken datagrams, and up to dgramSpares buffers of
// dgramBufSize bytes, so that a steady flow of datagrams up to that size
// allocates nothing; larger ones get a buffer of their own.
type dgramQueue struct {
	items []udpDatagram
	head  int      // items[head:] are queued
	bytes int      // payload bytes queued, counted against SO_RCVBUF
	spare [][]byte // buffers of cap dgramBufSize for the next datagrams
}

const (
	dgramBufSize = 2048 // an MTU's worth, rounded up
	dgramSpares  = 4
	// dgramKeepSlots bounds the slots an emptied queue keeps for reuse.
	dgramKeepSlots = 64
)

func (q *dgramQueue) len() int { return len(q.items) - q.head }

// fits reports whether a datagram of n bytes may join the queue: under
// limit bytes (B72) and maxUDPQueued datagrams.
func (q *dgramQueue) fits(n, limit int) bool {
	return q.len() < maxUDPQueued && q.bytes+n <= limit
}

// push queues a copy of payload.
func (q *dgramQueue) push(from netip.AddrPort, to hashtable.Addr, payload []byte) {
	q.pushTo(from, to, 0, payload)
}

// pushTo is push keeping the destination port too.
func (q *dgramQueue) pushTo(from netip.AddrPort, to hashtable.Addr, toPort uint16, payload []byte) {
	if q.head > 0 && len(q.items) == cap(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	var buf []byte
	if n := len(q.spare); n > 0 && len(payload) <= dgramBufSize {
		buf, q.spare = q.spare[n-1][:len(payload)], q.spare[:n-1]
	} else {
		buf = make([]byte, len(payload), max(len(payload), dgramBufSize))
	}
	copy(buf, payload)
	q.items = append(q.items, udpDatagram{from: from, to: to, toPort: toPort, data: buf})
	q.bytes += len(payload)
}

// front is the oldest datagram; the queue must not be empty.
func (q *dgramQueue) front() *udpDatagram { return &q.items[q.head] }

// pop drops the oldest datagram, keeping its buffer for reuse.
func (q *dgramQueue) pop() {
	d := q.items[q.head]
	q.items[q.head] = udpDatagram{}
	q.head++
	q.bytes -= len(d.data)
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
		if cap(q.items) > dgramKeepSlots {
			q.items = nil // a burst's slots go back to the garbage collector
		}
	}
	if cap(d.data) == dgramBufSize && len(q.spare) < dgramSpares {
		q.spare = append(q.spare, d.data)
	}
}

// reset drops everything, buffers included.
func (q *dgramQueue) reset() { *q = dgramQueue{} }
