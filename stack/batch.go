package stack

import (
	"errors"
	"net"
	"sync"
	"time"
)

// BatchLink is the link for an embedder that moves the packets itself: a
// VPN client's tunnel (wireguard-go), a proxy's packet source. The embedder
// writes what arrives with Write and takes what the stack sends with Read,
// a batch per call, in the shape of wireguard-go's tun.Device.
//
// Nothing is copied on the way in: Write hands each packet to IP input
// where it lies, under one lock per batch. A flow's in-order segments in
// one batch are ACKed once at its end (up to every 64 KB), as Linux ACKs
// the one packet GRO makes of them. On the way out a packet waits
// in the stack's transmit queue and Read copies it once, into the caller's
// buffer. The queue is bounded: while the embedder does not read, packets
// past BatchQueueLen are dropped and counted (link.drop.tx_queue_full), as a
// full device queue drops them, and TCP retransmits.
type BatchLink struct {
	mtu    int
	s      *Stack        // the stack over it, set by New
	ready  chan struct{} // a packet is waiting for Read
	closed chan struct{}
	once   sync.Once
}

// BatchQueueLen bounds the packets a BatchLink holds for Read.
const BatchQueueLen = 4096

// NewBatchLink returns a batched link with the given MTU, for New.
func NewBatchLink(mtu int) *BatchLink {
	return &BatchLink{mtu: mtu, ready: make(chan struct{}, 1), closed: make(chan struct{})}
}

var errBatchLinkUnused = errors.New("stack: a BatchLink moves packets with Read and Write, not ReadPacket and WritePacket")

// errBatchLinkFree: Read or Write before New took the link.
var errBatchLinkFree = errors.New("stack: the BatchLink is not under a stack yet (give it to New)")

// ReadPacket is not used: the stack runs no read loop over a BatchLink
// (packets come in through Write).
func (l *BatchLink) ReadPacket([]byte) (int, error) { return 0, errBatchLinkUnused }

// WritePacket is not used: the stack leaves its packets for Read.
func (l *BatchLink) WritePacket([]byte) error { return errBatchLinkUnused }

// MTU is the largest packet either way.
func (l *BatchLink) MTU() int { return l.mtu }

// BatchSize is how many packets a Read or Write call moves at most, as
// wireguard-go's conn.IdealBatchSize.
func (l *BatchLink) BatchSize() int { return 128 }

// Close makes Read and Write fail with net.ErrClosed; Stack.Close calls it.
func (l *BatchLink) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// Write gives the stack packets that arrived for it, each bufs[i][offset:],
// as IP input does for a device. It keeps none of them. A malformed packet
// is dropped and counted like one from a device, so Write reports every
// packet taken: len(bufs).
func (l *BatchLink) Write(bufs [][]byte, offset int) (int, error) {
	s := l.s
	if s == nil {
		return 0, errBatchLinkFree
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, net.ErrClosed
	}
	s.inputBatchLocked(s.clock.Now(), bufs, offset)
	return len(bufs), nil
}

// inputBatchLocked is IP input for each bufs[i][offset:], then the ACKs
// the batch owes (rcv.go, scheduleACK).
func (s *Stack) inputBatchLocked(now time.Time, bufs [][]byte, offset int) {
	s.batching = true
	for _, b := range bufs {
		if offset > len(b) {
			continue
		}
		pkt := b[offset:]
		if s.opts.Packet != nil {
			s.opts.Packet(false, pkt)
		}
		s.netInput(now, pkt, false)
	}
	s.batching = false
	for i, e := range s.batchACKs {
		e.rcv.ackBatch = false
		if e.rcv.ackPending && !e.gone {
			e.sendACK(now)
		}
		s.batchACKs[i] = nil
	}
	s.batchACKs = s.batchACKs[:0]
}

// groMax is the most a GRO packet holds (GRO_LEGACY_MAX_SIZE): a batch's
// in-order data is ACKed at least this often.
const groMax = 65536

// Read waits for the stack to send something, then copies up to len(bufs)
// waiting packets, each into bufs[i][offset:], setting sizes[i]; it
// returns how many. A packet longer than its buffer is dropped and counted
// (link.drop.short_buffer): give buffers of MTU bytes past offset.
func (l *BatchLink) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	s := l.s
	if s == nil {
		return 0, errBatchLinkFree
	}
	for {
		s.mu.Lock()
		n := l.takeLocked(bufs, sizes, offset)
		closed := s.closed
		s.mu.Unlock()
		if n > 0 {
			return n, nil
		}
		if closed {
			return 0, net.ErrClosed
		}
		select {
		case <-l.ready:
		case <-l.closed:
			return 0, net.ErrClosed
		}
	}
}

// takeLocked moves waiting packets into bufs, oldest first, and gives their
// buffers back to the transmit pool.
func (l *BatchLink) takeLocked(bufs [][]byte, sizes []int, offset int) int {
	s := l.s
	q := s.tx.q
	n, k := 0, 0
	for ; k < len(q) && n < len(bufs) && n < len(sizes); k++ {
		p := q[k].b
		if offset > len(bufs[n]) || len(bufs[n])-offset < len(p) {
			s.inc(cntLinkShortBuffer)
		} else {
			sizes[n] = copy(bufs[n][offset:], p)
			n++
		}
		if len(s.tx.free) < txFreeMax {
			s.tx.free = append(s.tx.free, p[:0])
		}
	}
	rest := copy(q, q[k:])
	clear(q[rest:])
	s.tx.q = q[:rest]
	if rest > 0 {
		l.signal() // another reader, or the next call, takes the rest
	}
	return n
}

// signal tells a waiting Read that packets wait.
func (l *BatchLink) signal() {
	select {
	case l.ready <- struct{}{}:
	default:
	}
}
