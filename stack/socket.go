package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"syscall"
	"time"

	"ustack/hashtable"
)

// errConnAborted is what connections see when the stack itself goes away.
const errConnAborted = syscall.ECONNABORTED

// opError wraps err the way Go's net package does, so errors.Is(err,
// syscall.ECONNRESET) and os.IsTimeout work on our errors too.
func opError(op string, local, remote net.Addr, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		err = os.NewSyscallError(op, errno)
	}
	return &net.OpError{Op: op, Net: "tcp", Source: local, Addr: remote, Err: err}
}

func tcpAddr(a [4]byte, port uint16) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IPv4(a[0], a[1], a[2], a[3]), Port: int(port)}
}

// resolve parses "host:port" for the stack's IPv4 world: host may be
// empty, an IPv4 literal; names are not resolved (the stack has no DNS).
func resolve(network, address string) (netip.AddrPort, error) {
	switch network {
	case "tcp", "tcp4":
	default:
		return netip.AddrPort{}, net.UnknownNetworkError(network)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	a := netip.IPv4Unspecified()
	if host != "" {
		if a, err = netip.ParseAddr(host); err != nil || !a.Unmap().Is4() {
			return netip.AddrPort{}, &net.AddrError{Err: "not an IPv4 address (ustack resolves no names)", Addr: host}
		}
		a = a.Unmap()
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

func (s *Stack) newOwner() hashtable.OwnerID {
	s.nextID++
	return s.nextID
}

// localAddr checks that a is one of ours (or the wildcard).
func (s *Stack) localAddr(a netip.Addr) ([4]byte, error) {
	if !a.IsValid() || a.IsUnspecified() {
		return [4]byte{}, nil
	}
	if a != s.opts.Addr {
		return [4]byte{}, syscall.EADDRNOTAVAIL
	}
	return s.addr, nil
}

// Listen announces on the stack's address; network is "tcp" or "tcp4",
// address "host:port" with host empty or the stack's address. The backlog
// is Somaxconn. Like Go's net.Listen, SO_REUSEADDR is set.
func (s *Stack) Listen(network, address string) (net.Listener, error) {
	ap, err := resolve(network, address)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	l, err := s.ListenTCP(ap, s.opts.Somaxconn)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// ListenTCP listens on laddr (port 0: an ephemeral port) with backlog,
// capped at Somaxconn as Linux caps it.
func (s *Stack) ListenTCP(laddr netip.AddrPort, backlog int) (*Listener, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(err error) (*Listener, error) {
		return nil, opError("listen", nil, net.TCPAddrFromAddrPort(laddr), err)
	}
	if s.closed {
		return fail(net.ErrClosed)
	}
	addr, err := s.localAddr(laddr.Addr())
	if err != nil {
		return fail(err)
	}
	owner := s.newOwner()
	entry := hashtable.BindEntry{Owner: owner, Addr: addr, ReuseAddr: true}
	port := laddr.Port()
	if port == 0 {
		if port, err = s.bind.EphemeralBind(entry); err != nil {
			return fail(err)
		}
	} else if err := s.bind.Bind(entry, port); err != nil {
		return fail(err)
	}
	if err := s.bind.SetListening(owner, port); err != nil {
		s.bind.Unbind(owner, port)
		return fail(err)
	}
	backlog = min(max(backlog, 0), s.opts.Somaxconn)
	l := &listener{s: s, addr: addr, port: port, owner: owner, backlog: backlog,
		synQ: make(map[*endpoint]struct{}), child: goSockOpts}
	if !s.lis.Insert(addr, port, l) {
		s.bind.Unbind(owner, port)
		return fail(syscall.EADDRINUSE)
	}
	return &Listener{s: s, l: l}, nil
}

// Listener is a listening socket; it implements net.Listener.
type Listener struct {
	s *Stack
	l *listener
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
	s, l := ln.s, ln.l
	s.mu.Lock()
	for {
		if l.closed {
			s.mu.Unlock()
			return nil, opError("accept", nil, ln.Addr(), net.ErrClosed)
		}
		if len(l.acceptQ) > 0 {
			e := l.acceptQ[0]
			l.acceptQ = l.acceptQ[1:]
			e.parent = nil
			if len(l.acceptQ) > 0 {
				l.notify()
			}
			s.mu.Unlock()
			return newConn(s, e), nil
		}
		ch := l.wait.wait()
		s.mu.Unlock()
		<-ch
		s.mu.Lock()
	}
}

// Close stops listening; connections still in the accept queue are reset
// (B12).
func (ln *Listener) Close() error {
	s := ln.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if ln.l.closed {
		return opError("close", nil, ln.Addr(), net.ErrClosed)
	}
	ln.l.closeLocked(s.clock.Now())
	s.drainLoopLocked()
	return nil
}

// Addr is the listening address.
func (ln *Listener) Addr() net.Addr { return tcpAddr(ln.l.addr, ln.l.port) }

// Bind reserves laddr without listening: the socket after bind() and
// before listen() or connect(). SYNs to it are refused (B02).
func (s *Stack) Bind(laddr netip.AddrPort) (*Bound, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(err error) (*Bound, error) {
		return nil, opError("bind", nil, net.TCPAddrFromAddrPort(laddr), err)
	}
	if s.closed {
		return fail(net.ErrClosed)
	}
	addr, err := s.localAddr(laddr.Addr())
	if err != nil {
		return fail(err)
	}
	b := &Bound{s: s, owner: s.newOwner(), addr: addr, port: laddr.Port()}
	entry := hashtable.BindEntry{Owner: b.owner, Addr: addr}
	if b.port == 0 {
		if b.port, err = s.bind.EphemeralBind(entry); err != nil {
			return fail(err)
		}
	} else if err := s.bind.Bind(entry, b.port); err != nil {
		return fail(err)
	}
	s.bound[b.owner] = b
	return b, nil
}

// Bound is a socket that is bound but not listening (B02).
type Bound struct {
	s      *Stack
	owner  hashtable.OwnerID
	addr   [4]byte
	port   uint16
	closed bool
}

// Close releases the port.
func (b *Bound) Close() error {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	if b.closed {
		return opError("close", nil, b.Addr(), net.ErrClosed)
	}
	b.closed = true
	b.s.bind.Unbind(b.owner, b.port)
	delete(b.s.bound, b.owner)
	return nil
}

// Addr is the bound address.
func (b *Bound) Addr() net.Addr { return tcpAddr(b.addr, b.port) }

// Dial connects to address ("ip:port") through the stack.
func (s *Stack) Dial(network, address string) (net.Conn, error) {
	return s.DialContext(context.Background(), network, address)
}

// DialContext is Dial with a context for cancellation and deadline.
func (s *Stack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ap, err := resolve(network, address)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	c, err := s.DialTCP(ctx, netip.AddrPort{}, ap)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialTCP connects from laddr (port 0: ephemeral) to raddr. An ephemeral
// port that happens to make a self-connect (B16) is closed and the dial
// retried, as Go's net package does; an explicit laddr == raddr is a real
// self-connect and is returned.
func (s *Stack) DialTCP(ctx context.Context, laddr, raddr netip.AddrPort) (*Conn, error) {
	for try := 0; ; try++ {
		c, err := s.dialOnce(ctx, laddr, raddr)
		if err != nil {
			return nil, err
		}
		if laddr.Port() != 0 || c.e.id.LocalPort != c.e.id.RemotePort || c.e.id.LocalAddr != c.e.id.RemoteAddr || try >= 2 {
			return c, nil
		}
		s.mu.Lock()
		s.inc(cntTCPSelfConnect)
		s.mu.Unlock()
		c.Close()
	}
}

func (s *Stack) dialOnce(ctx context.Context, laddr, raddr netip.AddrPort) (*Conn, error) {
	if raddr.Addr().IsUnspecified() {
		// Linux connects INADDR_ANY to the host itself (ip_route_connect).
		raddr = netip.AddrPortFrom(s.opts.Addr, raddr.Port())
	}
	remote := net.TCPAddrFromAddrPort(raddr)
	if !raddr.Addr().Is4() || raddr.Port() == 0 {
		return nil, opError("dial", nil, remote, syscall.EINVAL)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, opError("dial", nil, remote, net.ErrClosed)
	}
	if _, err := s.localAddr(laddr.Addr()); err != nil {
		s.mu.Unlock()
		return nil, opError("dial", nil, remote, err)
	}
	now := s.clock.Now()
	id := hashtable.FourTuple{LocalAddr: s.addr, RemoteAddr: raddr.Addr().As4(), RemotePort: raddr.Port()}
	owner := s.newOwner()
	entry := hashtable.BindEntry{Owner: owner, Addr: s.addr}
	if laddr.Port() != 0 {
		id.LocalPort = laddr.Port()
		if _, taken := s.est.Lookup(id); taken {
			s.mu.Unlock()
			return nil, opError("dial", nil, remote, syscall.EADDRINUSE)
		}
		if err := s.bind.Bind(entry, id.LocalPort); err != nil {
			s.mu.Unlock()
			return nil, opError("dial", nil, remote, err)
		}
	} else {
		port, err := s.ephemeralFor(id, 0, 0)
		if err != nil {
			s.mu.Unlock()
			return nil, opError("dial", nil, remote, err)
		}
		id.LocalPort = port
		if err := s.bind.Bind(entry, port); err != nil {
			s.mu.Unlock()
			return nil, opError("dial", nil, remote, err)
		}
	}
	e := s.connectLocked(now, id, owner, goSockOpts)
	c := newConn(s, e)
	for e.state == stateSynSent || e.state == stateSynRecv {
		ch := e.wrWait.wait()
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			s.mu.Lock()
			if e.state == stateSynSent || e.state == stateSynRecv {
				// The dialer gave up: the socket is gone without a word,
				// so a late SYN|ACK meets B17.
				e.orphan = true
				e.setState(stateClosed, "connect() given up", nil)
				e.destroy()
				s.mu.Unlock()
				return nil, opError("dial", nil, remote, ctx.Err())
			}
			s.mu.Unlock()
		}
		s.mu.Lock()
	}
	if e.state != stateEstablished && e.state != stateCloseWait {
		err := e.softErr
		if err == 0 {
			err = e.hardErr
		}
		e.softErr = 0
		s.mu.Unlock()
		if err == 0 {
			err = syscall.ECONNABORTED
		}
		return nil, opError("dial", nil, remote, err)
	}
	s.mu.Unlock()
	return c, nil
}

// ephemeralFor picks a local port for id per RFC 6056 (B42): free in the
// bind table and unused with this remote address and port.
func (s *Stack) ephemeralFor(id hashtable.FourTuple, lo, hi uint16) (uint16, error) {
	lo, hi = s.bind.Range(lo, hi)
	return s.bind.EphemeralIn(lo, hi, id.LocalAddr, id.RemoteAddr, id.RemotePort, func(p uint16) bool {
		t := id
		t.LocalPort = p
		_, taken := s.est.Lookup(t)
		return !taken && !s.bind.InUse(p)
	})
}

// connectLocked creates the connection id, holding the bind entry owner,
// and sends its SYN (B13).
func (s *Stack) connectLocked(now time.Time, id hashtable.FourTuple, owner hashtable.OwnerID, o sockOpts) *endpoint {
	e := s.newEndpoint(id)
	o.apply(e)
	e.owner = owner
	e.active = true
	e.iss = s.isn(now, id)
	e.sndUna, e.sndNxt, e.sndMax = e.iss, e.iss, e.iss
	e.lastRecv = now
	s.est.Insert(id, e)
	s.inc(cntTCPActiveOpens)
	e.setState(stateSynSent, "connect()", nil)
	e.sendSYN(now, false)
	s.drainLoopLocked()
	return e
}

// Conn is a TCP connection; it implements net.Conn like *net.TCPConn.
type Conn struct {
	s      *Stack
	e      *endpoint
	local  *net.TCPAddr
	remote *net.TCPAddr
	closed bool
	rdDL   time.Time
	wrDL   time.Time
}

func newConn(s *Stack, e *endpoint) *Conn {
	return &Conn{s: s, e: e,
		local:  tcpAddr(e.id.LocalAddr, e.id.LocalPort),
		remote: tcpAddr(e.id.RemoteAddr, e.id.RemotePort)}
}

func (c *Conn) err(op string, err error) error { return opError(op, c.local, c.remote, err) }

// wait blocks with the stack unlocked until w fires or the deadline
// passes; it reports whether the deadline passed.
func (c *Conn) wait(w *cond, deadline time.Time) (timedOut bool) {
	ch := w.wait()
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return true
		}
		t := time.NewTimer(d)
		defer t.Stop()
		c.s.mu.Unlock()
		select {
		case <-ch:
		case <-t.C:
		}
		c.s.mu.Lock()
		return false
	}
	c.s.mu.Unlock()
	<-ch
	c.s.mu.Lock()
	return false
}

func expired(dl time.Time) bool { return !dl.IsZero() && !time.Now().Before(dl) }

// Read reads received bytes in order; io.EOF after the peer's FIN (or
// after CloseRead).
func (c *Conn) Read(b []byte) (int, error) {
	s, e := c.s, c.e
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if c.closed {
			return 0, c.err("read", net.ErrClosed)
		}
		if expired(c.rdDL) {
			// Like Go's poller: a passed deadline fails even when data waits.
			return 0, c.err("read", os.ErrDeadlineExceeded)
		}
		if e.rcvBuf.pinned {
			c.wait(&e.rdWait, c.rdDL) // a WriteTo is handing these bytes out
			continue
		}
		if e.rcvBuf.Len() > 0 { // even after CloseRead, as Linux tcp_recvmsg
			if len(b) == 0 {
				return 0, nil
			}
			n := e.rcvBuf.Read(b)
			e.afterRead(s.clock.Now())
			s.drainLoopLocked()
			return n, nil
		}
		if e.softErr != 0 {
			err := e.softErr
			e.softErr = 0
			return 0, c.err("read", err)
		}
		if e.finRecvd || e.shutRd || e.gone {
			return 0, io.EOF
		}
		c.wait(&e.rdWait, c.rdDL)
	}
}

// writeToChunk bounds one w.Write in WriteTo, so that the window reopens
// while a slow writer works through a full receive buffer.
const writeToChunk = 256 << 10

// WriteTo writes the bytes the connection receives to w until EOF (then
// returning a nil error), an error of either side, or the read deadline.
// io.Copy(w, c) calls it. w gets slices of the receive buffer itself, so
// nothing is copied on the way (net.TCPConn's WriteTo splices for the same
// reason); w must not keep them after Write returns. A Read meanwhile waits.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	s, e := c.s, c.e
	var total int64
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if c.closed {
			return total, c.err("read", net.ErrClosed)
		}
		if expired(c.rdDL) {
			return total, c.err("read", os.ErrDeadlineExceeded)
		}
		if e.rcvBuf.pinned {
			c.wait(&e.rdWait, c.rdDL) // another WriteTo
			continue
		}
		if e.rcvBuf.Len() > 0 { // even after CloseRead, as Linux tcp_recvmsg
			a, b := e.rcvBuf.readable(writeToChunk)
			e.rcvBuf.pinned = true
			s.mu.Unlock()
			n, err := w.Write(a)
			if err == nil && len(b) > 0 {
				var m int
				m, err = w.Write(b)
				n += m
			}
			s.mu.Lock()
			e.rcvBuf.pinned = false
			e.rcvBuf.Discard(n)
			total += int64(n)
			e.afterRead(s.clock.Now())
			s.drainLoopLocked()
			e.rdWait.notify() // a Read that waited for the pin
			if err != nil {
				return total, err
			}
			continue
		}
		if e.softErr != 0 {
			err := e.softErr
			e.softErr = 0
			return total, c.err("read", err)
		}
		if e.finRecvd || e.shutRd || e.gone {
			return total, nil
		}
		c.wait(&e.rdWait, c.rdDL)
	}
}

