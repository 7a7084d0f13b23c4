package relay_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"

	"ustack/internal/linkpair"
	"ustack/relay"
	"ustack/stack"
)

// pretendInternet is an Upstream in memory: port 80 of every address
// answers with a line, everything else refuses. relay.Direct and
// relay.SOCKS5 are the real ones.
type pretendInternet struct{}

func (pretendInternet) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	if dst.Port() != 80 {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	near, far := net.Pipe()
	go func() {
		fmt.Fprintf(far, "the real %v\n", dst)
		far.Close()
	}()
	return near, nil
}

func (pretendInternet) ListenUDP(context.Context, bool) (net.PacketConn, error) {
	return nil, errors.New("no UDP in this example")
}

// The relay carries a promiscuous stack's connections to their real
// destinations (here an Upstream in memory; `ustack run --forward direct`
// uses the host's sockets), and a refusal there reaches the client.
func Example() {
	cl, pl := stack.NewBatchLink(1500), stack.NewBatchLink(1500)
	co := stack.DefaultOptions()
	co.Addr = netip.MustParseAddr("10.0.0.1")
	client, _ := stack.New(cl, co)
	po := stack.DefaultOptions()
	po.Promiscuous = true
	proxy, _ := stack.New(pl, po)
	client.Start()
	proxy.Start()
	linkpair.Join(cl, pl)
	defer client.Close()
	defer proxy.Close()

	r := relay.Start(relay.Ustack(proxy), pretendInternet{}, relay.DefaultOptions())
	defer r.Close()

	c, err := client.Dial("tcp", "192.0.2.44:80")
	if err != nil {
		panic(err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	fmt.Print(string(b))
	_, err = client.Dial("tcp", "192.0.2.44:443")
	fmt.Println(errors.Is(err, syscall.ECONNREFUSED))
	// Output:
	// the real 192.0.2.44:80
	// true
}
