package stack

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"syscall"

	"ustack/stack/header"
)

// MemLink is an in-memory Link for tests and the drill: what the stack
// writes is queued for the test to take with Outbound or Next; what the
// test wants the stack to receive goes through Stack.Inject (or Deliver,
// for a started stack's read loop).
type MemLink struct {
	mu     sync.Mutex
	mtu    int
	out    [][]byte
	in     chan inPacket
	closed chan struct{}
	once   sync.Once
	// OnWrite, when set, sees each packet as the stack writes it, in order
	// (after the stack released its lock; pkt is valid only during the call).
	OnWrite func(pkt []byte)

	offload   bool
	gsoWrites []int // payload bytes of each WriteGSO
}

type inPacket struct {
	b      []byte
	csumOK bool
}

// NewMemLink returns a link with the given MTU.
func NewMemLink(mtu int) *MemLink {
	return &MemLink{mtu: mtu, in: make(chan inPacket, 1024), closed: make(chan struct{})}
}

// ReadPacket returns packets given to Deliver.
func (l *MemLink) ReadPacket(b []byte) (int, error) {
	n, _, err := l.ReadOffload(b)
	return n, err
}

// ReadOffload returns packets given to Deliver or DeliverOffload.
func (l *MemLink) ReadOffload(b []byte) (int, bool, error) {
	select {
	case p := <-l.in:
		return copy(b, p.b), p.csumOK, nil
	case <-l.closed:
		return 0, false, net.ErrClosed
	}
}

// Deliver queues a packet for the stack's read loop.
func (l *MemLink) Deliver(pkt []byte) { l.DeliverOffload(pkt, false) }

// DeliverOffload is Deliver for a packet whose transport checksum the link
// vouches for (see OffloadLink.ReadOffload).
func (l *MemLink) DeliverOffload(pkt []byte, csumOK bool) {
	select {
	case l.in <- inPacket{append([]byte(nil), pkt...), csumOK}:
	case <-l.closed:
	}
}

// EnableOffload makes the link an OffloadLink, like a TUN device with TSO
// and checksum offload: call it before handing the link to a stack.
// WriteGSO then cuts each packet into segments as the kernel does
// (tcp_gso_segment), each with its checksum finished, and passes them on
// as WritePacket would. GSOWrites reports what it was given.
func (l *MemLink) EnableOffload() { l.offload = true }

// GSOMaxSize is 65535 with offload, else the MTU (no offload).
func (l *MemLink) GSOMaxSize() int {
	if l.offload {
		return 65535
	}
	return l.mtu
}

// GSOWrites returns the payload size of each WriteGSO so far.
func (l *MemLink) GSOWrites() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.gsoWrites...)
}

// WriteGSO cuts pkt, a TCP/IPv4 packet whose checksum field holds the
// pseudo-header sum of the whole, into segments of mss payload bytes:
// sequence numbers advance, PSH and FIN stay on the last, IP IDs count up,
// and each checksum is the partial one adjusted for the segment's length
// and finished over it, so a wrong partial sum shows as bad segments.
func (l *MemLink) WriteGSO(pkt []byte, mss int) error {
	ip := header.IPv4(pkt)
	if !l.offload || mss <= 0 || ip.Validate() != nil || ip.Protocol() != header.ProtoTCP {
		return errors.Join(errors.New("memlink: WriteGSO: no offload, or not TCP/IPv4"), syscall.EINVAL)
	}
	tcp := header.TCP(ip.Payload())
	if tcp.Validate() != nil {
		return syscall.EINVAL
	}
	hl := tcp.HeaderLen()
	payload := tcp[hl:]
	l.mu.Lock()
	l.gsoWrites = append(l.gsoWrites, len(payload))
	l.mu.Unlock()
	// The pseudo-header sum without its length: a segment adds its own.
	partial := uint32(tcp.Checksum()) + 0xffff - uint32(uint16(len(tcp)))
	seg := make([]byte, 0, header.IPv4MinSize+hl+mss)
	for off := 0; ; off += mss {
		chunk := payload[off:min(off+mss, len(payload))]
		p := append(append(append(seg[:0], pkt[:header.IPv4MinSize]...), tcp[:hl]...), chunk...)
		t := header.TCP(p[header.IPv4MinSize:])
		binary.BigEndian.PutUint32(t[4:], tcp.Seq()+uint32(off))
		if off+mss < len(payload) {
			t[13] &^= flagPSH | flagFIN
		}
		t[16], t[17] = 0, 0
		binary.BigEndian.PutUint16(t[16:], header.Checksum(t, partial+uint32(len(t))))
		header.EncodeIPv4(p, header.IPv4Fields{TotalLen: len(p), ID: ip.ID() + uint16(off/mss), DF: ip.DF(),
			TTL: ip.TTL(), Protocol: header.ProtoTCP, Src: ip.Src(), Dst: ip.Dst()})
		if err := l.WritePacket(p); err != nil {
			return err
		}
		if off+mss >= len(payload) {
			return nil
		}
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
