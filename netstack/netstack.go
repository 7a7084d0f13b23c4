// Package netstack is ustack under the API of wireguard-go's
// golang.zx2c4.com/wireguard/tun/netstack: CreateNetTUN returns a
// tun.Device for wireguard-go's device.NewDevice and a *Net whose Dial,
// Listen and LookupHost methods use ustack's stack, so that a wireguard-go
// program moves from gVisor's netstack to ustack by changing one import.
//
// The device is a stack.BatchLink: what wireguard-go decrypts is written
// into the stack where it lies, and what the stack sends is read from its
// transmit queue straight into wireguard-go's buffers. The connections are
// ustack's own types (*stack.Conn, *stack.Listener, *stack.UDPConn), which
// are net.Conn, net.Listener and net.PacketConn as gVisor's gonet types
// are; errors are *net.OpError with the errno inside.
//
// The stack holds at most one address per family.
package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"golang.zx2c4.com/wireguard/tun"

	"ustack/stack"
)

// Net is the stack's socket API, the methods of wireguard-go's netstack.Net.
type Net struct {
	s            *stack.Stack
	dnsServers   []netip.Addr
	hasV4, hasV6 bool
}

// device is the stack's end of the tunnel: wireguard-go's tun.Device over a
// stack.BatchLink.
type device struct {
	link   *stack.BatchLink
	s      *stack.Stack
	mtu    int
	events chan tun.Event
	once   sync.Once
}

// CreateNetTUN creates a stack with localAddresses (an IPv4 address, an
// IPv6 address, or one of each) behind a device of the given MTU;
// LookupHost asks dnsServers, through the stack.
func CreateNetTUN(localAddresses, dnsServers []netip.Addr, mtu int) (tun.Device, *Net, error) {
	opts := stack.DefaultOptions()
	var v4, v6 netip.Addr
	for _, a := range localAddresses {
		a = a.Unmap()
		dup := &v6
		if a.Is4() {
			dup = &v4
		}
		if dup.IsValid() {
			return nil, nil, fmt.Errorf("netstack: addresses %v and %v: ustack holds one address per family", *dup, a)
		}
		*dup = a
	}
	if !v4.IsValid() && !v6.IsValid() {
		return nil, nil, errors.New("netstack: no local address")
	}
	opts.Addr, opts.Addr6 = v4, v6
	link := stack.NewBatchLink(mtu)
	s, err := stack.New(link, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("netstack: %w", err)
	}
	if err := s.Start(); err != nil {
		return nil, nil, fmt.Errorf("netstack: %w", err)
	}
	dev := &device{link: link, s: s, mtu: mtu, events: make(chan tun.Event, 10)}
	dev.events <- tun.EventUp
	n := &Net{s: s, dnsServers: append([]netip.Addr(nil), dnsServers...), hasV4: v4.IsValid(), hasV6: v6.IsValid()}
	return dev, n, nil
}

// Stack is the stack under the Net, for what wireguard-go's API has no
// word for: counters, socket listings, options.
func (n *Net) Stack() *stack.Stack { return n.s }

func (d *device) File() *os.File           { return nil }
func (d *device) Name() (string, error)    { return "ustack", nil }
func (d *device) MTU() (int, error)        { return d.mtu, nil }
func (d *device) Events() <-chan tun.Event { return d.events }
func (d *device) BatchSize() int           { return d.link.BatchSize() }

// Read gives wireguard-go the packets the stack sends, to encrypt.
func (d *device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.link.Read(bufs, sizes, offset)
	if errors.Is(err, net.ErrClosed) {
		err = os.ErrClosed // what wireguard-go's RoutineReadFromTUN stops on
	}
	return n, err
}

// Write gives the stack the packets wireguard-go decrypted.
func (d *device) Write(bufs [][]byte, offset int) (int, error) {
	n, err := d.link.Write(bufs, offset)
	if errors.Is(err, net.ErrClosed) {
		err = os.ErrClosed
	}
	return n, err
}

