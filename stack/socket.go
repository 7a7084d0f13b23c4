package stack

import (
	"io"
	"net/netip"
	"syscall"
	"time"

	"ustack/hashtable"
)

// The socket core. Socket is the one engine behind every socket API: bind,
// listen, connect, accept, receive, send, shutdown, close, options and
// errors are written once here, as non-blocking calls that answer with a
// bare syscall.Errno (EAGAIN, EINPROGRESS...). The drill and `ustack nc` use
// it as it is; Conn and Listener (conn.go, listener.go) are thin blocking
// adapters over it, as Go's net package sits over netFD.

// errConnAborted is what connections see when the stack itself goes away.
const errConnAborted = syscall.ECONNABORTED

// Socket is a BSD-style, non-blocking socket for tools that need socket(2)
// semantics (the drill, `ustack nc`): every call returns at once, with a bare
// syscall.Errno such as EAGAIN or EINPROGRESS, and Changed tells when to look
// again. Go programs normally use Listen and Dial instead.
type Socket struct {
	s         *Stack
	opts      sockOpts
	reuseAddr bool
	owner     hashtable.OwnerID // bind-table entry, once bound
	addr      hashtable.Addr
	port      uint16
	addrOnly  bool   // bound to an address, the port left to connect (IP_BIND_ADDRESS_NO_PORT)
	noPort    bool   // IP_BIND_ADDRESS_NO_PORT
	portRange uint32 // IP_LOCAL_PORT_RANGE
	v6only    bool   // IPV6_V6ONLY: a :: socket takes no IPv4
	l         *listener
	e         *endpoint
	u         *udpSock // a UDP (or ping) socket's datagram side
	isUDP     bool
	isPing    bool // a ping socket (ping.go): the port is the echo identifier
	pingV6    bool
	ev        waiter // made by Changed, for callers that poll
	closed    bool
}

// NewSocket returns an unbound socket with Linux's defaults (Nagle on).
func (s *Stack) NewSocket() *Socket {
	return &Socket{s: s, opts: linuxSockOpts}
}

// newGoSocket is a socket with the defaults of Go's net package
// (TCP_NODELAY on), for Dial and Listen.
func (s *Stack) newGoSocket() *Socket {
	return &Socket{s: s, opts: goSockOpts}
}

func (s *Stack) newOwner() hashtable.OwnerID {
	s.nextID++
	return s.nextID
}

// localAddr checks that a is one of ours (or the wildcard).
func (s *Stack) localAddr(a netip.Addr) (hashtable.Addr, error) {
	switch {
	case !a.IsValid() || a.Unmap().IsUnspecified() && a.Unmap().Is4():
		return hashtable.Any4, nil
	case a.IsUnspecified():
		return hashtable.Any6, nil // both families, unless IPV6_V6ONLY
	case s.has4 && a.Unmap() == s.opts.Addr:
		return s.addr, nil
	case s.has6 && a == s.opts.Addr6:
		return s.addr6, nil
	}
	return hashtable.Any4, syscall.EADDRNOTAVAIL
}

// Bind binds the socket to addr (port 0: an ephemeral port).
func (so *Socket) Bind(addr netip.AddrPort) error {
	return so.locked(func() error { return so.bindLocked(addr) })
}

func (so *Socket) bindLocked(addr netip.AddrPort) error {
	s := so.s
	if err := so.usable(); err != 0 {
		return err
	}
	switch {
	case so.owner != 0 || so.e != nil || so.l != nil || so.addrOnly:
		return syscall.EINVAL
	}
	a, err := s.localAddr(addr.Addr())
	if err != nil {
		return err
	}
	if addr.Port() == 0 && so.noPort {
		// IP_BIND_ADDRESS_NO_PORT: only the address now; connect()
		// picks the port knowing the destination (__inet_bind).
		so.addr, so.addrOnly = a, true
		return nil
	}
	if err := so.claimPort(a, addr.Port()); err != nil {
		return err
	}
	if !so.isUDP {
		s.bound[so.owner] = so
	}
	return nil
}

// usable is the error every call that opens something gets on a closed
// socket (EBADF) or a closed stack (ENETDOWN), else 0.
func (so *Socket) usable() syscall.Errno {
	switch {
	case so.closed:
		return syscall.EBADF
	case so.s.closed:
		return syscall.ENETDOWN
	}
	return 0
}

