package drill

import (
	"bytes"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// NewGVisor returns the backend for gVisor's netstack: a gVisor stack over a
// channel link endpoint, on a virtual clock.
func NewGVisor() Backend { return newVstack("gvisor", &gvisorNet{}) }

// gvisorNet is a gVisor stack as a vnet. Sockets are tcpip.Endpoints; the
// errno mapping and the blocking semantics that gVisor's sentry adds on top
// of netstack are done by vstack and gvisorErrno.
type gvisorNet struct {
	clock   *vclock
	s       *stack.Stack
	link    *channel.Endpoint
	profile *Profile
	cfg     *Config
}

// gvisorBuildMu serialises stack construction, which briefly changes
// GOMAXPROCS (see start).
var gvisorBuildMu sync.Mutex

func (g *gvisorNet) start(p *Profile, c *Config) error {
	g.profile, g.cfg = p, c
	g.clock = newVclock()
	// gVisor's TCP hands inbound segments to a pool of GOMAXPROCS processor
	// goroutines. With one processor, pausing it (drain) is a complete
	// barrier: it pauses only with an empty queue, and whatever it queues
	// goes to itself. So the pool is sized while GOMAXPROCS is 1.
	gvisorBuildMu.Lock()
	prev := runtime.GOMAXPROCS(1)
	g.s = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
		Clock:              g.clock,
	})
	runtime.GOMAXPROCS(prev)
	gvisorBuildMu.Unlock()

	g.link = channel.New(4096, uint32(c.MTU), "")
	if err := g.s.CreateNIC(1, g.link); err != nil {
		return fmt.Errorf("gvisor: CreateNIC: %v", err)
	}
	// No duplicate address detection: ipv6.NewProtocol's zero DAD
	// configuration sends none, so the address is usable at once.
	proto, size := ipv4.ProtocolNumber, 4
	if c.Wire6() {
		proto, size = ipv6.ProtocolNumber, 16
	}
	addr := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpipAddr(c.Local).WithPrefix()}
	if err := g.s.AddProtocolAddress(1, addr, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("gvisor: AddProtocolAddress: %v", err)
	}
	anyNet, _ := tcpip.NewSubnet(tcpip.AddrFromSlice(make([]byte, size)), tcpip.MaskFromBytes(make([]byte, size)))
	g.s.SetRouteTable([]tcpip.Route{{Destination: anyNet, NIC: 1}})
	return g.configure(p)
}

// tcpipAddr is a as gVisor spells it: 4 bytes for IPv4, 16 for IPv6 and
// for an IPv4-mapped address (which a dual-stack endpoint takes as IPv4).
func tcpipAddr(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

// configure maps the profile onto gVisor's TCP options. Settings gVisor has
// no knob for are ignored when they come from the defaults, and unsupported
// when the script sets them (sysctl).
func (g *gvisorNet) configure(p *Profile) error {
	set := func(opt tcpip.SettableTransportProtocolOption) error {
		if err := g.s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			return fmt.Errorf("gvisor: %T: %v", opt, err)
		}
		return nil
	}
	sack := tcpip.TCPSACKEnabled(p.Int("net.ipv4.tcp_sack", 1) != 0)
	// Nagle on by default, as on Linux (gVisor's sentry does the same).
	delay := tcpip.TCPDelayEnabled(true)
	// Linux moderates the receive buffer (tcp_moderate_rcvbuf=1), and with
	// moderation gVisor, like Linux, picks the window scale from the
	// maximum buffer: 15 MiB gives wscale 8.
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	cc := tcpip.CongestionControlOption("cubic")
	if v := p.Get("net.ipv4.tcp_congestion_control"); v == "reno" {
		cc = "reno"
	}
	opts := []tcpip.SettableTransportProtocolOption{&sack, &delay, &moderate, &cc}
	// gVisor's tail loss probe is part of RACK: turning off either of
	// Linux's knobs turns off RACK-TLP.
	if p.Get("net.ipv4.tcp_early_retrans") == "0" || p.Get("net.ipv4.tcp_recovery") == "0" {
		rec := tcpip.TCPRecovery(0)
		opts = append(opts, &rec)
	}
	if lo, def, hi, ok := p.Triple("net.ipv4.tcp_rmem"); ok {
		opts = append(opts, &tcpip.TCPReceiveBufferSizeRangeOption{Min: lo, Default: def, Max: hi})
	}
	if lo, def, hi, ok := p.Triple("net.ipv4.tcp_wmem"); ok {
		opts = append(opts, &tcpip.TCPSendBufferSizeRangeOption{Min: lo, Default: def, Max: hi})
	}
	synRetries := tcpip.TCPSynRetriesOption(p.Int("net.ipv4.tcp_syn_retries", 6))
	linger := tcpip.TCPLingerTimeoutOption(time.Duration(p.Int("net.ipv4.tcp_fin_timeout", 60)) * time.Second)
	tw := tcpip.TCPTimeWaitTimeoutOption(60 * time.Second)
	minRTO := tcpip.TCPMinRTOOption(200 * time.Millisecond)
	maxRTO := tcpip.TCPMaxRTOOption(120 * time.Second)
	retries := tcpip.TCPMaxRetriesOption(p.Int("net.ipv4.tcp_retries2", 15))
	opts = append(opts, &synRetries, &linger, &tw, &minRTO, &maxRTO, &retries)
	if p.Get("net.ipv4.tcp_syncookies") == "2" {
		always := tcpip.TCPAlwaysUseSynCookies(true)
		opts = append(opts, &always)
	}
	for _, o := range opts {
		if err := set(o); err != nil {
			return err
		}
	}
	for _, name := range p.ExplicitNames() {
		if !gvisorHonours(name, p.Get(name)) {
			return unsupported("sysctl %s=%s on gvisor", name, p.Get(name))
		}
	}
	return nil
}

