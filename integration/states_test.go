package integration

// Connection states and timers with kernel peers (issue "every TCP state and
// timer"): active open, SYN retransmission, simultaneous open, self-connect,
// a late SYN|ACK, data after close, FIN_WAIT_2 timeout, TIME_WAIT, and bulk
// data through loss, reordering and duplication.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ustack/netns"
)

// wire captures tun0 with tcpdump inside ns (absolute sequence numbers,
// epoch timestamps) until stop is called.
type wire struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func captureWire(t *testing.T, ns *netns.NS, filter string) *wire {
	t.Helper()
	needTool(t, "tcpdump")
	w := &wire{done: make(chan struct{})}
	args := append([]string{"-i", "tun0", "-n", "-l", "-S", "-tt", "-U"}, strings.Fields(filter)...)
	w.cmd = ns.Command("tcpdump", args...)
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, _ := w.cmd.StderrPipe()
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	ready := make(chan struct{})
	go func() { // tcpdump says "listening on tun0" once it captures
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				close(ready)
				break
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.mu.Unlock()
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump did not start capturing within 10 s")
	}
	t.Cleanup(func() { w.stop() })
	return w
}

// stop ends the capture and returns every line.
func (w *wire) stop() []string {
	time.Sleep(200 * time.Millisecond) // let the last packets through
	if w.cmd.Process != nil {
		w.cmd.Process.Signal(syscall.SIGINT)
	}
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		w.cmd.Process.Kill()
	}
	w.cmd.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.lines...)
}

// pkt is one tcpdump line: time, direction, flags, seq and ack.
type pkt struct {
	at       float64
	src, dst string
	flags    string
	seq, ack uint32
	line     string
}

func parseWire(lines []string) []pkt {
	var out []pkt
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 7 || f[1] != "IP" {
			continue
		}
		p := pkt{src: f[2], dst: strings.TrimSuffix(f[4], ":"), line: l}
		p.at, _ = strconv.ParseFloat(f[0], 64)
		if i := strings.Index(l, "Flags ["); i >= 0 {
			p.flags = l[i+7 : i+7+strings.Index(l[i+7:], "]")]
		}
		if i := strings.Index(l, " seq "); i >= 0 {
			s := strings.TrimRight(strings.Fields(l[i+5:])[0], ",")
			s, _, _ = strings.Cut(s, ":")
			v, _ := strconv.ParseUint(s, 10, 32)
			p.seq = uint32(v)
		}
		if i := strings.Index(l, " ack "); i >= 0 {
			v, _ := strconv.ParseUint(strings.TrimRight(strings.Fields(l[i+5:])[0], ","), 10, 32)
			p.ack = uint32(v)
		}
		out = append(out, p)
	}
	return out
}

// nc runs `ustack nc` against the daemon with stdin and a time limit.
func (d *daemon) nc(stdin string, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, ustackBin, append([]string{"nc", "--ctl", d.ctl}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e syncBuffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	return o.String(), e.String(), exitCode(err)
}

// kernelListen opens a kernel listener inside ns.
func kernelListen(t *testing.T, ns *netns.NS, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestB13ActiveOpenToKernel: ustack's connect() reaches a kernel listener
// and data flows both ways; to a closed kernel port it is refused.
func TestB13ActiveOpenToKernel(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	d := startDaemon(t, ns)
	ln := kernelListen(t, ns, kernelIP+":9000")
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c) // until ustack's FIN (nc -N)
		c.Write([]byte("world"))
		got <- string(b)
	}()
	out, errOut, code := d.nc("hello", 15*time.Second, "-N", kernelIP, "9000")
	if code != 0 || out != "world" {
		d.fatalf("ustack nc to a kernel listener: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if s := <-got; s != "hello" {
		d.fatalf("kernel read %q, want hello", s)
	}
	_, errOut, code = d.nc("", 15*time.Second, kernelIP, "9001")
	if code != 1 || !strings.Contains(errOut, "connection refused") {
		d.fatalf("ustack nc to a closed kernel port: exit %d, stderr %q; want 1 and connection refused", code, errOut)
	}
}

// TestB14SynRetransmissions counts ustack's SYNs to a host that never
// answers, and their spacing, with tcpdump: Linux's schedule of linear
// then exponential timeouts, then ETIMEDOUT.
func TestB14SynRetransmissions(t *testing.T) {
	t.Parallel()
	needTool(t, "tcpdump") // captureWire's
	for _, tc := range []struct {
		name         string
		retries, lin string
		at           []float64 // seconds after the first SYN
		timeoutAfter float64
	}{
		// tcp_syn_retries 2 bounds the time to (2^3-1) s = 7 s, during
		// which the linear timeouts send SYNs every second.
		{"linear4", "2", "4", []float64{0, 1, 2, 3, 4, 5}, 7},
		{"exponential", "3", "0", []float64{0, 1, 3, 7}, 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := newNS(t)
			d := startDaemon(t, ns, "--syn-retries", tc.retries, "--syn-linear-timeouts", tc.lin)
			w := captureWire(t, ns, "tcp and dst host 10.0.0.77")
			start := time.Now()
			_, errOut, code := d.nc("", 60*time.Second, "10.0.0.77", "80")
			elapsed := time.Since(start).Seconds()
			if code != 1 || !strings.Contains(errOut, "connection timed out") {
				d.fatalf("exit %d, stderr %q; want 1 and connection timed out", code, errOut)
			}
			syns := parseWire(w.stop())
			if len(syns) != len(tc.at) {
				d.fatalf("saw %d SYNs, want %d:\n%v", len(syns), len(tc.at), syns)
			}
			for i, p := range syns {
				if p.flags != "S" {
					d.fatalf("segment %d is %q, want a SYN: %s", i, p.flags, p.line)
				}
				if off := p.at - syns[0].at; off < tc.at[i]-0.25 || off > tc.at[i]+0.25 {
					d.fatalf("SYN %d at %.2f s, want %.0f s", i, off, tc.at[i])
				}
			}
			if elapsed < tc.timeoutAfter-0.5 || elapsed > tc.timeoutAfter+1.5 {
				d.fatalf("ETIMEDOUT after %.1f s, want about %.0f s", elapsed, tc.timeoutAfter)
			}
		})
	}
}

