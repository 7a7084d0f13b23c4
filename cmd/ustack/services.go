package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// A service is started by a startFunc on one port of the stack's address and
// runs goroutines until its Close, which stops them (closing its listener
// and its connections) and waits for them.
type startFunc func(env *serviceEnv, addr netip.AddrPort) (io.Closer, error)

// serviceEnv is what services need from the daemon.
type serviceEnv struct {
	eng  engine    // the TCP/IP stack: ustack's, or gVisor's with --engine gvisor
	view stackView // for the http status page; st in production
	log  *log.Logger
	// addrs are the stack's own addresses, which the dns service answers with.
	addrs []netip.Addr
}

// services maps a --serve kind to its implementation. Each reproduces one
// situation from interface.md's table; serviceOrder is the order in which
// errors and usage list them.
var services = map[string]startFunc{
	"echo":      startEcho,
	"discard":   startDiscard,
	"source":    startSource,
	"http":      startHTTP,
	"bound":     startBound,
	"noaccept":  startNoAccept,
	"closer":    startCloser,
	"halfclose": startHalfClose,
	"udp-echo":  startUDPEcho,
	"dns":       startDNS,
}

// startUDPEcho sends each datagram back to its sender (B70's counterpart:
// a UDP port with a socket).
func startUDPEcho(env *serviceEnv, addr netip.AddrPort) (io.Closer, error) {
	return serveDatagrams(env, addr, "udp-echo", func(q []byte) []byte { return q })
}

// serveDatagrams runs a UDP service on addr: each datagram's reply, if
// answer gives one, goes back to its sender. Close stops it and waits.
func serveDatagrams(env *serviceEnv, addr netip.AddrPort, name string, answer func([]byte) []byte) (io.Closer, error) {
	ue, ok := env.eng.(udpEngine)
	if !ok {
		return nil, fmt.Errorf("%s needs --engine ustack (this engine has no UDP)", name)
	}
	pc, err := ue.ListenUDP(addr)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					env.log.Printf("%s: %v", name, err)
				}
				return
			}
			if reply := answer(buf[:n]); reply != nil {
				pc.WriteTo(reply, from)
			}
		}
	}()
	return closerFunc(func() error {
		err := pc.Close()
		<-done
		return err
	}), nil
}

var serviceOrder = []string{"echo", "discard", "source", "http", "bound", "noaccept", "closer", "halfclose", "udp-echo", "dns"}

func serviceKindNames() []string { return serviceOrder }

// shutdownWait bounds how long a service's Close waits for its handlers;
// the stack's Close, which comes next, resets whatever is left.
const shutdownWait = 3 * time.Second

// acceptService runs handle on every accepted connection in its own
// goroutine, tracking connections so Close can end them.
type acceptService struct {
	ln     net.Listener
	handle func(net.Conn)
	log    *log.Logger
	name   string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// serveConns starts the accept loop of a connection-oriented service.
func serveConns(ln net.Listener, name string, lg *log.Logger, handle func(net.Conn)) *acceptService {
	s := &acceptService{ln: ln, handle: handle, log: lg, name: name, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

func (s *acceptService) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if !closed {
				s.log.Printf("%s: accept: %v", s.name, err)
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			s.handle(c)
		}()
	}
}

// Close stops accepting, closes every connection (which unblocks their
// handlers) and waits for the handlers, at most shutdownWait.
func (s *acceptService) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	err := s.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	waitTimeout(&s.wg, shutdownWait)
	return err
}

// waitTimeout waits for wg, giving up after d so that a stuck handler cannot
// hang the daemon's exit.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// closeWriter is the half of *net.TCPConn and *stack.Conn that sends a FIN
// while still reading.
type closeWriter interface{ CloseWrite() error }

func listen(env *serviceEnv, addr netip.AddrPort) (net.Listener, error) {
	// The backlog of Go's net.Listen: SOMAXCONN (the stack caps it).
	return env.eng.ListenTCP(addr, noacceptBacklog)
}

func startEcho(env *serviceEnv, addr netip.AddrPort) (io.Closer, error) {
	ln, err := listen(env, addr)
	if err != nil {
		return nil, err
	}
	return serveConns(ln, "echo", env.log, echoConn), nil
}

// echoConn writes back what it reads. When the peer shuts down writing (EOF)
// it shuts down its own writing after the echoed bytes, so the peer sees
// its FIN answered by a FIN (B34) rather than a connection left half open.
func echoConn(c net.Conn) {
	defer c.Close()
	if _, err := io.Copy(c, c); err != nil {
		return
	}
	if cw, ok := c.(closeWriter); ok {
		cw.CloseWrite()
	}
}

func startDiscard(env *serviceEnv, addr netip.AddrPort) (io.Closer, error) {
	ln, err := listen(env, addr)
	if err != nil {
		return nil, err
	}
	return serveConns(ln, "discard", env.log, discardConn), nil
}

// discardConn reads and drops everything, then closes after the peer's FIN.
func discardConn(c net.Conn) {
	defer c.Close()
	io.Copy(io.Discard, c)
}

