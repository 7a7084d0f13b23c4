package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"ustack/stack"
)

// ctlDir is where daemons put their control sockets by default, one per TUN
// device, so that "ustack ss" can find the only one running.
const ctlDir = "/run/ustack"

// defaultCtlPath is the control socket of the daemon owning tun device name.
func defaultCtlPath(name string) string { return filepath.Join(ctlDir, name+".sock") }

// runConfig is "ustack run"'s command line, parsed and validated: nothing in
// it can fail later for a reason the user could have been told up front.
type runConfig struct {
	Tun      string
	TunAddr  netip.Prefix // the kernel side's address and the subnet routed to the TUN
	Addr     netip.Addr   // the stack's address, inside TunAddr's subnet
	TunAddr6 netip.Prefix // the kernel side's IPv6 address and subnet (zero: no IPv6)
	Addr6    netip.Addr   // the stack's IPv6 address, inside TunAddr6's subnet
	MTU      int
	Serves   []serveSpec
	Ctl      string
	Pcap     string // "" for none
	Impair   *impairSpec
	Engine   string
	Trace    bool
	// Offload opens the TUN device with TSO and checksum offload
	// (IFF_VNET_HDR), for either engine; --impair turns it off.
	Offload bool
	// CPUProfile is where --cpuprofile writes a pprof CPU profile ("": off).
	CPUProfile string
	// Procs is GOMAXPROCS for the daemon (0: Go's default, one per CPU).
	Procs int
	// Forward relays what arrives for other addresses (--forward): "" off,
	// "direct", or a SOCKS5 proxy's host:port (ForwardSOCKS).
	Forward      string
	ForwardSOCKS string
	ForwardDev   string // --forward-dev: the device direct relaying leaves by
	ForwardMark  int    // --forward-mark: SO_MARK on the relay's sockets
	// ForwardLocalPing answers pings to every address from the stack
	// instead of pinging the real destination (--forward-local-ping).
	ForwardLocalPing bool

	FinTimeout        time.Duration
	TimeWait          time.Duration
	SynRetries        int
	SynLinearTimeouts int
}

// minMTU and maxMTU are the link MTUs stack.New accepts.
const (
	minMTU = 576
	maxMTU = 65535
)

// defaultServes is what "ustack run" serves when no --serve is given.
var defaultServes = []serveSpec{{"http", 80}, {"echo", 7}}

// errUsage marks an error the flag package already reported (with the usage
// text), so the caller only has to exit 2.
var errUsage = errors.New("usage")