// gvisorHonours reports whether a sysctl set by the script is one configure
// (or newSocket) maps onto gVisor.
func gvisorHonours(name, value string) bool {
	switch name {
	case "net.ipv4.tcp_sack", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
		"net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_retries2",
		"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes":
		return true
	case "net.ipv4.tcp_early_retrans", "net.ipv4.tcp_recovery":
		return value == "0" || name == "net.ipv4.tcp_recovery" && value == "1"
	case "net.ipv4.tcp_syn_retries":
		// netstack keeps the option but its handshake ignores it: SYNs are
		// retransmitted until the backoff passes MaxRTO, 6 times.
		return value == "6"
	case "net.ipv4.tcp_syn_linear_timeouts":
		return value == "0" // gVisor backs off exponentially from the first SYN
	case "net.ipv4.tcp_timestamps", "net.ipv4.tcp_window_scaling":
		return value == "1" // gVisor always offers both
	case "net.ipv4.tcp_congestion_control":
		return value == "cubic" || value == "reno"
	case "net.ipv4.tcp_dsack":
		return value == "0" // netstack sends no D-SACK blocks
	case "net.ipv4.tcp_syncookies":
		// 1 is netstack's own behaviour (cookies when the SYN queue is
		// full); 2 is TCPAlwaysUseSynCookies.
		return value == "1" || value == "2"
	}
	return false
}

func (g *gvisorNet) close() {
	if g.s == nil {
		return
	}
	g.s.Close()
	if g.link != nil {
		g.link.Close()
	}
	g.s.Wait()
}

func (g *gvisorNet) setClock(d time.Duration) { g.clock.set(d) }

func (g *gvisorNet) nextTimer() (time.Duration, bool) { return g.clock.next() }

func (g *gvisorNet) runTimers() {
	g.clock.run()
	g.settle()
}

// settle waits until the TCP processor has handled everything queued.
func (g *gvisorNet) settle() {
	g.s.Pause()
	g.s.Resume()
	g.clock.run() // timers armed for "now" by the processing
}

func (g *gvisorNet) inject(pkt []byte) {
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(append([]byte(nil), pkt...))})
	proto := ipv4.ProtocolNumber
	if len(pkt) > 0 && pkt[0]>>4 == 6 {
		proto = ipv6.ProtocolNumber
	}
	g.link.InjectInbound(proto, pb)
	pb.DecRef()
}

func (g *gvisorNet) drain() [][]byte {
	g.settle()
	var out [][]byte
	for {
		pb := g.link.Read()
		if pb == nil {
			return out
		}
		v := pb.ToView()
		out = append(out, append([]byte(nil), v.AsSlice()...))
		v.Release()
		pb.DecRef()
	}
}