// claimPort takes port on a in the bind table (port 0: an ephemeral one from
// the socket's range): the one place where sockets get their local port.
func (so *Socket) claimPort(a hashtable.Addr, port uint16) error {
	s := so.s
	owner := s.newOwner()
	entry := hashtable.BindEntry{Owner: owner, Addr: a, ReuseAddr: so.reuseAddr, V6Only: so.v6only}
	table := so.ports()
	if port == 0 {
		lo, hi := so.portBounds()
		var err error
		if port, err = table.EphemeralBindIn(lo, hi, entry); err != nil {
			return err
		}
	} else if err := table.Bind(entry, port); err != nil {
		return err
	}
	so.owner, so.addr, so.port = owner, a, port
	switch {
	case so.isPing:
		so.u.local, so.u.port, so.u.v6 = a, port, so.pingV6
		s.pings[port] = append(s.pings[port], so.u)
	case so.isUDP:
		so.u.local, so.u.port = a, port
		s.udp[port] = append(s.udp[port], so.u)
	}
	return nil
}

// ports is the bind table of the socket's protocol.
func (so *Socket) ports() *hashtable.Bind {
	if so.isPing {
		return so.s.bindPing
	}
	if so.isUDP {
		return so.s.bindUDP
	}
	return so.s.bind
}

// portBounds is the ephemeral range for this socket: the stack's, narrowed
// by IP_LOCAL_PORT_RANGE.
func (so *Socket) portBounds() (lo, hi uint16) {
	return so.s.bind.Range(uint16(so.portRange), uint16(so.portRange>>16))
}

// Listen makes the socket a listener; an unbound socket gets an ephemeral
// port, as Linux's inet_autobind does.
func (so *Socket) Listen(backlog int) error {
	return so.locked(func() error { return so.listenLocked(backlog) })
}

func (so *Socket) listenLocked(backlog int) error {
	s := so.s
	if err := so.usable(); err != 0 {
		return err
	}
	switch {
	case so.isUDP:
		return syscall.EOPNOTSUPP // listen(2) on a datagram socket
	case so.e != nil:
		return syscall.EINVAL
	case so.l != nil:
		so.l.backlog = min(max(backlog, 0), s.opts.Somaxconn)
		return nil
	}
	if so.owner == 0 {
		// inet_autobind: a port now, even after IP_BIND_ADDRESS_NO_PORT.
		if err := so.claimPort(so.addr, 0); err != nil {
			return err
		}
	}
	if err := s.bind.SetListening(so.owner, so.port); err != nil {
		return err
	}
	l := &listener{s: s, addr: so.addr, port: so.port, owner: so.owner, v6only: so.v6only,
		backlog: min(max(backlog, 0), s.opts.Somaxconn),
		synQ:    make(map[*endpoint]struct{}), ev: so.ev, child: so.opts}
	if !s.lis.Insert(so.addr, so.port, l) {
		return syscall.EADDRINUSE
	}
	delete(s.bound, so.owner)
	so.l = l
	return nil
}

// Connect starts an active open and returns EINPROGRESS; the outcome shows
// in Events and SockError, as for a non-blocking connect(2).
func (so *Socket) Connect(addr netip.AddrPort) error {
	return so.locked(func() error { return so.connectLocked(addr) })
}

func (so *Socket) connectLocked(addr netip.AddrPort) error {
	s := so.s
	if err := so.usable(); err != 0 {
		return err
	}
	if so.isUDP {
		return so.udpConnect(addr)
	}
	switch {
	case so.l != nil:
		return syscall.EISCONN
	case so.e != nil:
		if so.e.state == stateSynSent || so.e.state == stateSynRecv {
			return syscall.EALREADY
		}
		return syscall.EISCONN
	}
	if addr.Addr().IsUnspecified() {
		// Linux connects INADDR_ANY (and ::) to the host itself
		// (ip_route_connect, ip6_datagram_connect's "any: loopback").
		self := s.opts.Addr
		if !addr.Addr().Is4() && s.has6 || !s.has4 {
			self = s.opts.Addr6
		}
		addr = netip.AddrPortFrom(self, addr.Port())
	}
	ra := hashtable.AddrFrom(addr.Addr())
	switch {
	case !addr.IsValid() || addr.Port() == 0:
		return syscall.EINVAL
	case !ra.Is4() && !s.has6:
		return syscall.ENETUNREACH // no IPv6 route
	case ra.Is4() && !s.has4:
		return syscall.ENETUNREACH // no IPv4 route
	case ra.Is4() && so.v6only:
		return syscall.ENETUNREACH // tcp_v6_connect: a v4-mapped peer on a v6-only socket
	}
	id := hashtable.FourTuple{LocalAddr: s.ourAddr(ra), RemoteAddr: ra, RemotePort: addr.Port()}
	if so.owner != 0 {
		id.LocalPort = so.port
		if _, taken := s.est.Lookup(id); taken {
			return syscall.EADDRNOTAVAIL // __inet_check_established
		}
	} else {
		// RFC 6056 (B42): a port free in the bind table and unused with
		// this remote address and port.
		lo, hi := so.portBounds()
		port, err := s.bind.EphemeralIn(lo, hi, id.LocalAddr, id.RemoteAddr, id.RemotePort, func(p uint16) bool {
			t := id
			t.LocalPort = p
			_, taken := s.est.Lookup(t)
			return !taken && !s.bind.InUse(p)
		})
		if err != nil {
			return err
		}
		if err := so.claimPort(id.LocalAddr, port); err != nil {
			return err
		}
		id.LocalPort = port
	}
	delete(s.bound, so.owner)
	so.e = s.connect(s.clock.Now(), id, so.owner, so.opts)
	so.e.ev = so.ev
	return syscall.EINPROGRESS
}

