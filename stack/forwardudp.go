package stack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"ustack/hashtable"
	"ustack/timers"
)

// The UDP forwarder: datagrams that no socket takes become flows, each
// handed to the embedder as a packet conn, as a NAT keeps a mapping per
// flow (RFC 4787). A flow ends when it has been idle for
// Options.UDPFlowTimeout, when the embedder closes it, or when the table
// is full and a new flow needs its place: the least recently active goes.

// UDPForwardMode is how datagrams are grouped into flows.
type UDPForwardMode uint8

const (
	// UDPConnected: one flow per client address and port and destination,
	// a connected socket's view (RFC 4787's address-and-port-dependent
	// mapping, what gVisor's udp.NewForwarder offers).
	UDPConnected UDPForwardMode = iota
	// UDPEndpointIndependent: one flow per client address and port,
	// whatever the destination (RFC 4787 REQ-1, "full cone"): the
	// embedder relays it through one upstream socket, and a reply may come
	// from any address, which ReadFrom and WriteTo name.
	UDPEndpointIndependent
)

// ErrFlowExpired ends a flow that was idle past Options.UDPFlowTimeout or
// was evicted for a newer one; it is a net.ErrClosed.
var ErrFlowExpired = fmt.Errorf("stack: UDP flow expired: %w", net.ErrClosed)

// flowKey names a flow: the client's address and port and, in
// UDPConnected mode, the destination's.
type flowKey struct {
	client hashtable.Addr
	cport  uint16
	dst    hashtable.Addr
	dport  uint16
}

type udpForwarder struct {
	mode     UDPForwardMode
	maxFlows int
	handler  func(*UDPFlow)
	flows    map[flowKey]*UDPFlow
	// lru lists the flows by last activity, the least recent first.
	lru flowList
}

// flowList is an intrusive doubly linked list of flows.
type flowList struct{ head, tail *UDPFlow }

func (l *flowList) remove(f *UDPFlow) {
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		l.head = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	} else {
		l.tail = f.prev
	}
	f.prev, f.next = nil, nil
}

func (l *flowList) pushBack(f *UDPFlow) {
	f.prev = l.tail
	if l.tail != nil {
		l.tail.next = f
	} else {
		l.head = f
	}
	l.tail = f
}

// UDPFlow is one forwarded flow: the client's datagrams, to read, and a
// way to answer it from any address (net.PacketConn). In UDPConnected mode
// it is also a net.Conn to its one destination.
type UDPFlow struct {
	s      *Stack
	f      *udpForwarder
	key    flowKey
	client netip.AddrPort
	dst    netip.AddrPort // its first datagram's destination
	queue  dgramQueue
	rdWait cond
	err    error // why it ended; nil while open

	last       time.Time // last datagram either way
	idle       timers.Timer
	prev, next *UDPFlow
	rdDL, wrDL time.Time
}

// SetUDPForwarder hands each new flow of datagrams that no socket takes
// (to any address but the stack's own with Options.Promiscuous, else to
// its own) to handler, in
// a goroutine of its own, instead of answering ICMP port unreachable. At
// most maxFlows flows live at once: a new flow past that evicts the least
// recently active one (udp.forward.evicted). A nil handler ends
// forwarding and closes every flow.
func (s *Stack) SetUDPForwarder(mode UDPForwardMode, maxFlows int, handler func(*UDPFlow)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.fwdUDP; old != nil {
		for old.lru.head != nil {
			old.lru.head.endLocked(net.ErrClosed)
		}
	}
	s.fwdUDP = nil
	if handler != nil && !s.closed {
		s.fwdUDP = &udpForwarder{mode: mode, maxFlows: max(maxFlows, 1), handler: handler, flows: make(map[flowKey]*UDPFlow)}
	}
}

// forwardUDP offers a datagram that no socket took to the forwarder; it
// reports whether the forwarder took it.
func (s *Stack) forwardUDP(now time.Time, src hashtable.Addr, sport uint16, dst hashtable.Addr, dport uint16, payload []byte) bool {
	f := s.fwdUDP
	if f == nil || !s.forwards(dst) {
		return false
	}
	key := flowKey{client: src, cport: sport}
	if f.mode == UDPConnected {
		key.dst, key.dport = dst, dport
	}
	fl, ok := f.flows[key]
	if !ok {
		if len(f.flows) >= f.maxFlows {
			s.inc(cntUDPForwardEvicted)
			f.lru.head.endLocked(ErrFlowExpired)
		}
		fl = &UDPFlow{s: s, f: f, key: key, client: netip.AddrPortFrom(src.Netip(), sport), dst: netip.AddrPortFrom(dst.Netip(), dport)}
		fl.idle.Init(fl.onIdle)
		f.flows[key] = fl
		f.lru.pushBack(fl)
		s.schedule(&fl.idle, now.Add(s.opts.UDPFlowTimeout))
		s.inc(cntUDPForwardFlows)
		go f.handler(fl)
	}
	fl.touch(now)
	if !fl.queue.fits(len(payload), udpRcvBuf) {
		s.inc(cntUDPRcvBufErrors)
		return true
	}
	fl.queue.pushTo(fl.client, dst, dport, payload)
	fl.rdWait.notify()
	return true
}

// touch records activity: the flow moves to the back of the eviction order.
func (fl *UDPFlow) touch(now time.Time) {
	fl.last = now
	if fl.f.lru.tail != fl {
		fl.f.lru.remove(fl)
		fl.f.lru.pushBack(fl)
	}
}