// parseRunFlags parses and validates "ustack run"'s arguments. It returns
// flag.ErrHelp for -h, errUsage when the flag package printed the problem,
// and a plain error (exit 2) for a bad value.
func parseRunFlags(args []string, stderr io.Writer) (*runConfig, error) {
	def := stack.DefaultOptions()
	fs := flag.NewFlagSet("ustack run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg      runConfig
		tunAddr  = fs.String("tun-addr", "10.0.0.1/24", "address of the kernel's side of the TUN `CIDR`; the subnet is routed through it")
		addr     = fs.String("addr", "10.0.0.2", "the stack's own `IP` address")
		tunAddr6 = fs.String("tun-addr6", "fd00::1/64", "IPv6 address of the kernel's side of the TUN `CIDR`")
		addr6    = fs.String("addr6", "fd00::2", "the stack's own IPv6 `ADDRESS` (empty: no IPv6)")
		serves   stringList
		impair   = fs.String("impair", "", "impair the link both ways, like netem: `SPEC` loss=2%,dup=1%,reorder=1%,delay=50ms,jitter=10ms (any subset; also limit=N, seed=N)")
	)
	fs.StringVar(&cfg.Tun, "tun", "tun0", "TUN device `NAME` to create (or attach to) and own")
	fs.IntVar(&cfg.MTU, "mtu", 1500, fmt.Sprintf("`MTU` of the TUN device (%d..%d)", minMTU, maxMTU))
	fs.Var(&serves, "serve", "built-in service `KIND:PORT`, repeatable (default http:80 and echo:7); kinds: "+strings.Join(serviceKindNames(), ", "))
	fs.StringVar(&cfg.Ctl, "ctl", "", "control socket `PATH` for ustack ss and nc (default "+defaultCtlPath("NAME")+")")
	fs.StringVar(&cfg.Pcap, "pcap", "", "write every packet in and out to pcap `FILE`")
	fs.DurationVar(&cfg.FinTimeout, "fin-timeout", def.FinTimeout, "FIN_WAIT_2 timeout of an orphaned socket, like net.ipv4.tcp_fin_timeout (never under 3.5 RTOs, as Linux's tcp_fin_time)")
	fs.DurationVar(&cfg.TimeWait, "time-wait", def.TimeWait, "TIME_WAIT length")
	fs.IntVar(&cfg.SynRetries, "syn-retries", def.SynRetries, "SYN retransmissions before connect gives up, like net.ipv4.tcp_syn_retries")
	fs.IntVar(&cfg.SynLinearTimeouts, "syn-linear-timeouts", def.SynLinearTimeouts, "SYN retransmissions at a linear 1 s before backing off, like net.ipv4.tcp_syn_linear_timeouts (0: pure exponential)")
	fs.StringVar(&cfg.Engine, "engine", "ustack", "TCP/IP `ENGINE` serving the services: ustack or gvisor")
	fs.BoolVar(&cfg.Trace, "trace", false, "log every TCP state transition to stderr")
	fs.BoolVar(&cfg.Offload, "offload", true, "TSO and checksum offload on the TUN device, up to 64 KB per read or write (not with --impair)")
	fs.IntVar(&cfg.Procs, "procs", 0, "run Go code on at most `N` CPUs at once (GOMAXPROCS; 0: all CPUs)")
	fs.StringVar(&cfg.Forward, "forward", "", "relay every TCP connection and UDP flow for another address to its real destination: `MODE` direct (the host's sockets) or socks5://HOST:PORT")
	fs.StringVar(&cfg.ForwardDev, "forward-dev", "", "with --forward direct, leave by `DEVICE` (SO_BINDTODEVICE; default: the default route's device)")
	fs.BoolVar(&cfg.ForwardLocalPing, "forward-local-ping", false, "with --forward, answer pings to every address from the stack instead of passing on only the real destination's answers")
	fs.IntVar(&cfg.ForwardMark, "forward-mark", 0, "with --forward direct, mark the relay's sockets with `N` (SO_MARK) for a policy-routing rule")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the daemon to `FILE` (for go tool pprof) until it exits")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: ustack run [flags]\n\nRuns the stack on a TUN device and serves built-in services until SIGINT or SIGTERM.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil, err
		}
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags only)", fs.Arg(0))
	}
	if cfg.Procs < 0 {
		return nil, fmt.Errorf("--procs %d: want 0 (all CPUs) or more", cfg.Procs)
	}

	if err := validTunName(cfg.Tun); err != nil {
		return nil, err
	}
	p, err := netip.ParsePrefix(*tunAddr)
	if err != nil || !p.Addr().Is4() {
		return nil, fmt.Errorf("--tun-addr %q: want an IPv4 address with prefix length, like 10.0.0.1/24", *tunAddr)
	}
	if p.Bits() > 30 {
		return nil, fmt.Errorf("--tun-addr %s: the subnet must hold two hosts (prefix length at most 30)", p)
	}
	cfg.TunAddr = p
	a, err := netip.ParseAddr(*addr)
	if err != nil || !a.Is4() {
		return nil, fmt.Errorf("--addr %q: want an IPv4 address, like 10.0.0.2", *addr)
	}
	cfg.Addr = a
	// The kernel routes only TunAddr's subnet to the device, so an address
	// outside it would never receive a packet.
	if !p.Masked().Contains(a) {
		return nil, fmt.Errorf("--addr %s is outside --tun-addr's subnet %s: the kernel would not route to it", a, p.Masked())
	}
	if a == p.Addr() {
		return nil, fmt.Errorf("--addr %s is the kernel's own address (--tun-addr); pick another in %s", a, p.Masked())
	}
	if a == p.Masked().Addr() || a == broadcast(p) {
		return nil, fmt.Errorf("--addr %s is the network or broadcast address of %s", a, p.Masked())
	}
	if *addr6 != "" {
		if err := cfg.setIPv6(*tunAddr6, *addr6); err != nil {
			return nil, err
		}
	}
	// The stack's own range (stack.New refuses the rest, once tun0
	// exists): 576 is the datagram every IPv4 host must accept (RFC 791).
	if cfg.MTU < minMTU || cfg.MTU > maxMTU {
		return nil, fmt.Errorf("--mtu %d: want %d..%d", cfg.MTU, minMTU, maxMTU)
	}
	if len(serves) == 0 {
		cfg.Serves = append([]serveSpec(nil), defaultServes...)
	} else {
		if cfg.Serves, err = parseServes(serves); err != nil {
			return nil, err
		}
	}
	if cfg.Ctl == "" {
		cfg.Ctl = defaultCtlPath(cfg.Tun)
	}
	if cfg.FinTimeout <= 0 {
		return nil, fmt.Errorf("--fin-timeout %v: want a positive duration", cfg.FinTimeout)
	}
	if cfg.TimeWait <= 0 {
		return nil, fmt.Errorf("--time-wait %v: want a positive duration", cfg.TimeWait)
	}
	// Linux bounds both sysctls by MAX_TCP_SYNCNT (127).
	if cfg.SynRetries < 1 || cfg.SynRetries > 127 {
		return nil, fmt.Errorf("--syn-retries %d: want 1..127", cfg.SynRetries)
	}
	if cfg.SynLinearTimeouts < 0 || cfg.SynLinearTimeouts > 127 {
		return nil, fmt.Errorf("--syn-linear-timeouts %d: want 0..127", cfg.SynLinearTimeouts)
	}
	if *impair != "" {
		spec, err := parseImpair(*impair)
		if err != nil {
			return nil, fmt.Errorf("--impair: %w", err)
		}
		cfg.Impair = &spec
	}
	switch cfg.Engine {
	case "ustack":
	case "gvisor":
		if cfg.Trace {
			return nil, fmt.Errorf("--trace: not available with --engine gvisor (gVisor does not report state transitions)")
		}
	default:
		return nil, fmt.Errorf("--engine %q: want ustack or gvisor", cfg.Engine)
	}
	if err := cfg.checkForward(); err != nil {
		return nil, err
	}
	offloadSet := false
	fs.Visit(func(f *flag.Flag) { offloadSet = offloadSet || f.Name == "offload" })
	if cfg.Offload && cfg.Impair != nil {
		if offloadSet {
			// The impairments work on the packets of a wire.
			return nil, fmt.Errorf("--offload: not with --impair (it impairs MTU-sized packets)")
		}
		cfg.Offload = false
	}
	return &cfg, nil
}