// afterRead reopens the window after the application consumed data, and
// tells the peer when the window at least doubled (Linux tcp_cleanup_rbuf).
func (e *endpoint) afterRead(now time.Time) {
	if e.rcvBuf.Len() == 0 && len(e.ooo) == 0 {
		e.rcvBuf.release()
	}
	if !e.state.synchronized() || e.finRecvd || e.gone {
		return
	}
	cur := uint32(0)
	if e.rcvAdv.gt(e.rcvNxt) {
		cur = e.rcvAdv.sub(e.rcvNxt)
	}
	// The window we could offer is capped by what the field can carry
	// (Linux window_clamp).
	clamp := uint32(65535) << e.rcvWscale
	free := min(uint32(e.rcvSpace()), clamp)
	if 2*cur <= clamp && free >= 2*cur && free-cur >= uint32(e.s.ourMSS()) {
		e.sendACK(now)
	}
}

// Write queues b for sending and blocks while the send buffer is full.
func (c *Conn) Write(b []byte) (int, error) {
	s, e := c.s, c.e
	s.mu.Lock()
	defer s.mu.Unlock()
	written := 0
	for {
		if c.closed {
			return written, c.err("write", net.ErrClosed)
		}
		if expired(c.wrDL) {
			return written, c.err("write", os.ErrDeadlineExceeded)
		}
		if e.softErr != 0 {
			err := e.softErr
			e.softErr = 0
			return written, c.err("write", err)
		}
		if e.shutWr || e.gone || !(e.state == stateEstablished || e.state == stateCloseWait) {
			if e.state == stateSynRecv && !e.gone && !e.shutWr {
				// Not yet established (simultaneous open): wait.
			} else {
				return written, c.err("write", syscall.EPIPE)
			}
		}
		if written == len(b) {
			return written, nil
		}
		if n := e.sndBuf.Write(b[written:]); n > 0 {
			written += n
			e.output(s.clock.Now())
			s.drainLoopLocked()
			continue
		}
		c.wait(&e.wrWait, c.wrDL)
	}
}

