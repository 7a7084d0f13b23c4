// Package stack is ustack's network stack: IPv4, IPv6, ICMP and TCP over a Link,
// under one socket core that Go code uses as net.Listener and net.Conn (or,
// with socket(2) semantics, as Socket). A packet comes in from the link,
// passes IPv4 or IPv6 input to ICMP or, by protocol number, to a transport: TCP's
// demultiplexer finds its connection (the established table, then the
// listeners, then the "no socket" rules) and the connection's state
// machine takes it. What it sends goes back through one transmit builder
// and IPv4 output to the link, or to our own input for our own address.
//
// One mutex guards all protocol state. The TCP core takes the time as an
// input (Options.Clock) and never sleeps: a real-time loop or a test drives
// the timers through RunTimers. docs/architecture.md draws the layers.
//
// The files, from the link up:
//
//	link.go      the Link interfaces; packets written after the lock is released
//	memlink.go   an in-memory Link for tests and the drill
//	batch.go     BatchLink: a Link the embedder writes packets into and reads from
//	ipv4.go      IPv4 input and output, transports by protocol number, loopback
//	ipv6.go      IPv6 input (extension headers, parameter problems) and output
//	icmp.go      ICMPv4: echo, errors read for the transport, path MTUs
//	icmp6.go     ICMPv6: echo, errors, neighbour discovery ignored, rate limit
//	tcp.go       TCP's states, constants, segment and demultiplexer; ISNs
//	endpoint.go  a connection (the TCB): identity, state, timers, application side
//	snd.go       its send half, and what an ACK does to it
//	rcv.go       its receive half: data, FIN, window, ACK policy
//	input.go     the state machine: process dispatches a segment by state
//	connect.go   the active open (SYN-SENT)
//	accept.go    the listener and the passive open (SYN-RECV, accept queue)
//	syncookie.go SYN cookies
//	close.go     close, shutdown, TIME-WAIT, and the one way a connection ends
//	output.go    the transmit loop and the transmit builder
//	recovery.go  fast retransmit and recovery (PRR), tail loss probe, resend
//	sack.go      the SACK scoreboard and our SACK blocks
//	cc.go        congestion control (slow start, additive increase), over
//	cubic.go     CUBIC, the default, and
//	reno.go      Reno
//	rtt.go       the RTT estimator and RTO
//	timers.go    the connection's timers
//	tcperr.go    TCP's response to ICMP errors
//	udp.go       UDP: demultiplexing, sending, port unreachable, the datagram socket
//	udpqueue.go  a datagram socket's receive queue, which reuses its buffers
//	udpconn.go   net.PacketConn (UDPConn) over the socket core
//	ping.go      ping sockets (SOCK_DGRAM, IPPROTO_ICMP and ICMPV6)
//	forward.go   the TCP forwarder: SYNs no listener takes, decided by the embedder
//	forwardudp.go the UDP forwarder: flows no socket takes, as packet conns
//	forwardecho.go the echo forwarder: pings to other addresses, answered for real
//	seqnum.go    sequence-number arithmetic
//	buffer.go    the byte rings of the send and receive buffers
//	socket.go    the socket core: Socket
//	sockopt.go   socket options
//	conn.go      net.Conn and Dial over the socket core
//	listener.go  net.Listener and Bind over the socket core
//	wake.go      wake-ups for callers blocked in the socket API
//	info.go      what ss shows
//	counters.go  the counters, one per drop reason and event
//	options.go   the stack's tunables (Linux's sysctls)
//	stack.go     the Stack: creation, the read and timer loops
package stack

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"sort"
	"sync"
	"time"

	"ustack/hashtable"
	"ustack/stack/header"
	"ustack/timers"
)