func (g *gvisorNet) sysctl(name, value string) error {
	switch name {
	case "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes":
		g.profile.Set(name, value) // applied to sockets created from now on
		return nil
	}
	p := NewProfile()
	for _, n := range g.profile.Names() {
		p.sysctls[n] = g.profile.Get(n)
	}
	p.Set(name, value)
	if !gvisorHonours(name, value) {
		return unsupported("sysctl %s=%s on gvisor", name, value)
	}
	g.profile = p
	return g.configure(p)
}

func (g *gvisorNet) newSocket(dgram bool) (vsock, error) {
	wq := &waiter.Queue{}
	proto := ipv4.ProtocolNumber
	if g.cfg.Domain() == unix.AF_INET6 {
		proto = ipv6.ProtocolNumber // dual-stack: V6Only is off by default
	}
	transport := tcp.ProtocolNumber
	if dgram {
		transport = udp.ProtocolNumber
	}
	ep, err := g.s.NewEndpoint(transport, proto, wq)
	if err != nil {
		return nil, gvisorErrno(err)
	}
	so := &gvisorSock{ep: ep, profile: g.profile, udp: dgram}
	if dgram {
		return so, nil
	}
	so.keepaliveDefaults()
	return so, nil
}

// gvisorSock adapts a tcpip.Endpoint to vsock.
type gvisorSock struct {
	ep      tcpip.Endpoint
	profile *Profile
	udp     bool
}

// keepaliveDefaults gives the socket the keepalive sysctls: Linux reads
// them when a probe is due, gVisor keeps them per endpoint.
func (s *gvisorSock) keepaliveDefaults() {
	p := s.profile
	idle := tcpip.KeepaliveIdleOption(time.Duration(p.Int("net.ipv4.tcp_keepalive_time", 7200)) * time.Second)
	intvl := tcpip.KeepaliveIntervalOption(time.Duration(p.Int("net.ipv4.tcp_keepalive_intvl", 75)) * time.Second)
	s.ep.SetSockOpt(&idle)
	s.ep.SetSockOpt(&intvl)
	s.ep.SetSockOptInt(tcpip.KeepaliveCountOption, p.Int("net.ipv4.tcp_keepalive_probes", 9))
}

func fullAddr(a netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{Addr: tcpipAddr(a.Addr()), Port: a.Port()}
}

func (s *gvisorSock) Bind(a netip.AddrPort) error {
	return errOrNil(s.ep.Bind(fullAddr(a)))
}

// Listen passes backlog+1, as gVisor's sentry does (sys_socket.go): netstack
// counts the accept queue's capacity, Linux allows backlog+1 entries.
func (s *gvisorSock) Listen(backlog int) error {
	return errOrNil(s.ep.Listen(min(max(backlog, 0), 4096) + 1))
}

func (s *gvisorSock) Connect(a netip.AddrPort) error {
	err := s.ep.Connect(fullAddr(a))
	if s.udp {
		return errOrNil(err) // a datagram socket only records the peer
	}
	if _, started := err.(*tcpip.ErrConnectStarted); started {
		return unix.EINPROGRESS
	}
	if err == nil {
		return unix.EINPROGRESS
	}
	return gvisorErrno(err)
}

func (s *gvisorSock) Accept() (vsock, error) {
	ep, _, err := s.ep.Accept(nil)
	if err != nil {
		return nil, gvisorErrno(err)
	}
	c := &gvisorSock{ep: ep, profile: s.profile}
	c.keepaliveDefaults()
	return c, nil
}

func (s *gvisorSock) Read(p []byte) (int, error) { return s.read(p, false) }

func (s *gvisorSock) Peek(p []byte) (int, error) { return s.read(p, true) }

// Readable: the drill does not give gVisor SO_RCVLOWAT (its setsockopt
// is unsupported here), so any queued byte ends a blocking read.
func (s *gvisorSock) Readable(int) bool { return s.Events()&(evIn|evErr|evHup) != 0 }

func (s *gvisorSock) Closing() bool {
	if s.udp {
		return false
	}
	switch tcp.EndpointState(s.ep.State()) {
	case tcp.StateFinWait1, tcp.StateClosing, tcp.StateLastAck:
		return true
	}
	return false
}