// Close closes the socket. Unread received data turns the close into a
// reset (B32), as does SO_LINGER 0; otherwise a FIN follows the queued data
// and the connection finishes closing without us (B30).
func (c *Conn) Close() error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.closed {
		return c.err("close", net.ErrClosed)
	}
	c.closed = true
	c.e.closeLocked(s.clock.Now())
	s.drainLoopLocked()
	return nil
}

func (e *endpoint) closeLocked(now time.Time) {
	if e.orphan {
		return
	}
	e.orphan = true
	unread := e.rcvBuf.Len() > 0
	e.shutRd, e.shutWr = true, true
	e.notifyRead()
	e.notifyWrite()
	switch e.state {
	case stateClosed:
		e.destroy()
		return
	case stateSynSent:
		e.setState(stateClosed, "close()", nil)
		e.destroy()
		return
	case stateTimeWait, stateClosing, stateLastAck:
		return
	}
	if unread || e.linger == 0 {
		// Linux tcp_close: data_was_unread, or SO_LINGER 0.
		if unread {
			e.s.inc(cntTCPAbortOnClose)
		} else {
			e.s.inc(cntTCPAbortOnLinger)
		}
		e.sendRST(now)
		why := "close() with unread data: RST sent"
		if !unread {
			why = "close() with SO_LINGER 0: RST sent"
		}
		e.setState(stateClosed, why, nil)
		e.destroy()
		return
	}
	e.queueFIN(now, "close()")
	if e.state == stateFinWait2 {
		if e.linger2 < 0 {
			// TCP_LINGER2 -1: no FIN-WAIT-2 for an orphan (__tcp_close).
			e.s.inc(cntTCPAbortOnLinger)
			e.sendRST(now)
			e.setState(stateClosed, "close() in FIN-WAIT-2 with TCP_LINGER2 < 0: RST sent", nil)
			e.destroy()
			return
		}
		e.armFinWait2(now)
	}
}

