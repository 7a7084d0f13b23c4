package drill

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// IPVersion is packetdrill's --ip_version: which family the sockets are
// and which the packets on the wire are (config.c's table).
type IPVersion int

const (
	// IPv4: AF_INET sockets, IPv4 on the wire.
	IPv4 IPVersion = iota
	// IPv4MappedIPv6: AF_INET6 sockets bound and connected to
	// ::ffff:a.b.c.d, IPv4 on the wire.
	IPv4MappedIPv6
	// IPv6: AF_INET6 sockets, IPv6 on the wire.
	IPv6
)

// IPVersions are the three, in packetdrill's order of their names.
var IPVersions = []IPVersion{IPv4, IPv4MappedIPv6, IPv6}

func (v IPVersion) String() string {
	switch v {
	case IPv4MappedIPv6:
		return "ipv4-mapped-ipv6"
	case IPv6:
		return "ipv6"
	}
	return "ipv4"
}

// ParseIPVersion reads an --ip_version value.
func ParseIPVersion(s string) (IPVersion, error) {
	for _, v := range IPVersions {
		if s == v.String() {
			return v, nil
		}
	}
	return 0, fmt.Errorf("bad --ip_version %q (want ipv4, ipv4-mapped-ipv6 or ipv6)", s)
}

// Config is what packetdrill's command line and a script's option lines
// set: the addresses, the device, and how strictly to judge.
type Config struct {
	IPVersion IPVersion
	// Local and Remote are the wire addresses of the stack under test and
	// of the scripted peer; RemotePrefix is the peer's network, routed
	// through tun0 on Linux.
	Local, Remote netip.Addr
	RemotePrefix  netip.Prefix
	// LocalPrefix is the length of tun0's prefix (from --netmask_ip on
	// IPv4, 48 on IPv6 as config.c).
	LocalPrefix int
	// MTU is the device's (--mtu, 1500).
	MTU int

	BindPort, ConnectPort uint16

	Tolerance      time.Duration // --tolerance_usecs
	TolerancePct   float64       // --tolerance_percent
	TSTickUsecs    int64         // --tcp_ts_tick_usecs (0: TS val not checked)
	StrictSegments bool          // --strict_segments
}

// The addresses packetdrill's own test runner (run_all.py) gives each
// version; the scripts of its collection are written against them.
var (
	defaultLocal4  = netip.MustParseAddr("192.168.0.1")
	defaultRemote4 = netip.MustParsePrefix("192.0.2.1/24")
	defaultLocal6  = netip.MustParseAddr("fd3d:a0b:17d6::1")
	defaultRemote6 = netip.MustParsePrefix("fd3d:fa7b:d17d::1/128")
)

// NewConfig returns packetdrill's defaults for v.
func NewConfig(v IPVersion) *Config {
	c := &Config{
		IPVersion: v, MTU: 1500, BindPort: 8080, ConnectPort: 8080,
		Tolerance: 4 * time.Millisecond, TolerancePct: 12.5,
	}
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	if c.IPVersion == IPv6 {
		c.Local, c.RemotePrefix, c.LocalPrefix = defaultLocal6, defaultRemote6, 48
	} else {
		c.Local, c.RemotePrefix, c.LocalPrefix = defaultLocal4, defaultRemote4, 16
	}
	c.Remote = c.RemotePrefix.Addr()
}