func (s *gvisorSock) read(p []byte, peek bool) (int, error) {
	w := tcpip.SliceWriter(p)
	res, err := s.ep.Read(&w, tcpip.ReadOptions{Peek: peek})
	if err != nil {
		if _, eof := err.(*tcpip.ErrClosedForReceive); eof {
			return 0, nil
		}
		return 0, gvisorErrno(err)
	}
	return res.Count, nil
}

func (s *gvisorSock) Write(p []byte) (int, error) { return s.write(p, false) }

func (s *gvisorSock) SendMore(p []byte) (int, error) { return s.write(p, true) }

func (s *gvisorSock) SendTo(p []byte, to netip.AddrPort) (int, error) {
	opts := tcpip.WriteOptions{}
	if to.IsValid() {
		fa := fullAddr(to)
		opts.To = &fa
	}
	n, err := s.ep.Write(bytes.NewReader(p), opts)
	if err != nil {
		return int(n), gvisorErrno(err)
	}
	return int(n), nil
}

func (s *gvisorSock) write(p []byte, more bool) (int, error) {
	n, err := s.ep.Write(bytes.NewReader(p), tcpip.WriteOptions{More: more})
	if err != nil {
		return int(n), gvisorErrno(err)
	}
	return int(n), nil
}

func (s *gvisorSock) Shutdown(how int) error {
	var flags tcpip.ShutdownFlags
	switch how {
	case unix.SHUT_RD:
		flags = tcpip.ShutdownRead
	case unix.SHUT_WR:
		flags = tcpip.ShutdownWrite
	case unix.SHUT_RDWR:
		flags = tcpip.ShutdownRead | tcpip.ShutdownWrite
	default:
		return unix.EINVAL
	}
	return errOrNil(s.ep.Shutdown(flags))
}

func (s *gvisorSock) Close() error {
	s.ep.Close()
	return nil
}

func (s *gvisorSock) Events() int16 {
	m := s.ep.Readiness(waiter.ReadableEvents | waiter.WritableEvents | waiter.EventErr | waiter.EventHUp)
	return pollEvents(m, waiter.ReadableEvents, waiter.WritableEvents, waiter.EventErr, waiter.EventHUp)
}

func (s *gvisorSock) SockError() syscall.Errno {
	if err := s.ep.LastError(); err != nil {
		return gvisorErrno(err).(syscall.Errno)
	}
	return 0
}

func (s *gvisorSock) InQ() int {
	n, err := s.ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption)
	if err != nil {
		return 0
	}
	return n
}

