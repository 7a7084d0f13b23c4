package main

import (
	"bytes"
	"flag"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRunFlagDefaults(t *testing.T) {
	cfg, err := parseRunFlags(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := runConfig{
		Tun:               "tun0",
		TunAddr:           netip.MustParsePrefix("10.0.0.1/24"),
		Addr:              netip.MustParseAddr("10.0.0.2"),
		TunAddr6:          netip.MustParsePrefix("fd00::1/64"),
		Addr6:             netip.MustParseAddr("fd00::2"),
		MTU:               1500,
		Serves:            []serveSpec{{"http", 80}, {"echo", 7}},
		Ctl:               "/run/ustack/tun0.sock",
		Engine:            "ustack",
		Offload:           true,
		FinTimeout:        60 * time.Second,
		TimeWait:          60 * time.Second,
		SynRetries:        6,
		SynLinearTimeouts: 4,
	}
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *cfg, want)
	}
	o := cfg.stackOptions()
	if o.Addr != want.Addr || o.SynRetries != 6 || o.Somaxconn == 0 {
		t.Errorf("stackOptions: %+v", o)
	}
}

// Offload is on by default, and quietly off where it cannot apply.
func TestRunFlagOffload(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{nil, true},
		{[]string{"--offload=false"}, false},
		{[]string{"--engine", "gvisor"}, true},
		{[]string{"--impair", "loss=1%"}, false},
	} {
		cfg, err := parseRunFlags(c.args, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if cfg.Offload != c.want {
			t.Errorf("%v: Offload %v, want %v", c.args, cfg.Offload, c.want)
		}
	}
}

// The MTUs at both ends of the range the stack takes are accepted.
func TestRunFlagMTURange(t *testing.T) {
	for _, mtu := range []string{"576", "1500", "65535"} {
		cfg, err := parseRunFlags([]string{"--mtu", mtu}, &bytes.Buffer{})
		if err != nil {
			t.Errorf("--mtu %s: %v", mtu, err)
			continue
		}
		if got := strconv.Itoa(cfg.MTU); got != mtu {
			t.Errorf("--mtu %s: MTU %s", mtu, got)
		}
	}
}

