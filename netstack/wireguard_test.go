package netstack_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.zx2c4.com/wireguard/tun"
	gvnetstack "golang.zx2c4.com/wireguard/tun/netstack"

	"ustack/internal/wgpair"
	"ustack/netstack"
)

// Two wireguard-go devices joined by bindtest's channel binds, as
// wireguard-go's own tests join them: one over ustack (this package), one
// over wireguard-go's gVisor netstack, the reference.

var (
	ourV4   = netip.MustParseAddr("10.9.0.1")
	ourV6   = netip.MustParseAddr("fd09::1")
	theirV4 = netip.MustParseAddr("10.9.0.2")
	theirV6 = netip.MustParseAddr("fd09::2")
)

const mtu = 1420

// netAPI is what both Nets offer with the same signature.
type netAPI interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
	LookupHost(host string) ([]string, error)
}

// listenTCP listens on port of either kind of Net.
func listenTCP(t testing.TB, n any, port int) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	switch n := n.(type) {
	case *netstack.Net:
		ln, err = n.ListenTCP(&net.TCPAddr{Port: port})
	case *gvnetstack.Net:
		ln, err = n.ListenTCP(&net.TCPAddr{Port: port})
	}
	if err != nil {
		t.Fatalf("ListenTCP :%d: %v", port, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// pair is ustack's netstack and gVisor's joined by WireGuard; each names
// the other's IPv4 address as its DNS server.
func pair(t testing.TB) (*netstack.Net, *gvnetstack.Net) {
	return pairWith(t, []netip.Addr{ourV4, ourV6}, []netip.Addr{theirV4, theirV6})
}

// pairWith is pair with the two sides' local addresses given.
func pairWith(t testing.TB, ourAddrs, theirAddrs []netip.Addr) (*netstack.Net, *gvnetstack.Net) {
	t.Helper()
	ourDev, ours, err := netstack.CreateNetTUN(ourAddrs, []netip.Addr{theirV4}, mtu)
	if err != nil {
		t.Fatal(err)
	}
	theirDev, theirs, err := gvnetstack.CreateNetTUN(theirAddrs, []netip.Addr{ourV4}, mtu)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := wgpair.Join(ourDev, theirDev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return ours, theirs
}

// serveHTTP answers GET / with who on ln.
func serveHTTP(t testing.TB, ln net.Listener, who string) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s answers %s from %s", who, r.URL.Path, r.RemoteAddr)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func get(t testing.TB, n netAPI, url string) string {
	t.Helper()
	client := http.Client{Transport: &http.Transport{DialContext: n.DialContext}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return string(body)
}

// The HTTP-over-WireGuard example of wireguard-go's netstack, both ways
// and over both families: the client's DialContext and the server's
// ListenTCP are the only calls into the Net.
func TestHTTPOverWireGuardBothWays(t *testing.T) {
	ours, theirs := pair(t)
	serveHTTP(t, listenTCP(t, ours, 80), "ustack")
	serveHTTP(t, listenTCP(t, theirs, 80), "gvisor")
	for _, c := range []struct {
		client netAPI
		url    string
		want   string
	}{
		{theirs, "http://10.9.0.1/a", "ustack answers /a from 10.9.0.2:"},
		{theirs, "http://[fd09::1]/b", "ustack answers /b from [fd09::2]:"},
		{ours, "http://10.9.0.2/c", "gvisor answers /c from 10.9.0.1:"},
		{ours, "http://[fd09::2]/d", "gvisor answers /d from [fd09::1]:"},
	} {
		if got := get(t, c.client, c.url); len(got) < len(c.want) || got[:len(c.want)] != c.want {
			t.Errorf("GET %s = %q, want %q...", c.url, got, c.want)
		}
	}
}

// A bulk transfer each way arrives whole: the receiver's hash is the
// sender's.
func TestBulkOverWireGuardBothWays(t *testing.T) {
	ours, theirs := pair(t)
	const size = 8 << 20
	for _, c := range []struct {
		name     string
		from     netAPI
		listenOn any
		to       string
	}{
		{"gvisor-to-ustack", theirs, ours, "10.9.0.1:9000"},
		{"ustack-to-gvisor", ours, theirs, "10.9.0.2:9000"},
		{"ustack-to-gvisor-ipv6", ours, theirs, "[fd09::2]:9001"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, port, _ := net.SplitHostPort(c.to)
			var p int
			fmt.Sscan(port, &p)
			ln := listenTCP(t, c.listenOn, p)
			got := make(chan [32]byte, 1)
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					got <- [32]byte{}
					return
				}
				defer conn.Close()
				h := sha256.New()
				io.Copy(h, conn)
				var sum [32]byte
				h.Sum(sum[:0])
				got <- sum
			}()
			data := make([]byte, size)
			rand.Read(data)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := c.from.DialContext(ctx, "tcp", c.to)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(60 * time.Second))
			if _, err := conn.Write(data); err != nil {
				t.Fatalf("write: %v", err)
			}
			conn.Close()
			select {
			case sum := <-got:
				if sum != sha256.Sum256(data) {
					t.Fatalf("the receiver's SHA-256 is %x, the sender's %x", sum, sha256.Sum256(data))
				}
			case <-time.After(60 * time.Second):
				t.Fatal("the receiver did not see the end of the stream in 60 s")
			}
		})
	}
}