func (s *gvisorSock) SetOption(level, name, val int) error {
	so := s.ep.SocketOptions()
	switch {
	case level == unix.SOL_SOCKET && name == unix.SO_REUSEADDR:
		so.SetReuseAddress(val != 0)
	case level == unix.SOL_SOCKET && name == unix.SO_KEEPALIVE:
		so.SetKeepAlive(val != 0)
	case level == unix.SOL_SOCKET && name == unix.SO_RCVBUF:
		so.SetReceiveBufferSize(int64(val)*2, true) // Linux doubles it
	case level == unix.SOL_SOCKET && name == unix.SO_SNDBUF:
		so.SetSendBufferSize(int64(val)*2, true)
	case level == unix.SOL_TCP && name == unix.TCP_NODELAY:
		so.SetDelayOption(val == 0)
	case level == unix.SOL_IP && name == unix.IP_RECVERR:
		so.SetIPv4RecvError(val != 0)
	case level == unix.SOL_IPV6 && name == unix.IPV6_RECVERR:
		so.SetIPv6RecvError(val != 0)
	// The range checks are the sentry's (setSockOptTCP): netstack itself
	// takes any value.
	case level == unix.SOL_TCP && name == unix.TCP_KEEPIDLE:
		if val < 1 || val > 32767 {
			return unix.EINVAL
		}
		o := tcpip.KeepaliveIdleOption(time.Duration(val) * time.Second)
		return errOrNil(s.ep.SetSockOpt(&o))
	case level == unix.SOL_TCP && name == unix.TCP_KEEPINTVL:
		if val < 1 || val > 32767 {
			return unix.EINVAL
		}
		o := tcpip.KeepaliveIntervalOption(time.Duration(val) * time.Second)
		return errOrNil(s.ep.SetSockOpt(&o))
	case level == unix.SOL_TCP && name == unix.TCP_KEEPCNT:
		if val < 1 || val > 127 {
			return unix.EINVAL
		}
		return errOrNil(s.ep.SetSockOptInt(tcpip.KeepaliveCountOption, val))
	case level == unix.SOL_TCP && name == unix.TCP_MAXSEG:
		return errOrNil(s.ep.SetSockOptInt(tcpip.MaxSegOption, val))
	case level == unix.SOL_TCP && name == unix.TCP_LINGER2:
		o := tcpip.TCPLingerTimeoutOption(time.Duration(val) * time.Second)
		return errOrNil(s.ep.SetSockOpt(&o))
	case level == unix.SOL_TCP && name == unix.TCP_USER_TIMEOUT:
		if val < 0 {
			return unix.EINVAL
		}
		o := tcpip.TCPUserTimeoutOption(time.Duration(val) * time.Millisecond)
		return errOrNil(s.ep.SetSockOpt(&o))
	case level == unix.SOL_TCP && name == unix.TCP_SYNCNT:
		return errOrNil(s.ep.SetSockOptInt(tcpip.TCPSynCountOption, val))
	case level == unix.SOL_TCP && name == unix.TCP_CORK:
		so.SetCorkOption(val != 0)
	case level == unix.SOL_TCP && name == unix.TCP_QUICKACK:
		so.SetQuickAck(val != 0)
	case level == unix.SOL_TCP && name == unix.TCP_DEFER_ACCEPT:
		o := tcpip.TCPDeferAcceptOption(time.Duration(max(val, 0)) * time.Second)
		return errOrNil(s.ep.SetSockOpt(&o))
	default:
		return unsupported("setsockopt level %d option %d on gvisor", level, name)
	}
	return nil
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

func (s *gvisorSock) SetLinger(on bool, secs int) error {
	s.ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: on, Timeout: time.Duration(secs) * time.Second})
	return nil
}

func (s *gvisorSock) GetLinger() (bool, int, error) {
	lo := s.ep.SocketOptions().GetLinger()
	return lo.Enabled, int(lo.Timeout / time.Second), nil
}

func (s *gvisorSock) GetOption(level, name int) (int, error) {
	switch {
	case level == unix.SOL_IP && name == unix.IP_RECVERR:
		return boolInt(s.ep.SocketOptions().GetIPv4RecvError()), nil
	case level == unix.SOL_IPV6 && name == unix.IPV6_RECVERR:
		return boolInt(s.ep.SocketOptions().GetIPv6RecvError()), nil
	case level == unix.SOL_TCP && name == unix.TCP_MAXSEG:
		return s.intOpt(tcpip.MaxSegOption)
	case level == unix.SOL_SOCKET && name == unix.SO_SNDBUF:
		return int(s.ep.SocketOptions().GetSendBufferSize()), nil
	case level == unix.SOL_SOCKET && name == unix.SO_RCVBUF:
		return int(s.ep.SocketOptions().GetReceiveBufferSize()), nil
	case level == unix.SOL_SOCKET && name == unix.SO_REUSEADDR:
		return boolInt(s.ep.SocketOptions().GetReuseAddress()), nil
	case level == unix.SOL_SOCKET && name == unix.SO_KEEPALIVE:
		return boolInt(s.ep.SocketOptions().GetKeepAlive()), nil
	case level == unix.SOL_TCP && name == unix.TCP_NODELAY:
		return boolInt(!s.ep.SocketOptions().GetDelayOption()), nil
	case level == unix.SOL_TCP && name == unix.TCP_USER_TIMEOUT:
		return durationOpt[tcpip.TCPUserTimeoutOption](s.ep, time.Millisecond)
	case level == unix.SOL_TCP && name == unix.TCP_LINGER2:
		var o tcpip.TCPLingerTimeoutOption
		err := s.ep.GetSockOpt(&o)
		if o < 0 {
			return -1, errOrNil(err) // as the sentry reports it
		}
		return int(time.Duration(o) / time.Second), errOrNil(err)
	case level == unix.SOL_TCP && name == unix.TCP_KEEPIDLE:
		return durationOpt[tcpip.KeepaliveIdleOption](s.ep, time.Second)
	case level == unix.SOL_TCP && name == unix.TCP_KEEPINTVL:
		return durationOpt[tcpip.KeepaliveIntervalOption](s.ep, time.Second)
	case level == unix.SOL_TCP && name == unix.TCP_KEEPCNT:
		return s.intOpt(tcpip.KeepaliveCountOption)
	case level == unix.SOL_TCP && name == unix.TCP_SYNCNT:
		return s.intOpt(tcpip.TCPSynCountOption)
	case level == unix.SOL_TCP && name == unix.TCP_CORK:
		return boolInt(s.ep.SocketOptions().GetCorkOption()), nil
	case level == unix.SOL_TCP && name == unix.TCP_QUICKACK:
		return boolInt(s.ep.SocketOptions().GetQuickAck()), nil
	case level == unix.SOL_TCP && name == unix.TCP_DEFER_ACCEPT:
		return durationOpt[tcpip.TCPDeferAcceptOption](s.ep, time.Second)
	}
	return 0, unsupported("getsockopt level %d option %d on gvisor", level, name)
}

