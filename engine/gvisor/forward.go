package gvisor

import (
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"ustack/relay"
	"ustack/stack"
)

// gVisor's forwarders (tcp.NewForwarder, udp.NewForwarder) as a
// relay.Stack, so that `ustack run --engine gvisor --forward` relays
// through them and the bench can set the two stacks side by side. Where
// gVisor cannot do what ustack's forwarders do, the difference is kept
// small and said: RejectWith sends RST (its forwarder sends no ICMP), and
// flows are per destination (UDPConnected) with the idle timeout kept here.

var _ relay.Stack = (*Stack)(nil)

// udpIdle ends a forwarded flow idle this long, as ustack's default.
const udpIdle = 5 * time.Minute

// ForwardTCP installs gVisor's TCP forwarder (nil: none).
func (st *Stack) ForwardTCP(maxPending int, handler func(relay.TCPRequest)) {
	if handler == nil {
		st.s.SetTransportProtocolHandler(tcp.ProtocolNumber, nil)
		return
	}
	f := tcp.NewForwarder(st.s, 0, max(maxPending, 1), func(r *tcp.ForwarderRequest) { handler(&tcpRequest{r: r}) })
	st.s.SetTransportProtocolHandler(tcp.ProtocolNumber, f.HandlePacket)
}

// ForwardUDP installs gVisor's UDP forwarder (nil: none); maxFlows is not
// gVisor's to bound.
func (st *Stack) ForwardUDP(_ int, handler func(relay.UDPFlow)) {
	if handler == nil {
		st.s.SetTransportProtocolHandler(udp.ProtocolNumber, nil)
		return
	}
	f := udp.NewForwarder(st.s, func(r *udp.ForwarderRequest) bool {
		var wq waiter.Queue
		ep, err := r.CreateEndpoint(&wq)
		if err != nil {
			return false
		}
		id := r.ID()
		go handler(&udpFlow{
			c:      gonet.NewUDPConn(&wq, ep),
			client: netip.AddrPortFrom(toAddr(id.RemoteAddress), id.RemotePort),
			dst:    netip.AddrPortFrom(toAddr(id.LocalAddress), id.LocalPort),
		})
		return true
	})
	st.s.SetTransportProtocolHandler(udp.ProtocolNumber, f.HandlePacket)
}

// tcpRequest is a gVisor forwarder request as a relay.TCPRequest.
type tcpRequest struct{ r *tcp.ForwarderRequest }

func (q *tcpRequest) id() gstack.TransportEndpointID { return q.r.ID() }

func (q *tcpRequest) Src() netip.AddrPort {
	id := q.id()
	return netip.AddrPortFrom(toAddr(id.RemoteAddress), id.RemotePort)
}

func (q *tcpRequest) Dst() netip.AddrPort {
	id := q.id()
	return netip.AddrPortFrom(toAddr(id.LocalAddress), id.LocalPort)
}

func (q *tcpRequest) Accept() (net.Conn, error) {
	var wq waiter.Queue
	ep, err := q.r.CreateEndpoint(&wq)
	if err != nil {
		q.r.Complete(true)
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.ECONNRESET}
	}
	q.r.Complete(false)
	return gonet.NewTCPConn(&wq, ep), nil
}

func (q *tcpRequest) Reject() { q.r.Complete(true) }

// RejectWith sends RST: gVisor's forwarder has no ICMP answer.
func (q *tcpRequest) RejectWith(uint8) { q.r.Complete(true) }

// udpFlow is a gVisor forwarded UDP endpoint as a relay.UDPFlow.
type udpFlow struct {
	c           *gonet.UDPConn
	client, dst netip.AddrPort
}

func (f *udpFlow) Client() netip.AddrPort { return f.client }

// ReadFromUDPAddrPort reads the client's next datagram; a flow idle for
// udpIdle ends, as a NAT mapping would.
func (f *udpFlow) ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error) {
	f.c.SetReadDeadline(time.Now().Add(udpIdle))
	n, err := f.c.Read(p)
	if err != nil {
		if os.IsTimeout(err) {
			err = stack.ErrFlowExpired
		}
		return 0, netip.AddrPort{}, err
	}
	return n, f.dst, nil
}

// WriteToUDPAddrPort answers the client; only the flow's destination can.
func (f *udpFlow) WriteToUDPAddrPort(p []byte, from netip.AddrPort) (int, error) {
	if from != f.dst {
		return 0, &net.OpError{Op: "write", Net: "udp", Err: syscall.EINVAL}
	}
	return f.c.Write(p)
}

func (f *udpFlow) Close() error { return f.c.Close() }
