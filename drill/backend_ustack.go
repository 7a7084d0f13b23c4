package drill

import (
	"net/netip"
	"reflect"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ustack/stack"
	"ustack/timers"
)

// NewUstack returns the backend for ustack: a stack over an in-memory link
// on a virtual clock, driven through its non-blocking Socket API.
func NewUstack() Backend { return newVstack("ustack", &ustackNet{}) }

// ustackEpoch is the virtual clock's time zero.
var ustackEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type ustackNet struct {
	clock *timers.Virtual
	s     *stack.Stack
	opts  stack.Options

	mu  sync.Mutex
	out [][]byte
}

// ustackSysctls are the sysctls that map onto stack.Options.
var ustackSysctls = map[string]func(o *stack.Options, p *Profile){
	"net.ipv4.tcp_rmem": func(o *stack.Options, p *Profile) {
		// ustack picks its window scale from RecvBuffer as Linux does from
		// the maximum: 15 MiB gives wscale 8.
		if _, _, hi, ok := p.Triple("net.ipv4.tcp_rmem"); ok {
			o.RecvBuffer = hi
		}
	},
	"net.ipv4.tcp_wmem": func(o *stack.Options, p *Profile) {
		if _, def, _, ok := p.Triple("net.ipv4.tcp_wmem"); ok {
			o.SendBuffer = def
		}
	},
	"net.ipv4.tcp_timestamps":     func(o *stack.Options, p *Profile) { o.Timestamps = p.Int("net.ipv4.tcp_timestamps", 1) != 0 },
	"net.ipv4.tcp_sack":           func(o *stack.Options, p *Profile) { o.SACK = p.Int("net.ipv4.tcp_sack", 1) != 0 },
	"net.ipv4.tcp_window_scaling": func(o *stack.Options, p *Profile) { o.WindowScaling = p.Int("net.ipv4.tcp_window_scaling", 1) != 0 },
	"net.ipv4.tcp_dsack":          func(o *stack.Options, p *Profile) { o.DSACK = p.Int("net.ipv4.tcp_dsack", 1) != 0 },
	// 0 turns off TLP (and early retransmit, which ustack does not do); 3
	// and 4 turn TLP on.
	"net.ipv4.tcp_early_retrans":  func(o *stack.Options, p *Profile) { o.TailLossProbes = p.Int("net.ipv4.tcp_early_retrans", 4) >= 3 },
	"net.ipv4.tcp_syn_retries":    func(o *stack.Options, p *Profile) { o.SynRetries = p.Int("net.ipv4.tcp_syn_retries", 6) },
	"net.ipv4.tcp_synack_retries": func(o *stack.Options, p *Profile) { o.SynAckRetries = p.Int("net.ipv4.tcp_synack_retries", 5) },
	"net.ipv4.tcp_syn_linear_timeouts": func(o *stack.Options, p *Profile) {
		o.SynLinearTimeouts = p.Int("net.ipv4.tcp_syn_linear_timeouts", 4)
	},
	"net.ipv4.tcp_fin_timeout": func(o *stack.Options, p *Profile) {
		o.FinTimeout = time.Duration(p.Int("net.ipv4.tcp_fin_timeout", 60)) * time.Second
	},
	"net.ipv4.tcp_retries2":   func(o *stack.Options, p *Profile) { o.Retries2 = p.Int("net.ipv4.tcp_retries2", 15) },
	"net.core.somaxconn":      func(o *stack.Options, p *Profile) { o.Somaxconn = p.Int("net.core.somaxconn", 4096) },
	"net.ipv4.tcp_syncookies": func(o *stack.Options, p *Profile) { o.SynCookies = p.Int("net.ipv4.tcp_syncookies", 1) },
	"net.ipv4.tcp_keepalive_time": func(o *stack.Options, p *Profile) {
		o.KeepaliveIdle = time.Duration(p.Int("net.ipv4.tcp_keepalive_time", 7200)) * time.Second
	},
	"net.ipv4.tcp_keepalive_intvl": func(o *stack.Options, p *Profile) {
		o.KeepaliveIntvl = time.Duration(p.Int("net.ipv4.tcp_keepalive_intvl", 75)) * time.Second
	},
	"net.ipv4.tcp_keepalive_probes": func(o *stack.Options, p *Profile) {
		o.KeepaliveProbes = p.Int("net.ipv4.tcp_keepalive_probes", 9)
	},
	"net.ipv4.tcp_congestion_control": func(o *stack.Options, p *Profile) {
		o.CongestionControl = stack.CongestionCubic
		if p.Get("net.ipv4.tcp_congestion_control") == "reno" {
			o.CongestionControl = stack.CongestionReno
		}
	},
}

