package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
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

// forwardPair makes the two namespaces, the veth between them and the
// server's address, and starts the relaying daemon with extra flags.
func forwardPair(t *testing.T, extra ...string) (client, server *netns.NS, d *daemon) {
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
	echo := listenIn(t, server, "tcp4", farServer+":8082")
	go func() {
		c, err := echo.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
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
	var pc net.PacketConn
	if err := server.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", farServer+":5353")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
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
	var c net.Conn
	if err := client.Do(func() error {
		var err error
		c, err = net.Dial("udp4", farServer+":5353")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2000)
	var n int
	var err error
	for try := 0; try < 3; try++ {
		c.Write([]byte("hello"))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err = c.Read(buf); err == nil {
			break
		}
	}
	if want := "echo from 10.97.0.1: hello"; string(buf[:n]) != want {
		t.Fatalf("reply %q (%v), want %q", buf[:n], err, want)
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
