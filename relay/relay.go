// Package relay carries what a stack's forwarders take (stack's
// SetTCPForwarder and SetUDPForwarder) on to the real destinations,
// through the host's own sockets (Direct) or a SOCKS5 proxy (SOCKS5), as
// tun2socks does: `ustack run --forward`. A TCP connection is accepted
// only once the upstream one is up, so a refused or unreachable
// destination reaches the client as a refusal (RST) or an ICMP
// unreachable, as from the real server; half-closes pass through.
package relay

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"ustack/stack"
)

// Stack is a stack whose forwarders the relay takes over: ustack's
// (Ustack) or gVisor's netstack (package engine/gvisor), so both can be
// measured relaying. A nil handler removes the forwarder.
type Stack interface {
	ForwardTCP(maxPending int, handler func(TCPRequest))
	ForwardUDP(maxFlows int, handler func(UDPFlow))
}

// EchoStack is a Stack that forwards pings too.
type EchoStack interface {
	ForwardEcho(maxPending int, handler func(EchoRequest))
}

// TCPRequest is a forwarded connection waiting for its decision
// (stack.TCPRequest).
type TCPRequest interface {
	Src() netip.AddrPort
	Dst() netip.AddrPort
	Accept() (net.Conn, error)
	Reject()
	RejectWith(code uint8)
}

// UDPFlow is a forwarded flow (stack.UDPFlow): the client's datagrams
// with their destinations, and answers from a named address.
type UDPFlow interface {
	Client() netip.AddrPort
	ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(p []byte, from netip.AddrPort) (int, error)
	Close() error
}

// EchoRequest is a forwarded ping (stack.EchoRequest).
type EchoRequest interface {
	Dst() netip.Addr
	Data() []byte
	Reply()
}

// Ustack is ustack's stack as a relay.Stack; its UDP flows are
// endpoint-independent (RFC 4787 REQ-1): one upstream socket per client
// port, whatever the destinations.
func Ustack(s *stack.Stack) Stack { return ustackStack{s} }

type ustackStack struct{ s *stack.Stack }

// ustackRequest gives stack.TCPRequest's Accept a net.Conn.
type ustackRequest struct{ *stack.TCPRequest }

func (r ustackRequest) Accept() (net.Conn, error) {
	c, err := r.TCPRequest.Accept()
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (u ustackStack) ForwardTCP(maxPending int, handler func(TCPRequest)) {
	if handler == nil {
		u.s.SetTCPForwarder(0, nil)
		return
	}
	u.s.SetTCPForwarder(maxPending, func(r *stack.TCPRequest) { handler(ustackRequest{r}) })
}

func (u ustackStack) ForwardUDP(maxFlows int, handler func(UDPFlow)) {
	if handler == nil {
		u.s.SetUDPForwarder(stack.UDPEndpointIndependent, 0, nil)
		return
	}
	u.s.SetUDPForwarder(stack.UDPEndpointIndependent, maxFlows, func(f *stack.UDPFlow) { handler(f) })
}

func (u ustackStack) ForwardEcho(maxPending int, handler func(EchoRequest)) {
	if handler == nil {
		u.s.SetEchoForwarder(0, nil)
		return
	}
	u.s.SetEchoForwarder(maxPending, func(r *stack.EchoRequest) { handler(r) })
}

// Upstream is where the relay opens the far side of what it carries.
type Upstream interface {
	// DialTCP connects to dst.
	DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error)
	// ListenUDP opens a datagram socket of dst's family for one client
	// flow: the relay writes the client's datagrams to their
	// destinations with WriteTo and hands back what comes in, with its
	// sender, as from that sender.
	ListenUDP(ctx context.Context, v6 bool) (net.PacketConn, error)
}

// Pinger is an Upstream that can ping: Echo reports whether dst answered
// an echo request carrying data before ctx ended.
type Pinger interface {
	Echo(ctx context.Context, dst netip.Addr, data []byte) (bool, error)
}

// Options bound what the relay holds.
type Options struct {
	// LocalPing answers pings to every address from the stack itself
	// instead of pinging the destination (what an Upstream that cannot
	// ping, SOCKS5, always does).
	LocalPing   bool
	MaxPending  int           // SYNs waiting for an upstream connection (stack's maxPending)
	MaxFlows    int           // live UDP flows
	DialTimeout time.Duration // for each upstream connection
	EchoTimeout time.Duration // how long a forwarded ping waits for its answer
	Log         *log.Logger   // nil: silent
}

// DefaultOptions are the relay's defaults.
func DefaultOptions() Options {
	return Options{MaxPending: 1024, MaxFlows: 4096, DialTimeout: 10 * time.Second, EchoTimeout: 3 * time.Second}
}

// Relay is the relaying of one stack's forwarded traffic.
type Relay struct {
	s      Stack
	up     Upstream
	opts   Options
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	open   map[io.Closer]struct{} // what Close must close
	closed bool
	wg     sync.WaitGroup
}

