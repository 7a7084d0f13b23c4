package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"ustack/stack"
)

// cmdSS is "ustack ss [--ctl PATH] [-t] [-u] [--stats]": the daemon's
// sockets like ss -tan (TCP, the default), ss -uan (-u) or both (-t -u),
// and with --stats its counters after them.
func cmdSS(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ustack ss", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ctl := fs.String("ctl", "", "control socket `PATH` of the daemon (default: the only socket in "+ctlDir+")")
	stats := fs.Bool("stats", false, "also print the stack's counters")
	tcp := fs.Bool("t", false, "TCP sockets (the default)")
	udp := fs.Bool("u", false, "UDP sockets, like ss -uan")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: ustack ss [--ctl PATH] [-t] [-u] [--stats]\n\nLists the daemon's sockets like ss -tan (-u: ss -uan).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ustack ss: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	path, err := findCtl(*ctl)
	if err != nil {
		fmt.Fprintf(stderr, "ustack ss: %v\n", err)
		return 1
	}
	var resp ctlResponse
	if err := ctlCall(path, ctlRequest{Op: "ss"}, &resp); err != nil {
		fmt.Fprintf(stderr, "ustack ss: %v\n", err)
		return 1
	}
	if !*udp {
		*tcp = true
	}
	var shown []stack.SocketInfo
	for _, s := range resp.Sockets {
		if isUDP := s.Proto == "udp"; isUDP && *udp || !isUDP && *tcp {
			shown = append(shown, s)
		}
	}
	writeSockets(stdout, shown)
	if *stats {
		var st ctlResponse
		if err := ctlCall(path, ctlRequest{Op: "stats"}, &st); err != nil {
			fmt.Fprintf(stderr, "ustack ss: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout)
		writeCounters(stdout, st.Counters)
	}
	return 0
}

// writeSockets prints sockets as a table with ss -tan's columns. Columns
// widen to fit their longest value; with short addresses the header reads
//
//	State      Recv-Q Send-Q Local Address:Port  Peer Address:Port  Timer
func writeSockets(w io.Writer, socks []stack.SocketInfo) {
	hdr := []string{"State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Timer"}
	widths := []int{10, 6, 6, len(hdr[3]) + 1, len(hdr[4]) + 1, 0}
	rows := [][]string{hdr}
	for _, s := range socks {
		rows = append(rows, []string{
			s.State, fmt.Sprint(s.RecvQ), fmt.Sprint(s.SendQ),
			formatAddrPort(s.Local), formatAddrPort(s.Peer), formatTimer(s),
		})
	}
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		b.Reset()
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
			} else {
				fmt.Fprintf(&b, "%-*s ", widths[i], c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// writeCounters prints "name value", names padded to line up the values.
func writeCounters(w io.Writer, cs []stack.Counter) {
	width := 0
	for _, c := range cs {
		width = max(width, len(c.Name))
	}
	for _, c := range cs {
		fmt.Fprintf(w, "%-*s %d\n", width, c.Name, c.Value)
	}
}

// formatAddrPort prints an address like ss: IPv6 in brackets, "*" for an unspecified address,
// "*" for port 0 (a listener's peer is "*:*").
func formatAddrPort(ap netip.AddrPort) string {
	host, port := "*", "*"
	if a := ap.Addr(); a.IsValid() && !a.IsUnspecified() {
		host = a.String()
		if a.Is6() {
			host = "[" + host + "]" // as ss writes IPv6 addresses
		}
	}
	if ap.Port() != 0 {
		port = fmt.Sprint(ap.Port())
	}
	return host + ":" + port
}

// formatTimer renders the running timer like ss -o's timer:(...) field, in
// words: "on (1.2sec)", "timewait (52sec)", "keepalive (1min54sec)", and
// the retransmission count when there is one: "on (3.2sec, 2 retrans)".
func formatTimer(s stack.SocketInfo) string {
	if s.Timer == "" {
		return ""
	}
	t := s.Timer + " (" + formatTimerLeft(s.TimerLeft)
	if s.Retransmits > 0 {
		t += fmt.Sprintf(", %d retrans", s.Retransmits)
	}
	return t + ")"
}

// formatTimerLeft is ss's style of duration: milliseconds below a second,
// one decimal below ten seconds, whole seconds below a minute, then minutes
// and seconds.
func formatTimerLeft(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fsec", float64(d.Truncate(100*time.Millisecond))/float64(time.Second))
	case d < time.Minute:
		return fmt.Sprintf("%dsec", int(d/time.Second))
	default:
		m := int(d / time.Minute)
		sec := int((d % time.Minute) / time.Second)
		if sec == 0 {
			return fmt.Sprintf("%dmin", m)
		}
		return fmt.Sprintf("%dmin%dsec", m, sec)
	}
}