// checkForward validates --forward and the flags that go with it.
func (cfg *runConfig) checkForward() error {
	switch {
	case cfg.Forward == "":
		if cfg.ForwardDev != "" || cfg.ForwardMark != 0 || cfg.ForwardLocalPing {
			return errors.New("--forward-dev, --forward-mark and --forward-local-ping go with --forward")
		}
		return nil
	case cfg.Forward == "direct":
	case strings.HasPrefix(cfg.Forward, "socks5://"):
		hp := strings.TrimPrefix(cfg.Forward, "socks5://")
		if _, port, err := net.SplitHostPort(hp); err != nil || port == "" {
			return fmt.Errorf("--forward %s: want socks5://HOST:PORT", cfg.Forward)
		}
		if cfg.ForwardDev != "" || cfg.ForwardMark != 0 {
			return errors.New("--forward-dev and --forward-mark go with --forward direct")
		}
		cfg.ForwardSOCKS = hp
	default:
		return fmt.Errorf("--forward %q: want direct or socks5://HOST:PORT", cfg.Forward)
	}
	if cfg.ForwardMark < 0 {
		return fmt.Errorf("--forward-mark %d: want a positive mark", cfg.ForwardMark)
	}
	return nil
}

// stackOptions turns the configuration into the stack's options, starting
// from Linux's defaults.
func (cfg *runConfig) stackOptions() stack.Options {
	o := stack.DefaultOptions()
	o.Addr = cfg.Addr
	o.Addr6 = cfg.Addr6
	o.FinTimeout = cfg.FinTimeout
	o.TimeWait = cfg.TimeWait
	o.SynRetries = cfg.SynRetries
	o.SynLinearTimeouts = cfg.SynLinearTimeouts
	o.Promiscuous = cfg.Forward != "" // every address is the relay's to take
	return o
}

