package drill

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Profile is the set of sysctls a script runs under. Every script starts
// from packetdrill's Linux defaults (the table in packetdrill.md §6): that
// is what `../common/defaults.sh` selects, and the upstream scripts whose
// init line is commented out were written against the same settings (they
// expect `wscale 8`, which only tcp_rmem's 15 MiB maximum gives).
//
// Each backend maps the settings it can honour to its own tunables and
// ignores the ones that describe Linux internals it does not model (cubic,
// pacing ratios): those are assumptions of the defaults, not something a
// script tests. A sysctl the script sets itself is different: a backend that
// cannot honour it makes the script SKIP (see Backend.Sysctl).
type Profile struct {
	sysctls map[string]string
	// explicit holds the names the script set itself (not defaults).
	explicit map[string]bool
}

// linuxDefaults is packetdrill's defaults.sh, as packetdrill.md §6 lists it.
var linuxDefaults = map[string]string{
	"net.ipv4.tcp_rmem":                  "4096 540000 15728640",
	"net.ipv4.tcp_wmem":                  "4096 262144 4194304",
	"net.ipv4.tcp_timestamps":            "1",
	"net.ipv4.tcp_sack":                  "1",
	"net.ipv4.tcp_dsack":                 "1",
	"net.ipv4.tcp_window_scaling":        "1",
	"net.ipv4.tcp_syn_retries":           "5",
	"net.ipv4.tcp_synack_retries":        "5",
	"net.ipv4.tcp_frto":                  "2",
	"net.ipv4.tcp_reordering":            "3",
	"net.ipv4.tcp_congestion_control":    "cubic",
	"net.ipv4.tcp_slow_start_after_idle": "0",
	"net.ipv4.tcp_early_retrans":         "4",
	"net.ipv4.tcp_recovery":              "1",
	"net.ipv4.tcp_tso_win_divisor":       "3",
	"net.ipv4.tcp_ecn":                   "0",
	"net.ipv4.tcp_pacing_ss_ratio":       "200",
	"net.ipv4.tcp_pacing_ca_ratio":       "120",
	"net.ipv4.tcp_notsent_lowat":         "4294967295",
	"net.ipv4.tcp_fastopen":              "3",
	"net.ipv4.tcp_fastopen_key":          "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4",
	"net.ipv4.tcp_syncookies":            "1",
}

// NewProfile returns the Linux defaults profile.
func NewProfile() *Profile {
	p := &Profile{sysctls: map[string]string{}, explicit: map[string]bool{}}
	for k, v := range linuxDefaults {
		p.sysctls[k] = v
	}
	return p
}

// Set records a sysctl the script sets.
func (p *Profile) Set(name, value string) {
	p.sysctls[name] = value
	p.explicit[name] = true
}

// Get returns a sysctl's value ("" if unset).
func (p *Profile) Get(name string) string { return p.sysctls[name] }

// Int returns a sysctl as an integer, or def when unset or not a number.
func (p *Profile) Int(name string, def int) int {
	v, err := strconv.Atoi(strings.TrimSpace(p.sysctls[name]))
	if err != nil {
		return def
	}
	return v
}

// Triple returns a "min default max" sysctl (tcp_rmem, tcp_wmem).
func (p *Profile) Triple(name string) (lo, def, hi int, ok bool) {
	f := strings.Fields(p.sysctls[name])
	if len(f) != 3 {
		return 0, 0, 0, false
	}
	var v [3]int
	for i, s := range f {
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, 0, 0, false
		}
		v[i] = n
	}
	return v[0], v[1], v[2], true
}

// Names returns the sysctl names, sorted.
func (p *Profile) Names() []string { return slices.Sorted(maps.Keys(p.sysctls)) }

// Explicit reports whether the script itself set name.
func (p *Profile) Explicit(name string) bool { return p.explicit[name] }

// ExplicitNames returns the names the script set, sorted.
func (p *Profile) ExplicitNames() []string { return slices.Sorted(maps.Keys(p.explicit)) }

// shellAction is what drill makes of one shell command.
type shellAction struct {
	sysctls [][2]string // name, value
	noop    bool        // understood and nothing to do (defaults.sh, metrics flush)
}

// parseShellCommand interprets a back-quoted command. drill never runs
// shell commands: it recognizes the ones TCP scripts use to configure the
// stack (defaults.sh, sysctl, set_sysctls.py, ip tcp_metrics flush) and
// reports anything else as unsupported.
// shellWords splits a command into words as /bin/sh would for the simple
// commands drill understands: blanks separate words, and '...' or "..."
// (with \ escapes in double quotes) keep blanks inside one, so that
// sysctl -w net.ipv4.tcp_rmem="4096 87380 6291456" is three words.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	in := false // inside a word
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated '")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			in = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf(`unterminated "`)
			}
			in = true
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, w.String())
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	return words, nil
}

func parseShellCommand(cmd string) (shellAction, error) {
	var act shellAction
	cmd = strings.ReplaceAll(cmd, "\\\n", " ")
	var parts []string
	for _, line := range strings.Split(cmd, "\n") {
		for _, a := range strings.Split(line, "&&") {
			for _, b := range strings.Split(a, ";") {
				if s := strings.TrimSpace(b); s != "" {
					parts = append(parts, s)
				}
			}
		}
	}
	for _, part := range parts {
		f, err := shellWords(part)
		if err != nil {
			return act, fmt.Errorf("shell command %q (%v)", part, err)
		}
		switch {
		case path.Base(f[0]) == "defaults.sh":
			// The Linux defaults profile, which every script starts from.
		case f[0] == "ip" && len(f) >= 3 && f[1] == "tcp_metrics" && f[2] == "flush":
			// Each run starts from a fresh stack: nothing is cached.
		case len(f) == 5 && f[0] == "ethtool" && f[1] == "-K" && f[2] == "tun0" && (f[3] == "tso" || f[3] == "gso") && f[4] == "off":
			// Already so: the Linux backend's tun0 has no offloads, and
			// the userspace stacks segment to the MSS themselves.
		case f[0] == "sysctl" || f[0] == "/sbin/sysctl" || f[0] == "/usr/sbin/sysctl":
			n := 0
			for _, a := range f[1:] {
				if strings.HasPrefix(a, "-") {
					if a != "-q" && a != "-w" && a != "-qw" && a != "-wq" && a != "-e" {
						return act, fmt.Errorf("shell command %q (sysctl flag %s)", part, a)
					}
					continue
				}
				name, value, ok := strings.Cut(a, "=")
				if !ok {
					return act, fmt.Errorf("shell command %q (sysctl read, not a write)", part)
				}
				act.sysctls = append(act.sysctls, [2]string{name, value})
				n++
			}
			if n == 0 {
				return act, fmt.Errorf("shell command %q", part)
			}
		case path.Base(f[0]) == "set_sysctls.py":
			for _, a := range f[1:] {
				p, value, ok := strings.Cut(a, "=")
				if !ok || !strings.HasPrefix(p, "/proc/sys/") {
					return act, fmt.Errorf("shell command %q", part)
				}
				name := strings.ReplaceAll(strings.TrimPrefix(p, "/proc/sys/"), "/", ".")
				act.sysctls = append(act.sysctls, [2]string{name, strings.Trim(value, `"'`)})
			}
		default:
			return act, fmt.Errorf("shell command %q", part)
		}
	}
	if len(act.sysctls) == 0 {
		act.noop = true
	}
	return act, nil
}