// Accept returns a connection from the accept queue, or EAGAIN.
func (so *Socket) Accept() (*Socket, error) {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return so.acceptLocked()
}

func (so *Socket) acceptLocked() (*Socket, error) {
	l := so.l
	switch {
	case so.closed:
		return nil, syscall.EBADF
	case l == nil:
		return nil, syscall.EINVAL
	case l.closed:
		return nil, errConnAborted // the stack closed it
	case len(l.acceptQ) == 0:
		return nil, syscall.EAGAIN
	}
	e := l.acceptQ[0]
	l.acceptQ = l.acceptQ[1:]
	e.parent = nil
	if len(l.acceptQ) > 0 {
		l.notify() // more to take: wake the next acceptor
	}
	// Like Linux (sk_clone), the child inherits the listener's options,
	// SO_REUSEADDR included.
	c := &Socket{s: so.s, opts: l.child, reuseAddr: so.reuseAddr, e: e, addr: e.id.LocalAddr, port: e.id.LocalPort}
	c.opts.deferAccept = 0 // the child's accept queue is its own (inet_csk_clone_lock)
	return c, nil
}

// Read reads received bytes: EAGAIN when none wait, 0 at EOF.
func (so *Socket) Read(p []byte) (int, error) { return so.Recv(p, 0) }

// Recv is recv(2) with its flags: MSG_PEEK copies without consuming (the
// window does not move). MSG_WAITALL is for blocking callers, who keep
// calling until all of p is filled; here it reads what there is. Other
// flags are EOPNOTSUPP.
func (so *Socket) Recv(p []byte, flags int) (int, error) {
	if flags&^(syscall.MSG_PEEK|syscall.MSG_WAITALL) != 0 {
		return 0, syscall.EOPNOTSUPP
	}
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.isUDP {
		// recv(2) on a datagram socket: one datagram, sender dropped.
		n, _, err := so.recvFromLocked(p, flags&syscall.MSG_PEEK != 0)
		return n, err
	}
	n, err := so.recvLocked(p, flags&syscall.MSG_PEEK != 0)
	if err == io.EOF {
		return 0, nil
	}
	return n, err
}

// recvLocked is the one receive path: bytes in order (io.EOF once the peer's
// FIN or our SHUT_RD ends them), the pending error, or EAGAIN.
func (so *Socket) recvLocked(p []byte, peek bool) (int, error) {
	e := so.e
	switch {
	case so.closed:
		return 0, syscall.EBADF
	case e == nil:
		return 0, syscall.ENOTCONN
	case e.rcv.buf.pinned:
		return 0, syscall.EAGAIN // a WriteTo is handing these bytes out
	case e.rcv.buf.Len() > 0: // even after SHUT_RD, as Linux tcp_recvmsg
		if len(p) == 0 {
			return 0, nil
		}
		if peek {
			return e.rcv.buf.Peek(p, 0), nil
		}
		n := e.rcv.buf.Read(p)
		e.afterRead(so.s.clock.Now())
		return n, nil
	}
	if err := e.takeSoftErr(); err != 0 {
		return 0, err
	}
	if e.rcv.finRecvd || e.shutRd || e.gone {
		return 0, io.EOF
	}
	return 0, syscall.EAGAIN
}

// Write queues bytes: EAGAIN when the send buffer is full or the
// connection is not yet established.
func (so *Socket) Write(p []byte) (int, error) { return so.Send(p, 0) }