// TestB15SimultaneousOpenWithKernel: ustack and a kernel socket connect to
// each other at once (a 300 ms link delay makes the SYNs cross, and keeps
// the round trip under the kernel's 1 s SYN|ACK timer): four SYN segments,
// S S S. S., no listener, then data both ways.
func TestB15SimultaneousOpenWithKernel(t *testing.T) {
	t.Parallel()
	needTool(t, "tcpdump") // captureWire's
	ns := newNS(t)
	d := startDaemon(t, ns, "--impair", "delay=300ms")
	w := captureWire(t, ns, "tcp and port 5000")
	type res struct {
		out, errOut string
		code        int
	}
	ncDone := make(chan res, 1)
	go func() {
		o, e, c := d.nc("from-ustack", 20*time.Second, "-p", "5000", "-N", kernelIP, "6000")
		ncDone <- res{o, e, c}
	}()
	time.Sleep(50 * time.Millisecond) // ustack's SYN is out, held by the delay
	var kc net.Conn
	err := ns.Do(func() (err error) {
		dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(kernelIP), Port: 6000}, Timeout: 10 * time.Second}
		kc, err = dl.Dial("tcp4", stackIP+":5000")
		return err
	})
	if err != nil {
		d.fatalf("kernel connect: %v", err)
	}
	kc.SetDeadline(time.Now().Add(15 * time.Second))
	kc.Write([]byte("from-kernel"))
	got, _ := io.ReadAll(kc) // until ustack's FIN
	kc.Close()
	r := <-ncDone
	if string(got) != "from-ustack" || r.out != "from-kernel" || r.code != 0 {
		d.fatalf("kernel read %q, ustack nc printed %q (exit %d, %s)", got, r.out, r.code, r.errOut)
	}
	segs := parseWire(w.stop())
	var flags []string
	for _, p := range segs {
		if strings.Contains(p.flags, "S") {
			flags = append(flags, p.flags)
		}
	}
	if strings.Join(flags, " ") != "S S S. S." {
		d.fatalf("handshake segments %v, want [S S S. S.] (simultaneous open)", flags)
	}
}

