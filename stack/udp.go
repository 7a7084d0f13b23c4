package stack

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"time"

	"ustack/hashtable"
	"ustack/stack/header"
)

// UDP (RFC 768, RFC 8085) as Linux's udp.c: datagrams demultiplexed by
// port (a connected socket's exact match first, then a specific address,
// then the wildcard), each socket's receive queue bounded by SO_RCVBUF in
// bytes (what does not fit is dropped and counted), a datagram to a port
// with no socket answered with ICMP port unreachable under Linux's rate
// limit (B70), the checksum optional on IPv4 and required on IPv6 (B71),
// and ICMP errors reported to a connected socket on its next call.

// udpHeaderLen is the size of the UDP header.
const udpHeaderLen = 8

// udpRcvBuf is a UDP socket's receive buffer when SO_RCVBUF is not set
// (Linux's net.core.rmem_default, 208 KiB).
const udpRcvBuf = 212992

// maxUDPQueued bounds the datagrams a socket holds, whatever their size
// (each costs a slot beside its bytes).
const maxUDPQueued = 4096

// udpSock is one UDP socket's state (Linux's struct udp_sock).
type udpSock struct {
	local     hashtable.Addr // bound address (a wildcard, or ours)
	port      uint16
	connected bool
	remote    netip.AddrPort // the peer of a connected socket
	queue     dgramQueue
	limit     int               // SO_RCVBUF: bytes the queue may hold
	softErr   syscall.Errno     // an ICMP error for a connected socket (or any with IP_RECVERR), reported once
	recvErr   bool              // IP_RECVERR: errors queued, and reported unconnected too
	errQueue  []SockExtendedErr // IP_RECVERR's queue, oldest first, at most maxErrQueue
	rdWait    cond
	v6        bool // a ping socket's family
}

// udpProtocol is UDP as a transport under IP.
type udpProtocol struct{ s *Stack }

// deliver takes a UDP datagram from src to dst (RFC 768).
func (p udpProtocol) deliver(now time.Time, src, dst hashtable.Addr, b []byte, csumOK bool) {
	s := p.s
	s.inc(cntUDPIn)
	if len(b) < udpHeaderLen {
		s.inc(cntUDPMalformed)
		return
	}
	n := int(binary.BigEndian.Uint16(b[4:6]))
	if n < udpHeaderLen || n > len(b) {
		s.inc(cntUDPMalformed) // the length field against the packet
		return
	}
	b = b[:n]
	switch csum := binary.BigEndian.Uint16(b[6:8]); {
	case csum == 0 && !src.Is4():
		s.inc(cntUDPNoChecksum) // RFC 8200 8.1: mandatory over IPv6
		return
	case csum == 0 || csumOK:
	case !header.ChecksumValidWith(b, pseudoSum(src, dst, header.ProtoUDP, n)):
		s.inc(cntUDPChecksum)
		return
	}
	sport, dport := binary.BigEndian.Uint16(b[0:2]), binary.BigEndian.Uint16(b[2:4])
	from := netip.AddrPortFrom(src.Netip(), sport)
	var u *udpSock
	if s.isLocal(dst) { // sockets are bound to our addresses only
		u = s.udpLookup(dst, dport, from)
	}
	if u == nil && s.forwardUDP(now, src, sport, dst, dport, b[udpHeaderLen:]) {
		return
	}
	if u == nil {
		s.inc(cntUDPNoPort)
		s.portUnreachable(now, src, dst, b)
		return
	}
	payload := b[udpHeaderLen:]
	if !u.queue.fits(len(payload), u.limit) {
		s.inc(cntUDPRcvBufErrors) // Linux UDP_MIB_RCVBUFERRORS
		return
	}
	u.queue.push(from, dst, payload)
	u.rdWait.notify()
}

// deliverError reports an ICMP error about a datagram we sent from src to
// dst to the socket that sent it (Linux's __udp4_lib_err): a socket
// connected to dst takes it as its pending error; one with IP_RECVERR,
// connected or not, also queues it for RecvErr. Other sockets see none.
func (p udpProtocol) deliverError(now time.Time, src, dst hashtable.Addr, quoted []byte, ne netError) {
	s := p.s
	sport, dport := binary.BigEndian.Uint16(quoted[0:2]), binary.BigEndian.Uint16(quoted[2:4])
	to := netip.AddrPortFrom(dst.Netip(), dport)
	u := s.udpSender(src, sport, to)
	switch {
	case u == nil || ne.errno == 0:
		s.inc(cntICMPIgnored)
	case u.recvErr:
		u.queueError(ne, to)
		u.softErr = ne.errno
		u.rdWait.notify()
	case u.connected && !ne.fragNeeded:
		u.softErr = ne.errno
		u.rdWait.notify()
	default:
		s.inc(cntICMPIgnored)
	}
}