// setIPv6 checks and takes --tun-addr6 and --addr6, as parseRunFlags does
// their IPv4 counterparts.
func (cfg *runConfig) setIPv6(tunAddr6, addr6 string) error {
	p, err := netip.ParsePrefix(tunAddr6)
	if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() {
		return fmt.Errorf("--tun-addr6 %q: want an IPv6 address with prefix length, like fd00::1/64", tunAddr6)
	}
	if p.Bits() > 126 {
		return fmt.Errorf("--tun-addr6 %s: the subnet must hold two hosts (prefix length at most 126)", p)
	}
	a, err := netip.ParseAddr(addr6)
	if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" || a.IsMulticast() || a.IsUnspecified() {
		return fmt.Errorf("--addr6 %q: want a unicast IPv6 address, like fd00::2 (or \"\" for no IPv6)", addr6)
	}
	switch {
	case !p.Masked().Contains(a):
		return fmt.Errorf("--addr6 %s is outside --tun-addr6's subnet %s: the kernel would not route to it", a, p.Masked())
	case a == p.Addr():
		return fmt.Errorf("--addr6 %s is the kernel's own address (--tun-addr6); pick another in %s", a, p.Masked())
	}
	cfg.TunAddr6, cfg.Addr6 = p, a
	return nil
}

// validTunName applies the kernel's rules for interface names (dev_valid_name).
func validTunName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("--tun: empty device name")
	case len(name) > 15:
		return fmt.Errorf("--tun %q: device names are at most 15 bytes", name)
	case name == "." || name == "..":
		return fmt.Errorf("--tun %q: not a valid device name", name)
	case strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("--tun %q: device names cannot contain '/', ':' or spaces", name)
	}
	return nil
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// serveSpec is one --serve KIND:PORT.
type serveSpec struct {
	Kind string
	Port uint16
}

func (s serveSpec) String() string { return s.Kind + ":" + strconv.Itoa(int(s.Port)) }

// parseServes parses every --serve value and rejects two services on one
// port of one protocol (the second would fail to bind after the first had
// started); TCP and UDP ports are separate.
func parseServes(vals []string) ([]serveSpec, error) {
	var out []serveSpec
	type key struct {
		udp  bool
		port uint16
	}
	byPort := map[key]string{}
	for _, v := range vals {
		s, err := parseServe(v)
		if err != nil {
			return nil, err
		}
		k := key{strings.HasPrefix(s.Kind, "udp"), s.Port}
		if prev, ok := byPort[k]; ok {
			return nil, fmt.Errorf("--serve %s: port %d is already used by --serve %s", v, s.Port, prev)
		}
		byPort[k] = v
		out = append(out, s)
	}
	return out, nil
}

func parseServe(v string) (serveSpec, error) {
	kind, port, ok := strings.Cut(v, ":")
	if !ok {
		return serveSpec{}, fmt.Errorf("--serve %q: want KIND:PORT, like echo:7", v)
	}
	if _, ok := services[kind]; !ok {
		return serveSpec{}, fmt.Errorf("unknown service kind %q (want %s)", kind, strings.Join(serviceKindNames(), ", "))
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return serveSpec{}, fmt.Errorf("--serve %s: bad port %q (want 1..65535)", v, port)
	}
	return serveSpec{kind, uint16(n)}, nil
}
