package netstack

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// The resolver and Dial by name: a stub resolver over the stack's own UDP
// and TCP (RFC 1035 4.2, RFC 7766), asking the DNS servers given to
// CreateNetTUN in turn, as wireguard-go's netstack does. There is no
// search list and no hosts file.

// Each server gets this long per query, twice over UDP (as resolv.conf's
// timeout:5 attempts:2).
const (
	dnsTimeout  = 5 * time.Second
	dnsAttempts = 2
)

// LookupHost returns the addresses of host: host itself when it is an IP
// address, else the A and AAAA records of the families the stack has,
// IPv6 first when it has IPv6.
func (n *Net) LookupHost(host string) ([]string, error) {
	return n.LookupContextHost(context.Background(), host)
}

// LookupContextHost is LookupHost bounded by ctx.
func (n *Net) LookupContextHost(ctx context.Context, host string) ([]string, error) {
	addrs, err := n.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out, nil
}

func (n *Net) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	literal := host
	if i := strings.LastIndexByte(host, '%'); i >= 0 && strings.Contains(host, ":") {
		literal = host[:i] // a zone names an interface; the stack has one
	}
	if a, err := netip.ParseAddr(literal); err == nil {
		return []netip.Addr{a}, nil
	}
	notFound := &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	if host == "" || len(host) > 253 && !(len(host) == 254 && host[253] == '.') {
		return nil, notFound
	}
	if len(n.dnsServers) == 0 {
		return nil, &net.DNSError{Err: "no DNS servers configured", Name: host}
	}
	name, err := dnsmessage.NewName(strings.TrimSuffix(host, ".") + ".")
	if err != nil {
		return nil, notFound
	}
	var types []dnsmessage.Type
	if n.hasV6 {
		types = append(types, dnsmessage.TypeAAAA)
	}
	if n.hasV4 {
		types = append(types, dnsmessage.TypeA)
	}
	type answer struct {
		addrs []netip.Addr
		err   error
	}
	answers := make([]chan answer, len(types))
	for i, t := range types {
		answers[i] = make(chan answer, 1)
		go func() {
			a, err := n.query(ctx, host, name, t)
			answers[i] <- answer{a, err}
		}()
	}
	var addrs []netip.Addr
	var firstErr error
	for _, ch := range answers {
		a := <-ch
		addrs = append(addrs, a.addrs...)
		if a.err != nil && firstErr == nil {
			firstErr = a.err
		}
	}
	if len(addrs) == 0 {
		if firstErr == nil {
			firstErr = notFound
		}
		return nil, firstErr
	}
	return addrs, nil
}

// query asks the servers in turn for name's records of type t until one
// answers; "no such name" from any of them is final.
func (n *Net) query(ctx context.Context, host string, name dnsmessage.Name, t dnsmessage.Type) ([]netip.Addr, error) {
	var lastErr error
	for _, server := range n.dnsServers {
		addrs, err := n.ask(ctx, netip.AddrPortFrom(server, 53), name, t)
		if err == nil {
			return addrs, nil
		}
		dnsErr := &net.DNSError{Err: err.Error(), Name: host, Server: server.String()}
		switch {
		case errors.Is(err, errNoSuchName):
			dnsErr.IsNotFound = true
			return nil, dnsErr
		case errors.Is(err, os.ErrDeadlineExceeded):
			dnsErr.Err, dnsErr.IsTimeout = "i/o timeout", true
		}
		if ctx.Err() != nil {
			return nil, &net.DNSError{Err: ctx.Err().Error(), Name: host, Server: server.String(), IsTimeout: errors.Is(ctx.Err(), context.DeadlineExceeded)}
		}
		lastErr = dnsErr
	}
	return nil, lastErr
}

var (
	errNoSuchName = errors.New("no such host")
	errBadAnswer  = errors.New("server misbehaving")
)

// ask sends one question to server over UDP, and again over TCP when the
// answer is truncated (RFC 7766 5).
func (n *Net) ask(ctx context.Context, server netip.AddrPort, name dnsmessage.Name, t dnsmessage.Type) ([]netip.Addr, error) {
	var idb [2]byte
	rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	q := dnsmessage.Question{Name: name, Type: t, Class: dnsmessage.ClassINET}
	msg := dnsmessage.Message{Header: dnsmessage.Header{ID: id, RecursionDesired: true}, Questions: []dnsmessage.Question{q}}
	req, err := msg.Pack()
	if err != nil {
		return nil, err
	}
	resp, err := n.askUDP(ctx, server, req, id, q)
	if err != nil {
		return nil, err
	}
	if resp.Header.Truncated {
		if resp, err = n.askTCP(ctx, server, req, id, q); err != nil {
			return nil, err
		}
	}
	switch resp.Header.RCode {
	case dnsmessage.RCodeSuccess:
	case dnsmessage.RCodeNameError:
		return nil, errNoSuchName
	default:
		return nil, errBadAnswer
	}
	var addrs []netip.Addr
	for _, rr := range resp.Answers {
		switch b := rr.Body.(type) {
		case *dnsmessage.AResource:
			if t == dnsmessage.TypeA {
				addrs = append(addrs, netip.AddrFrom4(b.A))
			}
		case *dnsmessage.AAAAResource:
			if t == dnsmessage.TypeAAAA {
				addrs = append(addrs, netip.AddrFrom16(b.AAAA))
			}
		}
	}
	return addrs, nil
}