// udpSender is the socket that sent a datagram from src:port to to: bound
// to port on src (or a wildcard), and connected to to if connected at all.
func (s *Stack) udpSender(src hashtable.Addr, port uint16, to netip.AddrPort) *udpSock {
	for _, u := range s.udp[port] {
		if (u.local.IsUnspecified() || u.local == src) && (!u.connected || u.remote == to) {
			return u
		}
	}
	return nil
}

// maxErrQueue bounds IP_RECVERR's queue; Linux bounds it by SO_RCVBUF
// (sock_queue_err_skb), and a newer error past it is dropped as there.
const maxErrQueue = 64

// SockExtendedErr is one entry of a socket's error queue (IP_RECVERR,
// IPV6_RECVERR): Linux's struct sock_extended_err with the two addresses
// recvmsg(MSG_ERRQUEUE) gives beside it.
type SockExtendedErr struct {
	Errno      syscall.Errno
	Origin     uint8 // SO_EE_ORIGIN_ICMP (2) or SO_EE_ORIGIN_ICMP6 (3)
	Type, Code uint8
	Info       uint32         // the next-hop MTU of a "fragmentation needed" or Packet Too Big, else 0
	Offender   netip.Addr     // SO_EE_OFFENDER: who sent the ICMP error
	Dest       netip.AddrPort // msg_name: where the failed datagram was going
}

// Linux's ee_origin values (linux/errqueue.h).
const (
	SOEEOriginICMP  = 2
	SOEEOriginICMP6 = 3
)

func (u *udpSock) queueError(ne netError, to netip.AddrPort) {
	if len(u.errQueue) >= maxErrQueue {
		return
	}
	e := SockExtendedErr{Errno: ne.errno, Origin: SOEEOriginICMP, Type: ne.typ, Code: ne.code, Offender: ne.offender.Netip(), Dest: to}
	if ne.icmp6 {
		e.Origin = SOEEOriginICMP6
	}
	if ne.fragNeeded {
		e.Info = uint32(ne.mtu)
	}
	u.errQueue = append(u.errQueue, e)
}

// RecvErr is recvmsg(MSG_ERRQUEUE): the oldest queued error, or EAGAIN.
// The pending error becomes the next queued one's, or none, as
// sock_dequeue_err_skb leaves sk_err.
func (so *Socket) RecvErr() (SockExtendedErr, error) {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if so.closed {
		return SockExtendedErr{}, syscall.EBADF
	}
	if !so.isUDP || len(so.u.errQueue) == 0 {
		return SockExtendedErr{}, syscall.EAGAIN
	}
	u := so.u
	e := u.errQueue[0]
	u.errQueue = u.errQueue[1:]
	u.softErr = 0
	if len(u.errQueue) > 0 {
		u.softErr = u.errQueue[0].Errno
	}
	return e, nil
}

// udpLookup finds the socket for a datagram to dst:port from from, as
// Linux's __udp4_lib_lookup scores them: connected to from, then bound to
// dst, then to dst's wildcard (or :: for both families).
func (s *Stack) udpLookup(dst hashtable.Addr, port uint16, from netip.AddrPort) *udpSock {
	var best *udpSock
	score := -1
	for _, u := range s.udp[port] {
		sc := 0
		switch {
		case u.local == dst:
			sc = 2
		case u.local == hashtable.Any6 || u.local == hashtable.Any4 && dst.Is4():
			sc = 1
		default:
			continue
		}
		if u.connected {
			if u.remote != from {
				continue
			}
			sc += 4
		}
		if sc > score {
			best, score = u, sc
		}
	}
	return best
}

// portUnreachable answers a datagram nobody takes (B70): ICMP (or ICMPv6)
// destination unreachable, port unreachable, quoting it, under the global
// ICMP rate limit; never for a datagram to or from a multicast or
// broadcast address.
func (s *Stack) portUnreachable(now time.Time, src, dst hashtable.Addr, udp []byte) {
	if src.IsUnspecified() || !s.icmpAllow(now) {
		return
	}
	code := uint8(icmpPortUnreach)
	if !src.Is4() {
		code = 4 // RFC 4443 3.1
	}
	s.inc(cntUDPPortUnreachSent)
	s.destUnreachable(src, dst, header.ProtoUDP, code, udp)
}