// onIdle ends the flow once it has been idle for the timeout; activity
// since the timer was armed moves it on (one timer per flow, not per
// datagram).
func (fl *UDPFlow) onIdle(now time.Time) {
	if fl.err != nil {
		return
	}
	if due := fl.last.Add(fl.s.opts.UDPFlowTimeout); now.Before(due) {
		fl.s.schedule(&fl.idle, due)
		return
	}
	fl.s.inc(cntUDPForwardIdle)
	fl.endLocked(ErrFlowExpired)
}

// endLocked removes the flow from the forwarder; reads and writes fail
// with err from then on.
func (fl *UDPFlow) endLocked(err error) {
	if fl.err != nil {
		return
	}
	fl.err = err
	fl.s.timers.Stop(&fl.idle)
	if fl.f.flows[fl.key] == fl {
		delete(fl.f.flows, fl.key)
		fl.f.lru.remove(fl)
	}
	fl.queue.reset()
	fl.rdWait.notify()
}

// Client is the address and port the flow's datagrams come from.
func (fl *UDPFlow) Client() netip.AddrPort { return fl.client }

// Dst is the destination of the flow's first datagram (in UDPConnected
// mode, of all of them).
func (fl *UDPFlow) Dst() netip.AddrPort { return fl.dst }

// LocalAddr is Dst: the address the client talks to.
func (fl *UDPFlow) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(fl.dst) }

// RemoteAddr is the client.
func (fl *UDPFlow) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(fl.client) }

func (fl *UDPFlow) opErr(op string, err error) error {
	return udpError(op, fl.LocalAddr(), fl.RemoteAddr(), err)
}

// ReadFromUDPAddrPort reads the client's next datagram and the destination
// it was sent to.
func (fl *UDPFlow) ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error) {
	s := fl.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if fl.err != nil {
			return 0, netip.AddrPort{}, fl.opErr("read", fl.err)
		}
		if fl.queue.len() > 0 {
			d := fl.queue.front()
			n, to := copy(p, d.data), netip.AddrPortFrom(d.to.Netip(), d.toPort)
			fl.queue.pop()
			return n, to, nil
		}
		if expired(fl.rdDL) {
			return 0, netip.AddrPort{}, fl.opErr("read", os.ErrDeadlineExceeded)
		}
		fl.wait()
	}
}

// wait blocks, unlocked, until a datagram, the end or the read deadline.
func (fl *UDPFlow) wait() {
	s := fl.s
	ch := fl.rdWait.wait()
	var timeout <-chan time.Time
	if !fl.rdDL.IsZero() {
		t := time.NewTimer(time.Until(fl.rdDL))
		defer t.Stop()
		timeout = t.C
	}
	s.mu.Unlock()
	select {
	case <-ch:
	case <-timeout:
	}
	s.mu.Lock()
}

// ReadFrom is ReadFromUDPAddrPort for net.PacketConn.
func (fl *UDPFlow) ReadFrom(p []byte) (int, net.Addr, error) {
	n, to, err := fl.ReadFromUDPAddrPort(p)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(to), nil
}

// Read reads the client's next datagram.
func (fl *UDPFlow) Read(p []byte) (int, error) {
	n, _, err := fl.ReadFromUDPAddrPort(p)
	return n, err
}

// WriteToUDPAddrPort sends p to the client from the address from: in
// UDPConnected mode only Dst may answer (EINVAL otherwise).
func (fl *UDPFlow) WriteToUDPAddrPort(p []byte, from netip.AddrPort) (int, error) {
	s := fl.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case fl.err != nil:
		return 0, fl.opErr("write", fl.err)
	case expired(fl.wrDL):
		return 0, fl.opErr("write", os.ErrDeadlineExceeded)
	case !from.IsValid() || from.Port() == 0 || from.Addr().Unmap().Is4() != fl.client.Addr().Is4(),
		fl.f.mode == UDPConnected && from != fl.dst:
		return 0, fl.opErr("write", syscall.EINVAL)
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if err := s.udpSend(hashtable.AddrFrom(from.Addr()), from.Port(), fl.client, p, PMTUDiscWant); err != nil {
		return 0, fl.opErr("write", err)
	}
	fl.touch(s.clock.Now())
	return len(p), nil
}

// WriteTo is WriteToUDPAddrPort for net.PacketConn.
func (fl *UDPFlow) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fl.opErr("write", syscall.EINVAL)
	}
	return fl.WriteToUDPAddrPort(p, ua.AddrPort())
}

// Write answers the client from Dst.
func (fl *UDPFlow) Write(p []byte) (int, error) { return fl.WriteToUDPAddrPort(p, fl.dst) }

// Close ends the flow: the client's next datagram starts a new one.
func (fl *UDPFlow) Close() error {
	fl.s.mu.Lock()
	defer fl.s.mu.Unlock()
	if fl.err != nil {
		if errors.Is(fl.err, ErrFlowExpired) {
			return nil // it ended on its own: closing it is not a mistake
		}
		return fl.opErr("close", net.ErrClosed)
	}
	fl.endLocked(net.ErrClosed)
	return nil
}

// SetDeadline sets both deadlines.
func (fl *UDPFlow) SetDeadline(t time.Time) error {
	fl.SetReadDeadline(t)
	return fl.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline and wakes a blocked read.
func (fl *UDPFlow) SetReadDeadline(t time.Time) error {
	fl.s.mu.Lock()
	defer fl.s.mu.Unlock()
	fl.rdDL = t
	fl.rdWait.notify()
	return nil
}

// SetWriteDeadline sets the write deadline (a write never blocks).
func (fl *UDPFlow) SetWriteDeadline(t time.Time) error {
	fl.s.mu.Lock()
	defer fl.s.mu.Unlock()
	fl.wrDL = t
	return nil
}