// Send is send(2) with its flags: MSG_MORE holds a partial last segment,
// as TCP_CORK does, until a later send without it (or the RTO). Other
// flags are EOPNOTSUPP.
func (so *Socket) Send(p []byte, flags int) (int, error) {
	if flags&^syscall.MSG_MORE != 0 {
		return 0, syscall.EOPNOTSUPP
	}
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.isUDP {
		if flags&syscall.MSG_MORE != 0 {
			return 0, syscall.EOPNOTSUPP // no UDP corking (UDP_CORK) here
		}
		return so.sendToLocked(p, netip.AddrPort{}) // to the connected peer
	}
	return so.sendLocked(p, flags&syscall.MSG_MORE != 0)
}

// sendLocked is the one send path: it queues what fits and pushes it out;
// EAGAIN when nothing fits or the handshake is still going on.
func (so *Socket) sendLocked(p []byte, more bool) (int, error) {
	e := so.e
	switch {
	case so.closed:
		return 0, syscall.EBADF
	case e == nil:
		return 0, syscall.EPIPE // Linux: write on an unconnected TCP socket
	}
	if err := e.sendable(); err != 0 {
		return 0, err
	}
	n := e.snd.buf.Write(p)
	if n == 0 && len(p) > 0 {
		return 0, syscall.EAGAIN
	}
	e.snd.more = more // for this push only (tcp_push)
	e.output(so.s.clock.Now())
	e.snd.more = false
	return n, nil
}

// takeSoftErr returns and clears the error the next call reports once.
func (e *endpoint) takeSoftErr() syscall.Errno {
	err := e.softErr
	e.softErr = 0
	return err
}

// sendable maps the connection's state to what a send(2) now returns
// (Linux tcp_sendmsg, sk_stream_wait_connect): 0, the pending error once,
// EPIPE once our side or the connection is finished, EAGAIN while the
// handshake is in progress.
func (e *endpoint) sendable() syscall.Errno {
	if err := e.takeSoftErr(); err != 0 {
		return err
	}
	switch {
	case e.shutWr || e.gone:
		return syscall.EPIPE
	case e.state == stateSynSent || e.state == stateSynRecv:
		return syscall.EAGAIN
	case e.state != stateEstablished && e.state != stateCloseWait:
		return syscall.EPIPE
	}
	return 0
}

// Shutdown is shutdown(2): SHUT_RD, SHUT_WR or SHUT_RDWR (B34).
func (so *Socket) Shutdown(how int) error {
	return so.locked(func() error { return so.shutdownLocked(how) })
}

func (so *Socket) shutdownLocked(how int) error {
	e := so.e
	switch {
	case so.closed:
		return syscall.EBADF
	case how < syscall.SHUT_RD || how > syscall.SHUT_RDWR:
		return syscall.EINVAL
	case e == nil || e.state == stateSynSent:
		return syscall.ENOTCONN
	}
	if how == syscall.SHUT_RD || how == syscall.SHUT_RDWR {
		e.shutRd = true
		e.notifyRead()
	}
	if how == syscall.SHUT_WR || how == syscall.SHUT_RDWR {
		if e.gone {
			// Linux inet_shutdown: a connection already closed (reset, or
			// timed out) is ENOTCONN.
			return syscall.ENOTCONN
		}
		if !e.shutWr {
			e.shutWr = true
			e.queueFIN(so.s.clock.Now(), "shutdown(SHUT_WR)")
		}
	}
	return nil
}

// Close closes the socket: a listener resets its queue (B12), a connection
// closes as Linux's tcp_close does (B30, B32).
func (so *Socket) Close() error {
	return so.locked(func() error { return so.closeLocked() })
}

func (so *Socket) closeLocked() error {
	s := so.s
	if so.closed {
		return syscall.EBADF
	}
	so.closed = true
	now := s.clock.Now()
	switch {
	case so.l != nil:
		so.l.closeLocked(now)
	case so.e != nil:
		so.e.closeLocked(now)
	case so.isUDP:
		so.udpClose()
	case so.owner != 0:
		s.bind.Unbind(so.owner, so.port)
		delete(s.bound, so.owner)
	}
	return nil
}

// locked runs a socket call under the stack's lock.
func (so *Socket) locked(call func() error) error {
	so.s.mu.Lock()
	defer so.s.mu.Unlock()
	return call()
}

