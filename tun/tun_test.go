package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ustack/internal/inetsum"
	"ustack/netns"
)

var (
	kernelAddr = netip.MustParseAddr("10.0.0.1")
	stackAddr  = netip.MustParseAddr("10.0.0.2")
	subnet     = netip.MustParsePrefix("10.0.0.1/24")
)

// newNS makes a namespace for one test and removes it afterwards. IPv6 is
// off inside it so the kernel sends no router solicitations or MLD reports
// through the devices.
func newNS(t *testing.T) *netns.NS {
	t.Helper()
	if ok, why := netns.Available(); !ok {
		t.Skip(why)
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no TUN support: %v", err)
	}
	ns, err := netns.New("ustack-tun")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, k := range []string{"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"} {
		if _, err := ns.Run("sysctl", "-qw", k); err != nil {
			t.Logf("cannot disable IPv6 (tests filter packets anyway): %v", err)
		}
	}
	return ns
}

// inNS runs f inside ns after checking that the thread really is in ns, so
// that nothing is ever configured in the namespace the test started in.
func inNS(t *testing.T, ns *netns.NS, f func() error) error {
	t.Helper()
	var want unix.Stat_t
	if err := unix.Stat("/run/netns/"+ns.Name, &want); err != nil {
		if err := unix.Stat("/var/run/netns/"+ns.Name, &want); err != nil {
			t.Fatalf("namespace %s has no bind mount: %v", ns.Name, err)
		}
	}
	return ns.Do(func() error {
		var got unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &got); err != nil {
			return err
		}
		if got.Ino != want.Ino || got.Dev != want.Dev {
			panic("netns.Do did not enter " + ns.Name)
		}
		return f()
	})
}

// inNSMake is inNS for an f that makes something (a device, a socket).
func inNSMake[T any](t *testing.T, ns *netns.NS, f func() (T, error)) (T, error) {
	t.Helper()
	var v T
	err := inNS(t, ns, func() error {
		var err error
		v, err = f()
		return err
	})
	return v, err
}

// open opens a device inside ns; a device it returns is closed at cleanup.
func open(t *testing.T, ns *netns.NS, cfg Config) (*Device, error) {
	t.Helper()
	d, err := inNSMake(t, ns, func() (*Device, error) { return Open(cfg) })
	if d != nil {
		t.Cleanup(func() { d.Close() })
	}
	return d, err
}

// dialStack returns a kernel UDP socket in ns connected to the stack's
// discard port, 10.0.0.2:9, closed at cleanup.
func dialStack(t *testing.T, ns *netns.NS) *net.UDPConn {
	t.Helper()
	return kernelUDP(t, ns, func() (*net.UDPConn, error) {
		return net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 9})
	})
}

// listenKernel returns a kernel UDP socket in ns bound to 10.0.0.1:port (0:
// any port), closed at cleanup.
func listenKernel(t *testing.T, ns *netns.NS, port int) *net.UDPConn {
	t.Helper()
	return kernelUDP(t, ns, func() (*net.UDPConn, error) {
		return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: port})
	})
}

func kernelUDP(t *testing.T, ns *netns.NS, mk func() (*net.UDPConn, error)) *net.UDPConn {
	t.Helper()
	c, err := inNSMake(t, ns, mk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mustRun runs a command in ns and returns its output; it fails the test
// if the command fails.
func mustRun(t *testing.T, ns *netns.NS, name string, args ...string) string {
	t.Helper()
	out, err := ns.Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// makePersistent creates a persistent device tun0 of mode (tun or tap) in
// ns, or skips the test.
func makePersistent(t *testing.T, ns *netns.NS, mode string) {
	t.Helper()
	if _, err := ns.Run("ip", "tuntap", "add", "dev", "tun0", "mode", mode); err != nil {
		t.Skipf("cannot make a persistent device: %v", err)
	}
}

func mustOpen(t *testing.T, ns *netns.NS) *Device {
	t.Helper()
	d, err := open(t, ns, Config{Name: "tun0", Addr: subnet})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// readUntil reads packets from d until match accepts one, at most 100
// packets and 5 seconds; it fails the test otherwise. On timeout it closes d
// to stop the reader.
func readUntil(t *testing.T, d *Device, match func([]byte) bool) []byte {
	t.Helper()
	type result struct {
		pkt []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		buf := make([]byte, 65536)
		for range 100 {
			n, err := d.ReadPacket(buf)
			if err != nil {
				ch <- result{err: err}
				return
			}
			if match(buf[:n]) {
				ch <- result{pkt: bytes.Clone(buf[:n])}
				return
			}
		}
		ch <- result{err: errors.New("100 packets, none matched")}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.pkt
	case <-time.After(5 * time.Second):
		d.Close()
		<-ch
		t.Fatal("no matching packet within 5s")
		return nil
	}
}

func checksum(b []byte) uint16 { return inetsum.Checksum(b, 0) }

func ipv4(src, dst netip.Addr, proto byte, payload []byte) []byte {
	p := make([]byte, 20+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], 0x1234)
	p[8] = 64
	p[9] = proto
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], checksum(p[:20]))
	copy(p[20:], payload)
	return p
}

func udp(sport, dport uint16, payload []byte) []byte {
	u := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload) // checksum 0: none, allowed over IPv4
	return u
}