// destUnreachable sends src, from our address, ICMP (or ICMPv6)
// destination unreachable with code, about its packet to dst whose
// transport header and data start with segment: the quote is rebuilt
// from them (RFC 792: the IP header and at least 8 bytes; RFC 4443 3.1:
// as much as fits in 1280 bytes).
func (s *Stack) destUnreachable(src, dst hashtable.Addr, proto, code uint8, segment []byte) {
	if !src.Is4() {
		quote := min(len(segment), header.IPv6MinMTU-2*header.IPv6HeaderSize-header.ICMPv6MinSize)
		n := header.IPv6HeaderSize + header.ICMPv6MinSize + header.IPv6HeaderSize + quote
		pkt := s.txBuf[:n]
		msg := pkt[header.IPv6HeaderSize:]
		clear(msg[:header.ICMPv6MinSize])
		msg[0], msg[1] = header.ICMPv6DestUnreach, code
		header.EncodeIPv6(msg[header.ICMPv6MinSize:], header.IPv6Fields{PayloadLen: len(segment), NextHeader: proto, HopLimit: 64, Src: src, Dst: dst})
		copy(msg[header.ICMPv6MinSize+header.IPv6HeaderSize:], segment[:quote])
		header.SetICMPv6Checksum(msg, s.addr6, src)
		s.ip6Output(pkt, s.addr6, src, header.ProtoICMPv6, 0)
		return
	}
	orig := make([]byte, header.IPv4MinSize+min(len(segment), 8))
	header.EncodeIPv4(orig, header.IPv4Fields{TotalLen: header.IPv4MinSize + len(segment), TTL: 64, Protocol: proto, Src: src.As4(), Dst: dst.As4()})
	copy(orig[header.IPv4MinSize:], segment)
	pkt := s.txBuf[:header.IPv4MinSize+header.ICMPv4MinSize+len(orig)]
	n := header.PutICMPError(pkt[header.IPv4MinSize:], header.ICMPDestUnreach, code, 0, orig)
	s.ipOutput(pkt[:header.IPv4MinSize+n], s.addr, src, header.ProtoICMP, 0)
}

// udpSend sends payload from u to to (B71: with its checksum, on both IP
// versions). A datagram larger than the link's MTU is fragmented on IPv4
// unless pmtuDisc forbids it (Linux ip_append_data, ip_fragment), and is
// EMSGSIZE on IPv6 and otherwise (IP_PMTUDISC_DO); one for our own address is not
// cut, as loopback's MTU is 64 KiB.
func (s *Stack) udpSend(local hashtable.Addr, port uint16, to netip.AddrPort, payload []byte, pmtuDisc int) error {
	dst := hashtable.AddrFrom(to.Addr())
	if to.Addr().IsUnspecified() {
		dst = s.ourAddr(dst) // as connect() of INADDR_ANY: ourselves
	}
	if !dst.Is4() && !s.has6 || dst.Is4() && !s.has4 {
		return syscall.ENETUNREACH
	}
	src := local
	if src.IsUnspecified() {
		src = s.ourAddr(dst)
	}
	hl := netHdrLen(dst)
	n := udpHeaderLen + len(payload)
	if hl+n > maxIPPacket {
		return syscall.EMSGSIZE
	}
	ours := s.isLocal(dst)
	fragment := dst.Is4() && !ours && (pmtuDisc == PMTUDiscDont || hl+n > s.mtu)
	if hl+n > s.mtu && !ours && (!dst.Is4() || !pmtuDiscFragments(pmtuDisc)) {
		return syscall.EMSGSIZE
	}
	pkt := s.txBuf[:hl+n]
	udp := pkt[hl:]
	binary.BigEndian.PutUint16(udp[0:2], port)
	binary.BigEndian.PutUint16(udp[2:4], to.Port())
	binary.BigEndian.PutUint16(udp[4:6], uint16(n))
	copy(udp[udpHeaderLen:], payload)
	header.SetChecksumAt(udp, 6, pseudoSum(src, dst, header.ProtoUDP, n))
	if binary.BigEndian.Uint16(udp[6:8]) == 0 {
		udp[6], udp[7] = 0xff, 0xff // RFC 768: a sum of 0 is sent as all ones
	}
	s.inc(cntUDPOut)
	if fragment {
		s.ipFragment(pkt, src, dst, header.ProtoUDP)
		return nil
	}
	s.netOutput(pkt, src, dst, header.ProtoUDP, 0)
	return nil
}

