package stack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"ustack/hashtable"
)

// The Go API over the socket core: Conn is a net.Conn, Dial and DialTCP
// open one. Each method takes the stack's lock, calls the socket core and,
// where the core says EAGAIN, sleeps until the connection changes or the
// deadline passes; errors come out as *net.OpError over a syscall.Errno, as
// from Go's net package.

// Conn is a TCP connection; it implements net.Conn like *net.TCPConn.
type Conn struct {
	so     *Socket
	local  *net.TCPAddr
	remote *net.TCPAddr
	rdDL   time.Time
	wrDL   time.Time
}

// errRetry tells block to look again at once, without waiting.
var errRetry = errors.New("retry")

// writeToChunk bounds one w.Write in WriteTo, so that the window reopens
// while a slow writer works through a full receive buffer.
const writeToChunk = 256 << 10

// opError wraps err the way Go's net package does, so errors.Is(err,
// syscall.ECONNRESET) and os.IsTimeout work on our errors too. EBADF (a
// closed socket) and ENETDOWN (a closed stack) are net.ErrClosed.
func opError(op string, local, remote net.Addr, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EBADF, syscall.ENETDOWN:
			err = net.ErrClosed
		default:
			err = os.NewSyscallError(op, errno)
		}
	}
	return &net.OpError{Op: op, Net: "tcp", Source: local, Addr: remote, Err: err}
}

func tcpAddr(a hashtable.Addr, port uint16) *net.TCPAddr {
	if a.Is4() {
		b := a.As4()
		return &net.TCPAddr{IP: net.IPv4(b[0], b[1], b[2], b[3]), Port: int(port)}
	}
	return &net.TCPAddr{IP: append(net.IP(nil), a[:]...), Port: int(port)}
}

