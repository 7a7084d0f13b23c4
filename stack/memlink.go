package stack

import (
	"net"
	"sync"
)

// MemLink is an in-memory Link for tests and the drill: what the stack
// writes is queued for the test to take with Outbound or Next; what the
// test wants the stack to receive goes through Stack.Inject (or Deliver,
// for a started stack's read loop).
type MemLink struct {
	mu     sync.Mutex
	mtu    int
	out    [][]byte
	in     chan []byte
	closed chan struct{}
	once   sync.Once
	// OnWrite, when set, sees each packet as the stack writes it, in order
	// (after the stack released its lock; pkt is valid only during the call).
	OnWrite func(pkt []byte)
}

// NewMemLink returns a link with the given MTU.
func NewMemLink(mtu int) *MemLink {
	return &MemLink{mtu: mtu, in: make(chan []byte, 1024), closed: make(chan struct{})}
}

// ReadPacket returns packets given to Deliver.
func (l *MemLink) ReadPacket(b []byte) (int, error) {
	select {
	case p := <-l.in:
		return copy(b, p), nil
	case <-l.closed:
		return 0, net.ErrClosed
	}
}

// Deliver queues a packet for the stack's read loop.
func (l *MemLink) Deliver(pkt []byte) {
	select {
	case l.in <- append([]byte(nil), pkt...):
	case <-l.closed:
	}
}

// WritePacket records a copy of the packet.
func (l *MemLink) WritePacket(b []byte) error {
	if l.OnWrite != nil {
		l.OnWrite(b)
		return nil
	}
	l.mu.Lock()
	l.out = append(l.out, append([]byte(nil), b...))
	l.mu.Unlock()
	return nil
}

// Outbound takes every packet written so far.
func (l *MemLink) Outbound() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.out
	l.out = nil
	return out
}

func (l *MemLink) MTU() int { return l.mtu }

func (l *MemLink) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}
