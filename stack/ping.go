package stack

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"

	"ustack/hashtable"
	"ustack/stack/header"
)

// Ping sockets (B73), Linux's SOCK_DGRAM with IPPROTO_ICMP or
// IPPROTO_ICMPV6 (net/ipv4/ping.c): the application writes an echo request
// (type, code, checksum, identifier, sequence, data); the stack puts the
// socket's identifier, its "port", in it and computes the checksum; the
// socket reads the echo replies that carry its identifier, whole, with
// their sender. ping(8) uses them without raw-socket privileges.

// NewPingSocket returns an unbound ping socket for IPv4 (ICMP) or, with v6,
// IPv6 (ICMPv6). Bind with port 0 (or the first SendTo) picks an
// identifier.
func (s *Stack) NewPingSocket(v6 bool) *Socket {
	so := s.NewUDPSocket()
	so.isPing, so.pingV6 = true, v6
	so.addr = hashtable.Any4
	if v6 {
		so.addr = hashtable.Any6
	}
	return so
}

// pingSend is sendto(2) on a ping socket: msg must be an echo request of
// the socket's family.
func (s *Stack) pingSend(so *Socket, to netip.AddrPort, msg []byte) error {
	dst := hashtable.AddrFrom(to.Addr())
	want := uint8(header.ICMPEchoRequest)
	if so.pingV6 {
		want = header.ICMPv6EchoRequest
	}
	switch {
	case len(msg) < header.ICMPv4MinSize || msg[0] != want || msg[1] != 0:
		return syscall.EINVAL // ping_common_sendmsg: only echo requests
	case dst.Is4() == so.pingV6:
		return syscall.EAFNOSUPPORT
	case !dst.Is4() && !s.has6, dst.Is4() && !s.has4:
		return syscall.ENETUNREACH
	}
	hl := netHdrLen(dst)
	if hl+len(msg) > s.mtu {
		return syscall.EMSGSIZE
	}
	pkt := s.txBuf[:hl+len(msg)]
	m := pkt[hl:]
	copy(m, msg)
	binary.BigEndian.PutUint16(m[4:6], so.port) // the identifier is the socket's
	if so.pingV6 {
		header.SetICMPv6Checksum(m, s.addr6, dst)
		s.ip6Output(pkt, s.addr6, dst, header.ProtoICMPv6, 0)
	} else {
		m[2], m[3] = 0, 0
		binary.BigEndian.PutUint16(m[2:4], header.Checksum(m, 0))
		s.ipOutput(pkt, s.addr, dst, header.ProtoICMP, 0)
	}
	s.inc(cntPingOut)
	return nil
}

// pingDeliver queues an echo reply from src for the ping socket of its
// identifier, if there is one (ping_rcv); it reports whether one took it.
func (s *Stack) pingDeliver(src hashtable.Addr, msg []byte, v6 bool) bool {
	id := binary.BigEndian.Uint16(msg[4:6])
	for _, u := range s.pings[id] {
		if u.v6 != v6 || u.connected && u.remote.Addr() != src.Netip() {
			continue
		}
		if !u.queue.fits(len(msg), u.limit) {
			s.inc(cntUDPRcvBufErrors)
			return true
		}
		u.queue.push(netip.AddrPortFrom(src.Netip(), 0), hashtable.Addr{}, msg)
		u.rdWait.notify()
		return true
	}
	return false
}

// ListenPing opens a ping socket on laddr (the family's wildcard when
// unspecified or invalid: IPv4), as a UDPConn whose datagrams are echo
// requests out and echo replies in; the addresses' ports are 0.
func (s *Stack) ListenPing(laddr netip.Addr) (*UDPConn, error) {
	return s.DialPing(laddr, netip.Addr{})
}

// DialPing is ListenPing connected to raddr: Write sends there and Read
// hears only its replies. The family is raddr's, or laddr's.
func (s *Stack) DialPing(laddr, raddr netip.Addr) (*UDPConn, error) {
	v6 := laddr.Is6() && !laddr.Is4In6() || raddr.Is6() && !raddr.Is4In6()
	so := s.NewPingSocket(v6)
	fail := func(op string, err error) (*UDPConn, error) {
		so.Close()
		e := opError(op, nil, pingAddr(raddr), err).(*net.OpError)
		e.Net = "ip4:icmp"
		if v6 {
			e.Net = "ip6:ipv6-icmp"
		}
		return nil, e
	}
	if laddr.IsValid() {
		if err := so.Bind(netip.AddrPortFrom(laddr, 0)); err != nil {
			return fail("listen", err)
		}
	}
	if raddr.IsValid() {
		if err := so.locked(func() error { return so.udpConnect(netip.AddrPortFrom(raddr, 0)) }); err != nil {
			return fail("dial", err)
		}
	}
	return newUDPConn(so), nil
}

// pingAddr is a as the peer named in an error, or nil.
func pingAddr(a netip.Addr) net.Addr {
	if !a.IsValid() {
		return nil
	}
	return &net.IPAddr{IP: a.AsSlice()}
}
