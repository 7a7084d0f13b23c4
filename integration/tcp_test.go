package integration

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ustack/netns"
)

// TestEcho4MB: 4 MB written by a kernel socket to the echo service come back
// whole and in order (B20, B21), and the echo's FIN follows our half-close
// (B34: the echo answers EOF with its own FIN after echoing).
func TestEcho4MB(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	d := startDaemon(t, ns)
	const n = 4 << 20
	data := make([]byte, n)
	r := rand.New(rand.NewChaCha8([32]byte{'u', 's', 't', 'a', 'c', 'k'}))
	for i := range data {
		data[i] = byte(r.Uint32())
	}

	c, err := dialKernel(ns, stackIP+":7", 5*time.Second)
	if err != nil {
		d.fatalf("connect to echo: %v", err)
	}
	defer c.Close()
	deadline := time.Now().Add(60 * time.Second)
	c.SetDeadline(deadline)
	start := time.Now()
	got, werr, rerr := echoThrough(c, data)
	elapsed := time.Since(start)
	if werr != nil {
		d.fatalf("writing 4 MB to echo: %v (read %d bytes back meanwhile)", werr, len(got))
	}
	if rerr != nil {
		d.fatalf("reading the echo: %v after %v, %d of %d bytes back", rerr, elapsed, len(got), n)
	}
	if len(got) != n {
		d.fatalf("echo returned %d bytes, want %d", len(got), n)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		i := 0
		for i < n && got[i] == data[i] {
			i++
		}
		d.fatalf("echo returned different bytes: first difference at offset %d", i)
	}
	t.Logf("4 MB echoed in %v", elapsed.Round(time.Millisecond))
}

// TestConnRefused: a SYN to a port nobody listens on (B01) and to a port
// that is bound but not listening (B02, --serve bound:8081) gets RST|ACK,
// so the kernel client's connect fails at once with ECONNREFUSED.
func TestConnRefused(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	d := startDaemon(t, ns, "--serve", "http:80", "--serve", "bound:8081")
	lines := d.sockets()
	found := false
	for _, l := range lines {
		if l.State == "UNCONN" && l.Local == "10.0.0.2:8081" {
			found = true
		}
	}
	if !found {
		d.errorf("ustack ss shows no UNCONN socket on 10.0.0.2:8081 for --serve bound:8081: %+v", lines)
	}
	for _, tc := range []struct {
		id   string
		port int
	}{
		{"B01 unused port", 9},
		{"B02 bound-only port", 8081},
	} {
		retrans := kernelSNMP(t, ns, "Tcp", "RetransSegs")
		c, err := dialKernel(ns, net.JoinHostPort(stackIP, strconv.Itoa(tc.port)), 5*time.Second)
		if err == nil {
			c.Close()
			d.errorf("%s: connect to %s:%d succeeded, want ECONNREFUSED", tc.id, stackIP, tc.port)
			continue
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			d.errorf("%s: connect to %s:%d: %v, want ECONNREFUSED", tc.id, stackIP, tc.port, err)
			continue
		}
		// "At once": the kernel's first SYN was answered, it retransmitted
		// nothing.
		if n := kernelSNMP(t, ns, "Tcp", "RetransSegs") - retrans; n != 0 {
			d.errorf("%s: the kernel retransmitted %d segment(s) before ECONNREFUSED: the first SYN was not answered", tc.id, n)
		}
	}
	if v := d.counters()["tcp.resets_sent"]; v < 2 {
		d.errorf("tcp.resets_sent = %d after two refused connects, want >= 2", v)
	}
}

