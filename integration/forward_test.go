package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"ustack/netns"
)

// `ustack run --forward` (B80, B81): a client namespace routes a test
// subnet (203.0.113.0/24, TEST-NET-3) into tun0; ustack takes every
// address there and relays each connection and flow through the host's
// sockets, bound to a veth, to a server namespace holding 203.0.113.10.
// The server sees the original destination; the client sees what the
// server does, a refusal included.

const (
	farServer = "203.0.113.10"
	vethA     = "vfa" // the client namespace's end, 10.97.0.1
	vethB     = "vfb" // the server's, 10.97.0.2
)

// forwardPair is forwardNamespaces with the daemon relaying directly
// (extra flags added) and the client's routes to the far subnet.
func forwardPair(t *testing.T, extra ...string) (client, server *netns.NS, d *daemon) {
	client, server = forwardNamespaces(t)
	d = startDaemon(t, client, append([]string{"--forward", "direct", "--forward-dev", vethA}, extra...)...)
	// Clients reach the subnet through the stack; the relay's sockets,
	// bound to the veth, take the route beside it.
	for _, args := range []string{
		"route add 203.0.113.0/24 dev tun0",
		"route add 203.0.113.0/24 via 10.97.0.2 dev " + vethA + " metric 50",
	} {
		if out, err := client.Run("ip", strings.Fields(args)...); err != nil {
			t.Fatalf("ip %s: %v %s", args, err, out)
		}
	}
	return client, server, d
}

// forwardNamespaces makes the client and server namespaces, the veth
// between them and the server's address.
func forwardNamespaces(t *testing.T) (client, server *netns.NS) {
	client, server = newNS(t), newNS(t)
	for _, st := range []struct {
		ns   *netns.NS
		args string
	}{
		{client, "link add " + vethA + " type veth peer name " + vethB + " netns " + server.Name},
		{client, "addr add 10.97.0.1/24 dev " + vethA},
		{client, "link set " + vethA + " up"},
		{server, "addr add 10.97.0.2/24 dev " + vethB},
		{server, "link set " + vethB + " up"},
		{server, "link set lo up"},
		{server, "addr add " + farServer + "/32 dev lo"},
	} {
		if out, err := st.ns.Run("ip", strings.Fields(st.args)...); err != nil {
			t.Fatalf("ip %s: %v %s", st.args, err, out)
		}
	}
	return client, server
}

// listenIn opens a kernel listener inside ns.
func listenIn(t *testing.T, ns *netns.NS, network, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// udpEchoIn answers each datagram to addr inside ns with "echo from
// SENDER: " and the datagram.
func udpEchoIn(t *testing.T, ns *netns.NS, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2000)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("echo from "+from.(*net.UDPAddr).IP.String()+": "), buf[:n]...), from)
		}
	}()
}

// tcpEchoIn echoes every connection to addr inside ns.
func tcpEchoIn(t *testing.T, ns *netns.NS, addr string) {
	ln := listenIn(t, ns, "tcp4", addr)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
}

// udpRoundTrip sends msg from a kernel UDP socket in ns to addr and
// returns the answer, trying three times (the first datagram may meet a
// relay still opening its flow).
func udpRoundTrip(t *testing.T, ns *netns.NS, addr, msg string) string {
	t.Helper()
	var c net.Conn
	if err := ns.Do(func() error {
		var err error
		c, err = net.Dial("udp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2000)
	for try := 0; try < 3; try++ {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.Read(buf); err == nil {
			return string(buf[:n])
		}
	}
	return ""
}

// TCP through the relay: curl's request arrives at the server addressed
// to 203.0.113.10:8080 from the relay's veth address; a bulk upload with
// a half-close arrives whole (the server answers its hash after the
// FIN); a closed port is ECONNREFUSED at the client; nc carries a line.
func TestForwardTCPDirect(t *testing.T) {
	client, server, d := forwardPair(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		fmt.Fprintf(w, "server at %s saw %s", local, r.RemoteAddr[:strings.LastIndexByte(r.RemoteAddr, ':')])
	})}
	go srv.Serve(listenIn(t, server, "tcp4", farServer+":8080"))
	defer srv.Close()

	curl := needTool(t, "curl")
	out, stderr, err := runIn(client, 20*time.Second, curl, "-sS", "--max-time", "10", "http://"+farServer+":8080/")
	if err != nil {
		t.Fatalf("curl: %v: %s", err, stderr)
	}
	if want := "server at " + farServer + ":8080 saw 10.97.0.1"; out != want {
		t.Errorf("curl printed %q, want %q", out, want)
	}

	// The bulk transfer, hashed at the far end after the client's FIN.
	sink := listenIn(t, server, "tcp4", farServer+":8081")
	go func() {
		c, err := sink.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		c.Write([]byte(hex.EncodeToString(h.Sum(nil))))
	}()
	c, err := dialKernel(client, farServer+":8081", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 8<<20)
	rand.Read(data)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatalf("upload: %v", err)
	}
	c.CloseWrite()
	got, err := io.ReadAll(c)
	c.Close()
	sum := sha256.Sum256(data)
	if err != nil || string(got) != hex.EncodeToString(sum[:]) {
		t.Errorf("the server's hash %q (%v), want %x", got, err, sum)
	}

	// Nothing listens on port 9 at the far end: the client hears RST.
	if _, err := dialKernel(client, farServer+":9", 10*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connect to a closed far port: %v, want ECONNREFUSED", err)
	}

	nc := needTool(t, "nc")
	tcpEchoIn(t, server, farServer+":8082")
	cmd := client.Command(nc, "-N", "-w", "5", farServer, "8082")
	cmd.Stdin = strings.NewReader("through the relay\n")
	var o bytes.Buffer
	cmd.Stdout = &o
	if err := cmd.Run(); err != nil || o.String() != "through the relay\n" {
		t.Errorf("nc through the relay: %q, %v", o.String(), err)
	}

	st := d.counters()
	if st["tcp.forward.accepted"] < 3 || st["tcp.forward.rejected"] != 1 {
		t.Errorf("counters: tcp.forward.accepted %d (want at least 3), rejected %d (want 1)", st["tcp.forward.accepted"], st["tcp.forward.rejected"])
	}
}