// resolve parses "host:port" for network "tcp", "tcp4", "tcp6" (or the
// same for "udp") as Go's net package does: host may be empty (the wildcard: :: for "tcp" on a
// stack with IPv6, both families) or an IP literal of the network's
// family; names are not resolved (the stack has no DNS).
func (s *Stack) resolve(network, address string) (netip.AddrPort, error) {
	proto, family := network[:min(3, len(network))], network[min(3, len(network)):]
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
	default:
		return netip.AddrPort{}, net.UnknownNetworkError(network)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := net.LookupPort(proto, port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	a := netip.IPv4Unspecified()
	if family == "6" || family == "" && s.has6 {
		a = netip.IPv6Unspecified()
	}
	if host != "" {
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, &net.AddrError{Err: "not an IP address (ustack resolves no names)", Addr: host}
		}
		a = a.WithZone("")
		if is4 := a.Unmap().Is4(); family == "4" && !is4 || family == "6" && is4 && !a.Is4In6() {
			return netip.AddrPort{}, &net.AddrError{Err: "address of the wrong family for " + network, Addr: host}
		}
		if a.Is4In6() && family != "6" {
			a = a.Unmap()
		}
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// Dial connects to address ("ip:port") through the stack.
func (s *Stack) Dial(network, address string) (net.Conn, error) {
	return s.DialContext(context.Background(), network, address)
}

// DialContext is Dial with a context for cancellation and deadline.
func (s *Stack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ap, err := s.resolve(network, address)
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
		id := c.so.e.id
		if laddr.Port() != 0 || id.LocalPort != id.RemotePort || id.LocalAddr != id.RemoteAddr || try >= 2 {
			return c, nil
		}
		s.mu.Lock()
		s.inc(cntTCPSelfConnect)
		s.mu.Unlock()
		c.Close()
	}
}

// dialOnce is a blocking connect(2): bind if asked, connect, then sleep
// until the handshake ends one way or the other.
func (s *Stack) dialOnce(ctx context.Context, laddr, raddr netip.AddrPort) (*Conn, error) {
	remote := net.TCPAddrFromAddrPort(raddr)
	so := s.newGoSocket()
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(err error) (*Conn, error) {
		so.closeLocked()
		return nil, opError("dial", nil, remote, err)
	}
	if laddr.Port() != 0 {
		if err := so.bindLocked(laddr); err != nil {
			return fail(err)
		}
	} else if _, err := s.localAddr(laddr.Addr()); err != nil {
		return fail(err)
	}
	if err := so.connectLocked(raddr); err != syscall.EINPROGRESS {
		return fail(err)
	}
	e := so.e
	for e.state == stateSynSent || e.state == stateSynRecv {
		ch := e.wrWait.wait()
		s.mu.Unlock()
		select {
		case <-ch:
			s.mu.Lock()
		case <-ctx.Done():
			s.mu.Lock()
			if e.state == stateSynSent || e.state == stateSynRecv {
				// The dialer gave up: the socket is gone without a word,
				// so a late SYN|ACK meets B17.
				e.orphan = true
				e.close("connect() given up", nil, 0)
				return fail(ctx.Err())
			}
		}
	}
	if e.state != stateEstablished && e.state != stateCloseWait {
		err := e.takeSoftErr()
		if err == 0 {
			err = e.hardErr
		}
		if err == 0 {
			err = errConnAborted
		}
		return fail(err)
	}
	return newConn(so), nil
}

func newConn(so *Socket) *Conn {
	e := so.e
	return &Conn{so: so,
		local:  tcpAddr(e.id.LocalAddr, e.id.LocalPort),
		remote: tcpAddr(e.id.RemoteAddr, e.id.RemotePort)}
}

func (c *Conn) err(op string, err error) error { return opError(op, c.local, c.remote, err) }

func expired(dl time.Time) bool { return !dl.IsZero() && !time.Now().Before(dl) }

// block runs try under the stack's lock until it returns something other
// than EAGAIN, sleeping on w in between; a passed deadline fails the call
// before try runs, as Go's poller fails it even when data waits. It is the
// one loop behind every blocking Conn call.
func (c *Conn) block(w *cond, deadline *time.Time, try func() error) error {
	so := c.so
	so.s.mu.Lock()
	defer so.s.mu.Unlock()
	for {
		if so.closed {
			return net.ErrClosed
		}
		if expired(*deadline) {
			return os.ErrDeadlineExceeded
		}
		switch err := try(); err {
		case syscall.EAGAIN:
			so.waitLocked(w, *deadline)
		case errRetry:
		default:
			return err
		}
	}
}

// Read reads received bytes in order; io.EOF after the peer's FIN (or
// after CloseRead).
func (c *Conn) Read(b []byte) (int, error) {
	var n int
	err := c.block(&c.so.e.rdWait, &c.rdDL, func() (err error) {
		n, err = c.so.recvLocked(b, false)
		return err
	})
	if err != nil && err != io.EOF {
		err = c.err("read", err)
	}
	return n, err
}

// WriteTo writes the bytes the connection receives to w until EOF (then
// returning a nil error), an error of either side, or the read deadline.
// io.Copy(w, c) calls it. w gets slices of the receive buffer itself, so
// nothing is copied on the way (net.TCPConn's WriteTo splices for the same
// reason); w must not keep them after Write returns. A Read meanwhile waits.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	so := c.so
	e := so.e
	var total int64
	var werr error
	err := c.block(&e.rdWait, &c.rdDL, func() error {
		for {
			// Bytes, or the end, as a zero-length read sees them.
			if _, err := so.recvLocked(nil, false); err != nil {
				return err
			}
			a, b := e.rcv.buf.readable(writeToChunk)
			e.rcv.buf.pinned = true
			so.s.mu.Unlock()
			n, err := w.Write(a)
			if err == nil && len(b) > 0 {
				var m int
				m, err = w.Write(b)
				n += m
			}
			so.s.mu.Lock()
			e.rcv.buf.pinned = false
			e.rcv.buf.Discard(n)
			total += int64(n)
			e.afterRead(so.s.clock.Now())
			e.rdWait.notify() // a Read that waited for the pin
			if err != nil {
				werr = err
				return err
			}
			if so.closed || expired(c.rdDL) {
				return errRetry // block reports which
			}
		}
	})
	switch {
	case werr != nil:
		return total, werr
	case err == io.EOF:
		return total, nil
	case err != nil:
		return total, c.err("read", err)
	}
	return total, nil
}

// Write queues b for sending and blocks while the send buffer is full.
func (c *Conn) Write(b []byte) (int, error) {
	written := 0
	err := c.block(&c.so.e.wrWait, &c.wrDL, func() error {
		for {
			n, err := c.so.sendLocked(b[written:], false)
			written += n
			if err != nil || written == len(b) {
				return err
			}
		}
	})
	if err != nil {
		err = c.err("write", err)
	}
	return written, err
}

