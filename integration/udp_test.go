package integration

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUDPClients: kernel UDP clients against the daemon (B70): nc -u and a
// Go socket are echoed by udp-echo over IPv4 and IPv6, and a datagram to a
// port with no socket comes back as ICMP port unreachable, which a
// connected kernel socket reads as ECONNREFUSED on its next call.
func TestUDPClients(t *testing.T) {
	t.Parallel()
	needTool(t, "nc")
	ns := newNS(t)
	d := startDaemon(t, ns, "--serve", "udp-echo:7", "--serve", "echo:7")
	for _, addr := range []string{stackIP, stackIP6} {
		out, errOut, err := runIn(ns, 15*time.Second, "sh", "-c", "printf 'hello over udp\\n' | nc -u -w 1 "+addr+" 7")
		if err != nil || out != "hello over udp\n" {
			d.fatalf("nc -u %s 7: %v: %q %s", addr, err, out, errOut)
		}
	}
	err := ns.Do(func() error {
		c, err := net.Dial("udp4", stackIP+":7")
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 16)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "ping" {
			return errors.Join(errors.New("no echo: "+string(buf[:n])), err)
		}
		closed, err := net.Dial("udp4", stackIP+":9")
		if err != nil {
			return err
		}
		defer closed.Close()
		closed.SetDeadline(time.Now().Add(5 * time.Second))
		closed.Write([]byte("anyone?"))
		_, err = closed.Read(buf)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return errors.New("read after a datagram to a closed port: " + errString(err) + ", want ECONNREFUSED")
		}
		return nil
	})
	if err != nil {
		d.fatalf("%v", err)
	}
	if !strings.Contains(d.stderr.String(), "serving udp-echo on") {
		d.errorf("the daemon did not log udp-echo")
	}
	// ustack ss -u lists the UDP sockets like ss -uan; plain ss keeps to TCP.
	out, errOut, err := runIn(ns, 10*time.Second, ustackBin, "ss", "-u", "--ctl", d.ctl)
	if err != nil || !strings.Contains(out, "UNCONN") || !strings.Contains(out, stackIP+":7 ") || !strings.Contains(out, "["+stackIP6+"]:7 ") {
		d.errorf("ustack ss -u: %v %s\n%s", err, errOut, out)
	}
	for _, l := range d.sockets() {
		if l.State == "UNCONN" && strings.HasSuffix(l.Local, ":7") {
			d.errorf("plain ustack ss lists a UDP socket: %+v", l)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// TestNCUDP: ustack nc -u sends each chunk of its input as a datagram from
// the stack to a kernel UDP socket and prints what comes back, over IPv4
// and IPv6; to a kernel port with no socket it reports the refusal.
func TestNCUDP(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	d := startDaemon(t, ns)
	for _, addr := range []string{kernelIP, "fd00::1"} {
		var pc net.PacketConn
		if err := ns.Do(func() (err error) {
			pc, err = net.ListenPacket("udp", net.JoinHostPort(addr, "9100"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(append([]byte("echo "), buf[:n]...), from)
			}
		}()
		out, errOut, code := d.nc("datagram\n", 15*time.Second, "-u", "-q", "1", addr, "9100")
		pc.Close()
		if code != 0 || out != "echo datagram\n" {
			d.fatalf("ustack nc -u %s 9100: exit %d, stdout %q, stderr %q", addr, code, out, errOut)
		}
	}
	// A datagram past the MTU leaves ustack in IPv4 fragments, which the
	// kernel puts back together: its socket reads one 3001-byte datagram.
	var pc net.PacketConn
	if err := ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", net.JoinHostPort(kernelIP, "9102"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(strconv.Itoa(n)+"\n"), from)
		}
	}()
	out, errOut, code := d.nc(strings.Repeat("x", 3000)+"\n", 15*time.Second, "-u", "-q", "1", kernelIP, "9102")
	pc.Close()
	if code != 0 || out != "3001\n" {
		d.errorf("ustack nc -u with a 3001-byte datagram: exit %d, the kernel read %q (want one datagram of 3001), stderr %q", code, out, errOut)
	}
	if n := d.counters()["ip.fragments.out"]; n < 3 {
		d.errorf("ip.fragments.out = %d, want the datagram's 3 fragments", n)
	}

	_, errOut, code = d.nc("anyone?\n", 15*time.Second, "-u", "-q", "2", kernelIP, "9101")
	if code != 1 || !strings.Contains(errOut, "refused") {
		d.errorf("ustack nc -u to a closed kernel port: exit %d, stderr %q; want the refusal", code, errOut)
	}
}

// TestDNSDig: dig, the kernel's resolver client, asks the daemon's dns
// service over both families and reads the stack's own addresses back;
// a name under ours is NXDOMAIN, and one elsewhere REFUSED.
func TestDNSDig(t *testing.T) {
	t.Parallel()
	needTool(t, "dig")
	ns := newNS(t)
	d := startDaemon(t, ns, "--serve", "dns:53")
	for _, server := range []string{stackIP, stackIP6} {
		for _, q := range []struct{ typ, want string }{{"A", stackIP}, {"AAAA", stackIP6}} {
			out, errOut, err := runIn(ns, 15*time.Second, "dig", "+short", "+tries=2", "+time=2", "@"+server, "ustack", q.typ)
			if err != nil || strings.TrimSpace(out) != q.want {
				d.errorf("dig @%s ustack %s: %v: %q, want %q %s", server, q.typ, err, out, q.want, errOut)
			}
		}
		out, errOut, err := runIn(ns, 15*time.Second, "dig", "+tries=2", "+time=2", "@"+server, "www.ustack", "A")
		if err != nil || !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, " aa") {
			d.errorf("dig @%s www.ustack: %v: want an authoritative NXDOMAIN:\n%s%s", server, err, out, errOut)
		}
		out, errOut, err = runIn(ns, 15*time.Second, "dig", "+tries=2", "+time=2", "@"+server, "example.com", "A")
		if err != nil || !strings.Contains(out, "status: REFUSED") {
			d.errorf("dig @%s example.com: %v: want REFUSED:\n%s%s", server, err, out, errOut)
		}
	}
}
