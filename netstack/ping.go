package netstack

import (
	"net"
	"net/netip"
	"syscall"
	"time"

	"ustack/stack"
)

// PingAddr is the address of a ping socket's peer, as in wireguard-go's
// netstack.
type PingAddr struct{ addr netip.Addr }

// PingAddrFromAddr returns addr as a *PingAddr.
func PingAddrFromAddr(addr netip.Addr) *PingAddr { return &PingAddr{addr} }

func (a PingAddr) String() string   { return a.addr.String() }
func (a PingAddr) Addr() netip.Addr { return a.addr }
func (a PingAddr) Network() string {
	switch {
	case a.addr.Is4():
		return "ping4"
	case a.addr.Is6():
		return "ping6"
	}
	return "ping"
}

// PingConn is a ping socket (Linux's SOCK_DGRAM IPPROTO_ICMP or ICMPV6):
// each Write is an ICMP echo request, whose identifier and checksum the
// stack fills in; each Read is one echo reply with that identifier, whole.
type PingConn struct {
	c     *stack.UDPConn
	laddr PingAddr
	raddr PingAddr
}

// DialPingAddr opens a ping socket bound to laddr, if valid, and connected
// to raddr, if valid; one of them must be.
func (n *Net) DialPingAddr(laddr, raddr netip.Addr) (*PingConn, error) {
	if !laddr.IsValid() && !raddr.IsValid() {
		return nil, &net.OpError{Op: "dial", Net: "ping", Err: syscall.EDESTADDRREQ}
	}
	c, err := n.s.DialPing(laddr, raddr)
	if err != nil {
		return nil, err
	}
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	return &PingConn{c: c, laddr: PingAddr{local.Addr()}, raddr: PingAddr{raddr}}, nil
}

// ListenPingAddr opens a ping socket bound to laddr.
func (n *Net) ListenPingAddr(laddr netip.Addr) (*PingConn, error) {
	if !laddr.IsValid() {
		laddr = netip.IPv4Unspecified()
		if !n.hasV4 {
			laddr = netip.IPv6Unspecified()
		}
	}
	return n.DialPingAddr(laddr, netip.Addr{})
}

// DialPing is DialPingAddr for *PingAddr (nil: none).
func (n *Net) DialPing(laddr, raddr *PingAddr) (*PingConn, error) {
	var la, ra netip.Addr
	if laddr != nil {
		la = laddr.addr
	}
	if raddr != nil {
		ra = raddr.addr
	}
	return n.DialPingAddr(la, ra)
}

// ListenPing is ListenPingAddr for a *PingAddr.
func (n *Net) ListenPing(laddr *PingAddr) (*PingConn, error) {
	var la netip.Addr
	if laddr != nil {
		la = laddr.addr
	}
	return n.ListenPingAddr(la)
}

func (pc *PingConn) LocalAddr() net.Addr  { return pc.laddr }
func (pc *PingConn) RemoteAddr() net.Addr { return pc.raddr }
func (pc *PingConn) Close() error         { return pc.c.Close() }

func (pc *PingConn) SetDeadline(t time.Time) error      { return pc.c.SetDeadline(t) }
func (pc *PingConn) SetReadDeadline(t time.Time) error  { return pc.c.SetReadDeadline(t) }
func (pc *PingConn) SetWriteDeadline(t time.Time) error { return pc.c.SetWriteDeadline(t) }

// WriteTo sends the echo request p to addr (a *PingAddr, PingAddr or
// *net.IPAddr).
func (pc *PingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	var to netip.Addr
	switch a := addr.(type) {
	case *PingAddr:
		to = a.addr
	case PingAddr:
		to = a.addr
	case *net.IPAddr:
		to, _ = netip.AddrFromSlice(a.IP)
	default:
		return 0, &net.OpError{Op: "write", Net: "ping", Source: pc.laddr, Addr: addr, Err: syscall.EINVAL}
	}
	return pc.c.WriteToUDPAddrPort(p, netip.AddrPortFrom(to.Unmap(), 0))
}

// Write sends the echo request p to the connected peer.
func (pc *PingConn) Write(p []byte) (int, error) {
	return pc.c.WriteToUDPAddrPort(p, netip.AddrPort{})
}

// ReadFrom reads one echo reply and its sender.
func (pc *PingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, from, err := pc.c.ReadFromUDPAddrPort(p)
	if err != nil {
		return n, nil, err
	}
	return n, &PingAddr{from.Addr()}, nil
}

// Read reads one echo reply.
func (pc *PingConn) Read(p []byte) (int, error) {
	n, _, err := pc.c.ReadFromUDPAddrPort(p)
	return n, err
}
