package integration

import (
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/nettest"

	"ustack/stack"
	"ustack/tun"
)

// TestNetConnAgainstKernel runs golang.org/x/net/nettest's net.Conn suite
// on a ustack connection whose other end is a kernel socket: the stack runs
// in this process on a TUN device in a namespace of the test's own.
func TestNetConnAgainstKernel(t *testing.T) {
	ns := newNS(t)
	var dev *tun.Device
	err := ns.Do(func() (err error) {
		dev, err = tun.Open(tun.Config{Name: "tun0", Addr: netip.MustParsePrefix(kernelIP + "/24"), MTU: 1500})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := stack.New(dev, stack.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Close() })
	ln := kernelListen(t, ns, kernelIP+":0")

	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		acc := make(chan net.Conn, 1)
		go func() {
			c, _ := ln.Accept()
			acc <- c
		}()
		c1, err = s.Dial("tcp", ln.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		c2 = <-acc
		if c2 == nil {
			c1.Close()
			return nil, nil, nil, net.ErrClosed
		}
		return c1, c2, func() { c1.Close(); c2.Close() }, nil
	})
}