// queueFIN schedules our FIN after the queued data (RFC 9293 3.10.4).
func (e *endpoint) queueFIN(now time.Time, why string) {
	switch e.state {
	case stateSynRecv, stateEstablished:
		e.finQueued = true
		e.setState(stateFinWait1, why, nil)
	case stateCloseWait:
		e.finQueued = true
		e.setState(stateLastAck, why, nil)
	default:
		return
	}
	e.output(now)
}

// CloseWrite shuts down the sending side (B34): FIN after the queued data;
// reading goes on.
func (c *Conn) CloseWrite() error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.closed {
		return c.err("close", net.ErrClosed)
	}
	e := c.e
	if e.softErr != 0 || e.gone {
		return c.err("shutdown", syscall.ENOTCONN)
	}
	if e.shutWr {
		return nil
	}
	e.shutWr = true
	e.queueFIN(s.clock.Now(), "shutdown(SHUT_WR)")
	s.drainLoopLocked()
	return nil
}

// CloseRead shuts down the receiving side: reads return EOF; nothing is
// sent (B34).
func (c *Conn) CloseRead() error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.closed {
		return c.err("close", net.ErrClosed)
	}
	c.e.shutRd = true
	c.e.notifyRead()
	return nil
}

func (c *Conn) LocalAddr() net.Addr  { return c.local }
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline and wakes a blocked Read so it
// sees the new one.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.closed {
		return c.err("set", net.ErrClosed)
	}
	c.rdDL = t
	c.e.notifyRead()
	return nil
}