// UDP both ways, and ping from ustack to gVisor (which answers echo).
func TestUDPAndPingOverWireGuard(t *testing.T) {
	ours, theirs := pair(t)
	echo, err := theirs.ListenUDP(&net.UDPAddr{Port: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 2000)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			echo.WriteTo(bytes.ToUpper(buf[:n]), from)
		}
	}()
	for _, to := range []string{"10.9.0.2:7", "[fd09::2]:7"} {
		c, err := ours.DialContext(context.Background(), "udp", to)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		var n int
		for try := 0; try < 5; try++ { // the first datagram may wait for the handshake
			c.Write([]byte("hello " + to))
			c.SetReadDeadline(time.Now().Add(time.Second))
			if n, err = c.Read(buf); err == nil {
				break
			}
		}
		if want := strings.ToUpper("hello " + to); string(buf[:n]) != want {
			t.Errorf("udp echo via %s = %q (%v), want %q", to, buf[:n], err, want)
		}
		c.Close()
	}

	for _, to := range []netip.Addr{theirV4, theirV6} {
		pc, err := ours.DialPingAddr(netip.Addr{}, to)
		if err != nil {
			t.Fatal(err)
		}
		typ := byte(8)
		if to.Is6() {
			typ = 128
		}
		req := []byte{typ, 0, 0, 0, 0, 0, 0, 1, 'p', 'i', 'n', 'g'}
		if _, err := pc.Write(req); err != nil {
			t.Fatalf("ping %v: %v", to, err)
		}
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("ping %v: no reply: %v", to, err)
		}
		wantType := byte(0)
		if to.Is6() {
			wantType = 129
		}
		if buf[0] != wantType || string(buf[8:n]) != "ping" || from.(*netstack.PingAddr).Addr() != to {
			t.Errorf("ping %v: reply % x from %v", to, buf[:n], from)
		}
		pc.Close()
	}
}

// A refused connection through the tunnel is ECONNREFUSED, as from a
// kernel socket.
func TestDialRefusedOverWireGuard(t *testing.T) {
	ours, _ := pair(t)
	_, err := ours.DialContext(context.Background(), "tcp", "10.9.0.2:9")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial to a closed port = %v, want ECONNREFUSED", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("dial error %T %v, want a *net.OpError for dial", err, err)
	}
}

// dnsServer answers A and AAAA for name on the gVisor side; over UDP it
// sets TC when truncate, so the client must ask again over TCP.
func dnsServer(t *testing.T, theirs *gvnetstack.Net, name string, truncate bool) {
	answer := func(req []byte, tcp bool) []byte {
		var m dnsmessage.Message
		if m.Unpack(req) != nil || len(m.Questions) != 1 {
			return nil
		}
		q := m.Questions[0]
		m.Header.Response, m.Header.Authoritative = true, true
		switch {
		case !strings.EqualFold(q.Name.String(), name):
			m.Header.RCode = dnsmessage.RCodeNameError
		case truncate && !tcp:
			m.Header.Truncated = true
		case q.Type == dnsmessage.TypeA:
			m.Answers = []dnsmessage.Resource{{Header: dnsmessage.ResourceHeader{Name: q.Name, Type: q.Type, Class: q.Class, TTL: 60}, Body: &dnsmessage.AResource{A: theirV4.As4()}}}
		case q.Type == dnsmessage.TypeAAAA:
			m.Answers = []dnsmessage.Resource{{Header: dnsmessage.ResourceHeader{Name: q.Name, Type: q.Type, Class: q.Class, TTL: 60}, Body: &dnsmessage.AAAAResource{AAAA: theirV6.As16()}}}
		}
		b, _ := m.Pack()
		return b
	}
	uc, err := theirs.ListenUDP(&net.UDPAddr{Port: 53})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			if b := answer(buf[:n], false); b != nil {
				uc.WriteTo(b, from)
			}
		}
	}()
	ln := listenTCP(t, theirs, 53)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var lb [2]byte
				if _, err := io.ReadFull(c, lb[:]); err != nil {
					return
				}
				req := make([]byte, binary.BigEndian.Uint16(lb[:]))
				if _, err := io.ReadFull(c, req); err != nil {
					return
				}
				b := answer(req, true)
				c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
			}()
		}
	}()
}

