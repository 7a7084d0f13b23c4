package stack

import "sync"

// The link under IP: the interfaces a device implements, and the queue of
// packets that the stack's lock writes out after releasing itself.

// Link is where IPv4 packets enter and leave the stack: a TUN device in
// production, an in-memory pipe in tests.
type Link interface {
	// ReadPacket blocks until a packet arrives and copies it into b.
	ReadPacket(b []byte) (int, error)
	// WritePacket sends one packet; b is not retained after it returns.
	WritePacket(b []byte) error
	// MTU is the largest IPv4 packet the link carries.
	MTU() int
	Close() error
}

// An OffloadLink is a Link that moves TCP segments larger than its MTU and
// leaves checksums to the kernel, as a NIC with TSO and checksum offload
// does: a TUN device with IFF_VNET_HDR. The stack then reads and writes up
// to 64 KB of a connection's data per packet, not one MSS.
type OffloadLink interface {
	Link
	// ReadOffload is ReadPacket that also reports csumOK: the transport
	// checksum need not (and, being partial, cannot) be checked.
	ReadOffload(b []byte) (n int, csumOK bool, err error)
	// WriteGSO sends one TCP/IPv4 packet that leaves as segments of mss
	// payload bytes each; its TCP checksum field holds only the
	// pseudo-header sum (header.SetTCPPseudoChecksum).
	WriteGSO(pkt []byte, mss int) error
	// GSOMaxSize is the largest packet either way; at most the MTU means
	// no offload.
	GSOMaxSize() int
}

// txQueue holds the packets for the link while the lock is held; Unlock
// writes them (see stackLock), one flusher at a time so that order is kept.
type txQueue struct {
	q, spare    []txPacket
	free, freeB [][]byte // MTU-sized and GSO-sized buffers
	flushing    bool
}

// txPacket is a packet waiting for the link; gso > 0 is the MSS the link
// cuts it into (OffloadLink.WriteGSO).
type txPacket struct {
	b   []byte
	gso int
}

// stackLock is the stack's mutex. Its Unlock first processes the packets
// the stack sent to its own address (so no caller has to), then writes the
// packets queued for the link after releasing it, so that no link write (a
// syscall on a TUN device) ever blocks the read loop or the application
// behind the lock. Only one goroutine flushes at a time and it takes the queue in
// order, so packets leave in the order the stack made them.
type stackLock struct {
	mu sync.Mutex
	s  *Stack
}

func (l *stackLock) Lock() { l.mu.Lock() }

func (l *stackLock) Unlock() {
	s := l.s
	for {
		// Our own packets first (B16): what they make joins the queue.
		s.drainLoopLocked()
		if s.batch != nil {
			// The embedder takes the queue itself (BatchLink.Read).
			if len(s.tx.q) > 0 {
				s.batch.signal()
			}
			l.mu.Unlock()
			return
		}
		if s.tx.flushing || len(s.tx.q) == 0 {
			l.mu.Unlock()
			return
		}
		s.tx.flushing = true
		batch := s.tx.q
		s.tx.q = s.tx.spare[:0]
		l.mu.Unlock()
		for _, p := range batch {
			// A write error (link gone, buffer full) is a lost packet:
			// TCP retransmits, exactly as for loss on the wire.
			if p.gso > 0 {
				_ = s.gso.WriteGSO(p.b, p.gso)
			} else {
				_ = s.link.WritePacket(p.b)
			}
		}
		l.mu.Lock()
		for i, p := range batch {
			if cap(p.b) > s.mtu {
				if len(s.tx.freeB) < txFreeBMax {
					s.tx.freeB = append(s.tx.freeB, p.b[:0])
				}
			} else if len(s.tx.free) < txFreeMax {
				s.tx.free = append(s.tx.free, p.b[:0])
			}
			batch[i] = txPacket{}
		}
		s.tx.spare = batch[:0]
		s.tx.flushing = false
	}
}

// tsoMax is the largest TCP packet the link cuts into segments itself
// (TSO), or 0 when it does not: what TCP asks before building one.
func (s *Stack) tsoMax() int {
	if s.gso == nil {
		return 0
	}
	return s.gso.GSOMaxSize()
}