// WaitReadable blocks until a Read would not block (data, EOF or an error
// is waiting) or d passes, without consuming anything. The closer service
// uses it to close with unread data on purpose (B32).
func (c *Conn) WaitReadable(d time.Duration) bool {
	deadline := time.Now().Add(d)
	e := c.so.e
	err := c.block(&e.rdWait, &deadline, func() error {
		if e.rcv.buf.Len() > 0 || e.softErr != 0 || e.rcv.finRecvd || e.gone {
			return nil // without taking anything
		}
		return syscall.EAGAIN
	})
	return err != os.ErrDeadlineExceeded
}

// Close closes the socket. Unread received data turns the close into a
// reset (B32), as does SO_LINGER 0; otherwise a FIN follows the queued data
// and the connection finishes closing without us (B30).
func (c *Conn) Close() error { return c.call("close", c.so.closeLocked) }

// CloseWrite shuts down the sending side (B34): FIN after the queued data;
// reading goes on.
func (c *Conn) CloseWrite() error {
	return c.call("shutdown", func() error { return c.so.shutdownLocked(syscall.SHUT_WR) })
}

// CloseRead shuts down the receiving side: reads return EOF; nothing is
// sent (B34).
func (c *Conn) CloseRead() error {
	return c.call("shutdown", func() error { return c.so.shutdownLocked(syscall.SHUT_RD) })
}

// call runs one non-blocking socket call under the lock.
func (c *Conn) call(op string, f func() error) error {
	c.so.s.mu.Lock()
	defer c.so.s.mu.Unlock()
	if err := f(); err != nil {
		return c.err(op, err)
	}
	return nil
}

// setOpt sets a socket option, as the setsockopt(2) behind net.TCPConn's
// setters.
func (c *Conn) setOpt(opt SockOpt, val int) error {
	return c.call("set", func() error { return c.so.setOptionLocked(opt, val) })
}

func (c *Conn) LocalAddr() net.Addr { return c.local }

func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline and wakes a blocked Read so it
// sees the new one.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.setDeadline(&c.rdDL, t) }

// SetWriteDeadline sets the write deadline and wakes a blocked Write.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.setDeadline(&c.wrDL, t) }

func (c *Conn) setDeadline(dl *time.Time, t time.Time) error {
	return c.call("set", func() error {
		if c.so.closed {
			return syscall.EBADF
		}
		*dl = t
		c.so.e.notifyRead()
		c.so.e.notifyWrite()
		return nil
	})
}

// SetLinger is SO_LINGER: 0 makes Close abortive (RST, B32); other values
// close normally in the background, as Go documents.
func (c *Conn) SetLinger(sec int) error { return c.setOpt(OptLinger, sec) }

// SetKeepAlive is SO_KEEPALIVE (B23), with the stack's keepalive timing.
func (c *Conn) SetKeepAlive(on bool) error { return c.setOpt(OptKeepAlive, boolInt(on)) }

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
	for _, o := range []struct {
		opt SockOpt
		val int
	}{{OptKeepIdle, idle}, {OptKeepIntvl, intvl}, {OptKeepCnt, count}} {
		if o.val > 0 {
			if err := c.setOpt(o.opt, o.val); err != nil {
				return err
			}
		}
	}
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
	v, _ := c.so.Option(OptKeepAlive)
	return v != 0
}

// SetUserTimeout is TCP_USER_TIMEOUT (tcp(7), RFC 5482): how long sent
// data may stay unacknowledged, or window probes and keepalives
// unanswered, before the connection fails with ETIMEDOUT; zero restores
// the retry counts (tcp_retries2, tcp_keepalive_probes).
func (c *Conn) SetUserTimeout(d time.Duration) error {
	if d < 0 {
		return c.err("set", syscall.EINVAL)
	}
	return c.setOpt(OptUserTimeout, int(d/time.Millisecond))
}

// SetNoDelay is TCP_NODELAY; on by default, as in Go's net package.
func (c *Conn) SetNoDelay(on bool) error { return c.setOpt(OptNoDelay, boolInt(on)) }

// State returns the connection's state with ss's name (ESTAB, ...).
func (c *Conn) State() string { return c.so.State() }

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}
