// Package gvisor serves TCP from gVisor's netstack over a ustack Link (a TUN
// device), for `ustack run --engine gvisor`: the daemon's services run
// unchanged on either engine, so the two differ only in TCP/IP. This is the
// only package outside tests and the drill that imports gVisor; package
// stack never does.
//
// The link endpoint is as thin as ustack's own plumbing: one goroutine reads
// packets from the Link and injects them into gVisor, and gVisor's writes go
// straight to the Link from whichever goroutine sends (no queue, no extra
// hand-off). Checksums are computed and verified in software, as ustack does.
package gvisor

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"ustack/stack"
	"ustack/stack/header"
)

// nicID is the only NIC.
const nicID = 1

// Options configure the engine.
type Options struct {
	// Addr is the stack's own IPv4 address (the NIC's, with a default route
	// through the NIC).
	Addr netip.Addr
	// Addr6 is its IPv6 address (the zero Addr: no IPv6), with a default
	// route too.
	Addr6 netip.Addr
	// Packet, when set, sees every packet in (out=false) and out (out=true),
	// like stack.Options.Packet (for --pcap). pkt is only valid during the
	// call.
	Packet func(out bool, pkt []byte)
	// FinTimeout, TimeWait and SynRetries, when set, map onto gVisor's
	// TCPLingerTimeoutOption, TCPTimeWaitTimeoutOption and
	// TCPSynRetriesOption (--fin-timeout, --time-wait, --syn-retries).
	FinTimeout time.Duration
	TimeWait   time.Duration
	SynRetries int
	// Promiscuous takes packets to any address and sends from any
	// (gVisor's promiscuous mode and spoofing), for the forwarders.
	Promiscuous bool
}

// Stack is a gVisor netstack on a Link, with the subset of *stack.Stack's
// API that the daemon's services use.
type Stack struct {
	s     *gstack.Stack
	ep    *linkEndpoint
	link  stack.Link
	addr  netip.Addr
	addr6 netip.Addr // zero: no IPv6

	mu     sync.Mutex
	bound  map[*boundEP]struct{} // UNCONN sockets: gVisor does not register them
	closed bool

	readDone chan struct{}
}

