package stack

import (
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// The Go API's UDP over the socket core: UDPConn is a net.PacketConn and,
// when Dial made it, a net.Conn, as *net.UDPConn is.

// ListenPacket listens for datagrams on address ("udp", "udp4" or "udp6";
// host empty or one of the stack's addresses).
func (s *Stack) ListenPacket(network, address string) (net.PacketConn, error) {
	ap, err := s.resolve(network, address)
	if err == nil && network[:3] != "udp" {
		err = net.UnknownNetworkError(network)
	}
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	return s.ListenUDP(ap)
}

// ListenUDP binds a UDP socket to laddr (port 0: an ephemeral port).
func (s *Stack) ListenUDP(laddr netip.AddrPort) (*UDPConn, error) {
	so := s.NewUDPSocket()
	if err := so.Bind(laddr); err != nil {
		return nil, udpError("listen", nil, net.UDPAddrFromAddrPort(laddr), err)
	}
	return newUDPConn(so), nil
}

// DialUDP binds laddr (the zero AddrPort: an ephemeral port) and connects
// to raddr: the socket then sends to raddr and hears only from it.
func (s *Stack) DialUDP(laddr, raddr netip.AddrPort) (*UDPConn, error) {
	so := s.NewUDPSocket()
	if laddr.IsValid() {
		if err := so.Bind(laddr); err != nil {
			return nil, udpError("dial", nil, net.UDPAddrFromAddrPort(raddr), err)
		}
	}
	if err := so.locked(func() error { return so.connectLocked(raddr) }); err != nil {
		so.Close()
		return nil, udpError("dial", nil, net.UDPAddrFromAddrPort(raddr), err)
	}
	return newUDPConn(so), nil
}

// Connect sets the peer the socket sends to by default and hears only from
// (connect(2) on a UDP socket); the zero AddrPort dissolves it.
func (c *UDPConn) Connect(raddr netip.AddrPort) error {
	return c.so.locked(func() error {
		if err := c.so.udpConnect(raddr); err != nil {
			return c.err("connect", net.UDPAddrFromAddrPort(raddr), err)
		}
		return nil
	})
}

// UDPConn is a UDP socket.
type UDPConn struct {
	so   *Socket
	rdDL time.Time
	wrDL time.Time
}

func newUDPConn(so *Socket) *UDPConn { return &UDPConn{so: so} }

func udpError(op string, local, remote net.Addr, err error) error {
	e := opError(op, local, remote, err).(*net.OpError)
	e.Net = "udp"
	return e
}

// err wraps err for op; the stack's lock is held.
func (c *UDPConn) err(op string, remote net.Addr, err error) error {
	return udpError(op, net.UDPAddrFromAddrPort(addrPort(c.so.addr, c.so.port)), remote, err)
}

// ReadFromUDPAddrPort reads one datagram: its bytes (the rest of a longer
// one is discarded) and its sender. It allocates nothing.
func (c *UDPConn) ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error) {
	so := c.so
	so.s.mu.Lock()
	defer so.s.mu.Unlock()
	for {
		if so.closed {
			return 0, netip.AddrPort{}, c.err("read", nil, net.ErrClosed)
		}
		if expired(c.rdDL) {
			return 0, netip.AddrPort{}, c.err("read", nil, os.ErrDeadlineExceeded)
		}
		n, from, err := so.recvFromLocked(p, false)
		switch err {
		case nil:
			return n, from, nil
		case syscall.EAGAIN:
			so.waitLocked(&so.u.rdWait, c.rdDL)
		default:
			return 0, netip.AddrPort{}, c.err("read", nil, err)
		}
	}
}

// ReadFrom is ReadFromUDPAddrPort for net.PacketConn.
func (c *UDPConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromUDPAddrPort(p)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// Read reads a datagram from the connected peer.
func (c *UDPConn) Read(p []byte) (int, error) {
	n, _, err := c.ReadFromUDPAddrPort(p)
	return n, err
}

// WriteToUDPAddrPort sends one datagram to to. It allocates nothing.
func (c *UDPConn) WriteToUDPAddrPort(p []byte, to netip.AddrPort) (int, error) {
	so := c.so
	so.s.mu.Lock()
	defer so.s.mu.Unlock()
	if expired(c.wrDL) {
		return 0, c.err("write", nil, os.ErrDeadlineExceeded)
	}
	n, err := so.sendToLocked(p, to)
	if err != nil {
		return n, c.err("write", net.UDPAddrFromAddrPort(to), err)
	}
	return n, nil
}

// WriteTo is WriteToUDPAddrPort for net.PacketConn.
func (c *UDPConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, c.err("write", addr, syscall.EINVAL)
	}
	return c.WriteToUDPAddrPort(p, ua.AddrPort())
}

// Write sends a datagram to the connected peer.
func (c *UDPConn) Write(p []byte) (int, error) { return c.WriteToUDPAddrPort(p, netip.AddrPort{}) }

// Close closes the socket; a blocked read returns net.ErrClosed.
func (c *UDPConn) Close() error {
	if err := c.so.Close(); err != nil {
		return udpError("close", c.LocalAddr(), nil, err)
	}
	return nil
}

// LocalAddr is the bound address.
func (c *UDPConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.so.LocalAddr()) }

// RemoteAddr is the connected peer, or nil.
func (c *UDPConn) RemoteAddr() net.Addr {
	so := c.so
	so.s.mu.Lock()
	defer so.s.mu.Unlock()
	if !so.u.connected {
		return nil
	}
	return net.UDPAddrFromAddrPort(so.u.remote)
}

// SetDeadline sets both deadlines.
func (c *UDPConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline and wakes a blocked read.
func (c *UDPConn) SetReadDeadline(t time.Time) error {
	return c.so.locked(func() error {
		if c.so.closed {
			return c.err("set", nil, net.ErrClosed)
		}
		c.rdDL = t
		c.so.u.rdWait.notify()
		return nil
	})
}

// SetWriteDeadline sets the write deadline (a write never blocks).
func (c *UDPConn) SetWriteDeadline(t time.Time) error {
	return c.so.locked(func() error {
		if c.so.closed {
			return c.err("set", nil, net.ErrClosed)
		}
		c.wrDL = t
		return nil
	})
}