// Stack is one TCP/IP stack instance bound to one link.
type Stack struct {
	mu    stackLock
	opts  Options
	link  Link
	gso   OffloadLink // link, when it offloads segmentation; else nil
	batch *BatchLink  // link, when the embedder reads and writes it (batch.go)
	clock timers.Clock
	addr  hashtable.Addr // our IPv4 address
	ip4   [4]byte        // the same, for IPv4 headers
	has4  bool           // false: an IPv6-only stack (Options.Addr zero)
	addr6 hashtable.Addr // our IPv6 address, when has6
	has6  bool

	icmpLimit icmpBucket // ICMP errors we may send (icmp6.go, icmpAllow)
	mtu       int
	epoch     time.Time // origin of TCP timestamps
	timers    timers.Queue

	transports [256]transport // by IP protocol number

	est      *hashtable.Established[*endpoint]
	lis      *hashtable.Listeners[*listener]
	bind     *hashtable.Bind // TCP's ports
	bindUDP  *hashtable.Bind // UDP's, a separate space
	udp      map[uint16][]*udpSock
	bindPing *hashtable.Bind // ping sockets' echo identifiers
	pings    map[uint16][]*udpSock
	nextID   hashtable.OwnerID
	bound    map[hashtable.OwnerID]*Socket // bound-only sockets, for ss
	isnSeed  maphash.Seed
	// cookieSeed keys SYN cookies (B43), apart from the ISNs'.
	cookieSeed maphash.Seed

	cnt [numCounters]uint64

	// Packets to our own address wait here and are processed after the
	// packet that produced them, so input never recurses (B16).
	loop     [][]byte
	loopFree [][]byte
	txBuf    []byte // scratch for building one outgoing packet
	ipID     uint16

	tx txQueue // packets for the link (link.go)
	// While a BatchLink.Write batch is processed (batching), connections
	// owing an ACK for two or more segments wait in batchACKs (rcv.go).
	batching  bool
	batchACKs []*endpoint

	fwdTCP  *tcpForwarder  // SetTCPForwarder (forward.go)
	fwdUDP  *udpForwarder  // SetUDPForwarder (forwardudp.go)
	fwdEcho *echoForwarder // SetEchoForwarder (forwardecho.go)

	pmtu map[hashtable.Addr]pmtuEntry // learned path MTUs (icmp.go)

	// The timer loop sleeps until timerAt and is woken only for a timer
	// due before that. A stopped timer does not wake it: it wakes for
	// nothing at most once per deadline (Linux leaves a cleared
	// retransmit timer armed the same way, inet_csk_clear_xmit_timer),
	// instead of once per ACK that stops the RTO.
	timerAt   time.Time
	wake      chan struct{} // timer loop: a timer is due before timerAt
	done      chan struct{}
	closed    bool
	startOnce sync.Once
	loopsWG   sync.WaitGroup
}

// New creates a stack over link. It does not read from the link until Start.
func New(link Link, opts Options) (*Stack, error) {
	if a := opts.Addr; a.IsValid() && !a.Is4() || !a.IsValid() && !opts.Addr6.IsValid() {
		return nil, fmt.Errorf("stack: address %v: want an IPv4 Addr, an IPv6 Addr6, or both", opts.Addr)
	}
	if a := opts.Addr6; a.IsValid() && (!a.Is6() || a.Is4In6() || a.IsUnspecified() || a.IsMulticast()) {
		return nil, fmt.Errorf("stack: Addr6 %v is not a unicast IPv6 address", a)
	}
	if opts.Clock == nil {
		opts.Clock = timers.Real{}
	}
	if opts.RecvBuffer <= 0 || opts.SendBuffer <= 0 {
		return nil, errors.New("stack: RecvBuffer and SendBuffer must be positive (start from DefaultOptions)")
	}
	if r := opts.LocalPortRange; r[0] == 0 || r[0] > r[1] {
		return nil, fmt.Errorf("stack: LocalPortRange %d-%d: want 1 <= low <= high (start from DefaultOptions)", r[0], r[1])
	}
	if opts.SynCookies < SynCookiesOff || opts.SynCookies > SynCookiesAlways {
		return nil, fmt.Errorf("stack: SynCookies %d: want 0, 1 or 2 (as tcp_syncookies)", opts.SynCookies)
	}
	mtu := link.MTU()
	if mtu < 576 || mtu > 65535 {
		return nil, fmt.Errorf("stack: link MTU %d out of range [576, 65535]", mtu)
	}
	var seed [16]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	s := &Stack{
		opts:       opts,
		link:       link,
		clock:      opts.Clock,
		addr:       hashtable.AddrFrom(opts.Addr),
		has4:       opts.Addr.IsValid(),
		addr6:      hashtable.AddrFrom(opts.Addr6),
		has6:       opts.Addr6.IsValid(),
		mtu:        mtu,
		est:        hashtable.NewEstablished[*endpoint](),
		lis:        hashtable.NewListeners[*listener](),
		bind:       hashtable.NewBind(seed, opts.LocalPortRange[0], opts.LocalPortRange[1]),
		bindUDP:    hashtable.NewBind(seed, opts.LocalPortRange[0], opts.LocalPortRange[1]),
		udp:        make(map[uint16][]*udpSock),
		bindPing:   hashtable.NewBind(seed, 1, 65535),
		pings:      make(map[uint16][]*udpSock),
		bound:      make(map[hashtable.OwnerID]*Socket),
		isnSeed:    maphash.MakeSeed(),
		cookieSeed: maphash.MakeSeed(),
		txBuf:      make([]byte, 65536),
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	if s.has4 {
		s.ip4 = opts.Addr.As4()
	}
	if g, ok := link.(OffloadLink); ok && g.GSOMaxSize() > mtu {
		s.gso = g
	}
	if b, ok := link.(*BatchLink); ok {
		if b.s != nil {
			return nil, errors.New("stack: this BatchLink is under another stack already")
		}
		b.s, s.batch = s, b
	}
	s.mu.s = s
	s.transports[header.ProtoTCP] = tcpProtocol{s}
	s.transports[header.ProtoUDP] = udpProtocol{s}
	s.epoch = s.clock.Now()
	return s, nil
}

// Addr is the stack's own address.
func (s *Stack) Addr() netip.Addr { return s.opts.Addr }

// Start begins reading packets from the link (a BatchLink is written to
// instead) and, unless the clock is virtual, running timers in real time.
func (s *Stack) Start() error {
	s.startOnce.Do(func() {
		if s.batch == nil {
			s.loopsWG.Add(1)
			go s.readLoop()
		}
		if _, virtual := s.clock.(*timers.Virtual); !virtual {
			s.loopsWG.Add(1)
			go s.timerLoop()
		}
	})
	return nil
}

// Close resets every connection (as a process exit would not: Linux sends
// FIN for a clean close, but a stack going away cannot wait for the peer),
// stops the loops and closes the link.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	now := s.clock.Now()
	for _, l := range s.listenersLocked() {
		l.closeLocked(now)
	}
	for _, e := range s.endpointsLocked() {
		if e.state != stateTimeWait && e.state != stateSynSent {
			e.sendRST(now)
		}
		e.close("stack closed", nil, errConnAborted)
	}
	s.closeForwardersLocked()
	s.mu.Unlock()
	close(s.done)
	err := s.link.Close()
	s.loopsWG.Wait()
	return err
}