// udpRecv takes the oldest datagram into p (the rest of a longer one is
// lost, as for recvfrom(2) without MSG_TRUNC), or EAGAIN.
func (u *udpSock) recv(p []byte, peek bool) (int, netip.AddrPort, error) {
	if err := u.softErr; err != 0 {
		u.softErr = 0
		return 0, netip.AddrPort{}, err
	}
	if u.queue.len() == 0 {
		return 0, netip.AddrPort{}, syscall.EAGAIN
	}
	d := u.queue.front()
	n, from := copy(p, d.data), d.from
	if !peek {
		u.queue.pop()
	}
	return n, from, nil
}

// NewUDPSocket returns an unbound UDP socket (socket(AF_INET6, SOCK_DGRAM,
// 0) with IPV6_V6ONLY off: it speaks both families).
func (s *Stack) NewUDPSocket() *Socket {
	return &Socket{s: s, isUDP: true, u: &udpSock{limit: udpRcvBuf}, opts: linuxSockOpts}
}

// udpAutobind gives an unbound UDP socket an ephemeral port, as the first
// sendto or connect does (inet_autobind).
func (so *Socket) udpAutobind() error {
	if so.owner != 0 {
		return nil
	}
	return so.claimPort(so.addr, 0)
}

// udpConnect is connect(2) on a UDP socket: the peer it sends to by default
// and the only one it hears from; the unspecified address dissolves the
// association (AF_UNSPEC's meaning).
func (so *Socket) udpConnect(addr netip.AddrPort) error {
	u := so.u
	if !addr.IsValid() {
		u.connected, u.remote = false, netip.AddrPort{}
		return nil
	}
	if addr.Port() == 0 && !so.isPing { // a ping socket's peer has no port
		return syscall.EINVAL
	}
	if err := so.udpAutobind(); err != nil {
		return err
	}
	a := addr.Addr().Unmap()
	if a.Is4() && !so.s.has4 || !a.Is4() && !so.s.has6 {
		return syscall.ENETUNREACH // ip4_datagram_connect: no route
	}
	if a.IsUnspecified() {
		a = so.s.ourAddr(hashtable.AddrFrom(a)).Netip()
	}
	u.connected, u.remote, u.softErr = true, netip.AddrPortFrom(a, addr.Port()), 0
	return nil
}

// SendTo is sendto(2): one datagram to to, or with the zero AddrPort to
// the connected peer (EDESTADDRREQ if there is none).
func (so *Socket) SendTo(p []byte, to netip.AddrPort) (int, error) {
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return so.sendToLocked(p, to)
}

func (so *Socket) sendToLocked(p []byte, to netip.AddrPort) (int, error) {
	if err := so.usable(); err != 0 {
		return 0, err
	}
	if !so.isUDP {
		return 0, syscall.EOPNOTSUPP
	}
	u := so.u
	if err := u.softErr; err != 0 && (u.connected || u.recvErr) {
		u.softErr = 0
		return 0, err // the ICMP error, on the next call (B70)
	}
	if !to.IsValid() {
		if !u.connected {
			return 0, syscall.EDESTADDRREQ
		}
		to = u.remote
	}
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	if to.Port() == 0 && !so.isPing {
		return 0, syscall.EINVAL
	}
	if err := so.udpAutobind(); err != nil {
		return 0, err
	}
	var err error
	if so.isPing {
		err = so.s.pingSend(so, to, p)
	} else {
		err = so.s.udpSend(u.local, u.port, to, p, so.opts.pmtuDisc)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// RecvFrom is recvfrom(2): the oldest datagram and its sender, or EAGAIN;
// a pending ICMP error of a connected socket first.
func (so *Socket) RecvFrom(p []byte, flags int) (int, netip.AddrPort, error) {
	if flags&^syscall.MSG_PEEK != 0 {
		return 0, netip.AddrPort{}, syscall.EOPNOTSUPP
	}
	s := so.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return so.recvFromLocked(p, flags&syscall.MSG_PEEK != 0)
}

func (so *Socket) recvFromLocked(p []byte, peek bool) (int, netip.AddrPort, error) {
	switch {
	case so.closed:
		return 0, netip.AddrPort{}, syscall.EBADF
	case !so.isUDP:
		return 0, netip.AddrPort{}, syscall.EOPNOTSUPP
	}
	return so.u.recv(p, peek)
}

// udpClose releases the port and drops what was queued.
func (so *Socket) udpClose() {
	s, u := so.s, so.u
	if so.owner != 0 {
		so.ports().Unbind(so.owner, so.port)
		table := s.udp
		if so.isPing {
			table = s.pings
		}
		list := table[so.port]
		for i, x := range list {
			if x == u {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(table, so.port)
		} else {
			table[so.port] = list
		}
	}
	u.queue.reset()
	u.rdWait.notify()
}

// icmpPortUnreach is destination unreachable's "port unreachable" code.
const icmpPortUnreach = 3
