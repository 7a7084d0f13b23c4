package stack

import (
	"net"
	"testing"

	"golang.org/x/net/nettest"
)

// golang.org/x/net/nettest's conformance suite for net.Conn, on two
// ustack sockets connected through the stack's loopback path.
func TestNetConnConformance(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		s, l, err := listenRealStack(":0")
		if err != nil {
			return nil, nil, nil, err
		}
		acc := make(chan net.Conn, 1)
		go func() {
			c, _ := l.Accept()
			acc <- c
		}()
		c1, err = s.Dial("tcp", l.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		c2 = <-acc
		l.Close()
		return c1, c2, func() { c1.Close(); c2.Close(); s.Close() }, nil
	})
}
