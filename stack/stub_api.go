package stack

// TEMPORARY scaffolding: replaced by the real implementation in this session.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"
)

var errTODO = errors.New("stack: not implemented yet")

// Stack is one TCP/IP stack instance bound to one link.
type Stack struct{ opts Options }

// New creates a stack over link.
func New(link Link, opts Options) (*Stack, error) { return &Stack{opts: opts}, nil }

// Start begins reading packets from the link and running timers.
func (s *Stack) Start() error { return errTODO }

// Close resets every connection, stops the loops and closes the link.
func (s *Stack) Close() error { return nil }

// Addr is the stack's own address.
func (s *Stack) Addr() netip.Addr { return s.opts.Addr }

// Listen announces on the stack's address; network must be "tcp" or "tcp4",
// address "host:port" (host empty or the stack's address). Backlog is Somaxconn.
func (s *Stack) Listen(network, address string) (net.Listener, error) { return nil, errTODO }

// ListenTCP listens on laddr with the given backlog (capped at Somaxconn).
func (s *Stack) ListenTCP(laddr netip.AddrPort, backlog int) (*Listener, error) { return nil, errTODO }

// Bind reserves laddr without listening (a socket after bind()).
func (s *Stack) Bind(laddr netip.AddrPort) (*Bound, error) { return nil, errTODO }

// Dial connects to address ("ip:port") through the stack.
func (s *Stack) Dial(network, address string) (net.Conn, error) { return nil, errTODO }

// DialContext is Dial with a context for cancellation and deadline.
func (s *Stack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return nil, errTODO
}

// DialTCP connects from laddr (port 0: ephemeral) to raddr.
func (s *Stack) DialTCP(ctx context.Context, laddr, raddr netip.AddrPort) (*Conn, error) {
	return nil, errTODO
}

// Sockets lists every socket, like ss -tan.
func (s *Stack) Sockets() []SocketInfo { return nil }

// Counters returns every counter, sorted by name.
func (s *Stack) Counters() []Counter { return nil }

// Listener is a listening socket; it implements net.Listener.
type Listener struct{}

func (l *Listener) Accept() (net.Conn, error) { return nil, errTODO }
func (l *Listener) AcceptTCP() (*Conn, error) { return nil, errTODO }
func (l *Listener) Close() error              { return errTODO }
func (l *Listener) Addr() net.Addr            { return nil }

// Bound is a socket that is bound but not listening (B02).
type Bound struct{}

func (b *Bound) Close() error   { return nil }
func (b *Bound) Addr() net.Addr { return nil }

// Conn is a TCP connection; it implements net.Conn like *net.TCPConn.
type Conn struct{}

func (c *Conn) Read(b []byte) (int, error)         { return 0, errTODO }
func (c *Conn) Write(b []byte) (int, error)        { return 0, errTODO }
func (c *Conn) Close() error                       { return errTODO }
func (c *Conn) CloseWrite() error                  { return errTODO }
func (c *Conn) CloseRead() error                   { return errTODO }
func (c *Conn) LocalAddr() net.Addr                { return nil }
func (c *Conn) RemoteAddr() net.Addr               { return nil }
func (c *Conn) SetDeadline(t time.Time) error      { return errTODO }
func (c *Conn) SetReadDeadline(t time.Time) error  { return errTODO }
func (c *Conn) SetWriteDeadline(t time.Time) error { return errTODO }
func (c *Conn) SetLinger(sec int) error            { return errTODO }
func (c *Conn) SetKeepAlive(on bool) error         { return errTODO }
func (c *Conn) SetNoDelay(on bool) error           { return errTODO }
