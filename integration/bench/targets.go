package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ustack/netns"
)

// The services every server runs, on the same ports for all three.
const (
	portEcho    = 7
	portDiscard = 9
	portSource  = 19
	portHTTP    = 80
)

var (
	serverIP    = [4]byte{10, 0, 0, 2}
	serverIPs   = "10.0.0.2"
	serverAddr  = netip.AddrFrom4(serverIP)
	serverAddr6 = netip.MustParseAddr("fd00::2") // ustack run's default --addr6
)

// target is one column of the table: where the clients run (clientNS) and
// how to start a fresh server for one measurement.
type target struct {
	name     string // ustack, gvisor, kernel
	clientNS *netns.NS
	ip       [4]byte // the server's address, as the clients dial it
	start    func(ctx context.Context, cpuprofile string) (*server, error)
	// fwd is the same engine relaying (forward.go), for the forwarding
	// rows; nil: it has no forwarder.
	fwd *target
}

// server is a running daemon (or the kernel ceiling's server process).
type server struct {
	name string
	cmd  *exec.Cmd
	pid  int
	log  string // its stderr (and stdout) file
	done chan error
	ctl  string // a daemon's control socket ("" for the kernel's server)
}

// startProcess starts cmd, whose pid must be the server's own (ip netns exec
// execs the command in place).
func startProcess(name string, cmd *exec.Cmd, logPath string) (*server, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = lf
	// If the bench dies without stopping it (SIGKILL), the server dies too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if cmd.Stdout == nil {
		cmd.Stdout = lf
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	s := &server{name: name, cmd: cmd, pid: cmd.Process.Pid, log: logPath, done: make(chan error, 1)}
	go func() {
		s.done <- cmd.Wait()
		lf.Close()
	}()
	return s, nil
}

// stop sends SIGTERM and waits (SIGKILL after 20 s: a daemon closing
// 10,000 connections takes a while).
func (s *server) stop() error {
	if s == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return nil
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("%s did not exit within 20 s of SIGTERM (killed)", s.name)
	}
}

// exited reports whether the server has died, with its log's tail.
func (s *server) exited() error {
	select {
	case err := <-s.done:
		s.done <- err
		return errExited{fmt.Errorf("%s exited (%v): %s", s.name, err, s.logTail())}
	default:
		return nil
	}
}

// errExited is a server that died.
type errExited struct{ error }

func (e errExited) Unwrap() error { return e.error }

func (s *server) logTail() string {
	b, _ := os.ReadFile(s.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// cpu is the server's user+system CPU time so far (/proc/PID/stat).
func (s *server) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		return 0, err
	}
	// Fields after "(comm)": state is the first, utime the 12th, stime the 13th.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", s.pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// clockTicks is sysconf(_SC_CLK_TCK), 100 on Linux.
const clockTicks = 100

// rss is the server's resident memory in bytes (/proc/PID/status VmRSS).
func (s *server) rss() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", s.pid)
}

// startReady starts cmd as the nth server of target name, logging to
// dir/name-n.log, and waits until it answers from the client namespace ns.
func startReady(ctx context.Context, ns *netns.NS, name string, cmd *exec.Cmd, dir string, n int) (*server, error) {
	s, err := startProcess(name, cmd, filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, n)))
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, ns, s); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// waitReady polls the echo service from the client namespace until one
// byte goes round, at most 15 s.
func waitReady(ctx context.Context, ns *netns.NS, s *server) error {
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if err := s.exited(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = ns.Do(func() error {
			c, err := dial(serverIP, portEcho)
			if err != nil {
				return err
			}
			defer c.close()
			if err := c.write([]byte{'x'}); err != nil {
				return err
			}
			return c.readFull(make([]byte, 1))
		})
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not answering on %s:%d after 15 s: %v (log: %s)", s.name, serverIPs, portEcho, last, s.logTail())
}

// clientSysctls lets one client namespace open connections at the rate the
// connection test does: the whole ephemeral range, and TIME-WAIT ports
// reused after a second (the client closes first, so it holds TIME-WAIT).
func clientSysctls(ns *netns.NS) error {
	_, err := ns.Run("sh", "-c", "echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse && echo '1024 65535' > /proc/sys/net/ipv4/ip_local_port_range")
	return err
}

// daemonTarget is ustack run --engine NAME on a TUN device in ns, the
// clients being the kernel on the other side of the device.
func daemonTarget(name, bin, dir string, ns *netns.NS, procs int) *target {
	n := 0
	return &target{name: name, clientNS: ns, ip: serverIP, start: func(ctx context.Context, cpuprofile string) (*server, error) {
		n++
		args := []string{"netns", "exec", ns.Name, bin, "run", "--engine", name,
			"--tun", "tunb0", "--tun-addr", "10.0.0.1/24", "--addr", serverIPs,
			"--ctl", filepath.Join(dir, name+".sock"),
			"--serve", "echo:" + strconv.Itoa(portEcho), "--serve", "discard:" + strconv.Itoa(portDiscard),
			"--serve", "source:" + strconv.Itoa(portSource), "--serve", "http:" + strconv.Itoa(portHTTP),
			"--serve", "udp-echo:" + strconv.Itoa(portEcho)}
		if cpuprofile != "" {
			args = append(args, "--cpuprofile", cpuprofile)
		}
		if procs > 0 {
			args = append(args, "--procs", strconv.Itoa(procs))
		}
		s, err := startReady(ctx, ns, name, exec.Command("ip", args...), dir, n)
		if s != nil {
			s.ctl = filepath.Join(dir, name+".sock")
		}
		return s, err
	}}
}

// kernelTarget is the ceiling: the kernel talking to itself over a veth
// pair between two namespaces, the server being this program re-executed
// with -kernel-server.
func kernelTarget(self, dir string, cli, srv *netns.NS) *target {
	n := 0
	return &target{name: "kernel", clientNS: cli, ip: serverIP, start: func(ctx context.Context, _ string) (*server, error) {
		n++
		cmd := exec.Command("ip", "netns", "exec", srv.Name, self, "-kernel-server", serverIPs)
		return startReady(ctx, cli, "kernel", cmd, dir, n)
	}}
}

// vethPair connects cli and srv with a veth pair (made from inside cli, so
// no device ever exists in any other namespace), 10.0.0.1 on cli's side.
func vethPair(cli, srv *netns.NS) error {
	steps := []struct {
		ns   *netns.NS
		args []string
	}{
		{cli, []string{"link", "add", "vbc", "type", "veth", "peer", "name", "vbs", "netns", srv.Name}},
		{cli, []string{"addr", "add", "10.0.0.1/24", "dev", "vbc"}},
		{srv, []string{"addr", "add", serverIPs + "/24", "dev", "vbs"}},
		{cli, []string{"-6", "addr", "add", "fd00::1/64", "dev", "vbc", "nodad"}},
		{srv, []string{"-6", "addr", "add", serverAddr6.String() + "/64", "dev", "vbs", "nodad"}},
		{cli, []string{"link", "set", "vbc", "up"}},
		{srv, []string{"link", "set", "vbs", "up"}},
	}
	for _, st := range steps {
		if _, err := st.ns.Run("ip", st.args...); err != nil {
			return err
		}
	}
	return nil
}
