package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"ustack/netns"
)

// The forwarding rows: the daemon relays (`ustack run --forward direct`)
// between a client namespace, whose kernel routes 198.18.0.0/24 (RFC
// 2544's benchmarking range) into the daemon's TUN device, and a server
// namespace holding 198.18.0.10, where this program's kernel server runs.
// The ustack column relays through ustack's forwarders, the gvisor column
// through gVisor's tcp.NewForwarder and udp.NewForwarder, in the same
// daemon with the same relay; the kernel has no forwarder to compare.

var (
	farIP   = [4]byte{198, 18, 0, 10}
	farIPs  = "198.18.0.10"
	farAddr = netip.AddrFrom4(farIP)
)

// fwdSetup is the forwarding namespaces and the far server, shared by the
// forwarding targets for the whole run.
type fwdSetup struct {
	cli, srv *netns.NS
	far      *server
}

// setupForward makes the namespaces, the veth between them (the relay's
// way out) and the far server.
func setupForward(ctx context.Context, self, dir string, newNS func(string) (*netns.NS, error)) (*fwdSetup, error) {
	cli, err := newNS("ustack-bench-fc")
	if err != nil {
		return nil, err
	}
	srv, err := newNS("ustack-bench-fs")
	if err != nil {
		return nil, err
	}
	if err := clientSysctls(cli); err != nil {
		return nil, err
	}
	for _, st := range []struct {
		ns   *netns.NS
		args []string
	}{
		{cli, []string{"link", "add", "vfc", "type", "veth", "peer", "name", "vfs", "netns", srv.Name}},
		{cli, []string{"addr", "add", "10.98.0.1/24", "dev", "vfc"}},
		{cli, []string{"link", "set", "vfc", "up"}},
		{srv, []string{"addr", "add", "10.98.0.2/24", "dev", "vfs"}},
		{srv, []string{"link", "set", "vfs", "up"}},
		{srv, []string{"link", "set", "lo", "up"}},
		{srv, []string{"addr", "add", farIPs + "/32", "dev", "lo"}},
		// The kernel server listens on the IPv6 rows' address too.
		{srv, []string{"-6", "addr", "add", serverAddr6.String() + "/128", "dev", "lo", "nodad"}},
		{srv, []string{"route", "add", "blackhole", "198.18.0.99/32"}},
		// The relay's sockets, bound to vfc, take this route; the
		// clients take the one into the TUN, added with each daemon.
		{cli, []string{"route", "add", "198.18.0.0/24", "via", "10.98.0.2", "dev", "vfc", "metric", "50"}},
	} {
		if _, err := st.ns.Run("ip", st.args...); err != nil {
			return nil, err
		}
	}
	far, err := startProcess("far", exec.Command("ip", "netns", "exec", srv.Name, self, "-kernel-server", farIPs), filepath.Join(dir, "far.log"))
	if err != nil {
		return nil, err
	}
	f := &fwdSetup{cli: cli, srv: srv, far: far}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := srv.Do(func() error {
			c, err := dial(farIP, portEcho)
			if err == nil {
				c.close()
			}
			return err
		})
		if err == nil {
			return f, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			far.stop()
			return nil, fmt.Errorf("the far server is not answering: %v (log: %s)", err, far.logTail())
		}
	}
}

// fwdTarget is `ustack run --engine NAME --forward direct` in the
// forwarding client namespace.
func fwdTarget(name, bin, dir string, f *fwdSetup, procs int) *target {
	n := 0
	return &target{name: name, clientNS: f.cli, ip: farIP, start: func(ctx context.Context, cpuprofile string) (*server, error) {
		n++
		ctl := filepath.Join(dir, name+"-fwd.sock")
		args := []string{"netns", "exec", f.cli.Name, bin, "run", "--engine", name,
			"--tun", "tunf0", "--tun-addr", "10.0.0.1/24", "--addr", serverIPs, "--ctl", ctl,
			"--serve", "echo:" + strconv.Itoa(portEcho),
			"--forward", "direct", "--forward-dev", "vfc"}
		if cpuprofile != "" {
			args = append(args, "--cpuprofile", cpuprofile)
		}
		if procs > 0 {
			args = append(args, "--procs", strconv.Itoa(procs))
		}
		s, err := startReady(ctx, f.cli, name+"-fwd", exec.Command("ip", args...), dir, n)
		if err != nil {
			return nil, err
		}
		s.ctl = ctl
		if _, err := f.cli.Run("ip", "route", "replace", "198.18.0.0/24", "dev", "tunf0"); err != nil {
			s.stop()
			return nil, err
		}
		return s, nil
	}}
}

