package integration

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"
)

// The daemon's IPv6 address (ustack run's default --addr6).
const stackIP6 = "fd00::2"

// TestIPv6Clients: kernel clients reach the daemon over IPv6 as over IPv4
// (B60-B64): ping -6 is answered, curl -6 gets the status page and a body
// of a million bytes, nc -6 is echoed, and a Go client on the kernel's
// side moves 1 MB through the echo service; ss lists the IPv6 sockets. The
// same holds with --engine gvisor, the reference the benchmarks compare.
func TestIPv6Clients(t *testing.T) {
	for _, engine := range []string{"ustack", "gvisor"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			testIPv6Clients(t, engine)
		})
	}
}

func testIPv6Clients(t *testing.T, engine string) {
	needTool(t, "ping")
	needTool(t, "curl")
	needTool(t, "nc")
	ns := newNS(t)
	d := startDaemon(t, ns, "--engine", engine)

	if out, errOut, err := runIn(ns, 15*time.Second, "ping", "-6", "-c", "2", "-W", "2", stackIP6); err != nil {
		d.fatalf("ping -6 %s: %v: %s%s", stackIP6, err, out, errOut)
	}
	out, errOut, err := runIn(ns, 20*time.Second, "curl", "-6", "-sS", "--max-time", "15", "http://["+stackIP6+"]/")
	if err != nil || !strings.Contains(out, "ustack") {
		d.fatalf("curl -6 the status page: %v: %s%.200s", err, errOut, out)
	}
	out, errOut, err = runIn(ns, 30*time.Second, "curl", "-6", "-sS", "--max-time", "25", "http://["+stackIP6+"]/bytes?n=1000000")
	if err != nil || len(out) != 1000000 {
		d.fatalf("curl -6 /bytes?n=1000000: %v: %s, %d bytes", err, errOut, len(out))
	}
	for i := range 1000 {
		if out[i] != byte(i%251) {
			d.fatalf("byte %d of /bytes over IPv6 is %d, want %d", i, out[i], i%251)
		}
	}
	out, errOut, err = runIn(ns, 15*time.Second, "sh", "-c", "printf 'hello over IPv6\\n' | nc -6 -N -w 5 "+stackIP6+" 7")
	if err != nil || out != "hello over IPv6\n" {
		d.fatalf("nc -6 to echo: %v: %q %s", err, out, errOut)
	}

	var c *net.TCPConn
	err = ns.Do(func() error {
		nc, err := net.DialTimeout("tcp6", "["+stackIP6+"]:7", 5*time.Second)
		if err == nil {
			c = nc.(*net.TCPConn)
		}
		return err
	})
	if err != nil {
		d.fatalf("a kernel socket to [%s]:7: %v", stackIP6, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	got, werr, rerr := echoThrough(c, data)
	if werr != nil || rerr != nil || !bytes.Equal(got, data) {
		d.fatalf("1 MB through echo over IPv6: write %v, read %v, %d bytes back, equal %v", werr, rerr, len(got), bytes.Equal(got, data))
	}

	found := false
	for _, l := range d.sockets() {
		found = found || l.State == "LISTEN" && strings.HasPrefix(l.Local, "["+stackIP6+"]:")
	}
	if !found {
		d.errorf("ustack ss lists no IPv6 listener: %v", d.sockets())
	}
}