// ConfigFrom applies options in order (a script's option lines first, then
// the command line, which overrides them, as packetdrill does). The
// --ip_version among them is applied first, so that the addresses the
// others give are checked against it. An option drill does not honour is
// *Unsupported (the script is skipped with its name); a bad value is an
// error.
func ConfigFrom(opts ...[]Option) (*Config, error) {
	var all []Option
	for _, o := range opts {
		all = append(all, o...)
	}
	v := IPv4
	for _, o := range all {
		if o.Name == "ip_version" {
			var err error
			if v, err = ParseIPVersion(o.Value); err != nil {
				return nil, optionError(o, err)
			}
		}
	}
	c := NewConfig(v)
	for _, o := range all {
		if err := c.apply(o); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func optionError(o Option, err error) error {
	if o.Pos.Line > 0 {
		return &Failure{Pos: o.Pos, Msg: err.Error()}
	}
	return err
}

func (c *Config) apply(o Option) error {
	bad := func(what string) error {
		return optionError(o, fmt.Errorf("bad --%s=%s: %s", o.Name, o.Value, what))
	}
	family := func(a netip.Addr) error {
		if a.Is4() != (c.IPVersion != IPv6) {
			return bad("not an address of " + c.IPVersion.String())
		}
		return nil
	}
	switch o.Name {
	case "ip_version", "verbose":
	case "local_ip":
		a, err := netip.ParseAddr(o.Value)
		if err != nil {
			return bad("not an IP address")
		}
		if err := family(a); err != nil {
			return err
		}
		c.Local = a
	case "remote_ip":
		p, err := netip.ParsePrefix(o.Value)
		if err != nil {
			a, aerr := netip.ParseAddr(o.Value)
			if aerr != nil {
				return bad("not an IP address or prefix")
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err := family(p.Addr()); err != nil {
			return err
		}
		c.RemotePrefix, c.Remote = p, p.Addr()
	case "gateway_ip":
		// Only a route through a gateway would use it; tun0 is a
		// point-to-point device, so the address is only checked.
		a, err := netip.ParseAddr(o.Value)
		if err != nil {
			return bad("not an IP address")
		}
		return family(a)
	case "netmask_ip":
		a, err := netip.ParseAddr(o.Value)
		if err != nil || !a.Is4() {
			return bad("not an IPv4 netmask")
		}
		b := a.As4()
		n := 0
		for m := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]); m&(1<<31) != 0; m <<= 1 {
			n++
		}
		if c.IPVersion != IPv6 {
			c.LocalPrefix = n
		}
	case "mtu":
		n, err := strconv.Atoi(o.Value)
		if err != nil || n < 576 || n > 65535 {
			return bad("an MTU in [576, 65535]")
		}
		if c.IPVersion == IPv6 && n < 1280 {
			return bad("IPv6 needs an MTU of at least 1280")
		}
		c.MTU = n
	case "bind_port", "connect_port":
		n, err := strconv.Atoi(o.Value)
		if err != nil || n <= 0 || n > 0xffff {
			return bad("a port in [1, 65535]")
		}
		if o.Name == "bind_port" {
			c.BindPort = uint16(n)
		} else {
			c.ConnectPort = uint16(n)
		}
	case "tolerance_usecs":
		n, err := strconv.Atoi(o.Value)
		if err != nil || n < 0 {
			return bad("a number of microseconds")
		}
		c.Tolerance = time.Duration(n) * time.Microsecond
	case "tolerance_percent":
		f, err := strconv.ParseFloat(o.Value, 64)
		if err != nil || f < 0 {
			return bad("a percentage")
		}
		c.TolerancePct = f
	case "tcp_ts_tick_usecs":
		n, err := strconv.Atoi(o.Value)
		if err != nil || n < 0 {
			return bad("a number of microseconds")
		}
		c.TSTickUsecs = int64(n)
	case "strict_segments":
		c.StrictSegments = true
	default:
		value := ""
		if o.Value != "" {
			value = "=" + o.Value
		}
		where := ""
		if o.Pos.Line > 0 {
			where = fmt.Sprintf(" (line %d)", o.Pos.Line)
		}
		return unsupported("option --%s%s%s", o.Name, value, where)
	}
	return nil
}

// Wire6 reports whether packets on the wire are IPv6.
func (c *Config) Wire6() bool { return c.IPVersion == IPv6 }

// Domain is the family socket() is called with.
func (c *Config) Domain() int {
	if c.IPVersion == IPv4 {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// sockAddr is a as the sockets see it: IPv4-mapped in that mode.
func (c *Config) sockAddr(a netip.Addr) netip.Addr {
	if c.IPVersion == IPv4MappedIPv6 {
		return netip.AddrFrom16(a.As16())
	}
	return a
}

// BindAddr is what bind(fd, ..., ...) binds: local_ip:bind_port.
func (c *Config) BindAddr() netip.AddrPort {
	return netip.AddrPortFrom(c.sockAddr(c.Local), c.BindPort)
}

// ConnectAddr is what connect(fd, ..., ...) connects to.
func (c *Config) ConnectAddr() netip.AddrPort {
	return netip.AddrPortFrom(c.sockAddr(c.Remote), c.ConnectPort)
}

// LocalPrefixed is tun0's address with its prefix.
func (c *Config) LocalPrefixed() netip.Prefix { return netip.PrefixFrom(c.Local, c.LocalPrefix) }

// ParseArgs takes packetdrill's own options out of a command line
// (--name=value, or --name value for one that has a value), leaving the
// rest (the runner's flags and the scripts) in order. Values are not
// checked here: ConfigFrom does that.
func ParseArgs(args []string) (opts []Option, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		takes, known := packetdrillOptions[name]
		if !strings.HasPrefix(a, "--") || !known {
			rest = append(rest, a)
			continue
		}
		if !hasValue && takes && i+1 < len(args) {
			i++
			value = args[i]
		}
		opts = append(opts, Option{Name: name, Value: value})
	}
	return opts, rest
}

// packetdrillOptions are the options of packetdrill's command line that
// drill knows, and whether each has a value.
var packetdrillOptions = map[string]bool{
	"ip_version": true, "local_ip": true, "remote_ip": true, "gateway_ip": true,
	"netmask_ip": true, "mtu": true, "bind_port": true, "connect_port": true,
	"tolerance_usecs": true, "tolerance_percent": true, "tcp_ts_tick_usecs": true,
	"strict_segments": false,
}

// OptionNames lists packetdrill's options drill takes, for a usage text.
func OptionNames() []string {
	var names []string
	for n, takes := range packetdrillOptions {
		if takes {
			n += "=..."
		}
		names = append(names, "--"+n)
	}
	sort.Strings(names)
	return names
}

// RunsIn reports whether the script at path runs in version v under the
// naming rule of packetdrill's run_all.py: a name ending in v4.pkt is for
// IPv4 wires only (ipv4 and ipv4-mapped-ipv6), one ending in v6.pkt for
// ipv6 only, and any other runs in all three.
func RunsIn(path string, v IPVersion) bool {
	switch {
	case strings.HasSuffix(path, "v4.pkt"):
		return v != IPv6
	case strings.HasSuffix(path, "v6.pkt"):
		return v == IPv6
	}
	return true
}

// SuiteArgs are the options run_all.py gives each version beyond the
// addresses (which are drill's defaults already): IPv6 runs on a 1520-byte
// MTU, so that the MSS is 1460 there too and one script fits all three.
func SuiteArgs(v IPVersion) []Option {
	args := []Option{{Name: "ip_version", Value: v.String()}}
	if v == IPv6 {
		args = append(args, Option{Name: "mtu", Value: "1520"})
	}
	return args
}