func TestOpenConfigures(t *testing.T) {
	ns := newNS(t)
	d, err := open(t, ns, Config{Name: "tun0", Addr: subnet, MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name() != "tun0" || d.MTU() != 1400 {
		t.Errorf("Name, MTU = %q, %d; want tun0, 1400", d.Name(), d.MTU())
	}
	addr := mustRun(t, ns, "ip", "-o", "-4", "addr", "show", "dev", "tun0")
	if !strings.Contains(addr, "inet 10.0.0.1/24 ") {
		t.Errorf("address not set: %s", addr)
	}
	link := mustRun(t, ns, "ip", "link", "show", "tun0")
	if !strings.Contains(link, " mtu 1400 ") {
		t.Errorf("MTU not set: %s", link)
	}
	flags := link[strings.Index(link, "<"):strings.Index(link, ">")]
	if !strings.Contains(flags+",", ",UP,") {
		t.Errorf("not up: %s", link)
	}
	route := mustRun(t, ns, "ip", "-4", "route", "show", "dev", "tun0")
	if !strings.Contains(route, "10.0.0.0/24") {
		t.Errorf("no subnet route: %s", route)
	}
}

// An IPv6 address is usable as soon as Open returns: not tentative (for
// a moment after the device comes up the kernel holds it so, and a socket
// dialing the stack's side would pick ::1 as its source), so a kernel
// socket that dials the stack gets it as its source. The race is short;
// the test opens the device many times.
func TestOpenIPv6AddressUsable(t *testing.T) {
	ns := newNS(t)
	mustRun(t, ns, "ip", "link", "set", "lo", "up")
	kernel := netip.MustParseAddr("fd00::1")
	for i := range 40 {
		d, err := open(t, ns, Config{Name: "tun0", Addr6: netip.PrefixFrom(kernel, 64)})
		if err != nil {
			t.Fatal(err)
		}
		flags, err := inNSMake(t, ns, func() (uint64, error) {
			return d.addrFlags6(fmt.Sprintf("%032x", kernel.As16()))
		})
		if err != nil {
			t.Fatal(err)
		}
		if flags&ifaTentative != 0 {
			t.Fatalf("open %d: fd00::1 is tentative (flags %#x) after Open", i, flags)
		}
		local, err := inNSMake(t, ns, func() (netip.AddrPort, error) {
			c, err := net.Dial("udp6", "[fd00::2]:9")
			if err != nil {
				return netip.AddrPort{}, err
			}
			defer c.Close()
			return c.LocalAddr().(*net.UDPAddr).AddrPort(), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if local.Addr() != kernel {
			t.Fatalf("open %d: a socket dialing fd00::2 got source %s; want fd00::1", i, local.Addr())
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDefaultMTUAndName(t *testing.T) {
	ns := newNS(t)
	d, err := open(t, ns, Config{Addr: subnet})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.Name(), "tun") || d.MTU() != DefaultMTU {
		t.Errorf("Name, MTU = %q, %d; want tun*, %d", d.Name(), d.MTU(), DefaultMTU)
	}
	link := mustRun(t, ns, "ip", "link", "show", d.Name())
	if !strings.Contains(link, " mtu 1500 ") {
		t.Errorf("MTU: %s", link)
	}
}

// A datagram a kernel socket sends to the stack's address comes out of the
// device as one IPv4 packet.
func TestReadKernelUDP(t *testing.T) {
	ns := newNS(t)
	d := mustOpen(t, ns)
	c := dialStack(t, ns)
	if _, err := c.Write([]byte("hello, stack")); err != nil {
		t.Fatal(err)
	}
	pkt := readUntil(t, d, func(p []byte) bool {
		return len(p) >= 20 && p[0]>>4 == 4 && p[9] == 17
	})
	if got := netip.AddrFrom4([4]byte(pkt[16:20])); got != stackAddr {
		t.Errorf("dst %v, want %v", got, stackAddr)
	}
	if got := netip.AddrFrom4([4]byte(pkt[12:16])); got != kernelAddr {
		t.Errorf("src %v, want %v", got, kernelAddr)
	}
	if int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) {
		t.Errorf("read %d bytes, IP total length %d", len(pkt), binary.BigEndian.Uint16(pkt[2:]))
	}
	ihl := int(pkt[0]&15) * 4
	u := pkt[ihl:]
	if dport := binary.BigEndian.Uint16(u[2:]); dport != 9 {
		t.Errorf("UDP dst port %d, want 9", dport)
	}
	if string(u[8:]) != "hello, stack" {
		t.Errorf("payload %q", u[8:])
	}
}

// A UDP packet written to the device reaches a kernel socket at 10.0.0.1.
func TestWriteUDPToKernel(t *testing.T) {
	ns := newNS(t)
	d := mustOpen(t, ns)
	ln := listenKernel(t, ns, 0)
	port := uint16(ln.LocalAddr().(*net.UDPAddr).Port)

	if err := d.WritePacket(ipv4(stackAddr, kernelAddr, 17, udp(40000, port, []byte("hello, kernel")))); err != nil {
		t.Fatal(err)
	}
	ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, from, err := ln.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != "hello, kernel" {
		t.Errorf("payload %q", buf[:n])
	}
	if from != netip.AddrPortFrom(stackAddr, 40000) {
		t.Errorf("from %v, want 10.0.0.2:40000", from)
	}
}

// An ICMP echo request written to the device is answered by the kernel
// through the device.
func TestWriteICMPEcho(t *testing.T) {
	ns := newNS(t)
	d := mustOpen(t, ns)
	icmp := []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1, 'p', 'i', 'n', 'g'}
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	if err := d.WritePacket(ipv4(stackAddr, kernelAddr, 1, icmp)); err != nil {
		t.Fatal(err)
	}
	reply := readUntil(t, d, func(p []byte) bool {
		return len(p) >= 28 && p[0]>>4 == 4 && p[9] == 1 && p[20] == 0
	})
	if got := netip.AddrFrom4([4]byte(reply[16:20])); got != stackAddr {
		t.Errorf("reply to %v", got)
	}
	if !bytes.Equal(reply[24:], icmp[4:]) {
		t.Errorf("reply id/seq/data %x, want %x", reply[24:], icmp[4:])
	}
}

func TestWriteGarbage(t *testing.T) {
	ns := newNS(t)
	d := mustOpen(t, ns)
	err := d.WritePacket([]byte{0x00, 1, 2, 3})
	if err == nil {
		t.Fatal("kernel accepted a packet that is not IP")
	}
	if !strings.Contains(err.Error(), "tun0") {
		t.Errorf("error does not name the device: %v", err)
	}
}

func TestShortBuffer(t *testing.T) {
	ns := newNS(t)
	d := mustOpen(t, ns)
	c := dialStack(t, ns)
	if _, err := c.Write(make([]byte, 200)); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		buf := make([]byte, 64)
		n, err := d.ReadPacket(buf)
		if buf[0]>>4 != 4 || buf[9] != 17 {
			continue
		}
		if !errors.Is(err, io.ErrShortBuffer) || n != 64 {
			t.Fatalf("ReadPacket = %d, %v; want 64, io.ErrShortBuffer", n, err)
		}
		// The next packet is unaffected.
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		pkt := readUntil(t, d, func(p []byte) bool { return len(p) >= 20 && p[9] == 17 })
		if len(pkt) != 29 || pkt[28] != 'x' {
			t.Errorf("next packet %x", pkt)
		}
		return
	}
	t.Fatal("no UDP packet in 100 reads")
}

func TestBusy(t *testing.T) {
	ns := newNS(t)
	d := mustOpen(t, ns)
	_, err := open(t, ns, Config{Name: "tun0", Addr: subnet})
	if err == nil {
		t.Fatal("second Open of tun0 succeeded")
	}
	if !errors.Is(err, unix.EBUSY) {
		t.Errorf("error %v does not wrap EBUSY", err)
	}
	if !strings.Contains(err.Error(), "tun0 is busy (another process owns it)") {
		t.Errorf("error message: %v", err)
	}
	// water leaks the descriptor of a failed open; Open closes it.
	if fds := tunFDs(); len(fds) != 1 {
		t.Errorf("%d descriptors open on /dev/net/tun after a failed Open, want 1", len(fds))
	}
	// The first device is untouched.
	if _, err := ns.Run("ip", "link", "show", "tun0"); err != nil {
		t.Error(err)
	}
	if err := d.WritePacket(ipv4(stackAddr, kernelAddr, 17, udp(1, 9, nil))); err != nil {
		t.Errorf("first device broken: %v", err)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	ns := newNS(t)
	d := mustOpen(t, ns)
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		buf := make([]byte, d.MTU())
		for range 100 {
			if _, err := d.ReadPacket(buf); err != nil {
				done <- err
				return
			}
		}
		done <- errors.New("100 packets without an error")
	}()
	<-started
	time.Sleep(200 * time.Millisecond) // let it block in read
	select {
	case err := <-done:
		t.Fatalf("ReadPacket returned before Close: %v", err)
	default:
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked ReadPacket returned %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock ReadPacket")
	}
	if _, err := d.ReadPacket(make([]byte, 1500)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadPacket after Close: %v", err)
	}
	if err := d.WritePacket(ipv4(stackAddr, kernelAddr, 17, udp(1, 9, nil))); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WritePacket after Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// linkGone polls (at most 2 s) until name no longer exists in ns.
func linkGone(t *testing.T, ns *netns.NS, name string) bool {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := ns.Run("ip", "link", "show", name); err != nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCloseRemovesDevice(t *testing.T) {
	ns := newNS(t)
	d := mustOpen(t, ns)
	mustRun(t, ns, "ip", "link", "show", "tun0")
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if !linkGone(t, ns, "tun0") {
		t.Fatal("tun0 still exists after Close")
	}
	// And the name can be used again.
	d2 := mustOpen(t, ns)
	d2.Close()
}

// The descriptor water opens must not leak into child processes: a child
// holding it would keep the device alive after Close.
func TestNoDescriptorLeakToChildren(t *testing.T) {
	ns := newNS(t)
	d := mustOpen(t, ns)
	out := mustRun(t, ns, "sh", "-c", "ls -l /proc/$$/fd")
	if strings.Contains(out, "/dev/net/tun") {
		t.Errorf("child inherited the TUN descriptor:\n%s", out)
	}
	d.Close()
	if !linkGone(t, ns, "tun0") {
		t.Fatal("tun0 still exists after Close")
	}
}

func TestAttachPersistent(t *testing.T) {
	for _, old := range []string{"", "192.168.77.1/24"} {
		t.Run("old="+old, func(t *testing.T) {
			ns := newNS(t)
			makePersistent(t, ns, "tun")
			if old != "" {
				mustRun(t, ns, "ip", "addr", "add", old, "dev", "tun0")
			}
			d := mustOpen(t, ns)
			addr := mustRun(t, ns, "ip", "-o", "-4", "addr", "show", "dev", "tun0")
			if !strings.Contains(addr, "inet 10.0.0.1/24 ") {
				t.Errorf("address not set on the attached device: %s", addr)
			}
			// Still usable both ways.
			icmp := []byte{8, 0, 0, 0, 0, 7, 0, 1}
			binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
			if err := d.WritePacket(ipv4(stackAddr, kernelAddr, 1, icmp)); err != nil {
				t.Fatal(err)
			}
			readUntil(t, d, func(p []byte) bool { return len(p) >= 28 && p[9] == 1 && p[20] == 0 })

			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			link, err := ns.Run("ip", "link", "show", "tun0")
			if err != nil {
				t.Fatalf("the persistent device vanished on Close: %v", err)
			}
			addr = mustRun(t, ns, "ip", "-o", "-4", "addr", "show", "dev", "tun0")
			if strings.Contains(addr, "10.0.0.1") {
				t.Errorf("our address left behind: %s", addr)
			}
			if old != "" && !strings.Contains(addr, "inet "+old+" ") {
				t.Errorf("old address %s not restored: %s", old, addr)
			}
			if old == "" && strings.Contains(addr, "inet ") {
				t.Errorf("address left: %s", addr)
			}
			_ = link
		})
	}
}

// An attached device that already has exactly our address keeps it on Close.
func TestAttachAlreadyConfigured(t *testing.T) {
	ns := newNS(t)
	makePersistent(t, ns, "tun")
	mustRun(t, ns, "ip", "addr", "add", "10.0.0.1/24", "dev", "tun0")
	d := mustOpen(t, ns)
	d.Close()
	addr := mustRun(t, ns, "ip", "-o", "-4", "addr", "show", "dev", "tun0")
	if !strings.Contains(addr, "inet 10.0.0.1/24 ") {
		t.Errorf("pre-existing address removed: %s", addr)
	}
}

func TestAddressInUse(t *testing.T) {
	ns := newNS(t)
	makePersistent(t, ns, "tun")
	// The same address with another label and the /32 mask SIOCSIFADDR
	// gives a point-to-point device first: the kernel refuses a duplicate.
	// (With the same /24 mask the kernel instead silently keeps the existing
	// one when SIOCSIFNETMASK re-inserts ours, and Open succeeds.)
	mustRun(t, ns, "ip", "addr", "add", "10.0.0.1/32", "dev", "tun0", "label", "tun0:x")
	_, err := open(t, ns, Config{Name: "tun0", Addr: subnet})
	if err == nil {
		t.Fatal("Open succeeded with the address already on the device")
	}
	if !errors.Is(err, unix.EEXIST) && !errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("error %v wraps neither EEXIST nor EADDRINUSE", err)
	}
	if !strings.Contains(err.Error(), "already in use") {
		t.Errorf("error message: %v", err)
	}
	if _, err := ns.Run("ip", "link", "show", "tun0"); err != nil {
		t.Errorf("the persistent device vanished: %v", err)
	}
}

func TestAttachTAPRefused(t *testing.T) {
	ns := newNS(t)
	makePersistent(t, ns, "tap")
	_, err := open(t, ns, Config{Name: "tun0", Addr: subnet})
	if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "not a single-queue TUN device") {
		t.Errorf("Open on a TAP device: %v", err)
	}
}

func TestBadMTU(t *testing.T) {
	ns := newNS(t)
	for _, mtu := range []int{20, -1, 70000, 1 << 40} {
		_, err := open(t, ns, Config{Name: "tun0", Addr: subnet, MTU: mtu})
		if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "MTU") {
			t.Errorf("MTU %d: %v", mtu, err)
		}
		if !linkGone(t, ns, "tun0") {
			t.Fatalf("MTU %d: tun0 left behind after a failed Open", mtu)
		}
	}
}

func TestBadName(t *testing.T) {
	ns := newNS(t)
	for _, name := range []string{"a-very-long-name-x", "a/b", "a b"} {
		if _, err := open(t, ns, Config{Name: name, Addr: subnet}); !errors.Is(err, unix.EINVAL) {
			t.Errorf("name %q: %v", name, err)
		}
	}
	if _, err := open(t, ns, Config{Name: "tun0", Addr: netip.MustParsePrefix("fd00::1/64")}); !errors.Is(err, unix.EINVAL) {
		t.Errorf("IPv6 address: %v", err)
	}
}

// Without CAP_NET_ADMIN, creating the device fails with EPERM and says why.
// Only the effective set of one locked thread loses the capability.
func TestNeedsCapNetAdmin(t *testing.T) {
	ns := newNS(t)
	var openErr error
	var d *Device
	err := inNS(t, ns, func() error {
		runtime.LockOSThread() // nested: if restoring fails, the thread dies
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			return err
		}
		saved := data
		data[unix.CAP_NET_ADMIN/32].Effective &^= 1 << (unix.CAP_NET_ADMIN % 32)
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			return err
		}
		d, openErr = Open(Config{Name: "tun0", Addr: subnet})
		if err := unix.Capset(&hdr, &saved[0]); err != nil {
			return err
		}
		runtime.UnlockOSThread()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d != nil {
		d.Close()
		t.Fatal("Open succeeded without CAP_NET_ADMIN")
	}
	if !errors.Is(openErr, unix.EPERM) {
		t.Errorf("error %v does not wrap EPERM", openErr)
	}
	if !strings.Contains(openErr.Error(), "creating tun0 needs CAP_NET_ADMIN") {
		t.Errorf("error message: %v", openErr)
	}
}

// The device works from goroutines other than the one that opened it, which
// run on threads in the original namespace.
func TestConcurrentReadWrite(t *testing.T) {
	ns := newNS(t)
	d := mustOpen(t, ns)
	ln := listenKernel(t, ns, 7777)

	// The kernel echoes nothing by itself, so: stack -> kernel socket, and
	// kernel socket -> stack, 50 each, at the same time.
	const n = 50
	errc := make(chan error, 2)
	go func() {
		for i := range n {
			if err := d.WritePacket(ipv4(stackAddr, kernelAddr, 17, udp(5000, 7777, []byte{byte(i)}))); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	go func() {
		for i := range n {
			if _, err := ln.WriteToUDPAddrPort([]byte{byte(i)}, netip.AddrPortFrom(stackAddr, 5000)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	got := 0
	buf := make([]byte, 1500)
	for got < n {
		readUntil(t, d, func(p []byte) bool { return len(p) == 29 && p[9] == 17 })
		got++
	}
	ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range n {
		if _, _, err := ln.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// Device implements stack.Link (checked structurally; tun does not import
// stack).
var _ interface {
	ReadPacket(b []byte) (int, error)
	WritePacket(b []byte) error
	MTU() int
	Close() error
} = (*Device)(nil)