// Start installs the relay as s's TCP and UDP forwarders (and its echo
// forwarder, when both s and up can ping).
func Start(s Stack, up Upstream, opts Options) *Relay {
	def := DefaultOptions()
	if opts.MaxPending <= 0 {
		opts.MaxPending = def.MaxPending
	}
	if opts.MaxFlows <= 0 {
		opts.MaxFlows = def.MaxFlows
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = def.DialTimeout
	}
	if opts.EchoTimeout <= 0 {
		opts.EchoTimeout = def.EchoTimeout
	}
	r := &Relay{s: s, up: up, opts: opts, open: make(map[io.Closer]struct{})}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	s.ForwardTCP(opts.MaxPending, r.tcp)
	s.ForwardUDP(opts.MaxFlows, r.udp)
	p, canPing := up.(Pinger)
	if es, ok := s.(EchoStack); ok && canPing && !opts.LocalPing {
		es.ForwardEcho(opts.MaxPending, func(req EchoRequest) { r.echo(p, req) })
	}
	return r
}

// echo answers a ping only when its destination answers the relay's.
func (r *Relay) echo(p Pinger, req EchoRequest) {
	ctx, cancel := context.WithTimeout(r.ctx, r.opts.EchoTimeout)
	defer cancel()
	ok, err := p.Echo(ctx, req.Dst(), req.Data())
	if err != nil {
		r.logf("ping %v: %v", req.Dst(), err)
	}
	if ok {
		req.Reply()
	}
}

// Close stops forwarding, closes everything relayed and waits for it.
func (r *Relay) Close() error {
	r.s.ForwardTCP(0, nil)
	r.s.ForwardUDP(0, nil)
	if es, ok := r.s.(EchoStack); ok {
		es.ForwardEcho(0, nil)
	}
	r.cancel()
	r.mu.Lock()
	r.closed = true
	for c := range r.open {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

func (r *Relay) logf(format string, args ...any) {
	if r.opts.Log != nil {
		r.opts.Log.Printf("relay: "+format, args...)
	}
}

// track registers what Close must close; false once closing.
func (r *Relay) track(cs ...io.Closer) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	for _, c := range cs {
		r.open[c] = struct{}{}
	}
	r.wg.Add(1)
	return true
}

func (r *Relay) untrack(cs ...io.Closer) {
	r.mu.Lock()
	for _, c := range cs {
		delete(r.open, c)
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Done()
}

// tcp relays one forwarded connection: upstream first, then the client.
func (r *Relay) tcp(req TCPRequest) {
	ctx, cancel := context.WithTimeout(r.ctx, r.opts.DialTimeout)
	up, err := r.up.DialTCP(ctx, req.Dst())
	cancel()
	if err != nil {
		r.logf("tcp %v -> %v: %v", req.Src(), req.Dst(), err)
		refuse(req, err)
		return
	}
	c, err := req.Accept()
	if err != nil {
		r.logf("tcp %v -> %v: the client's handshake: %v", req.Src(), req.Dst(), err)
		up.Close()
		return
	}
	if !r.track(c, up) {
		c.Close()
		up.Close()
		return
	}
	defer r.untrack(c, up)
	splice(c, up)
}

// refuse tells the client what the upstream dial met: RST for a refusal
// (and what has no better answer), ICMP unreachable when there was no
// way there, as a router would send.
func refuse(req TCPRequest, err error) {
	v6 := req.Dst().Addr().Is6() && !req.Dst().Addr().Is4In6()
	switch {
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		if v6 {
			req.RejectWith(3) // address unreachable (RFC 4443 3.1)
		} else {
			req.RejectWith(1) // host unreachable (RFC 792)
		}
	case errors.Is(err, syscall.ENETUNREACH):
		req.RejectWith(0) // net unreachable; IPv6: no route to destination
	default:
		req.Reject()
	}
}

// halfCloser is a connection that can end one direction (TCP's FIN).
type halfCloser interface{ CloseWrite() error }

// splice copies both ways until both ends have finished; the end of one
// direction is passed on as a half-close, so a client's shutdown(SHUT_WR)
// reaches the server as its FIN.
func splice(a, b net.Conn) {
	done := make(chan struct{})
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if hc, ok := dst.(halfCloser); ok {
			hc.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go func() { pipe(a, b); close(done) }()
	pipe(b, a) // the caller's goroutine carries the other way
	<-done
}

// udpBuf is the largest datagram relayed.
const udpBuf = 65535

// udp relays one client flow through one upstream socket.
func (r *Relay) udp(f UDPFlow) {
	v6 := f.Client().Addr().Is6() && !f.Client().Addr().Is4In6()
	pc, err := r.up.ListenUDP(r.ctx, v6)
	if err != nil {
		r.logf("udp %v: %v", f.Client(), err)
		f.Close()
		return
	}
	if !r.track(f, pc) {
		f.Close()
		pc.Close()
		return
	}
	defer r.untrack(f, pc)
	back := make(chan struct{})
	go func() {
		defer close(back)
		buf := make([]byte, udpBuf)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				f.Close() // the upstream socket is gone: so is the mapping
				return
			}
			ua, ok := from.(*net.UDPAddr)
			if !ok {
				continue
			}
			f.WriteToUDPAddrPort(buf[:n], ua.AddrPort())
		}
	}()
	buf := make([]byte, udpBuf)
	for {
		n, dst, err := f.ReadFromUDPAddrPort(buf)
		if err != nil {
			break // expired, evicted or closed
		}
		if _, err := pc.WriteTo(buf[:n], net.UDPAddrFromAddrPort(dst)); err != nil {
			r.logf("udp %v -> %v: %v", f.Client(), dst, err)
		}
	}
	pc.Close()
	<-back
}