// LookupHost and Dial by name ask the DNS server through the tunnel: both
// families' records, IPv6 first; a truncated answer is asked again over
// TCP; a name the server does not know is "not found".
func TestLookupOverWireGuard(t *testing.T) {
	for _, truncate := range []bool{false, true} {
		t.Run(fmt.Sprintf("truncated=%v", truncate), func(t *testing.T) {
			ours, theirs := pair(t)
			dnsServer(t, theirs, "peer.wg.", truncate)
			addrs, err := ours.LookupHost("peer.wg")
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"fd09::2", "10.9.0.2"}; !slices.Equal(addrs, want) {
				t.Errorf("LookupHost(peer.wg) = %q, want %q", addrs, want)
			}
			_, err = ours.LookupHost("nobody.wg")
			var dnsErr *net.DNSError
			if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
				t.Errorf("LookupHost(nobody.wg) = %v, want a not-found *net.DNSError", err)
			}
			serveHTTP(t, listenTCP(t, theirs, 80), "gvisor")
			if got := get(t, ours, "http://peer.wg/x"); !strings.HasPrefix(got, "gvisor answers /x from [fd09::1]:") {
				t.Errorf("GET http://peer.wg/x = %q, want it over IPv6", got)
			}
		})
	}
}

// After Close the device's Read and Write fail with os.ErrClosed, which
// ends wireguard-go's routines, and the Net's connections are reset.
func TestCloseDevice(t *testing.T) {
	dev, n, err := netstack.CreateNetTUN([]netip.Addr{ourV4}, nil, mtu)
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-dev.Events(); ev != tun.EventUp {
		t.Fatalf("first event %v, want EventUp", ev)
	}
	ln, err := n.ListenTCP(&net.TCPAddr{Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		bufs := [][]byte{make([]byte, 2000)}
		_, err := dev.Read(bufs, make([]int, 1), 16)
		done <- err
	}()
	dev.Close()
	if err := <-done; !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Close = %v, want os.ErrClosed", err)
	}
	if _, err := dev.Write([][]byte{make([]byte, 40)}, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close = %v, want os.ErrClosed", err)
	}
	if _, ok := <-dev.Events(); ok {
		t.Error("the event channel is open after Close")
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("Accept on a closed stack succeeded")
	}
	dev.Close() // twice is harmless
}

// CreateNetTUN says what it cannot hold.
func TestCreateNetTUNAddresses(t *testing.T) {
	for _, addrs := range [][]netip.Addr{
		{ourV4, theirV4},
		{ourV6, theirV6},
		nil,
	} {
		if _, _, err := netstack.CreateNetTUN(addrs, nil, mtu); err == nil {
			t.Errorf("CreateNetTUN(%v) succeeded", addrs)
		}
	}
}

// BenchmarkDownload streams from the gVisor peer to ustack through the
// tunnel (b.N × 128 KiB), for profiling the receive side.
func BenchmarkDownload(b *testing.B) {
	ours, theirs := pair(b)
	ln := listenTCP(b, ours, 9000)
	go func() {
		c, err := theirs.DialContext(context.Background(), "tcp", "10.9.0.1:9000")
		if err != nil {
			return
		}
		buf := make([]byte, 128<<10)
		for range b.N {
			if _, err := c.Write(buf); err != nil {
				break
			}
		}
		c.Close()
	}()
	c, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.SetBytes(128 << 10)
	n, _ := io.Copy(io.Discard, c)
	if n != int64(b.N)*128<<10 {
		b.Fatalf("received %d bytes, want %d", n, int64(b.N)*128<<10)
	}
}

// An IPv6-only tunnel, as some wireguard-go configurations are: HTTP both
// ways over IPv6, and IPv4 unreachable.
func TestIPv6OnlyOverWireGuard(t *testing.T) {
	ours, theirs := pairWith(t, []netip.Addr{ourV6}, []netip.Addr{theirV6})
	serveHTTP(t, listenTCP(t, ours, 80), "ustack")
	serveHTTP(t, listenTCP(t, theirs, 80), "gvisor")
	if got := get(t, theirs, "http://[fd09::1]/"); !strings.HasPrefix(got, "ustack answers / from [fd09::2]:") {
		t.Errorf("GET from gVisor: %q", got)
	}
	if got := get(t, ours, "http://[fd09::2]/"); !strings.HasPrefix(got, "gvisor answers / from [fd09::1]:") {
		t.Errorf("GET from ustack: %q", got)
	}
	if _, err := ours.DialContext(context.Background(), "tcp", "10.9.0.2:80"); !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("IPv4 from an IPv6-only stack: %v, want ENETUNREACH", err)
	}
}