// SetWriteDeadline sets the write deadline and wakes a blocked Write.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.closed {
		return c.err("set", net.ErrClosed)
	}
	c.wrDL = t
	c.e.notifyWrite()
	return nil
}

// SetLinger is SO_LINGER: 0 makes Close abortive (RST, B32); other values
// close normally in the background, as Go documents.
func (c *Conn) SetLinger(sec int) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.e.linger = sec
	return nil
}

// SetKeepAlive is SO_KEEPALIVE (B23), with the stack's keepalive timing.
func (c *Conn) SetKeepAlive(on bool) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	e := c.e
	e.keepalive = on
	if on && e.state.synchronized() && !e.gone {
		e.armKeepalive(s.clock.Now())
	} else if !on && !(e.state == stateFinWait2 && e.orphan) {
		s.timers.Stop(&e.keepTimer)
	}
	return nil
}

// SetKeepAlivePeriod is TCP_KEEPIDLE, as in Go's net package: rounded up
// to whole seconds, zero meaning Go's default of 15 s and a negative value
// leaving it unchanged.
func (c *Conn) SetKeepAlivePeriod(d time.Duration) error {
	return c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: c.keepAliveOn(), Idle: d, Interval: -1, Count: -1})
}

// SetKeepAliveConfig is net.TCPConn's: SO_KEEPALIVE with TCP_KEEPIDLE,
// TCP_KEEPINTVL and TCP_KEEPCNT (B23). Zero fields take Go's defaults
// (15 s, 15 s, 9), negative ones are left unchanged; out of Linux's range
// (1..32767 s, 1..127) is EINVAL.
func (c *Conn) SetKeepAliveConfig(config net.KeepAliveConfig) error {
	idle := keepaliveSecs(config.Idle, 15*time.Second)
	intvl := keepaliveSecs(config.Interval, 15*time.Second)
	count := config.Count
	if count == 0 {
		count = 9
	}
	if idle > maxKeepIdle || intvl > maxKeepIdle || count > maxKeepCnt {
		return c.err("set", syscall.EINVAL)
	}
	s := c.s
	s.mu.Lock()
	e := c.e
	if idle > 0 {
		e.keepIdle = time.Duration(idle) * time.Second
	}
	if intvl > 0 {
		e.keepIntvl = time.Duration(intvl) * time.Second
	}
	if count > 0 {
		e.keepCnt = count
	}
	s.mu.Unlock()
	return c.SetKeepAlive(config.Enable)
}