func (s *Stack) readLoop() {
	defer s.loopsWG.Done()
	buf := make([]byte, 65536)
	for {
		var n int
		var csumOK bool
		var err error
		if s.gso != nil {
			n, csumOK, err = s.gso.ReadOffload(buf)
		} else {
			n, err = s.link.ReadPacket(buf)
		}
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			// A read error on a live link (device gone) ends the loop;
			// connections time out on their own.
			return
		}
		s.inject(buf[:n], csumOK)
	}
}

// timerLoop sleeps until the earliest timer deadline, then runs timers.
func (s *Stack) timerLoop() {
	defer s.loopsWG.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.mu.Lock()
		now := s.clock.Now()
		s.runTimersLocked(now)
		next, ok := s.timers.Next()
		if !ok {
			next = now.Add(time.Hour)
		}
		s.timerAt = next
		s.mu.Unlock()
		t.Reset(next.Sub(now))
		select {
		case <-s.done:
			return
		case <-s.wake:
		case <-t.C:
		}
	}
}

// Inject processes one inbound IPv4 packet, as if it arrived on the link.
// The packet is not retained.
func (s *Stack) Inject(pkt []byte) { s.inject(pkt, false) }

// inject is Inject for a packet whose transport checksum the link vouched
// for (csumOK).
func (s *Stack) inject(pkt []byte, csumOK bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	now := s.clock.Now()
	if s.opts.Packet != nil {
		s.opts.Packet(false, pkt)
	}
	s.netInput(now, pkt, csumOK)
	s.mu.Unlock()
}

// RunTimers runs every timer due at the clock's current time. The real-time
// loop calls it; tests on a virtual clock call it after moving the clock.
func (s *Stack) RunTimers() {
	s.mu.Lock()
	s.runTimersLocked(s.clock.Now())
	s.mu.Unlock()
}

func (s *Stack) runTimersLocked(now time.Time) {
	s.timers.Expire(now)
}

// NextTimer returns the earliest pending timer deadline.
func (s *Stack) NextTimer() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.timers.Next()
}

// schedule arms t and wakes the timer loop if the earliest deadline moved.
func (s *Stack) schedule(t *timers.Timer, at time.Time) {
	s.timers.Schedule(t, at)
	if at.Before(s.timerAt) {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *Stack) inc(c counter) { s.cnt[c]++ }

// Counters returns every counter, sorted by name.
func (s *Stack) Counters() []Counter {
	s.mu.Lock()
	out := make([]Counter, 0, numCounters)
	for i := range numCounters {
		out = append(out, Counter{Name: counterNames[i], Value: s.cnt[i]})
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Counter returns one counter by name (0 if unknown); handy in tests.
func (s *Stack) Counter(name string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, n := range counterNames {
		if n == name {
			return s.cnt[i]
		}
	}
	return 0
}

// Pools of transmit buffers: enough MTU-sized ones for a burst of small
// packets, and 4 MB worth of 64 KB ones.
const (
	txFreeMax  = 4096
	txFreeBMax = 64
)