// ustackAbsent are sysctls for Linux features ustack does not have, so
// turning them off is honoured as is.
var ustackAbsent = map[string]string{
	"net.ipv4.tcp_recovery": "0", // RACK
	"net.ipv4.tcp_ecn":      "0",
	"net.ipv4.tcp_fastopen": "0",
}

func (u *ustackNet) start(p *Profile, c *Config) error {
	for _, name := range p.ExplicitNames() {
		if off, ok := ustackAbsent[name]; ok && p.Get(name) == off {
			continue
		}
		if ustackSysctls[name] == nil {
			return unsupported("sysctl %s=%s on ustack", name, p.Get(name))
		}
		if v := p.Get(name); name == "net.ipv4.tcp_congestion_control" && v != "cubic" && v != "reno" {
			return unsupported("sysctl %s=%s on ustack (it has cubic and reno)", name, v)
		}
	}
	u.clock = timers.NewVirtual(ustackEpoch)
	link := stack.NewMemLink(c.MTU)
	// OnWrite runs with the stack's lock held: only copy.
	link.OnWrite = func(pkt []byte) {
		u.mu.Lock()
		u.out = append(u.out, append([]byte(nil), pkt...))
		u.mu.Unlock()
	}
	o := stack.DefaultOptions()
	if c.Wire6() {
		// An IPv4 address all the same: the stack needs one, and no
		// script's packet goes to it.
		o.Addr, o.Addr6 = netip.MustParseAddr("192.168.0.1"), c.Local
	} else {
		o.Addr, o.Addr6 = c.Local, netip.Addr{}
	}
	o.Clock = u.clock
	for _, name := range p.Names() {
		if f := ustackSysctls[name]; f != nil {
			f(&o, p)
		}
	}
	s, err := stack.New(link, o)
	if err != nil {
		return err
	}
	u.s, u.opts = s, o
	return nil
}

func (u *ustackNet) close() {
	if u.s != nil {
		u.s.Close()
	}
}

func (u *ustackNet) setClock(d time.Duration) { u.clock.Set(ustackEpoch.Add(d)) }

func (u *ustackNet) nextTimer() (time.Duration, bool) {
	t, ok := u.s.NextTimer()
	if !ok {
		return 0, false
	}
	return t.Sub(ustackEpoch), true
}

func (u *ustackNet) runTimers() { u.s.RunTimers() }

func (u *ustackNet) inject(pkt []byte) { u.s.Inject(pkt) }

func (u *ustackNet) drain() [][]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := u.out
	u.out = nil
	return out
}

// sysctl during a run: ustack's options are fixed when the stack is made,
// so only a value that changes nothing is accepted.
func (u *ustackNet) sysctl(name, value string) error {
	f := ustackSysctls[name]
	if f == nil {
		return unsupported("sysctl %s=%s on ustack", name, value)
	}
	p := NewProfile()
	p.Set(name, value)
	o := u.opts
	f(&o, p)
	if !reflect.DeepEqual(o, u.opts) {
		return unsupported("sysctl %s=%s on ustack after the first event (options are fixed when the stack is made)", name, value)
	}
	return nil
}

func (u *ustackNet) newSocket(dgram bool) (vsock, error) {
	if dgram {
		return &ustackSock{so: u.s.NewUDPSocket()}, nil
	}
	return &ustackSock{so: u.s.NewSocket()}, nil
}

// ustackSock adapts *stack.Socket to vsock.
type ustackSock struct{ so *stack.Socket }

func (s *ustackSock) Bind(a netip.AddrPort) error    { return s.so.Bind(a) }
func (s *ustackSock) Listen(backlog int) error       { return s.so.Listen(backlog) }
func (s *ustackSock) Connect(a netip.AddrPort) error { return s.so.Connect(a) }
func (s *ustackSock) Read(p []byte) (int, error)     { return s.so.Read(p) }
func (s *ustackSock) Write(p []byte) (int, error)    { return s.so.Write(p) }
func (s *ustackSock) SendMore(p []byte) (int, error) { return s.so.Send(p, unix.MSG_MORE) }
func (s *ustackSock) SendTo(p []byte, to netip.AddrPort) (int, error) {
	return s.so.SendTo(p, to)
}
func (s *ustackSock) Peek(p []byte) (int, error) { return s.so.Recv(p, unix.MSG_PEEK) }
func (s *ustackSock) Closing() bool              { return s.so.Closing() }
func (s *ustackSock) Readable(n int) bool        { return s.so.Readable(n) }
func (s *ustackSock) Shutdown(how int) error     { return s.so.Shutdown(how) }
func (s *ustackSock) Close() error               { return s.so.Close() }
func (s *ustackSock) SockError() syscall.Errno   { return s.so.SockError() }
func (s *ustackSock) InQ() int                   { return s.so.InQ() }

