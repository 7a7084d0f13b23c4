package stack

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"time"

	"ustack/hashtable"
	"ustack/stack/header"
)

// TCP's constants, states and inbound segment, and its entry from IP: the
// demultiplexer that finds a segment's connection or listener, or answers for
// no socket (B01-B05); ISNs (B42) and timestamps.

// tcpState is a connection state of RFC 9293 section 3.3.2.
type tcpState uint8

const (
	stateClosed tcpState = iota
	stateListen
	stateSynSent
	stateSynRecv
	stateEstablished
	stateFinWait1
	stateFinWait2
	stateCloseWait
	stateClosing
	stateLastAck
	stateTimeWait
)

// ssNames are the state names ss(8) prints.
var ssNames = [...]string{
	stateClosed:      "CLOSE",
	stateListen:      "LISTEN",
	stateSynSent:     "SYN-SENT",
	stateSynRecv:     "SYN-RECV",
	stateEstablished: "ESTAB",
	stateFinWait1:    "FIN-WAIT-1",
	stateFinWait2:    "FIN-WAIT-2",
	stateCloseWait:   "CLOSE-WAIT",
	stateClosing:     "CLOSING",
	stateLastAck:     "LAST-ACK",
	stateTimeWait:    "TIME-WAIT",
}

// Linux's constants (include/net/tcp.h).
const (
	rtoInitial = time.Second
	rtoMin     = 200 * time.Millisecond
	rtoMax     = 120 * time.Second
	delackMin  = 40 * time.Millisecond // TCP_ATO_MIN
	// delackNoData is the delayed-ACK wait on a connection that has not
	// received data: Linux's ato is still 0 there, so its timer fires at
	// the next tick, 0-4 ms at HZ=250; we take the middle.
	delackNoData = 2 * time.Millisecond
	maxQuickACKs = 16 // TCP_MAX_QUICKACKS
	initialCwnd  = 10 // IW10, RFC 6928
	maxOOORanges = 32
	oowRateLimit = 500 * time.Millisecond // tcp_invalid_ratelimit
	maxSACKSent  = 4
	// maxWindow is the largest window field: a SYN's window, never
	// scaled (RFC 7323 2.2), and the unscaled limit.
	maxWindow = 65535
	// defaultMSS is the MSS assumed when the peer announces none (RFC
	// 9293 3.7.1, Linux TCP_MSS_DEFAULT).
	defaultMSS = 536
)

// segment is one parsed inbound TCP segment; it lives on the stack.
type segment struct {
	src, dst         hashtable.Addr
	srcPort, dstPort uint16
	seq, ack         seqnum
	flags            uint8
	wnd              uint16
	payload          []byte
	opts             header.TCPOptions
}

// listenerFor is the listener a SYN to addr:port reaches, if any: a
// dual-stack :: listener takes IPv4 unless IPV6_V6ONLY.
func (s *Stack) listenerFor(addr hashtable.Addr, port uint16) (*listener, bool) {
	l, ok := s.lis.Lookup(addr, port)
	if ok && l.v6only && addr.Is4() {
		return nil, false
	}
	return l, ok
}

// tcpProtocol is TCP as a transport under IP.
type tcpProtocol struct{ s *Stack }

// Flag names used throughout the state machine.
const (
	flagFIN = header.FIN
	flagSYN = header.SYN
	flagRST = header.RST
	flagPSH = header.PSH
	flagACK = header.ACK
)

type optionsT = header.TCPOptions

func (st tcpState) String() string { return ssNames[st] }

// synchronized reports whether the state is past the handshake (RFC 9293
// 3.5.2: "synchronized states").
func (st tcpState) synchronized() bool { return st >= stateEstablished }

func (sg *segment) has(f uint8) bool { return sg.flags&f != 0 }

// seqLen is the sequence space the segment occupies: data plus SYN and FIN.
func (sg *segment) seqLen() uint32 {
	n := uint32(len(sg.payload))
	if sg.has(header.SYN) {
		n++
	}
	if sg.has(header.FIN) {
		n++
	}
	return n
}

func (sg *segment) tuple() hashtable.FourTuple {
	return hashtable.FourTuple{LocalAddr: sg.dst, LocalPort: sg.dstPort, RemoteAddr: sg.src, RemotePort: sg.srcPort}
}

// String renders the segment for traces.
func (sg *segment) String() string {
	return fmt.Sprintf("%s seq %d ack %d win %d len %d", flagString(sg.flags), uint32(sg.seq), uint32(sg.ack), sg.wnd, len(sg.payload))
}