// New builds the gVisor stack (IPv4, ICMP, TCP with SACK) on link and starts
// reading packets from it.
func New(link stack.Link, opts Options) (*Stack, error) {
	if !opts.Addr.Is4() {
		return nil, fmt.Errorf("gvisor: address %v is not IPv4", opts.Addr)
	}
	s := gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	fail := func(format string, args ...any) (*Stack, error) {
		s.Close()
		s.Wait()
		return nil, fmt.Errorf("gvisor: "+format, args...)
	}
	// Linux's defaults that users of netstack usually turn on: SACK, and
	// receive buffer auto-tuning (tcp_moderate_rcvbuf).
	sack := tcpip.TCPSACKEnabled(true)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	tcpOpts := []tcpip.SettableTransportProtocolOption{&sack, &moderate}
	if opts.FinTimeout > 0 {
		o := tcpip.TCPLingerTimeoutOption(opts.FinTimeout)
		tcpOpts = append(tcpOpts, &o)
	}
	if opts.TimeWait > 0 {
		o := tcpip.TCPTimeWaitTimeoutOption(opts.TimeWait)
		tcpOpts = append(tcpOpts, &o)
	}
	if opts.SynRetries > 0 {
		o := tcpip.TCPSynRetriesOption(opts.SynRetries)
		tcpOpts = append(tcpOpts, &o)
	}
	for _, o := range tcpOpts {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			return fail("%T: %v", o, err)
		}
	}
	ep := &linkEndpoint{
		Endpoint: channel.New(1, uint32(link.MTU()), ""),
		link:     link,
		packet:   opts.Packet,
	}
	if g, ok := link.(stack.OffloadLink); ok && g.GSOMaxSize() > link.MTU() {
		// The same offload ustack gets, the way gVisor's fdbased endpoint
		// uses a virtio-net header: host GSO out, checksums left to the
		// kernel both ways.
		ep.gso = g
		ep.SupportedGSOKind = gstack.HostGSOSupported
		ep.LinkEPCapabilities |= gstack.CapabilityRXChecksumOffload
	}
	if err := s.CreateNIC(nicID, ep); err != nil {
		return fail("CreateNIC: %v", err)
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(opts.Addr.As4()).WithPrefix(),
	}
	if err := s.AddProtocolAddress(nicID, pa, gstack.AddressProperties{}); err != nil {
		return fail("AddProtocolAddress: %v", err)
	}
	any4, _ := tcpip.NewSubnet(tcpip.AddrFrom4([4]byte{}), tcpip.MaskFromBytes(make([]byte, 4)))
	routes := []tcpip.Route{{Destination: any4, NIC: nicID}}
	if opts.Addr6.IsValid() {
		// No duplicate address detection: ipv6.NewProtocol's zero DAD
		// configuration sends none, as on the TUN's kernel side.
		pa6 := tcpip.ProtocolAddress{
			Protocol:          ipv6.ProtocolNumber,
			AddressWithPrefix: tcpip.AddrFrom16(opts.Addr6.As16()).WithPrefix(),
		}
		if err := s.AddProtocolAddress(nicID, pa6, gstack.AddressProperties{}); err != nil {
			return fail("AddProtocolAddress (IPv6): %v", err)
		}
		any6, _ := tcpip.NewSubnet(tcpip.AddrFrom16([16]byte{}), tcpip.MaskFromBytes(make([]byte, 16)))
		routes = append(routes, tcpip.Route{Destination: any6, NIC: nicID})
	}
	s.SetRouteTable(routes)
	if opts.Promiscuous {
		if err := s.SetPromiscuousMode(nicID, true); err != nil {
			return fail("SetPromiscuousMode: %v", err)
		}
		if err := s.SetSpoofing(nicID, true); err != nil {
			return fail("SetSpoofing: %v", err)
		}
	}

	st := &Stack{s: s, ep: ep, link: link, addr: opts.Addr, addr6: opts.Addr6, bound: map[*boundEP]struct{}{}, readDone: make(chan struct{})}
	go st.readLoop()
	return st, nil
}

// Addr is the stack's address.
func (st *Stack) Addr() netip.Addr { return st.addr }

// readLoop injects every IPv4 packet read from the link until the link fails
// (closed).
func (st *Stack) readLoop() {
	defer close(st.readDone)
	buf := make([]byte, 65536)
	for {
		var n int
		var err error
		csumOK := false
		if st.ep.gso != nil {
			n, csumOK, err = st.ep.gso.ReadOffload(buf)
		} else {
			n, err = st.link.ReadPacket(buf)
		}
		if err != nil {
			if errors.Is(err, io.ErrShortBuffer) {
				continue
			}
			return
		}
		if n == 0 || buf[0]>>4 != 4 && (buf[0]>>4 != 6 || st.addr6 == (netip.Addr{})) {
			continue // neither IPv4 nor, when it has an address, IPv6
		}
		if st.ep.gso != nil && !csumOK && !transportChecksumOK(buf[:n]) {
			// gVisor checks no checksum on an RX-offload NIC; the link
			// vouched only for csumOK packets, so the rest are checked
			// here, and a bad one is dropped as gVisor would drop it.
			continue
		}
		if st.ep.packet != nil {
			st.ep.packet(false, buf[:n])
		}
		// MakeWithData copies into a pooled chunk, so buf is free again.
		pb := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(buf[:n])})
		proto := ipv4.ProtocolNumber
		if buf[0]>>4 == 6 {
			proto = ipv6.ProtocolNumber
		}
		st.ep.InjectInbound(proto, pb)
		pb.DecRef()
	}
}

// linkEndpoint is a channel.Endpoint (for Attach, InjectInbound and the
// rest of the LinkEndpoint boilerplate) whose writes go straight to the
// link instead of into the channel.
type linkEndpoint struct {
	*channel.Endpoint
	link   stack.Link
	gso    stack.OffloadLink // link, when it offloads; else nil
	packet func(out bool, pkt []byte)
}