// TestB16SelfConnect: a socket bound to 10.0.0.2:5555 connecting to itself
// is ESTABLISHED on its own, reads back what it writes, and nothing of it
// crosses tun0.
func TestB16SelfConnect(t *testing.T) {
	t.Parallel()
	needTool(t, "tcpdump") // captureWire's
	ns := newNS(t)
	d := startDaemon(t, ns)
	w := captureWire(t, ns, "tcp and port 5555")
	out, errOut, code := d.nc("selfie", 10*time.Second, "-p", "5555", "-N", stackIP, "5555")
	if code != 0 || out != "selfie" {
		d.fatalf("self-connect: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if segs := parseWire(w.stop()); len(segs) != 0 {
		d.fatalf("self-connect leaked onto tun0: %v", segs)
	}
	found := false
	for _, l := range d.sockets() {
		if l.Local == "10.0.0.2:5555" && l.Peer == "10.0.0.2:5555" && l.State == "TIME-WAIT" {
			found = true
		}
	}
	if !found {
		d.fatalf("no TIME-WAIT 10.0.0.2:5555 -> itself after the close (B36):\n%v", d.sockets())
	}
}

// TestB17LateSynAck: ustack gives up connecting (nc -w) before the kernel's
// SYN|ACK arrives through a slow link; the socket is gone, so the SYN|ACK
// gets RST with seq = SEG.ACK (B04).
func TestB17LateSynAck(t *testing.T) {
	t.Parallel()
	needTool(t, "tcpdump") // captureWire's
	ns := newNS(t)
	d := startDaemon(t, ns, "--impair", "delay=400ms")
	kernelListen(t, ns, kernelIP+":9000")
	w := captureWire(t, ns, "tcp and port 9000")
	_, errOut, code := d.nc("", 10*time.Second, "-w", "300ms", kernelIP, "9000")
	if code != 1 || !strings.Contains(errOut, "timed out") {
		d.fatalf("nc -w 300ms: exit %d, stderr %q; want a timeout", code, errOut)
	}
	time.Sleep(1500 * time.Millisecond) // SYN|ACK in at 800 ms, RST on tun0 at 1.2 s
	segs := parseWire(w.stop())
	var synack, rst *pkt
	for i := range segs {
		p := &segs[i]
		if p.flags == "S." && synack == nil {
			synack = p
		}
		if strings.HasPrefix(p.src, stackIP) && strings.Contains(p.flags, "R") && rst == nil {
			rst = p
		}
	}
	if synack == nil || rst == nil {
		d.fatalf("want a SYN|ACK from the kernel and a RST from ustack, saw:\n%v", segs)
	}
	if rst.flags != "R" || rst.seq != synack.ack {
		d.fatalf("RST %q seq %d, want R seq %d (SEG.ACK of the SYN|ACK)", rst.flags, rst.seq, synack.ack)
	}
}

// TestB33DataAfterClose: the closer service closes (no unread data: the
// client sent nothing) and waits in FIN_WAIT_2; data from the client then
// gets RST. The client had already read the FIN, so — exactly as between
// two Linux hosts — its reads keep returning EOF (tcp_recvmsg checks
// SOCK_DONE before sk_err) and its next write fails with EPIPE. See
// docs/behaviour-notes.md.
func TestB33DataAfterClose(t *testing.T) {
	t.Parallel()
	needTool(t, "tcpdump") // captureWire's
	ns := newNS(t)
	d, w, c := toCloser(t, ns)
	if n, err := c.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		d.fatalf("first read %d, %v; want EOF (the server's FIN)", n, err)
	}
	if _, err := c.Write([]byte("late data")); err != nil {
		d.fatalf("write after the server's FIN: %v (the kernel should accept it)", err)
	}
	for deadline := time.Now().Add(5 * time.Second); d.counters()["tcp.abort_on_data"] == 0; {
		if time.Now().After(deadline) {
			d.fatalf("ustack never aborted on the late data")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the RST reaches the kernel
	if _, err := c.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		d.fatalf("write after the reset: %v, want EPIPE", err)
	}
	var rst, data *pkt
	segs := parseWire(w.stop())
	for i := range segs {
		p := &segs[i]
		if strings.HasPrefix(p.src, kernelIP) && strings.Contains(p.flags, "P") && data == nil {
			data = p
		}
		if strings.HasPrefix(p.src, stackIP) && strings.Contains(p.flags, "R") && rst == nil {
			rst = p
		}
	}
	if data == nil || rst == nil || rst.flags != "R" || rst.seq != data.ack {
		d.fatalf("want the late data answered by R seq=SEG.ACK, saw:\n%v", segs)
	}
}

// TestB35FinWait2Timeout: ustack closes, the kernel peer never does; after
// --fin-timeout the FIN-WAIT-2 socket is gone, without a segment.
func TestB35FinWait2Timeout(t *testing.T) {
	t.Parallel()
	needTool(t, "tcpdump") // captureWire's
	ns := newNS(t)
	d, w, c := toCloser(t, ns, "--fin-timeout", "2s")
	c.Read(make([]byte, 1)) // the server's FIN (closer waits 1 s for data)
	if !d.hasState("FIN-WAIT-2", "timewait") {
		d.fatalf("no FIN-WAIT-2 socket with its timer:\n%v", d.sockets())
	}
	time.Sleep(2500 * time.Millisecond)
	if d.hasState("FIN-WAIT-2", "") {
		d.fatalf("FIN-WAIT-2 outlived --fin-timeout 2s:\n%v", d.sockets())
	}
	for _, p := range parseWire(w.stop()) {
		if strings.HasPrefix(p.src, stackIP) && strings.Contains(p.flags, "R") {
			d.fatalf("ustack sent a RST at the FIN-WAIT-2 timeout: %s", p.line)
		}
	}
}

// hasState reports whether some connection is in state, with a timer
// containing timer ("" for any).
func (d *daemon) hasState(state, timer string) bool {
	d.t.Helper()
	for _, l := range d.sockets() {
		if l.State == state && strings.Contains(l.Timer, timer) {
			return true
		}
	}
	return false
}

// TestB30TimeWait: ustack closes first (nc -N), the kernel answers with
// its FIN: ustack waits in TIME-WAIT for --time-wait, then the socket goes.
func TestB30TimeWait(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	d := startDaemon(t, ns, "--time-wait", "2s")
	ln := kernelListen(t, ns, kernelIP+":9000")
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c) // until ustack's FIN, then close: FIN back
		c.Close()
	}()
	if _, errOut, code := d.nc("bye", 10*time.Second, "-N", kernelIP, "9000"); code != 0 {
		d.fatalf("nc: exit %d, %s", code, errOut)
	}
	if !d.hasState("TIME-WAIT", "timewait") {
		d.fatalf("no TIME-WAIT socket with its timer after an active close:\n%v", d.sockets())
	}
	time.Sleep(2500 * time.Millisecond)
	if d.hasState("TIME-WAIT", "") {
		d.fatalf("TIME-WAIT outlived --time-wait 2s:\n%v", d.sockets())
	}
}