// intOpt reads one of the endpoint's integer options.
func (s *gvisorSock) intOpt(o tcpip.SockOptInt) (int, error) {
	v, err := s.ep.GetSockOptInt(o)
	return v, errOrNil(err)
}

// durationOpt reads the duration option O of ep as a count of unit.
func durationOpt[O ~int64, P interface {
	*O
	tcpip.GettableSocketOption
}](ep tcpip.Endpoint, unit time.Duration) (int, error) {
	var o O
	err := ep.GetSockOpt(P(&o))
	return int(time.Duration(o) / unit), errOrNil(err)
}

func errOrNil(err tcpip.Error) error {
	if err == nil {
		return nil
	}
	return gvisorErrno(err)
}

// gvisorErrno is the errno gVisor's sentry reports for a netstack error
// (pkg/syserr/netstack.go), for the errors TCP sockets return.
func gvisorErrno(err tcpip.Error) error {
	switch err.(type) {
	case *tcpip.ErrWouldBlock:
		return unix.EAGAIN
	case *tcpip.ErrConnectStarted:
		return unix.EINPROGRESS
	case *tcpip.ErrAlreadyConnecting:
		return unix.EALREADY
	case *tcpip.ErrAlreadyConnected:
		return unix.EISCONN
	case *tcpip.ErrAlreadyBound, *tcpip.ErrInvalidEndpointState, *tcpip.ErrInvalidOptionValue:
		return unix.EINVAL
	case *tcpip.ErrPortInUse:
		return unix.EADDRINUSE
	case *tcpip.ErrBadLocalAddress:
		return unix.EADDRNOTAVAIL
	case *tcpip.ErrNoPortAvailable:
		return unix.EAGAIN
	case *tcpip.ErrClosedForSend:
		return unix.EPIPE
	case *tcpip.ErrClosedForReceive:
		return unix.ESHUTDOWN
	case *tcpip.ErrConnectionRefused:
		return unix.ECONNREFUSED
	case *tcpip.ErrConnectionReset:
		return unix.ECONNRESET
	case *tcpip.ErrConnectionAborted, *tcpip.ErrAborted:
		return unix.ECONNABORTED
	case *tcpip.ErrTimeout:
		return unix.ETIMEDOUT
	case *tcpip.ErrNotConnected:
		return unix.ENOTCONN
	case *tcpip.ErrHostUnreachable:
		return unix.EHOSTUNREACH
	case *tcpip.ErrNetworkUnreachable, *tcpip.ErrNoNet:
		return unix.ENETUNREACH
	case *tcpip.ErrMessageTooLong:
		return unix.EMSGSIZE
	case *tcpip.ErrNoBufferSpace:
		return unix.ENOBUFS
	case *tcpip.ErrNotSupported, *tcpip.ErrUnknownProtocolOption:
		return unix.EOPNOTSUPP
	case *tcpip.ErrNotPermitted:
		return unix.EPERM
	case *tcpip.ErrBadAddress:
		return unix.EFAULT
	case *tcpip.ErrDestinationRequired:
		return unix.EDESTADDRREQ
	}
	return unix.EIO
}