// UDP through the relay: the far server's answer comes back from the
// address the client sent to; nc -u carries a datagram too.
func TestForwardUDPDirect(t *testing.T) {
	client, server, d := forwardPair(t)
	udpEchoIn(t, server, farServer+":5353")
	if got, want := udpRoundTrip(t, client, farServer+":5353", "hello"), "echo from 10.97.0.1: hello"; got != want {
		t.Fatalf("reply %q, want %q", got, want)
	}

	nc := needTool(t, "nc")
	cmd := client.Command(nc, "-u", "-w", "2", farServer, "5353")
	cmd.Stdin = strings.NewReader("via nc\n")
	var o bytes.Buffer
	cmd.Stdout = &o
	cmd.Run() // nc -u ends on its -w timeout
	if want := "echo from 10.97.0.1: via nc\n"; o.String() != want {
		t.Errorf("nc -u printed %q, want %q", o.String(), want)
	}
	if st := d.counters(); st["udp.forward.flows"] < 2 {
		t.Errorf("udp.forward.flows = %d, want at least 2", st["udp.forward.flows"])
	}
}

// socksServer is a minimal SOCKS5 proxy (RFC 1928: no authentication,
// CONNECT and UDP ASSOCIATE with IPv4 addresses) inside ns at addr, for
// the relay to go through.
func socksServer(t *testing.T, ns *netns.NS, addr string) {
	ln := listenIn(t, ns, "tcp4", addr)
	reply := func(c net.Conn, rep byte, bound *net.UDPAddr) {
		b := []byte{5, rep, 0, 1, 0, 0, 0, 0, 0, 0}
		if bound != nil {
			copy(b[4:8], bound.IP.To4())
			binary.BigEndian.PutUint16(b[8:], uint16(bound.Port))
		}
		c.Write(b)
	}
	serve := func(c net.Conn) {
		defer c.Close()
		var b [262]byte
		if _, err := io.ReadFull(c, b[:2]); err != nil || b[0] != 5 {
			return
		}
		io.ReadFull(c, b[:b[1]])
		c.Write([]byte{5, 0})
		if _, err := io.ReadFull(c, b[:10]); err != nil || b[3] != 1 {
			return
		}
		dst := &net.TCPAddr{IP: net.IP(b[4:8]).To4(), Port: int(binary.BigEndian.Uint16(b[8:10]))}
		switch b[1] {
		case 1: // CONNECT, from the proxy's namespace
			var up net.Conn
			err := ns.Do(func() error {
				var err error
				up, err = net.DialTimeout("tcp4", dst.String(), 5*time.Second)
				return err
			})
			if err != nil {
				rep := byte(1)
				if errors.Is(err, syscall.ECONNREFUSED) {
					rep = 5
				}
				reply(c, rep, nil)
				return
			}
			defer up.Close()
			reply(c, 0, nil)
			go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
			io.Copy(c, up)
		case 3: // UDP ASSOCIATE: one relay socket while c lasts
			var pc net.PacketConn
			ns.Do(func() error {
				var err error
				pc, err = net.ListenPacket("udp4", "10.97.0.2:0")
				return err
			})
			defer pc.Close()
			reply(c, 0, pc.LocalAddr().(*net.UDPAddr))
			var client net.Addr
			go func() {
				buf := make([]byte, 2000)
				for {
					n, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					fa := from.(*net.UDPAddr)
					if fa.IP.Equal(net.ParseIP("10.97.0.1")) { // from the client: unwrap
						client = from
						if n < 10 || buf[3] != 1 {
							continue
						}
						to := &net.UDPAddr{IP: net.IP(buf[4:8]).To4(), Port: int(binary.BigEndian.Uint16(buf[8:10]))}
						pc.WriteTo(buf[10:n], to)
						continue
					}
					if client == nil { // from a destination: wrap
						continue
					}
					hdr := []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0}
					copy(hdr[4:8], fa.IP.To4())
					binary.BigEndian.PutUint16(hdr[8:], uint16(fa.Port))
					pc.WriteTo(append(hdr, buf[:n]...), client)
				}
			}()
			io.Copy(io.Discard, c)
		default:
			reply(c, 7, nil)
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
}

// --forward socks5://: the same relaying through a SOCKS5 proxy in the
// server's namespace; the proxy's refusal reaches the client as
// ECONNREFUSED, and UDP goes by UDP ASSOCIATE.
func TestForwardSOCKS5(t *testing.T) {
	client, server := forwardNamespaces(t)
	socksServer(t, server, "10.97.0.2:1080")
	tcpEchoIn(t, server, farServer+":8082")
	udpEchoIn(t, server, farServer+":5353")
	startDaemon(t, client, "--forward", "socks5://10.97.0.2:1080")
	if out, err := client.Run("ip", "route", "add", "203.0.113.0/24", "dev", "tun0"); err != nil {
		t.Fatalf("ip route: %v %s", err, out)
	}

	c, err := dialKernel(client, farServer+":8082", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("through socks"))
	c.CloseWrite()
	got, err := io.ReadAll(c)
	c.Close()
	if string(got) != "through socks" {
		t.Errorf("echo through the proxy: %q (%v)", got, err)
	}
	if _, err := dialKernel(client, farServer+":9", 10*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a port the proxy cannot reach: %v, want ECONNREFUSED", err)
	}

	// The proxy's relay socket sends from 10.97.0.2.
	if got, want := udpRoundTrip(t, client, farServer+":5353", "dgram"), "echo from 10.97.0.2: dgram"; got != want {
		t.Errorf("UDP through the proxy: %q, want %q", got, want)
	}
}

// Pings through the relay are real: an address that answers does, one
// that does not stays silent; --forward-local-ping answers them all.
func TestForwardPing(t *testing.T) {
	ping := needTool(t, "ping")
	client, _, _ := forwardPair(t)
	if out, stderr, err := runIn(client, 15*time.Second, ping, "-c", "1", "-W", "3", farServer); err != nil {
		t.Errorf("ping %s (it exists): %v\n%s%s", farServer, err, out, stderr)
	}
	if out, _, err := runIn(client, 15*time.Second, ping, "-c", "1", "-W", "2", "203.0.113.99"); err == nil {
		t.Errorf("ping 203.0.113.99 (nobody has it) was answered:\n%s", out)
	}
}

func TestForwardLocalPing(t *testing.T) {
	ping := needTool(t, "ping")
	client, _, _ := forwardPair(t, "--forward-local-ping")
	if out, stderr, err := runIn(client, 15*time.Second, ping, "-c", "1", "-W", "3", "203.0.113.99"); err != nil {
		t.Errorf("ping 203.0.113.99 with --forward-local-ping: %v\n%s%s", err, out, stderr)
	}
}

// --engine gvisor --forward relays through gVisor's own forwarders (the
// bench's comparison): curl arrives at the original destination and a
// closed far port is refused.
func TestForwardGVisorEngine(t *testing.T) {
	client, server, _ := forwardPair(t, "--engine", "gvisor")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "at %s", r.Context().Value(http.LocalAddrContextKey).(net.Addr))
	})}
	go srv.Serve(listenIn(t, server, "tcp4", farServer+":8080"))
	defer srv.Close()
	curl := needTool(t, "curl")
	out, stderr, err := runIn(client, 20*time.Second, curl, "-sS", "--max-time", "10", "http://"+farServer+":8080/")
	if err != nil || out != "at "+farServer+":8080" {
		t.Errorf("curl through gVisor's forwarder: %q %v %s", out, err, stderr)
	}
	if _, err := dialKernel(client, farServer+":9", 10*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a closed far port through gVisor's forwarder: %v, want ECONNREFUSED", err)
	}
}