// echoRoundTrip sends n random bytes to the echo service from a kernel
// socket while reading them back, and compares by hash (B20).
func echoRoundTrip(t *testing.T, d *daemon, ns *netns.NS, n int, limit time.Duration) time.Duration {
	t.Helper()
	data := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 42))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	c, err := dialKernel(ns, stackIP+":7", 10*time.Second)
	if err != nil {
		d.fatalf("connect to echo: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(limit))
	start := time.Now()
	got, werr, rerr := echoThrough(c, data)
	if werr != nil || rerr != nil {
		d.fatalf("echo of %d bytes: write %v, read %v (%d bytes back)", n, werr, rerr, len(got))
	}
	if len(got) != n || sha256.Sum256(got) != sha256.Sum256(data) {
		d.fatalf("echo returned %d bytes, want %d identical ones", len(got), n)
	}
	return time.Since(start)
}

// TestLossyEcho8MB: 8 MB each way through echo with 3% random loss in
// both directions (nftables numgen on the namespace's tun0) arrive intact.
func TestLossyEcho8MB(t *testing.T) {
	t.Parallel()
	needTool(t, "nft")
	ns := newNS(t)
	d := startDaemon(t, ns)
	rules := `table inet lossy {
  chain in { type filter hook input priority 0; iifname "tun0" numgen random mod 100 < 3 drop; }
  chain out { type filter hook output priority 0; oifname "tun0" numgen random mod 100 < 3 drop; }
}`
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	took := echoRoundTrip(t, d, ns, 8<<20, 5*time.Minute)
	c := d.counters()
	if c["tcp.retrans_segs"] == 0 {
		d.fatalf("no retransmissions through 3%% loss: the loss rules did not apply")
	}
	t.Logf("8 MB each way through 3%% loss in %v (%d retransmitted, %d fast retransmits, %d RTOs)",
		took.Round(time.Millisecond), c["tcp.retrans_segs"], c["tcp.fast_retrans"], c["tcp.rto_timeouts"])
}

// TestImpairedEcho8MB: the same through --impair reordering and duplication.
func TestImpairedEcho8MB(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	d := startDaemon(t, ns, "--impair", "reorder=3%,dup=2%")
	took := echoRoundTrip(t, d, ns, 8<<20, 5*time.Minute)
	c := d.counters()
	if c["tcp.ooo_queued"] == 0 {
		d.fatalf("no out-of-order data through reorder=3%%: the impairment did not apply")
	}
	t.Logf("8 MB each way through reorder=3%%,dup=2%% in %v (%d out-of-order queued)", took.Round(time.Millisecond), c["tcp.ooo_queued"])
}

// toCloser starts the daemon with the closer service (and args), captures
// its port's wire, and connects a kernel socket to it, with a 10 s
// deadline, closed when the test ends.
func toCloser(t *testing.T, ns *netns.NS, args ...string) (*daemon, *wire, *net.TCPConn) {
	d := startDaemon(t, ns, append([]string{"--serve", "closer:8083"}, args...)...)
	w := captureWire(t, ns, "tcp and port 8083")
	c, err := dialKernel(ns, stackIP+":8083", 5*time.Second)
	if err != nil {
		d.fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return d, w, c
}