// GSOMaxSize is the link's: channel.Endpoint says 32 KB.
func (e *linkEndpoint) GSOMaxSize() uint32 {
	if e.gso != nil {
		return uint32(e.gso.GSOMaxSize())
	}
	return e.Endpoint.GSOMaxSize()
}

// transportChecksumOK checks the TCP checksum of an IPv4 packet; other
// protocols, and packets too broken to tell, pass (gVisor checks them).
func transportChecksumOK(p []byte) bool {
	if len(p) > 0 && p[0]>>4 == 6 {
		ip := header.IPv6(p)
		if ip.Validate() != nil || ip.NextHeader() != header.ProtoTCP {
			return true
		}
		seg := ip.Payload()
		return header.ChecksumValidWith(seg, header.PseudoHeaderSum6(ip.Src(), ip.Dst(), header.ProtoTCP, len(seg)))
	}
	ip := header.IPv4(p)
	if ip.Validate() != nil || ip.Protocol() != header.ProtoTCP {
		return true
	}
	return header.TCPChecksumValid(ip.Src(), ip.Dst(), ip.Payload())
}

// writeBufs are scratch buffers for flattening a packet into one write.
var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 65536); return &b }}

// WritePackets writes each packet to the link with one WritePacket.
func (e *linkEndpoint) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	bp := writeBufs.Get().(*[]byte)
	defer writeBufs.Put(bp)
	n := 0
	for _, pkt := range pkts.AsSlice() {
		b := (*bp)[:0]
		for _, s := range pkt.AsSlices() {
			b = append(b, s...)
		}
		*bp = b
		if e.packet != nil {
			e.packet(true, b)
		}
		var err error
		if gso := pkt.GSOOptions; e.gso != nil && (gso.Type == gstack.GSOTCPv4 || gso.Type == gstack.GSOTCPv6) && gso.NeedsCsum {
			// A packet of up to GSOMaxSize with only the pseudo-header
			// sum in its checksum, whatever its length.
			err = e.gso.WriteGSO(b, int(gso.MSS))
		} else {
			err = e.link.WritePacket(b)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				if n == 0 {
					return 0, &tcpip.ErrClosedForSend{}
				}
				return n, nil
			}
			// A packet the kernel refused (device down) is a lost packet,
			// which TCP recovers from.
		}
		n++
	}
	return n, nil
}

// ListenTCP listens on addr with the given backlog and returns a
// gonet.TCPListener, whose Accept returns *gonet.TCPConn (with CloseWrite).
func (st *Stack) ListenTCP(addr netip.AddrPort, backlog int) (net.Listener, error) {
	var wq waiter.Queue
	ep, err := st.s.NewEndpoint(tcp.ProtocolNumber, netProto(addr), &wq)
	if err != nil {
		return nil, opError("listen", addr, err)
	}
	ep.SocketOptions().SetReuseAddress(true) // like Go's net.Listen
	if err := ep.Bind(fullAddr(addr)); err != nil {
		ep.Close()
		return nil, opError("listen", addr, err)
	}
	if err := ep.Listen(backlog); err != nil {
		ep.Close()
		return nil, opError("listen", addr, err)
	}
	return gonet.NewTCPListener(st.s, &wq, ep), nil
}

// ListenUDP binds a UDP endpoint on addr and returns it as a
// *gonet.UDPConn, for the udp-echo and dns services.
func (st *Stack) ListenUDP(addr netip.AddrPort) (net.PacketConn, error) {
	laddr := fullAddr(addr)
	c, err := gonet.DialUDP(st.s, &laddr, nil, netProto(addr))
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: "udp", Addr: net.UDPAddrFromAddrPort(addr), Err: err}
	}
	return c, nil
}

// boundEP is a TCP endpoint after bind() and before listen(): SYNs to it
// find no listener and get RST.
type boundEP struct {
	st   *Stack
	ep   tcpip.Endpoint
	addr netip.AddrPort
	once sync.Once
}

func (b *boundEP) Close() error {
	b.once.Do(func() {
		b.st.mu.Lock()
		delete(b.st.bound, b)
		b.st.mu.Unlock()
		b.ep.Close()
	})
	return nil
}