// forwarded runs a measurement through the relay, its metrics prefixed
// "fwd_".
func forwarded(run func(ctx context.Context, cfg *config, t *target, s *server) (sample, []string, error)) func(ctx context.Context, cfg *config, t *target, s *server) (sample, []string, error) {
	return func(ctx context.Context, cfg *config, t *target, s *server) (sample, []string, error) {
		smp, notes, err := run(ctx, cfg, t, s)
		out := sample{}
		for k, v := range smp {
			out["fwd_"+k] = v
		}
		return out, notes, err
	}
}

// goroutines is the daemon's goroutine count, from its control socket's
// runtime op; -1 when it has none to ask.
func (s *server) goroutines() (int64, error) {
	if s.ctl == "" {
		return -1, nil
	}
	c, err := net.DialTimeout("unix", s.ctl, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(`{"op":"runtime"}` + "\n")); err != nil {
		return 0, err
	}
	var r struct {
		Counters []struct {
			Name  string
			Value int64
		} `json:"counters"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(c).Decode(&r); err != nil {
		return 0, err
	}
	for _, k := range r.Counters {
		if k.Name == "runtime.goroutines" {
			return k.Value, nil
		}
	}
	return 0, fmt.Errorf("no runtime.goroutines from %s (%s)", s.ctl, r.Error)
}

// blackholed is a far address whose packets the server namespace drops
// silently: the relay's upstream dial hangs, so a connection to it stays
// half-open, waiting for the forwarder's decision.
var blackholed = [4]byte{198, 18, 0, 99}

// runFwdPending opens connections to a black-holed far address without
// waiting for them (non-blocking connect): each one is a forwarded SYN
// whose upstream dial hangs. What the daemon holds for each is the cost of
// a half-open forwarded connection. At most 1000, under the relay's bound
// of pending requests.
func runFwdPending(ctx context.Context, cfg *config, t *target, s *server) (sample, []string, error) {
	n := min(cfg.conns, 1000)
	before, err := s.costs()
	if err != nil {
		return nil, nil, err
	}
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	err = t.clientNS.Do(func() error {
		sa := &unix.SockaddrInet4{Port: portEcho, Addr: blackholed}
		for range n {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	// Every SYN in, every upstream dial started; well before the relay's
	// 10 s dial timeout.
	time.Sleep(2 * time.Second)
	after, err := s.costs()
	if err != nil {
		return nil, nil, err
	}
	smp := sample{}
	after.perConn(before, n, "pending_", smp)
	return smp, nil, nil
}

// cost is what the server holds: resident memory, and goroutines (-1 when
// it cannot say).
type cost struct{ rss, goroutines int64 }

func (s *server) costs() (cost, error) {
	rss, err := s.rss()
	if err != nil {
		return cost{}, err
	}
	g, err := s.goroutines()
	return cost{rss, g}, err
}

// perConn records into smp what each of n connections added since
// before: prefix+"kib_per_conn" and, when known, prefix+"goroutines_per_conn".
func (after cost) perConn(before cost, n int, prefix string, smp sample) {
	smp[prefix+"kib_per_conn"] = float64(after.rss-before.rss) / float64(n) / 1024
	if before.goroutines >= 0 {
		smp[prefix+"goroutines_per_conn"] = float64(after.goroutines-before.goroutines) / float64(n)
	}
}
