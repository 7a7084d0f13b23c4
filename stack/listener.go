package stack

import (
	"net"
	"net/netip"
	"syscall"
	"time"
)

// The Go API's listening and bound-only sockets over the socket core:
// Listener is a net.Listener, Bound a socket after bind() alone.

// Listen announces on the stack's address; network is "tcp" or "tcp4",
// address "host:port" with host empty or the stack's address. The backlog
// is Somaxconn. Like Go's net.Listen, SO_REUSEADDR is set.
func (s *Stack) Listen(network, address string) (net.Listener, error) {
	ap, err := s.resolve(network, address)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	l, err := s.listenTCP(ap, s.opts.Somaxconn, network == "tcp6")
	if err != nil {
		return nil, err
	}
	return l, nil
}

// ListenTCP listens on laddr (port 0: an ephemeral port) with backlog,
// capped at Somaxconn as Linux caps it.
func (s *Stack) ListenTCP(laddr netip.AddrPort, backlog int) (*Listener, error) {
	return s.listenTCP(laddr, backlog, false)
}

// listenTCP is ListenTCP, with IPV6_V6ONLY as Go sets it for "tcp6".
func (s *Stack) listenTCP(laddr netip.AddrPort, backlog int, v6only bool) (*Listener, error) {
	so := s.newGoSocket()
	so.reuseAddr = true
	so.v6only = v6only && !laddr.Addr().Is4()
	s.mu.Lock()
	defer s.mu.Unlock()
	err := so.bindLocked(laddr)
	if err == nil {
		err = so.listenLocked(backlog)
	}
	if err != nil {
		so.closeLocked()
		return nil, opError("listen", nil, net.TCPAddrFromAddrPort(laddr), err)
	}
	return &Listener{so: so, addr: tcpAddr(so.addr, so.port)}, nil
}

// Listener is a listening socket; it implements net.Listener.
type Listener struct {
	so   *Socket
	addr *net.TCPAddr
}

// Accept waits for the next connection (B11: it may have completed its
// handshake, and even received data, long before).
func (ln *Listener) Accept() (net.Conn, error) {
	c, err := ln.AcceptTCP()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptTCP is Accept returning the concrete type.
func (ln *Listener) AcceptTCP() (*Conn, error) {
	so := ln.so
	so.s.mu.Lock()
	defer so.s.mu.Unlock()
	for {
		c, err := so.acceptLocked()
		switch err {
		case nil:
			return newConn(c), nil
		case syscall.EAGAIN:
			so.waitLocked(&so.l.wait, time.Time{})
		case errConnAborted, syscall.EBADF:
			return nil, opError("accept", nil, ln.addr, net.ErrClosed)
		default:
			return nil, opError("accept", nil, ln.addr, err)
		}
	}
}

// Close stops listening; connections still in the accept queue are reset
// (B12).
func (ln *Listener) Close() error {
	ln.so.s.mu.Lock()
	defer ln.so.s.mu.Unlock()
	if ln.so.l.closed {
		return opError("close", nil, ln.addr, net.ErrClosed) // also by Stack.Close
	}
	if err := ln.so.closeLocked(); err != nil {
		return opError("close", nil, ln.addr, err)
	}
	return nil
}

// Addr is the listening address.
func (ln *Listener) Addr() net.Addr { return ln.addr }

// Bind reserves laddr without listening: the socket after bind() and
// before listen() or connect(). SYNs to it are refused (B02).
func (s *Stack) Bind(laddr netip.AddrPort) (*Bound, error) {
	so := s.newGoSocket()
	if err := so.Bind(laddr); err != nil {
		return nil, opError("bind", nil, net.TCPAddrFromAddrPort(laddr), err)
	}
	return &Bound{so: so, addr: tcpAddr(so.addr, so.port)}, nil
}

// Bound is a socket that is bound but not listening (B02).
type Bound struct {
	so   *Socket
	addr *net.TCPAddr
}

// Close releases the port.
func (b *Bound) Close() error {
	if err := b.so.Close(); err != nil {
		return opError("close", nil, b.addr, err)
	}
	return nil
}

// Addr is the bound address.
func (b *Bound) Addr() net.Addr { return b.addr }