// Bind reserves addr without listening.
func (st *Stack) Bind(addr netip.AddrPort) (io.Closer, error) {
	var wq waiter.Queue
	ep, err := st.s.NewEndpoint(tcp.ProtocolNumber, netProto(addr), &wq)
	if err != nil {
		return nil, opError("bind", addr, err)
	}
	if err := ep.Bind(fullAddr(addr)); err != nil {
		ep.Close()
		return nil, opError("bind", addr, err)
	}
	b := &boundEP{st: st, ep: ep, addr: addr}
	st.mu.Lock()
	st.bound[b] = struct{}{}
	st.mu.Unlock()
	return b, nil
}

// ssState maps gVisor's TCP states to ss's names ("" for an endpoint that
// is not a socket ss would show).
func ssState(s tcp.EndpointState) string {
	switch s {
	case tcp.StateEstablished:
		return "ESTAB"
	case tcp.StateSynSent, tcp.StateConnecting:
		return "SYN-SENT"
	case tcp.StateSynRecv:
		return "SYN-RECV"
	case tcp.StateFinWait1:
		return "FIN-WAIT-1"
	case tcp.StateFinWait2:
		return "FIN-WAIT-2"
	case tcp.StateTimeWait:
		return "TIME-WAIT"
	case tcp.StateCloseWait:
		return "CLOSE-WAIT"
	case tcp.StateLastAck:
		return "LAST-ACK"
	case tcp.StateListen:
		return "LISTEN"
	case tcp.StateClosing:
		return "CLOSING"
	case tcp.StateInitial, tcp.StateBound:
		return "UNCONN"
	}
	return ""
}

// Sockets lists the TCP endpoints gVisor has registered (listeners,
// connections in every state from SYN-RECV to TIME-WAIT) and the bound-only
// ones this engine made. gVisor exposes no timers and no accept queue
// length, so Timer is empty and a listener's queues are 0.
func (st *Stack) Sockets() []stack.SocketInfo {
	var out []stack.SocketInfo
	for _, te := range st.s.RegisteredEndpoints() {
		ep, ok := te.(*tcp.Endpoint)
		if !ok {
			continue
		}
		state := ssState(tcp.EndpointState(ep.State()))
		if state == "" {
			continue
		}
		info, ok := ep.Info().(*gstack.TransportEndpointInfo)
		if !ok {
			continue
		}
		si := stack.SocketInfo{
			State: state,
			Local: netip.AddrPortFrom(toAddr(info.ID.LocalAddress), info.ID.LocalPort),
			Peer:  netip.AddrPortFrom(toAddr(info.ID.RemoteAddress), info.ID.RemotePort),
		}
		if state != "LISTEN" {
			if n, err := ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption); err == nil {
				si.RecvQ = n
			}
			if n, err := ep.GetSockOptInt(tcpip.SendQueueSizeOption); err == nil {
				si.SendQ = n
			}
		}
		out = append(out, si)
	}
	st.mu.Lock()
	for b := range st.bound {
		out = append(out, stack.SocketInfo{State: "UNCONN", Local: b.addr, Peer: netip.AddrPortFrom(netip.IPv4Unspecified(), 0)})
	}
	st.mu.Unlock()
	slices.SortFunc(out, func(a, b stack.SocketInfo) int {
		if c := a.Local.Compare(b.Local); c != 0 {
			return c
		}
		return a.Peer.Compare(b.Peer)
	})
	return out
}

func toAddr(a tcpip.Address) netip.Addr {
	switch a.Len() {
	case 4:
		return netip.AddrFrom4(a.As4())
	case 16:
		return netip.AddrFrom16(a.As16()).Unmap()
	}
	return netip.IPv4Unspecified()
}

// netProto is the network protocol of an endpoint bound to ap.
func netProto(ap netip.AddrPort) tcpip.NetworkProtocolNumber {
	if a := ap.Addr(); a.Is6() && !a.Is4In6() {
		return ipv6.ProtocolNumber
	}
	return ipv4.ProtocolNumber
}