func (s *ustackSock) Accept() (vsock, error) {
	c, err := s.so.Accept()
	if err != nil {
		return nil, err
	}
	return &ustackSock{so: c}, nil
}

func (s *ustackSock) Events() int16 {
	return pollEvents(s.so.Events(), stack.EventIn, stack.EventOut, stack.EventErr, stack.EventHup)
}

// ustackOpt maps a (level, name) pair to the Socket API's option.
func ustackOpt(level, name int) (stack.SockOpt, bool) {
	switch {
	case level == unix.SOL_SOCKET && name == unix.SO_REUSEADDR:
		return stack.OptReuseAddr, true
	case level == unix.SOL_SOCKET && name == unix.SO_KEEPALIVE:
		return stack.OptKeepAlive, true
	case level == unix.SOL_SOCKET && name == unix.SO_RCVBUF:
		return stack.OptRcvBuf, true
	case level == unix.SOL_SOCKET && name == unix.SO_SNDBUF:
		return stack.OptSndBuf, true
	case level == unix.SOL_TCP && name == unix.TCP_NODELAY:
		return stack.OptNoDelay, true
	case level == unix.SOL_TCP && name == unix.TCP_MAXSEG:
		return stack.OptMaxSeg, true
	case level == unix.SOL_TCP && name == unix.TCP_USER_TIMEOUT:
		return stack.OptUserTimeout, true
	case level == unix.SOL_TCP && name == unix.TCP_LINGER2:
		return stack.OptLinger2, true
	case level == unix.SOL_TCP && name == unix.TCP_KEEPIDLE:
		return stack.OptKeepIdle, true
	case level == unix.SOL_TCP && name == unix.TCP_KEEPINTVL:
		return stack.OptKeepIntvl, true
	case level == unix.SOL_TCP && name == unix.TCP_KEEPCNT:
		return stack.OptKeepCnt, true
	case level == unix.SOL_TCP && name == unix.TCP_SYNCNT:
		return stack.OptSynCnt, true
	case level == unix.SOL_TCP && name == unix.TCP_DEFER_ACCEPT:
		return stack.OptDeferAccept, true
	case level == unix.SOL_TCP && name == unix.TCP_CORK:
		return stack.OptCork, true
	case level == unix.SOL_TCP && name == unix.TCP_QUICKACK:
		return stack.OptQuickAck, true
	case level == unix.SOL_SOCKET && name == unix.SO_RCVLOWAT:
		return stack.OptRcvLowat, true
	case level == unix.SOL_IP && name == unix.IP_BIND_ADDRESS_NO_PORT:
		return stack.OptBindAddressNoPort, true
	case level == unix.SOL_IP && name == unix.IP_LOCAL_PORT_RANGE:
		return stack.OptLocalPortRange, true
	case level == unix.SOL_IP && name == unix.IP_RECVERR, level == unix.SOL_IPV6 && name == unix.IPV6_RECVERR:
		return stack.OptRecvErr, true
	}
	return 0, false
}

func (s *ustackSock) SetOption(level, name, val int) error {
	opt, ok := ustackOpt(level, name)
	if !ok {
		return unsupported("setsockopt level %d option %d on ustack (its Socket API has SO_REUSEADDR, SO_KEEPALIVE, SO_LINGER, SO_RCVBUF, SO_SNDBUF, SO_RCVLOWAT and TCP_NODELAY, TCP_MAXSEG, TCP_USER_TIMEOUT, TCP_LINGER2, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_SYNCNT, TCP_DEFER_ACCEPT, TCP_CORK, TCP_QUICKACK and IP_BIND_ADDRESS_NO_PORT, IP_LOCAL_PORT_RANGE, IP_RECVERR, IPV6_RECVERR)", level, name)
	}
	return s.so.SetOption(opt, val)
}

func (s *ustackSock) SetLinger(on bool, secs int) error {
	if !on {
		secs = -1
	}
	return s.so.SetOption(stack.OptLinger, secs)
}

func (s *ustackSock) GetLinger() (bool, int, error) {
	return s.so.Linger()
}

func (s *ustackSock) GetOption(level, name int) (int, error) {
	opt, ok := ustackOpt(level, name)
	if !ok {
		return 0, unsupported("getsockopt level %d option %d on ustack (its Socket API has SO_ERROR, SO_REUSEADDR, SO_KEEPALIVE, SO_LINGER, SO_RCVBUF, SO_SNDBUF, SO_RCVLOWAT and TCP_NODELAY, TCP_MAXSEG, TCP_USER_TIMEOUT, TCP_LINGER2, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_SYNCNT, TCP_DEFER_ACCEPT, TCP_CORK, TCP_QUICKACK and IP_BIND_ADDRESS_NO_PORT, IP_LOCAL_PORT_RANGE, IP_RECVERR, IPV6_RECVERR)", level, name)
	}
	return s.so.Option(opt)
}