// TestNoAcceptRecvQ: a listener that never accepts still completes the
// handshake, and the 1000 bytes the client sends are ACKed and wait in the
// connection's Recv-Q, which `ustack ss` shows (B11, B10).
func TestNoAcceptRecvQ(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	d := startDaemon(t, ns, "--serve", "noaccept:8082")
	c, err := dialKernel(ns, stackIP+":8082", 5*time.Second)
	if err != nil {
		d.fatalf("connect to noaccept: %v", err)
	}
	defer c.Close()
	if _, err := c.Write(bytes.Repeat([]byte("x"), 1000)); err != nil {
		d.fatalf("write: %v", err)
	}
	peer := c.LocalAddr().String() // 10.0.0.1:PORT
	var lines []ssLine
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		lines = d.sockets()
		for _, l := range lines {
			if l.Local == "10.0.0.2:8082" && l.Peer == peer && l.State == "ESTAB" && l.RecvQ == 1000 {
				for _, l := range lines {
					if l.State == "LISTEN" && l.Local == "10.0.0.2:8082" && l.RecvQ != 1 {
						d.errorf("listener on 8082 shows Recv-Q %d, want 1 (one connection waiting in the accept queue)", l.RecvQ)
					}
				}
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, _ := d.ss()
	d.fatalf("ustack ss shows no ESTAB 10.0.0.2:8082 <- %s with Recv-Q 1000:\n%s", peer, out)
}

// TestCloserReset: the closer service closes each connection at once
// without reading; the data the client sent is unread, so the close sends
// RST instead of FIN (B32) and the client's read fails with ECONNRESET. When
// the close wins the race against the client's data, the stack sends FIN
// first and the data that arrives after the close is answered with RST
// (B33); the test retries until it sees the B32 case.
func TestCloserReset(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	d := startDaemon(t, ns, "--serve", "closer:8083")
	var outcomes []string
	for attempt := 0; attempt < 10; attempt++ {
		outcome := closerAttempt(t, d)
		outcomes = append(outcomes, outcome)
		if outcome == "reset" {
			t.Logf("closer: outcomes %q", outcomes)
			return
		}
		if !strings.HasPrefix(outcome, "fin-then-reset") {
			d.fatalf("closer: attempt %d: %s", attempt+1, outcome)
		}
	}
	d.fatalf("closer: no attempt saw a RST without a FIN before it (B32): %q", outcomes)
}

// closerAttempt connects to closer, writes at once, and reads: "reset" is
// B32; "fin-then-reset" is the close winning the race (EOF, then the next
// write fails with a reset or EPIPE: B33); anything else is a failure.
func closerAttempt(t *testing.T, d *daemon) string {
	c, err := dialKernel(d.ns, stackIP+":8083", 5*time.Second)
	if err != nil {
		return fmt.Sprintf("connect: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("data the closer never reads\n")); err != nil {
		if errors.Is(err, syscall.ECONNRESET) {
			return "reset"
		}
		return fmt.Sprintf("write: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case err == io.EOF:
		// The FIN came first. Data after close() gets a RST (B33): the
		// next write (or the one after it) fails.
		for i := 0; i < 20; i++ {
			if _, err := c.Write([]byte("more")); err != nil {
				if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
					return "fin-then-reset"
				}
				return fmt.Sprintf("EOF, then write: %v (want ECONNRESET or EPIPE, B33)", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return "EOF, then writes kept succeeding: no RST for data after close (B33)"
	case err != nil:
		return fmt.Sprintf("read: %v, want ECONNRESET", err)
	default:
		return fmt.Sprintf("read %d bytes %q from closer, want ECONNRESET", n, buf[:n])
	}
}

// TestHalfClose: halfclose writes a greeting and shuts down writing; the
// client reads the greeting and EOF, then sends 12345 bytes, which the
// service still receives after its own FIN (B34).
func TestHalfClose(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	d := startDaemon(t, ns, "--serve", "halfclose:8084")
	c, err := dialKernel(ns, stackIP+":8084", 5*time.Second)
	if err != nil {
		d.fatalf("connect to halfclose: %v", err)
	}
	defer c.Close()
	greeting, err := readAllTimeout(c, 10*time.Second)
	if err != nil {
		d.fatalf("reading the greeting until EOF: %v (got %q)", err, greeting)
	}
	if len(greeting) == 0 {
		d.fatalf("halfclose: EOF without a greeting")
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(bytes.Repeat([]byte("h"), 12345)); err != nil {
		d.fatalf("writing 12345 bytes after the server's FIN: %v", err)
	}
	if err := c.CloseWrite(); err != nil {
		d.fatalf("shutdown(SHUT_WR): %v", err)
	}
	if !d.waitStderr("halfclose: read 12345 bytes", 10*time.Second) {
		d.fatalf("the daemon did not log %q", "halfclose: read 12345 bytes")
	}
}

// TestPing: ICMP echo requests to the stack's address are answered (B50).
func TestPing(t *testing.T) {
	t.Parallel()
	needTool(t, "ping")
	ns := newNS(t)
	d := startDaemon(t, ns)
	out, errOut, err := runIn(ns, 20*time.Second, "ping", "-c", "3", "-W", "2", stackIP)
	if err != nil {
		d.fatalf("ping -c 3 %s: %v\n%s%s", stackIP, err, out, errOut)
	}
	if !strings.Contains(out, "3 received") {
		d.fatalf("ping: not every request answered:\n%s", out)
	}
	if v := d.counters()["icmp.echo_replies"]; v < 3 {
		d.errorf("icmp.echo_replies = %d, want >= 3", v)
	}
}

// kernelSNMP reads one counter of the namespace kernel's /proc/net/snmp
// (e.g. "Tcp", "RetransSegs").
func kernelSNMP(t *testing.T, ns *netns.NS, group, name string) int64 {
	t.Helper()
	out, err := ns.Run("cat", "/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != group+":" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i := 1; i < len(f) && i < len(names); i++ {
			if names[i] == name {
				v, err := strconv.ParseInt(f[i], 10, 64)
				if err != nil {
					t.Fatalf("/proc/net/snmp %s %s: %q", group, name, f[i])
				}
				return v
			}
		}
	}
	t.Fatalf("/proc/net/snmp has no %s %s:\n%s", group, name, out)
	return 0
}
