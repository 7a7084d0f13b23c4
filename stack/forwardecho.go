package stack

import (
	"encoding/binary"
	"net/netip"

	"ustack/hashtable"
	"ustack/stack/header"
)

// The echo forwarder: with Options.Promiscuous, an echo request to an
// address that is not the stack's is answered as if from that address
// (the default), or, with an echo forwarder, handed to the embedder to
// answer only when the real destination does: real ICMP instead of a
// faked reply.

// EchoRequest is an ICMP (or ICMPv6) echo request to another address.
type EchoRequest struct {
	s        *Stack
	src, dst hashtable.Addr
	id, seq  uint16
	data     []byte
}

type echoForwarder struct {
	handler    func(*EchoRequest)
	maxPending int
	pending    int // handlers running
}

// SetEchoForwarder hands each echo request to an address not the stack's
// to handler, in a goroutine of its own, instead of answering it; the
// handler calls Reply when the destination answered. At most maxPending
// handlers run at once; requests past that are dropped and counted
// (icmp.forward.drop.pending_full), as a busy router drops them. nil:
// answer them locally again.
func (s *Stack) SetEchoForwarder(maxPending int, handler func(*EchoRequest)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fwdEcho = nil
	if handler != nil && !s.closed {
		s.fwdEcho = &echoForwarder{handler: handler, maxPending: max(maxPending, 1)}
	}
}

// forwardEcho offers the echo request msg from src to dst to the
// forwarder; it reports whether the forwarder took it.
func (s *Stack) forwardEcho(src, dst hashtable.Addr, msg []byte) bool {
	f := s.fwdEcho
	if f == nil || len(msg) < header.ICMPv4MinSize {
		return false
	}
	if f.pending >= f.maxPending {
		s.inc(cntICMPForwardPendingFull)
		return true
	}
	r := &EchoRequest{s: s, src: src, dst: dst,
		id: binary.BigEndian.Uint16(msg[4:6]), seq: binary.BigEndian.Uint16(msg[6:8]),
		data: append([]byte(nil), msg[8:]...)}
	f.pending++
	s.inc(cntICMPForwardRequests)
	go func() {
		defer func() {
			s.mu.Lock()
			f.pending--
			s.mu.Unlock()
		}()
		f.handler(r)
	}()
	return true
}

// Src is the pinging client.
func (r *EchoRequest) Src() netip.Addr { return r.src.Netip() }

// Dst is the address it pings.
func (r *EchoRequest) Dst() netip.Addr { return r.dst.Netip() }

// ID and Seq are the request's identifier and sequence number.
func (r *EchoRequest) ID() uint16  { return r.id }
func (r *EchoRequest) Seq() uint16 { return r.seq }

// Data is the request's payload, which a reply echoes.
func (r *EchoRequest) Data() []byte { return r.data }

// Reply sends the client the echo reply, from Dst.
func (r *EchoRequest) Reply() {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	hl := netHdrLen(r.src)
	n := hl + header.ICMPv4MinSize + len(r.data)
	if n > s.mtu {
		return
	}
	pkt := s.txBuf[:n]
	m := pkt[hl:]
	m[1] = 0
	binary.BigEndian.PutUint16(m[4:6], r.id)
	binary.BigEndian.PutUint16(m[6:8], r.seq)
	copy(m[8:], r.data)
	if r.src.Is4() {
		m[0] = header.ICMPEchoReply
		m[2], m[3] = 0, 0
		binary.BigEndian.PutUint16(m[2:4], header.Checksum(m, 0))
		s.ipOutput(pkt, r.dst, r.src, header.ProtoICMP, 0)
		s.inc(cntICMPEchoReplies)
		return
	}
	m[0] = header.ICMPv6EchoReply
	header.SetICMPv6Checksum(m, r.dst, r.src)
	s.ip6Output(pkt, r.dst, r.src, header.ProtoICMPv6, 0)
	s.inc(cntICMP6EchoReplies)
}