// keepaliveSecs rounds d up to seconds as Go's net package does: 0 takes
// def, and a negative d stays negative (leave unchanged).
func keepaliveSecs(d, def time.Duration) int {
	switch {
	case d < 0:
		return -1
	case d == 0:
		d = def
	}
	return int((d + time.Second - 1) / time.Second)
}

func (c *Conn) keepAliveOn() bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.e.keepalive
}

// SetUserTimeout is TCP_USER_TIMEOUT (tcp(7), RFC 5482): how long sent
// data may stay unacknowledged, or window probes and keepalives
// unanswered, before the connection fails with ETIMEDOUT; zero restores
// the retry counts (tcp_retries2, tcp_keepalive_probes).
func (c *Conn) SetUserTimeout(d time.Duration) error {
	if d < 0 {
		return c.err("set", syscall.EINVAL)
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.e.userTimeout = d.Truncate(time.Millisecond)
	return nil
}

// SetNoDelay is TCP_NODELAY; on by default, as in Go's net package.
func (c *Conn) SetNoDelay(on bool) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c.e.nodelay = on
	if on {
		c.e.output(s.clock.Now())
		s.drainLoopLocked()
	}
	return nil
}

// State returns the connection's state with ss's name (ESTAB, ...).
func (c *Conn) State() string {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.e.state.String()
}