func (n *Net) askUDP(ctx context.Context, server netip.AddrPort, req []byte, id uint16, q dnsmessage.Question) (*dnsmessage.Message, error) {
	c, err := n.s.DialUDP(netip.AddrPort{}, server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 1232) // RFC 9715's safe UDP payload size
	var lastErr error
	for range dnsAttempts {
		c.SetDeadline(deadline(ctx, dnsTimeout))
		if _, err := c.Write(req); err != nil {
			return nil, err
		}
		for {
			nr, err := c.Read(buf)
			if err != nil {
				lastErr = err
				break
			}
			if m, ok := reply(buf[:nr], id, q); ok {
				return m, nil
			}
			// Not our answer (a late one, a forgery): keep listening.
		}
		if !errors.Is(lastErr, os.ErrDeadlineExceeded) || ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func (n *Net) askTCP(ctx context.Context, server netip.AddrPort, req []byte, id uint16, q dnsmessage.Question) (*dnsmessage.Message, error) {
	dctx, cancel := context.WithDeadline(ctx, deadline(ctx, dnsTimeout))
	defer cancel()
	c, err := n.s.DialTCP(dctx, netip.AddrPort{}, server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(dctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	framed := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(req)), uint16(len(req)))
	if _, err := c.Write(append(framed, req...)); err != nil {
		return nil, err
	}
	var lb [2]byte
	if _, err := io.ReadFull(c, lb[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(lb[:]))
	if _, err := io.ReadFull(c, buf); err != nil {
		return nil, err
	}
	m, ok := reply(buf, id, q)
	if !ok {
		return nil, errBadAnswer
	}
	return m, nil
}

// reply parses b and checks that it answers question q of message id.
func reply(b []byte, id uint16, q dnsmessage.Question) (*dnsmessage.Message, bool) {
	var m dnsmessage.Message
	if m.Unpack(b) != nil || !m.Header.Response || m.Header.ID != id || len(m.Questions) != 1 {
		return nil, false
	}
	got := m.Questions[0]
	return &m, got.Type == q.Type && got.Class == q.Class && strings.EqualFold(got.Name.String(), q.Name.String())
}

// deadline is now+d, or ctx's deadline when that is sooner.
func deadline(ctx context.Context, d time.Duration) time.Time {
	t := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
		return dl
	}
	return t
}

// Dial connects to address on network, as net.Dial does.
func (n *Net) Dial(network, address string) (net.Conn, error) {
	return n.DialContext(context.Background(), network, address)
}

// DialContext connects to address on network: "tcp", "udp" or "ping",
// each optionally with 4 or 6; address is host:port ("ping": a host). A
// name is looked up; its addresses are tried in turn, each with a fair
// share of ctx's time (as net.Dialer does), and the first error is
// returned when none connects.
func (n *Net) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	proto, family := network, ""
	if k := len(network) - 1; k > 0 && (network[k] == '4' || network[k] == '6') {
		proto, family = network[:k], network[k:]
	}
	opErr := func(err error) error { return &net.OpError{Op: "dial", Net: network, Err: err} }
	if proto != "tcp" && proto != "udp" && proto != "ping" {
		return nil, opErr(net.UnknownNetworkError(network))
	}
	host, port := address, 0
	if proto != "ping" {
		h, p, err := net.SplitHostPort(address)
		if err != nil {
			return nil, opErr(err)
		}
		pn, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return nil, opErr(&net.AddrError{Err: "invalid port", Addr: address})
		}
		host, port = h, int(pn)
	}
	all, err := n.lookup(ctx, host)
	if err != nil {
		return nil, opErr(err)
	}
	var addrs []netip.Addr
	for _, a := range all {
		if family == "" || (family == "4") == a.Unmap().Is4() {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, opErr(&net.AddrError{Err: "no suitable address found", Addr: host})
	}
	var firstErr error
	for i, a := range addrs {
		if err := ctx.Err(); err != nil {
			return nil, opErr(err)
		}
		dctx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok {
			share := time.Until(dl) / time.Duration(len(addrs)-i)
			dctx, cancel = context.WithTimeout(ctx, max(share, min(2*time.Second, time.Until(dl))))
		}
		var c net.Conn
		switch proto {
		case "tcp":
			c, err = n.s.DialTCP(dctx, netip.AddrPort{}, netip.AddrPortFrom(a, uint16(port)))
		case "udp":
			c, err = n.s.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(a, uint16(port)))
		case "ping":
			c, err = n.DialPingAddr(netip.Addr{}, a)
		}
		cancel()
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}