func TestRunFlagsAll(t *testing.T) {
	cfg, err := parseRunFlags([]string{
		"--tun", "ut1", "--tun-addr", "192.168.7.1/30", "--addr", "192.168.7.2", "--mtu", "9000",
		"--serve", "echo:7", "--serve=closer:9000", "-serve", "bound:81",
		"--pcap", "/tmp/x.pcap", "--fin-timeout", "2s", "--time-wait", "500ms",
		"--syn-retries", "2", "--syn-linear-timeouts", "0",
		"--impair", "loss=2%,delay=50ms", "--engine", "ustack", "--trace",
	}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tun != "ut1" || cfg.Ctl != "/run/ustack/ut1.sock" || cfg.MTU != 9000 || cfg.Pcap != "/tmp/x.pcap" || !cfg.Trace {
		t.Errorf("cfg %+v", cfg)
	}
	if cfg.FinTimeout != 2*time.Second || cfg.TimeWait != 500*time.Millisecond || cfg.SynRetries != 2 || cfg.SynLinearTimeouts != 0 {
		t.Errorf("timers %+v", cfg)
	}
	if want := []serveSpec{{"echo", 7}, {"closer", 9000}, {"bound", 81}}; !reflect.DeepEqual(cfg.Serves, want) {
		t.Errorf("serves %v, want %v", cfg.Serves, want)
	}
	if cfg.Impair == nil || cfg.Impair.Loss != 0.02 || cfg.Impair.Delay != 50*time.Millisecond {
		t.Errorf("impair %+v", cfg.Impair)
	}
	o := cfg.stackOptions()
	if o.FinTimeout != 2*time.Second || o.TimeWait != 500*time.Millisecond || o.SynLinearTimeouts != 0 || o.Addr != cfg.Addr {
		t.Errorf("stackOptions %+v", o)
	}
}

func TestRunFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--serve", "foo:1"}, `unknown service kind "foo" (want echo, discard, source, http, bound, noaccept, closer, halfclose, udp-echo, dns)`},
		{[]string{"--serve", "echo"}, "want KIND:PORT"},
		{[]string{"--serve", "echo:0"}, `bad port "0"`},
		{[]string{"--serve", "echo:65536"}, `bad port "65536"`},
		{[]string{"--serve", "echo:x"}, `bad port "x"`},
		{[]string{"--serve", "echo:7", "--serve", "discard:7"}, "port 7 is already used by --serve echo:7"},
		{[]string{"--tun", ""}, "empty device name"},
		{[]string{"--tun", "abcdefghijklmnop"}, "at most 15 bytes"},
		{[]string{"--tun", "a/b"}, "cannot contain"},
		{[]string{"--tun-addr", "10.0.0.1"}, "want an IPv4 address with prefix length"},
		{[]string{"--tun-addr", "fd00::1/64"}, "want an IPv4 address"},
		{[]string{"--tun-addr", "10.0.0.1/32"}, "prefix length at most 30"},
		{[]string{"--addr", "x"}, "want an IPv4 address"},
		{[]string{"--addr", "10.0.1.2"}, "outside --tun-addr's subnet"},
		{[]string{"--addr", "10.0.0.1"}, "kernel's own address"},
		{[]string{"--addr", "10.0.0.255"}, "broadcast"},
		{[]string{"--tun-addr6", "10.0.0.1/24"}, "want an IPv6 address with prefix length"},
		{[]string{"--tun-addr6", "fd00::1/127"}, "prefix length at most 126"},
		{[]string{"--addr6", "10.0.0.2"}, "want a unicast IPv6 address"},
		{[]string{"--addr6", "ff02::1"}, "want a unicast IPv6 address"},
		{[]string{"--addr6", "fd01::2"}, "outside --tun-addr6's subnet"},
		{[]string{"--addr6", "fd00::1"}, "kernel's own address (--tun-addr6)"},
		{[]string{"--mtu", "67"}, "--mtu 67: want 576..65535"},
		{[]string{"--mtu", "575"}, "--mtu 575: want 576..65535"}, // stack.New's minimum
		{[]string{"--mtu", "65536"}, "--mtu 65536: want 576..65535"},
		{[]string{"--mtu", "70000"}, "want 576..65535"},
		{[]string{"--fin-timeout", "0s"}, "positive duration"},
		{[]string{"--time-wait", "-1s"}, "positive duration"},
		{[]string{"--syn-retries", "0"}, "want 1..127"},
		{[]string{"--syn-linear-timeouts", "-1"}, "want 0..127"},
		{[]string{"--impair", "loss=2"}, "want a percentage like loss=2%"},
		{[]string{"--engine", "gvisor", "--trace"}, "--trace: not available with --engine gvisor"},
		{[]string{"--engine", "bsd"}, "want ustack or gvisor"},
		{[]string{"--impair", "loss=1%", "--offload=true"}, "--offload: not with --impair"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		_, err := parseRunFlags(tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestRunBadFlagPrintsUsage(t *testing.T) {
	var stderr bytes.Buffer
	_, err := parseRunFlags([]string{"--bogus"}, &stderr)
	if err != errUsage {
		t.Fatalf("err %v, want errUsage", err)
	}
	if !strings.Contains(stderr.String(), "Usage: ustack run") || !strings.Contains(stderr.String(), "-syn-linear-timeouts") {
		t.Errorf("stderr lacks usage:\n%s", stderr.String())
	}
	if _, err := parseRunFlags([]string{"-h"}, &bytes.Buffer{}); err != flag.ErrHelp {
		t.Errorf("-h: %v", err)
	}
}

// Validation errors exit 2 before anything touches the system.
func TestCmdRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--serve", "foo:1"}, 2, `ustack run: unknown service kind "foo"`},
		{[]string{"--engine", "gvisor", "--trace"}, 2, "ustack run: --trace: not available with --engine gvisor"},
		{[]string{"--mtu", "575"}, 2, "ustack run: --mtu 575: want 576..65535"},
		{[]string{"--nope"}, 2, "flag provided but not defined"},
		{[]string{"-h"}, 0, "Usage: ustack run"},
	} {
		var stdout, stderr bytes.Buffer
		if code := cmdRun(tc.args, &stdout, &stderr); code != tc.code {
			t.Errorf("%q: exit %d, want %d", tc.args, code, tc.code)
		}
		if !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%q: stderr %q, want %q", tc.args, stderr.String(), tc.stderr)
		}
	}
}

// --forward takes direct or a SOCKS5 proxy, makes the stack promiscuous,
// and refuses the flags that go with it alone.
func TestRunFlagForward(t *testing.T) {
	for _, c := range []struct {
		args    []string
		socks   string
		wantErr string
	}{
		{args: []string{"--forward", "direct", "--forward-dev", "eth0"}},
		{args: []string{"--forward", "direct", "--forward-mark", "0x55"}},
		{args: []string{"--forward", "socks5://10.1.1.1:1080"}, socks: "10.1.1.1:1080"},
		{args: []string{"--forward", "direct", "--engine", "gvisor"}},
		{args: []string{"--forward", "socks5://nohost"}, wantErr: "want socks5://HOST:PORT"},
		{args: []string{"--forward", "http://x:1"}, wantErr: "want direct or socks5"},
		{args: []string{"--forward-dev", "eth0"}, wantErr: "go with --forward"},
		{args: []string{"--forward", "socks5://a:1", "--forward-mark", "3"}, wantErr: "go with --forward direct"},
	} {
		cfg, err := parseRunFlags(c.args, &bytes.Buffer{})
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%v: %v, want an error with %q", c.args, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", c.args, err)
			continue
		}
		if cfg.ForwardSOCKS != c.socks || !cfg.stackOptions().Promiscuous {
			t.Errorf("%v: socks %q, promiscuous %v", c.args, cfg.ForwardSOCKS, cfg.stackOptions().Promiscuous)
		}
	}
}