func startSource(env *serviceEnv, addr netip.AddrPort) (io.Closer, error) {
	ln, err := listen(env, addr)
	if err != nil {
		return nil, err
	}
	return serveConns(ln, "source", env.log, sourceConn), nil
}

// sourcePattern is what source sends, over and over: byte i of the stream is
// i % 256 (the buffer's length is a multiple of 256, so the pattern runs on
// across writes).
var sourcePattern = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}()

// sourceConn writes the pattern until a write fails: the peer reset the
// connection (it closed with our data unread) or the daemon is stopping.
// It drains what the peer sends meanwhile, so that its own close is not
// turned into a RST by unread data (B32), and keeps sending after the peer's
// FIN, which only means the peer has nothing more to say.
func sourceConn(c net.Conn) {
	defer c.Close()
	go io.Copy(io.Discard, c)
	for {
		if _, err := c.Write(sourcePattern); err != nil {
			return
		}
	}
}

func startHTTP(env *serviceEnv, addr netip.AddrPort) (io.Closer, error) {
	ln, err := listen(env, addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler:           newHTTPHandler(env.view),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(env.log.Writer(), "http: ", 0),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			env.log.Printf("http: %v", err)
		}
	}()
	return closerFunc(func() error {
		err := srv.Close() // closes the listener and every connection
		select {
		case <-done:
		case <-time.After(shutdownWait):
		}
		return err
	}), nil
}

// startBound binds the port and never listens: a SYN to it finds no
// listener and is answered with RST like a closed port (B02).
func startBound(env *serviceEnv, addr netip.AddrPort) (io.Closer, error) {
	b, err := env.eng.Bind(addr)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// noacceptBacklog is listen(fd, SOMAXCONN) (capped by the stack at its
// Somaxconn).
const noacceptBacklog = 4096

// startNoAccept listens and never accepts: handshakes complete in the stack
// and the data clients send waits in the Recv-Q that "ustack ss" shows (B11).
func startNoAccept(env *serviceEnv, addr netip.AddrPort) (io.Closer, error) {
	ln, err := env.eng.ListenTCP(addr, noacceptBacklog)
	if err != nil {
		return nil, err
	}
	return ln, nil
}

func startCloser(env *serviceEnv, addr netip.AddrPort) (io.Closer, error) {
	ln, err := listen(env, addr)
	if err != nil {
		return nil, err
	}
	return serveConns(ln, "closer", env.log, closerConn), nil
}

// closerConn closes without reading. It first waits (at most a second) for
// the client's first bytes to be queued, without consuming them, so that the
// close finds unread data and sends RST instead of FIN (B32) whatever the
// race between accept() and the client's write.
func closerConn(c net.Conn) {
	if tc, ok := c.(readableWaiter); ok {
		tc.WaitReadable(time.Second)
	}
	c.Close()
}

func startHalfClose(env *serviceEnv, addr netip.AddrPort) (io.Closer, error) {
	ln, err := listen(env, addr)
	if err != nil {
		return nil, err
	}
	return serveConns(ln, "halfclose", env.log, func(c net.Conn) { halfCloseConn(c, env.log) }), nil
}

// halfCloseGreeting is what halfclose writes before its FIN.
const halfCloseGreeting = "hello from ustack halfclose\n"

// halfCloseConn writes a greeting and shuts down writing, then keeps reading
// until the peer's FIN: the bytes that arrive after our FIN are still
// delivered (B34), and the log line says how many.
func halfCloseConn(c net.Conn, lg *log.Logger) {
	defer c.Close()
	if _, err := io.WriteString(c, halfCloseGreeting); err != nil {
		lg.Printf("halfclose: write: %v", err)
		return
	}
	if cw, ok := c.(closeWriter); ok {
		if err := cw.CloseWrite(); err != nil {
			lg.Printf("halfclose: shutdown: %v", err)
			return
		}
	}
	n, err := io.Copy(io.Discard, c)
	if err != nil {
		lg.Printf("halfclose: read %d bytes, then %v", n, err)
		return
	}
	lg.Printf("halfclose: read %d bytes", n)
}

// readableWaiter is *stack.Conn's WaitReadable. gVisor's gonet.TCPConn has
// no equivalent, so on --engine gvisor closer closes at once and B32 depends
// on the race between accept() and the client's write.
type readableWaiter interface {
	WaitReadable(d time.Duration) bool
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// startServices starts every --serve in order on each of the stack's
// addresses (IPv4, then IPv6), logging one line each; on failure it closes
// those already started.
func startServices(env *serviceEnv, addrs []netip.Addr, specs []serveSpec) ([]io.Closer, error) {
	var running []io.Closer
	for _, sp := range specs {
		for _, addr := range addrs {
			ap := netip.AddrPortFrom(addr, sp.Port)
			c, err := services[sp.Kind](env, ap)
			if err != nil {
				closeServices(running)
				return nil, fmt.Errorf("serving %s on %s: %w", sp.Kind, ap, err)
			}
			env.log.Printf("serving %s on %s", sp.Kind, ap)
			running = append(running, c)
		}
	}
	return running, nil
}

// closeServices closes services in reverse order of start.
func closeServices(running []io.Closer) {
	for _, c := range slices.Backward(running) {
		c.Close()
	}
}