// Counters is a named subset of gVisor's tcpip.Stats, named like ustack's
// counters where the two count the same thing.
func (st *Stack) Counters() []stack.Counter {
	s := st.s.Stats()
	c := func(name string, v *tcpip.StatCounter) stack.Counter {
		return stack.Counter{Name: name, Value: v.Value()}
	}
	return []stack.Counter{
		c("ip.in", s.IP.PacketsReceived),
		c("ip.out", s.IP.PacketsSent),
		c("ip.delivered", s.IP.PacketsDelivered),
		c("ip.drop.malformed", s.IP.MalformedPacketsReceived),
		c("ip.drop.not_for_us", s.IP.InvalidDestinationAddressesReceived),
		c("ip.out_errors", s.IP.OutgoingPacketErrors),
		c("dropped", s.DroppedPackets),
		c("icmp.echo_requests", s.ICMP.V4.PacketsReceived.EchoRequest),
		c("icmp.echo_replies", s.ICMP.V4.PacketsSent.EchoReply),
		c("icmp.drop.malformed", s.ICMP.V4.PacketsReceived.Invalid),
		c("tcp.in", s.TCP.ValidSegmentsReceived),
		c("tcp.out", s.TCP.SegmentsSent),
		c("tcp.drop.invalid", s.TCP.InvalidSegmentsReceived),
		c("tcp.drop.checksum", s.TCP.ChecksumErrors),
		c("tcp.send_errors", s.TCP.SegmentSendErrors),
		c("tcp.resets_sent", s.TCP.ResetsSent),
		c("tcp.resets_received", s.TCP.ResetsReceived),
		c("tcp.active_opens", s.TCP.ActiveConnectionOpenings),
		c("tcp.passive_opens", s.TCP.PassiveConnectionOpenings),
		c("tcp.current_established", s.TCP.CurrentEstablished),
		c("tcp.attempt_fails", s.TCP.FailedConnectionAttempts),
		c("tcp.estab_resets", s.TCP.EstablishedResets),
		c("tcp.retrans_segs", s.TCP.Retransmits),
		c("tcp.fast_retrans", s.TCP.FastRetransmit),
		c("tcp.fast_recovery", s.TCP.FastRecovery),
		c("tcp.sack_recovery", s.TCP.SACKRecovery),
		c("tcp.rto_timeouts", s.TCP.Timeouts),
		c("tcp.listen_overflow_syn_drops", s.TCP.ListenOverflowSynDrop),
		c("tcp.listen_overflow_ack_drops", s.TCP.ListenOverflowAckDrop),
		c("tcp.syn_cookies_sent", s.TCP.ListenOverflowSynCookieSent),
	}
}

// Close aborts every connection (gVisor sends RST for established ones),
// closes the link and waits for gVisor's goroutines.
func (st *Stack) Close() error {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil
	}
	st.closed = true
	bound := make([]*boundEP, 0, len(st.bound))
	for b := range st.bound {
		bound = append(bound, b)
	}
	st.mu.Unlock()
	for _, b := range bound {
		b.Close()
	}
	st.s.Close()
	err := st.link.Close()
	<-st.readDone
	st.s.Wait()
	return err
}

func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	fa := tcpip.FullAddress{Port: ap.Port()}
	if a := ap.Addr(); a.IsValid() && !a.IsUnspecified() {
		if a.Is4() || a.Is4In6() {
			fa.Addr = tcpip.AddrFrom4(a.Unmap().As4())
		} else {
			fa.Addr = tcpip.AddrFrom16(a.As16())
		}
	}
	return fa
}

// opError wraps a gVisor error like the net package's, with the errno for
// the errors a bind or listen can meet, so errors.Is(err, syscall.EADDRINUSE)
// holds as with *stack.Stack.
func opError(op string, addr netip.AddrPort, err tcpip.Error) error {
	var e error
	switch err.(type) {
	case *tcpip.ErrPortInUse:
		e = syscall.EADDRINUSE
	case *tcpip.ErrBadLocalAddress:
		e = syscall.EADDRNOTAVAIL
	case *tcpip.ErrInvalidEndpointState:
		e = syscall.EINVAL
	default:
		e = errors.New(err.String())
	}
	return &net.OpError{Op: op, Net: "tcp", Addr: net.TCPAddrFromAddrPort(addr), Err: e}
}
