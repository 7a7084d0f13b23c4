package integration

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestEngineGVisor: `ustack run --engine gvisor` serves the same services
// from gVisor's netstack over the same TUN plumbing: ping is answered (by
// gVisor itself), the status page lists the listeners and curl's own
// connection, /bytes arrives whole, echo echoes and answers a FIN with a
// FIN, bound refuses, and `ustack ss` lists the sockets.
func TestEngineGVisor(t *testing.T) {
	t.Parallel()
	needTool(t, "curl")
	needTool(t, "ping")
	ns := newNS(t)
	d := startDaemon(t, ns, "--engine", "gvisor", "--serve", "http:80", "--serve", "echo:7", "--serve", "bound:9", "--serve", "udp-echo:7")

	if out, errOut, err := runIn(ns, 15*time.Second, "ping", "-c", "2", "-W", "2", stackIP); err != nil {
		d.fatalf("ping %s: %v: %s%s", stackIP, err, out, errOut)
	}

	out, errOut, err := runIn(ns, 30*time.Second, "curl", "-sS", "--max-time", "20", "http://"+stackIP+"/")
	if err != nil {
		d.fatalf("curl http://%s/: %v: %s", stackIP, err, errOut)
	}
	for _, want := range []string{"<td>LISTEN</td>", "<td>UNCONN</td>", "<td>10.0.0.2:7</td>", "tcp.passive_opens"} {
		if !strings.Contains(out, want) {
			d.errorf("status page lacks %q:\n%s", want, out)
		}
	}
	if !estabRow.MatchString(out) {
		d.errorf("status page lists no ESTAB connection from 10.0.0.1 to 10.0.0.2:80 (curl's own):\n%s", out)
	}

	const n = 5_000_000
	want, got := newCountingHash(), newCountingHash()
	bytesPattern(want, n)
	if errOut, err := streamIn(ns, 60*time.Second, got, "curl", "-sS", "--max-time", "50", fmt.Sprintf("http://%s/bytes?n=%d", stackIP, n)); err != nil {
		d.fatalf("curl /bytes?n=%d: %v: %s", n, err, errOut)
	}
	if got.n != n || got.sum() != want.sum() {
		d.fatalf("/bytes?n=%d: got %d bytes, sha256 %s; want %s", n, got.n, got.sum(), want.sum())
	}

	c, err := dialKernel(ns, stackIP+":7", 10*time.Second)
	if err != nil {
		d.fatalf("dial echo: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	msg := bytes.Repeat([]byte("gvisor echo "), 100_000)
	go func() {
		c.Write(msg)
		c.CloseWrite()
	}()
	echoed, err := io.ReadAll(c) // ends at echo's FIN
	if err != nil || !bytes.Equal(echoed, msg) {
		d.fatalf("echo: %d of %d bytes back, then %v", len(echoed), len(msg), err)
	}

	// UDP through gVisor's engine too (the bench compares the two on it),
	// on both families.
	for _, addr := range []string{stackIP, "[" + stackIP6 + "]"} {
		err := ns.Do(func() error {
			u, err := net.Dial("udp", addr+":7")
			if err != nil {
				return err
			}
			defer u.Close()
			u.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := u.Write([]byte("gvisor udp")); err != nil {
				return err
			}
			buf := make([]byte, 64)
			n, err := u.Read(buf)
			if err != nil || string(buf[:n]) != "gvisor udp" {
				return fmt.Errorf("echo %q, %v", buf[:n], err)
			}
			return nil
		})
		if err != nil {
			d.errorf("udp-echo at %s:7: %v", addr, err)
		}
	}

	if _, err := dialKernel(ns, stackIP+":9", 10*time.Second); err == nil || !strings.Contains(err.Error(), "refused") {
		d.errorf("connect to bound:9: %v, want connection refused", err)
	}

	ss, errOut, err := runIn(ns, 10*time.Second, ustackBin, "ss", "--ctl", d.ctl)
	if err != nil {
		d.fatalf("ustack ss: %v: %s", err, errOut)
	}
	for _, want := range []string{"LISTEN", "10.0.0.2:80", "UNCONN"} {
		if !strings.Contains(ss, want) {
			d.errorf("ustack ss lacks %q:\n%s", want, ss)
		}
	}
}