// flagString writes flags the way packetdrill does (S, F, R, P, .).
func flagString(f uint8) string {
	var b [8]byte
	n := 0
	for _, x := range []struct {
		bit uint8
		c   byte
	}{{header.SYN, 'S'}, {header.FIN, 'F'}, {header.RST, 'R'}, {header.PSH, 'P'}, {header.URG, 'U'}, {header.ECE, 'E'}, {header.CWR, 'W'}, {header.ACK, '.'}} {
		if f&x.bit != 0 {
			b[n] = x.c
			n++
		}
	}
	if n == 0 {
		return "-"
	}
	return string(b[:n])
}

func (p tcpProtocol) deliver(now time.Time, src, dst hashtable.Addr, b []byte, csumOK bool) {
	p.s.tcpInput(now, src, dst, b, csumOK)
}

// tcpInput is the TCP demultiplexer: checksum, then the established table,
// then the listener table, then the "no socket" rules B01-B05.
func (s *Stack) tcpInput(now time.Time, src, dst hashtable.Addr, b []byte, csumOK bool) {
	s.inc(cntTCPIn)
	th := header.TCP(b)
	if err := th.Validate(); err != nil {
		s.inc(cntTCPMalformed)
		return
	}
	if csumOK {
		s.inc(cntTCPOffloadIn)
	} else if !header.ChecksumValidWith(b, pseudoSum(src, dst, header.ProtoTCP, len(b))) {
		s.inc(cntTCPChecksum) // B03: silently, before anything else
		return
	}
	sg := segment{
		src: src, dst: dst,
		srcPort: th.SrcPort(), dstPort: th.DstPort(),
		seq: seqnum(th.Seq()), ack: seqnum(th.Ack()),
		flags: th.Flags(), wnd: th.Window(),
		payload: th.Payload(),
	}
	if err := header.ParseTCPOptions(th.Options(), &sg.opts); err != nil {
		// Linux stops parsing at a malformed option and keeps what it
		// had; so do we.
		s.inc(cntTCPBadOptions)
	}
	if sg.srcPort == 0 || sg.dstPort == 0 {
		s.inc(cntTCPMalformed)
		return
	}
	if e, ok := s.est.Lookup(sg.tuple()); ok {
		e.process(now, &sg)
		return
	}
	if l, ok := s.listenerFor(dst, sg.dstPort); ok && s.isLocal(dst) {
		if l.process(now, &sg) == vReset {
			s.sendResetFor(&sg)
		}
		return
	}
	if s.forwardTCP(now, &sg) {
		return
	}
	s.inc(cntTCPNoSocket)
	s.sendResetFor(&sg)
}

// isn returns an initial sequence number per RFC 6528: a keyed hash of the
// 4-tuple plus a clock ticking every 4 µs (B42).
func (s *Stack) isn(now time.Time, id hashtable.FourTuple) seqnum {
	var b [36]byte
	copy(b[0:16], id.LocalAddr[:])
	copy(b[16:32], id.RemoteAddr[:])
	binary.BigEndian.PutUint16(b[32:], id.LocalPort)
	binary.BigEndian.PutUint16(b[34:], id.RemotePort)
	h := maphash.Bytes(s.isnSeed, b[:])
	m := uint64(now.Sub(s.epoch)/(4*time.Microsecond)) + uint64(s.epoch.UnixNano()/4000)
	return seqnum(uint32(h) + uint32(m))
}

// tsOffset randomizes each connection's TSval origin, as Linux's
// secure_tcp_ts_off does, so timestamps do not reveal uptime.
func (s *Stack) tsOffset(id hashtable.FourTuple) uint32 {
	var b [36]byte
	copy(b[0:16], id.RemoteAddr[:])
	copy(b[16:32], id.LocalAddr[:])
	binary.BigEndian.PutUint16(b[32:], id.RemotePort)
	binary.BigEndian.PutUint16(b[34:], id.LocalPort)
	return uint32(maphash.Bytes(s.isnSeed, b[:]) >> 32)
}

// tsNow is the TCP timestamp clock: milliseconds, like Linux's tcp_clock_ms.
func (s *Stack) tsNow(now time.Time) uint32 {
	return uint32(now.Sub(s.epoch) / time.Millisecond)
}

// trace logs a state transition with the segment that caused it.
func (s *Stack) trace(e *endpoint, from, to tcpState, why string, sg *segment) {
	if s.opts.Trace == nil {
		return
	}
	attrs := []any{
		slog.String("local", addrPort(e.id.LocalAddr, e.id.LocalPort).String()),
		slog.String("peer", addrPort(e.id.RemoteAddr, e.id.RemotePort).String()),
		slog.String("from", from.String()),
		slog.String("to", to.String()),
		slog.String("cause", why),
	}
	if sg != nil {
		attrs = append(attrs, slog.String("segment", sg.String()))
	}
	s.opts.Trace.Info("tcp state", attrs...)
}

func addrPort(a hashtable.Addr, p uint16) netip.AddrPort {
	return netip.AddrPortFrom(a.Netip(), p)
}
