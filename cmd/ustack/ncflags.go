package main

// `ustack nc`'s command line, parsed as netcat-openbsd (Debian's nc) parses
// its own, so that a user's nc habits carry over: glibc getopt, which takes
// options and operands in any order ("nc 10.0.0.2 7 -v"), bundles short
// options ("-vz", "-w3", "-lvp 9000") and stops at "--"; -w and -q take
// seconds ("-w 3"; a fraction or a Go duration such as 2.5s too); -l takes
// its port as an operand or with -p. On top of nc's: --ctl PATH.

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

const ncUsage = `usage: ustack nc [--ctl PATH] [-4dNnvz] [-p LPORT] [-q SECS] [-s LADDR] [-w SECS] HOST PORT...
       ustack nc [--ctl PATH] [-46dNnuv] [-q SECS] -l [-s LADDR] [-p PORT | [LADDR] PORT]`

const ncHelp = ncUsage + `

netcat through the daemon's stack; the flags mean what they mean in
netcat-openbsd:
  --ctl PATH  the daemon's control socket (default: the only one running)
  -4          IPv4 only
  -6          IPv6 only (ustack nc -6 fd00::2 7)
  -d          do not read standard input
  -h          print this help
  -l          listen for one connection instead of connecting
  -N          shut down writing (send FIN) at the end of standard input
  -n          numeric addresses only (ustack nc never resolves names)
  -p PORT     local port (with -l: the port to listen on)
  -q SECS     after the end of standard input, wait SECS, then quit (implies -N)
  -s ADDR     local address
  -u          UDP: each chunk of input is a datagram (-l: to the first sender)
  -v          say when the connection is up (or received, with -l)
  -w SECS     give up connecting after SECS (not with -l, as in nc)
  -z          scan: connect to each PORT (N, N-M or a service name), send nothing
SECS is a number of seconds (3, 0.5) or a Go duration (300ms, 2.5s).`

// ncOptions is one `ustack nc` command line.
type ncOptions struct {
	Ctl       string
	Listen    bool          // -l
	Verbose   bool          // -v
	Scan      bool          // -z
	Shutdown  bool          // -N, or -q SECS with SECS >= 0
	NoStdin   bool          // -d
	IPv6      bool          // -6: IPv6 only
	UDP       bool          // -u: datagrams
	LocalAddr string        // -s; "" for any
	LocalPort int           // -p; 0 for none
	Wait      time.Duration // -w; 0 for none. Ignored with -l, as nc ignores it
	Quit      time.Duration // -q; negative: never quit at the end of input (nc's default)
	Host      string        // the destination, or with -l the address to listen on ("" for any)
	Ports     []int         // the destination ports (several only with -z), or with -l the one port
}

// errNCHelp is -h.
var errNCHelp = errors.New("help")

// ncShortFlags are nc's options that ustack nc has, and whether each takes
// a value; ncUnsupported are netcat-openbsd's other options.
var ncShortFlags = map[byte]bool{
	'4': false, '6': false, 'd': false, 'h': false, 'l': false, 'N': false, 'n': false,
	'u': false, 'v': false, 'z': false,
	'p': true, 'q': true, 's': true, 'w': true,
}

const ncUnsupported = "bCDFIiKkMmOPrSTtUVWXxZ"

// parseNCArgs parses args (after "nc"). Every error is a usage error: the
// caller prints it with the usage and exits 2. -h gives errNCHelp.
func parseNCArgs(args []string) (*ncOptions, error) {
	o := &ncOptions{Quit: -1}
	var operands []string
	set := map[byte]string{} // the flags given, with their values
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			operands = append(operands, args[i+1:]...)
			i = len(args)
			continue
		case a == "--help":
			return nil, errNCHelp
		case a == "--ctl" || a == "-ctl": // -ctl: what the flag package took
			if i+1 >= len(args) {
				return nil, fmt.Errorf("option '--ctl' requires an argument")
			}
			i++
			o.Ctl = args[i]
			continue
		case strings.HasPrefix(a, "--ctl=") || strings.HasPrefix(a, "-ctl="):
			_, o.Ctl, _ = strings.Cut(a, "=")
			continue
		case strings.HasPrefix(a, "--"):
			return nil, fmt.Errorf("unrecognized option '%s'", a)
		case len(a) < 2 || a[0] != '-':
			operands = append(operands, a) // "-" too, as getopt does
			continue
		}
		// A bundle of short options: -vz, -w3, -lvp 9000.
		for j := 1; j < len(a); j++ {
			c := a[j]
			takes, ok := ncShortFlags[c]
			if !ok {
				if strings.IndexByte(ncUnsupported, c) >= 0 {
					return nil, fmt.Errorf("-%c is netcat-openbsd's, not supported by ustack nc", c)
				}
				return nil, fmt.Errorf("invalid option -- '%c'", c)
			}
			if !takes {
				set[c] = ""
				continue
			}
			v := a[j+1:]
			if v == "" {
				if i+1 >= len(args) {
					return nil, fmt.Errorf("option requires an argument -- '%c'", c)
				}
				i++
				v = args[i]
			}
			set[c] = v
			break
		}
	}
	if _, ok := set['h']; ok {
		return nil, errNCHelp
	}
	_, o.Listen = set['l']
	_, o.Verbose = set['v']
	_, o.Scan = set['z']
	_, o.Shutdown = set['N']
	_, o.NoStdin = set['d']
	_, o.IPv6 = set['6']
	_, o.UDP = set['u']
	if _, four := set['4']; four && o.IPv6 {
		return nil, errors.New("-4 and -6 together")
	}
	var err error
	if v, ok := set['w']; ok {
		if o.Wait, err = parseSecs(v); err != nil || o.Wait < 0 {
			return nil, fmt.Errorf("timeout invalid: %s", v)
		}
	}
	if v, ok := set['q']; ok {
		if o.Quit, err = parseSecs(v); err != nil {
			return nil, fmt.Errorf("quit timer invalid: %s", v)
		}
		if o.Quit >= 0 {
			o.Shutdown = true // as netcat-openbsd: "-q SECS implies -N"
		} else {
			o.Quit = -1 // forever
		}
	}
	if v, ok := set['s']; ok {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("-s %s: not a numeric IP address (ustack nc does not resolve names)", v)
		}
		o.LocalAddr = a.String()
	}
	if v, ok := set['p']; ok {
		if o.LocalPort, err = parsePort(v); err != nil {
			return nil, fmt.Errorf("-p %s: %v", v, err)
		}
	}
	if o.Listen {
		return o, o.listenOperands(operands)
	}
	return o, o.connectOperands(operands)
}

