package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// SOCKS5 reaches the destinations through a SOCKS5 proxy (RFC 1928, no
// authentication): CONNECT for TCP, UDP ASSOCIATE for UDP. Via, when set,
// is how the proxy itself is reached (its device or mark).
type SOCKS5 struct {
	Addr string // the proxy's host:port
	Via  *Direct
}

// socksReply maps a SOCKS5 reply code (RFC 1928 6) to the errno a kernel
// socket would have met, so the client hears of it the same way.
var socksReply = [...]error{
	1: errors.New("socks5: general failure"),
	2: syscall.EACCES, // not allowed by the ruleset
	3: syscall.ENETUNREACH,
	4: syscall.EHOSTUNREACH,
	5: syscall.ECONNREFUSED,
	6: syscall.ETIMEDOUT, // TTL expired
	7: errors.New("socks5: command not supported"),
	8: errors.New("socks5: address type not supported"),
}

func (p SOCKS5) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	if p.Via != nil {
		d.Control = p.Via.control
	}
	return d.DialContext(ctx, "tcp", p.Addr)
}

// request opens a control connection and sends cmd for addr; it returns
// the connection and the proxy's bound address.
func (p SOCKS5) request(ctx context.Context, cmd byte, addr netip.AddrPort) (net.Conn, netip.AddrPort, error) {
	c, err := p.dial(ctx)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("socks5 %s: %w", p.Addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	bound, err := socksHandshake(c, cmd, addr)
	if err != nil {
		c.Close()
		return nil, netip.AddrPort{}, err
	}
	c.SetDeadline(time.Time{})
	return c, bound, nil
}

// socksHandshake greets (no authentication) and sends one request.
func socksHandshake(c net.Conn, cmd byte, addr netip.AddrPort) (netip.AddrPort, error) {
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return netip.AddrPort{}, err
	}
	var b [262]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("socks5: greeting: %w", err)
	}
	if b[0] != 5 || b[1] != 0 {
		return netip.AddrPort{}, fmt.Errorf("socks5: the proxy wants authentication method %d", b[1])
	}
	req := appendSocksAddr([]byte{5, cmd, 0}, addr)
	if _, err := c.Write(req); err != nil {
		return netip.AddrPort{}, err
	}
	if _, err := io.ReadFull(c, b[:4]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("socks5: reply: %w", err)
	}
	if b[0] != 5 {
		return netip.AddrPort{}, fmt.Errorf("socks5: reply version %d", b[0])
	}
	if rep := b[1]; rep != 0 {
		if int(rep) < len(socksReply) && socksReply[rep] != nil {
			return netip.AddrPort{}, socksReply[rep]
		}
		return netip.AddrPort{}, fmt.Errorf("socks5: reply %d", rep)
	}
	return readSocksAddr(c, b[3])
}

// appendSocksAddr appends ATYP, DST.ADDR and DST.PORT for a.
func appendSocksAddr(b []byte, a netip.AddrPort) []byte {
	ip := a.Addr().Unmap()
	if ip.Is4() {
		b = append(b, 1)
	} else {
		b = append(b, 4)
	}
	b = append(b, ip.AsSlice()...)
	return binary.BigEndian.AppendUint16(b, a.Port())
}

// readSocksAddr reads BND.ADDR and BND.PORT of address type atyp.
func readSocksAddr(r io.Reader, atyp byte) (netip.AddrPort, error) {
	var n int
	switch atyp {
	case 1:
		n = 4
	case 4:
		n = 16
	case 3: // a name: read it and its port, keep neither
		var l [1]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return netip.AddrPort{}, err
		}
		_, err := io.ReadFull(r, make([]byte, int(l[0])+2))
		return netip.AddrPort{}, err
	default:
		return netip.AddrPort{}, fmt.Errorf("socks5: address type %d", atyp)
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(r, b); err != nil {
		return netip.AddrPort{}, err
	}
	ip, _ := netip.AddrFromSlice(b[:n])
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[n:])), nil
}

// DialTCP connects to dst through the proxy (CONNECT).
func (p SOCKS5) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	c, _, err := p.request(ctx, 1, dst)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ListenUDP opens a UDP association (UDP ASSOCIATE): datagrams go to the
// proxy's relay port wrapped in the SOCKS5 UDP header, and the
// association lasts while its control connection does.
func (p SOCKS5) ListenUDP(ctx context.Context, v6 bool) (net.PacketConn, error) {
	unspec := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	if v6 {
		unspec = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
	}
	ctl, relayAt, err := p.request(ctx, 3, unspec)
	if err != nil {
		return nil, err
	}
	if relayAt.Addr().IsUnspecified() {
		// "The same address as the control connection" (RFC 1928 6).
		if ra, ok := ctl.RemoteAddr().(*net.TCPAddr); ok {
			relayAt = netip.AddrPortFrom(ra.AddrPort().Addr(), relayAt.Port())
		}
	}
	lc := net.ListenConfig{}
	if p.Via != nil {
		lc.Control = p.Via.control
	}
	network := "udp4"
	if relayAt.Addr().Is6() && !relayAt.Addr().Is4In6() {
		network = "udp6"
	}
	pc, err := lc.ListenPacket(ctx, network, ":0")
	if err != nil {
		ctl.Close()
		return nil, err
	}
	s := &socksUDP{PacketConn: pc, ctl: ctl, relay: net.UDPAddrFromAddrPort(relayAt)}
	go func() {
		// The proxy ends the association by closing the control
		// connection; so does Close.
		io.Copy(io.Discard, ctl)
		s.Close()
	}()
	return s, nil
}

// socksUDP is a UDP association's datagram socket.
type socksUDP struct {
	net.PacketConn
	ctl   net.Conn
	relay *net.UDPAddr
	once  sync.Once
	buf   []byte // ReadFrom's, one reader at a time
}

// WriteTo sends p to addr through the proxy's relay.
func (s *socksUDP) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, syscall.EINVAL
	}
	b := appendSocksAddr(make([]byte, 3, 3+19+len(p)), ua.AddrPort()) // RSV, RSV, FRAG 0
	if _, err := s.PacketConn.WriteTo(append(b, p...), s.relay); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ReadFrom reads the next datagram the proxy relays back, and its sender;
// fragments (FRAG != 0, RFC 1928 7) and datagrams not from the relay are
// dropped.
func (s *socksUDP) ReadFrom(p []byte) (int, net.Addr, error) {
	if s.buf == nil {
		s.buf = make([]byte, 65535)
	}
	buf := s.buf
	for {
		n, from, err := s.PacketConn.ReadFrom(buf)
		if err != nil {
			return 0, nil, err
		}
		if ua, ok := from.(*net.UDPAddr); !ok || !ua.IP.Equal(s.relay.IP) || ua.Port != s.relay.Port {
			continue
		}
		d := buf[:n]
		if len(d) < 4 || d[2] != 0 {
			continue
		}
		var alen int
		switch d[3] {
		case 1:
			alen = 4
		case 4:
			alen = 16
		default:
			continue
		}
		if len(d) < 4+alen+2 {
			continue
		}
		ip, _ := netip.AddrFromSlice(d[4 : 4+alen])
		src := netip.AddrPortFrom(ip, binary.BigEndian.Uint16(d[4+alen:]))
		return copy(p, d[4+alen+2:]), net.UDPAddrFromAddrPort(src), nil
	}
}

// Close ends the association.
func (s *socksUDP) Close() error {
	var err error
	s.once.Do(func() {
		s.ctl.Close()
		err = s.PacketConn.Close()
	})
	return err
}