// waitLocked blocks with the stack unlocked until w fires or the deadline
// (zero: none) passes; it reports whether the deadline had passed already.
// It is the one place a blocking API (Conn, Listener) sleeps.
func (so *Socket) waitLocked(w *cond, deadline time.Time) (timedOut bool) {
	s := so.s
	ch := w.wait()
	if deadline.IsZero() {
		s.mu.Unlock()
		<-ch
		s.mu.Lock()
		return false
	}
	d := time.Until(deadline)
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	s.mu.Unlock()
	select {
	case <-ch:
	case <-t.C:
	}
	s.mu.Lock()
	return false
}

// Events reports readiness like poll(2)'s revents.
func (so *Socket) Events() Events {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	var ev Events
	if so.isUDP {
		ev = EventOut // a datagram socket can always send
		if u := so.u; u.queue.len() > 0 || u.softErr != 0 {
			ev |= EventIn
		}
		if so.u.softErr != 0 {
			ev |= EventErr
		}
		return ev
	}
	if l := so.l; l != nil {
		if len(l.acceptQ) > 0 {
			ev |= EventIn
		}
		return ev
	}
	e := so.e
	if e == nil {
		return EventOut | EventHup // Linux: an unconnected socket polls as HUP|OUT
	}
	if e.readableLocked(max(so.opts.rcvLowat, 1)) {
		ev |= EventIn
	}
	if e.softErr != 0 {
		ev |= EventErr
	}
	if (e.state == stateEstablished || e.state == stateCloseWait) && !e.shutWr && e.snd.buf.Free() > 0 {
		ev |= EventOut
	}
	if e.gone || e.shutWr && e.rcv.finRecvd {
		ev |= EventHup | EventOut
	}
	return ev
}

// Changed delivers a value after any change of the socket's state; look
// at Events again when it does.
func (so *Socket) Changed() <-chan struct{} {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.ev == nil {
		so.ev = newWaiter()
		if so.e != nil {
			so.e.ev = so.ev
		}
		if so.l != nil {
			so.l.ev = so.ev
		}
	}
	return so.ev
}

// SockError returns and clears the pending error (SO_ERROR).
func (so *Socket) SockError() syscall.Errno {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.e == nil {
		return 0
	}
	err := so.e.takeSoftErr()
	if err == 0 {
		// Linux sock_getsockopt: with no error pending, SO_ERROR takes
		// the soft one (an ICMP error while open).
		err, so.e.icmpErr = so.e.icmpErr, 0
	}
	return err
}

// InQ is the number of bytes waiting to be read (SIOCINQ).
func (so *Socket) InQ() int {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.e == nil {
		return 0
	}
	return so.e.rcv.buf.Len()
}

// State is the connection's state with ss's name ("" before connect/listen).
func (so *Socket) State() string {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case so.l != nil:
		return stateListen.String()
	case so.e != nil:
		return so.e.state.String()
	}
	return ""
}

// Readable reports whether a blocking read of target bytes would return
// now: that much is queued (or SO_RCVLOWAT's worth, Linux's
// sock_rcvlowat takes the smaller), or EOF or an error ends the wait.
func (so *Socket) Readable(target int) bool {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.e == nil {
		return true // the read fails at once
	}
	return so.e.readableLocked(min(max(target, 1), max(so.opts.rcvLowat, 1)))
}

// readableLocked is tcp_stream_is_readable and tcp_epollin_ready: target
// bytes queued, or the window nearly shut (so waiting could deadlock), or
// nothing more will come.
func (e *endpoint) readableLocked(target int) bool {
	if n := e.rcv.buf.Len(); n > 0 && (n >= target || e.rcv.adv.sub(e.rcv.nxt) <= uint32(e.rcv.mss)) {
		return true
	}
	return e.rcv.finRecvd || e.shutRd || e.gone || e.softErr != 0
}

// Closing reports whether the connection is still sending its FIN or
// waiting for its ACK (FIN-WAIT-1, CLOSING, LAST-ACK), also after Close:
// what a lingering close(2) waits out (sk_stream_closing).
func (so *Socket) Closing() bool {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.e == nil || so.e.gone {
		return false
	}
	switch so.e.state {
	case stateFinWait1, stateClosing, stateLastAck:
		return true
	}
	return false
}

// LocalAddr is the bound address.
func (so *Socket) LocalAddr() netip.AddrPort {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return addrPort(so.addr, so.port)
}

// RemoteAddr is the peer's address (zero when not connected).
func (so *Socket) RemoteAddr() netip.AddrPort {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.e == nil {
		return netip.AddrPort{}
	}
	return addrPort(so.e.id.RemoteAddr, so.e.id.RemotePort)
}