// Close resets the stack's connections and closes the event channel.
func (d *device) Close() error {
	d.once.Do(func() {
		d.s.Close()
		close(d.events)
	})
	return nil
}

// backlog is what net.Listen gives listen(2): somaxconn's default.
const backlog = 4096

// DialContextTCPAddrPort connects to addr over TCP.
func (n *Net) DialContextTCPAddrPort(ctx context.Context, addr netip.AddrPort) (*stack.Conn, error) {
	return n.s.DialTCP(ctx, netip.AddrPort{}, addr)
}

// DialContextTCP is DialContextTCPAddrPort for a *net.TCPAddr.
func (n *Net) DialContextTCP(ctx context.Context, addr *net.TCPAddr) (*stack.Conn, error) {
	return n.DialContextTCPAddrPort(ctx, tcpAddrPort(addr))
}

// DialTCPAddrPort connects to addr over TCP.
func (n *Net) DialTCPAddrPort(addr netip.AddrPort) (*stack.Conn, error) {
	return n.DialContextTCPAddrPort(context.Background(), addr)
}

// DialTCP is DialTCPAddrPort for a *net.TCPAddr.
func (n *Net) DialTCP(addr *net.TCPAddr) (*stack.Conn, error) {
	return n.DialTCPAddrPort(tcpAddrPort(addr))
}

// ListenTCPAddrPort listens on addr (an unspecified address: every one of
// the stack's, both families for "::").
func (n *Net) ListenTCPAddrPort(addr netip.AddrPort) (*stack.Listener, error) {
	return n.s.ListenTCP(n.wildcard(addr), backlog)
}

// ListenTCP is ListenTCPAddrPort for a *net.TCPAddr.
func (n *Net) ListenTCP(addr *net.TCPAddr) (*stack.Listener, error) {
	return n.ListenTCPAddrPort(tcpAddrPort(addr))
}

// DialUDPAddrPort opens a UDP socket bound to laddr (zero: an ephemeral
// port) and, if raddr is valid, connected to it.
func (n *Net) DialUDPAddrPort(laddr, raddr netip.AddrPort) (*stack.UDPConn, error) {
	if !raddr.IsValid() {
		return n.ListenUDPAddrPort(laddr)
	}
	if laddr.Port() != 0 {
		laddr = n.wildcard(laddr)
	}
	return n.s.DialUDP(laddr, raddr)
}

// ListenUDPAddrPort opens a UDP socket bound to laddr.
func (n *Net) ListenUDPAddrPort(laddr netip.AddrPort) (*stack.UDPConn, error) {
	return n.s.ListenUDP(n.wildcard(laddr))
}

// DialUDP is DialUDPAddrPort for *net.UDPAddr (nil: unspecified).
func (n *Net) DialUDP(laddr, raddr *net.UDPAddr) (*stack.UDPConn, error) {
	return n.DialUDPAddrPort(udpAddrPort(laddr), udpAddrPort(raddr))
}

// ListenUDP is ListenUDPAddrPort for a *net.UDPAddr.
func (n *Net) ListenUDP(laddr *net.UDPAddr) (*stack.UDPConn, error) {
	return n.ListenUDPAddrPort(udpAddrPort(laddr))
}

// wildcard gives an address-less ap the wildcard address: "::", which
// takes both families, when the stack has IPv6, as gVisor's does there.
func (n *Net) wildcard(ap netip.AddrPort) netip.AddrPort {
	if ap.Addr().IsValid() {
		return ap
	}
	if n.hasV6 {
		return netip.AddrPortFrom(netip.IPv6Unspecified(), ap.Port())
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), ap.Port())
}

func tcpAddrPort(a *net.TCPAddr) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	return a.AddrPort()
}

func udpAddrPort(a *net.UDPAddr) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	return a.AddrPort()
}
