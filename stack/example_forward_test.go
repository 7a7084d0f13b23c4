package stack_test

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"syscall"

	"ustack/internal/linkpair"
	"ustack/stack"
)

// clientAndProxy are two stacks on one wire: a client at 10.0.0.1 whose
// every packet goes to the proxy, and a promiscuous proxy at 10.0.0.2 that
// takes packets to any address, as a tun2socks-style proxy does.
func clientAndProxy() (client, proxy *stack.Stack) {
	cl, pl := stack.NewBatchLink(1500), stack.NewBatchLink(1500)
	co := stack.DefaultOptions()
	co.Addr = netip.MustParseAddr("10.0.0.1")
	client, _ = stack.New(cl, co)
	po := stack.DefaultOptions()
	po.Promiscuous = true
	proxy, _ = stack.New(pl, po)
	client.Start()
	proxy.Start()
	linkpair.Join(cl, pl)
	return client, proxy
}

// A TCP forwarder decides about each connection before anything is
// answered: here port 80 of any address is accepted, as that address, and
// everything else refused.
func ExampleStack_SetTCPForwarder() {
	client, proxy := clientAndProxy()
	defer client.Close()
	defer proxy.Close()
	proxy.SetTCPForwarder(64, func(r *stack.TCPRequest) {
		if r.Dst().Port() != 80 {
			r.Reject() // the client sees ECONNREFUSED
			return
		}
		c, err := r.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "you reached %v\n", c.LocalAddr())
		c.Close()
	})

	c, err := client.Dial("tcp", "93.184.216.34:80")
	if err != nil {
		panic(err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	fmt.Print(string(b))
	_, err = client.Dial("tcp", "93.184.216.34:22")
	fmt.Println(errors.Is(err, syscall.ECONNREFUSED))
	// Output:
	// you reached 93.184.216.34:80
	// true
}

// A UDP forwarder gets each new flow as a packet conn; in
// endpoint-independent mode one flow carries a client port's datagrams to
// every destination, and answers come from whichever address is named.
func ExampleStack_SetUDPForwarder() {
	client, proxy := clientAndProxy()
	defer client.Close()
	defer proxy.Close()
	proxy.SetUDPForwarder(stack.UDPEndpointIndependent, 1024, func(f *stack.UDPFlow) {
		defer f.Close()
		buf := make([]byte, 1500)
		for {
			n, dst, err := f.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			f.WriteToUDPAddrPort([]byte(fmt.Sprintf("%s says %s", dst, buf[:n])), dst)
		}
	})

	c, _ := client.ListenUDP(netip.AddrPort{})
	defer c.Close()
	buf := make([]byte, 1500)
	for _, to := range []string{"198.51.100.1:53", "203.0.113.7:123"} {
		c.WriteToUDPAddrPort([]byte("hi"), netip.MustParseAddrPort(to))
		n, from, _ := c.ReadFromUDPAddrPort(buf)
		fmt.Printf("from %v: %s\n", from, buf[:n])
	}
	// Output:
	// from 198.51.100.1:53: 198.51.100.1:53 says hi
	// from 203.0.113.7:123: 203.0.113.7:123 says hi
}