// listenOperands takes -l's [ADDR] PORT, or none with -p (nc refuses a
// port both ways, and an address both ways).
func (o *ncOptions) listenOperands(operands []string) error {
	if o.Scan {
		return errors.New("cannot use -z and -l")
	}
	switch {
	case len(operands) == 0 && o.LocalPort != 0:
		o.Host, o.Ports = o.LocalAddr, []int{o.LocalPort}
		o.LocalAddr, o.LocalPort = "", 0
		return nil
	case len(operands) == 0:
		return errors.New("missing port number")
	case len(operands) > 2:
		return fmt.Errorf("unexpected operand %q", operands[2])
	case o.LocalPort != 0:
		return errors.New("-l takes its port either with -p or as an operand, not both")
	}
	host := o.LocalAddr
	if len(operands) == 2 {
		if o.LocalAddr != "" {
			return errors.New("-l takes its address either with -s or as an operand, not both")
		}
		a, err := netip.ParseAddr(operands[0])
		if err != nil {
			return fmt.Errorf("%s: not a numeric IP address (ustack nc does not resolve names)", operands[0])
		}
		host = a.String()
	}
	port, err := parsePort(operands[len(operands)-1])
	if err != nil {
		return fmt.Errorf("port %s: %v", operands[len(operands)-1], err)
	}
	o.Host, o.Ports, o.LocalAddr = host, []int{port}, ""
	return nil
}

// connectOperands takes HOST PORT..., each PORT a number, a range N-M or a
// service name; more than one port only for -z.
func (o *ncOptions) connectOperands(operands []string) error {
	switch len(operands) {
	case 0:
		return errors.New("missing destination")
	case 1:
		return errors.New("missing port number")
	}
	a, err := netip.ParseAddr(operands[0])
	if err != nil {
		return fmt.Errorf("%s: not a numeric IP address (ustack nc does not resolve names)", operands[0])
	}
	o.Host = a.String()
	for _, p := range operands[1:] {
		ports, err := parsePortRange(p)
		if err != nil {
			return fmt.Errorf("port %s: %v", p, err)
		}
		o.Ports = append(o.Ports, ports...)
	}
	if len(o.Ports) > 1 && !o.Scan {
		return errors.New("several ports only with -z (ustack nc connects to one)")
	}
	return nil
}

// parseSecs is -w's and -q's value: seconds as nc takes them ("3", and
// here a fraction "0.5" too), or a Go duration ("300ms").
func parseSecs(v string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > math.MaxInt64/float64(time.Second) {
			return 0, errors.New("out of range")
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	return time.ParseDuration(v)
}

// parsePort is one port, 1..65535, by number or service name.
func parsePort(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		if n, err := net.LookupPort("tcp", v); err == nil && n > 0 {
			return n, nil
		}
		return 0, errors.New("want a number 1..65535 or a service name")
	}
	if n < 1 || n > 65535 {
		return 0, errors.New("want 1..65535")
	}
	return n, nil
}

// parsePortRange is a port or a range N-M (either order, as nc takes it).
func parsePortRange(v string) ([]int, error) {
	lo, hi, ok := strings.Cut(v, "-")
	if !ok {
		p, err := parsePort(v)
		return []int{p}, err
	}
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || a < 1 || b < 1 || a > 65535 || b > 65535 {
		return nil, errors.New("want a range N-M of ports 1..65535")
	}
	if a > b {
		a, b = b, a
	}
	ports := make([]int, 0, b-a+1)
	for p := a; p <= b; p++ {
		ports = append(ports, p)
	}
	return ports, nil
}

// tcpServiceName is port's name in /etc/services ("echo"), or "*", as nc
// -v prints it: "Connection to 10.0.0.2 7 port [tcp/echo] succeeded!".
func tcpServiceName(port int) string {
	servicesOnce.Do(loadServices)
	if s, ok := tcpServices[port]; ok {
		return s
	}
	return "*"
}

var (
	servicesOnce sync.Once
	tcpServices  map[int]string
)

func loadServices() {
	tcpServices = map[int]string{}
	f, err := os.Open("/etc/services")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		num, proto, ok := strings.Cut(fields[1], "/")
		if !ok || proto != "tcp" {
			continue
		}
		if n, err := strconv.Atoi(num); err == nil {
			if _, dup := tcpServices[n]; !dup {
				tcpServices[n] = fields[0]
			}
		}
	}
}