// Sockets lists every socket, like ss -tan, sorted by local then peer.
func (s *Stack) Sockets() []SocketInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	var out []SocketInfo
	for _, l := range s.listenersLocked() {
		out = append(out, SocketInfo{State: "LISTEN", RecvQ: len(l.acceptQ), SendQ: l.backlog,
			Local: addrPort(l.addr, l.port), Peer: netip.AddrPortFrom(netip.IPv4Unspecified(), 0)})
	}
	for _, b := range s.bound {
		out = append(out, SocketInfo{State: "UNCONN", Local: addrPort(b.addr, b.port),
			Peer: netip.AddrPortFrom(netip.IPv4Unspecified(), 0)})
	}
	for _, e := range s.endpointsLocked() {
		si := SocketInfo{State: e.state.String(), RecvQ: e.rcvBuf.Len(), SendQ: e.sndBuf.Len(),
			Local: addrPort(e.id.LocalAddr, e.id.LocalPort), Peer: addrPort(e.id.RemoteAddr, e.id.RemotePort)}
		switch {
		case e.waitTimer.Pending():
			si.Timer, si.TimerLeft = "timewait", e.waitTimer.Deadline().Sub(now)
		case e.rtxTimer.Pending():
			si.Timer, si.TimerLeft = "on", e.rtxTimer.Deadline().Sub(now)
			if e.persist {
				si.Timer = "persist"
			}
			si.Retransmits = max(e.backoff, e.retries)
		case e.keepTimer.Pending():
			si.Timer, si.TimerLeft = "keepalive", e.keepTimer.Deadline().Sub(now)
			if e.state == stateFinWait2 && e.orphan {
				si.Timer = "timewait" // Linux reports an orphan FIN-WAIT-2 so
			}
		}
		out = append(out, si)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Local.Compare(out[j].Local); c != 0 {
			return c < 0
		}
		return out[i].Peer.Compare(out[j].Peer) < 0
	})
	return out
}

func (s *Stack) endpointsLocked() []*endpoint {
	var out []*endpoint
	s.est.All(func(_ hashtable.FourTuple, e *endpoint) bool {
		out = append(out, e)
		return true
	})
	return out
}

func (s *Stack) listenersLocked() []*listener {
	var out []*listener
	s.lis.All(func(_ [4]byte, _ uint16, l *listener) bool {
		out = append(out, l)
		return true
	})
	return out
}

// String describes the stack for logs.
func (s *Stack) String() string { return fmt.Sprintf("ustack %v mtu %d", s.opts.Addr, s.mtu) }

// WaitReadable blocks until a Read would not block (data, EOF or an error
// is waiting) or d passes, without consuming anything. The closer service
// uses it to close with unread data on purpose (B32).
func (c *Conn) WaitReadable(d time.Duration) bool {
	s, e := c.s, c.e
	deadline := time.Now().Add(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if c.closed || e.rcvBuf.Len() > 0 || e.softErr != 0 || e.finRecvd || e.gone {
			return true
		}
		if c.wait(&e.rdWait, deadline) || expired(deadline) {
			return false
		}
	}
}
