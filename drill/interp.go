package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"ustack/stack/header"
)

// Failure is a script that did not run as written on a stack: the event,
// what went wrong, and (for a packet or a result) the expected and actual
// values side by side.
type Failure struct {
	Pos    Pos
	Msg    string
	Detail string
	// Timing is set when only the time was wrong (the contents matched):
	// on a real clock that can be the machine's load rather than the stack.
	Timing bool
}

func (f *Failure) Error() string {
	if f.Pos.Line == 0 {
		return f.Msg
	}
	return fmt.Sprintf("line %d: %s", f.Pos.Line, f.Msg)
}

// sockState follows packetdrill's socket states (run_packet.c): it decides
// which packets belong to the connection under test and when the ISNs are
// learned.
type sockState int

const (
	sockNew sockState = iota
	sockListening
	sockPassivePacketReceived // a scripted packet created this child
	sockPassiveSynAckSent     // its SYN-ACK was seen: local ISN known
	sockPassiveSynAckAcked
	sockActiveConnecting // connect() was called
	sockActiveSynSent    // the script's > S line was reached
	sockActiveSynAcked
)

// sock is a socket as the interpreter tracks it: the live handle and the
// mapping between script and live values of its connection.
type sock struct {
	handle int // live handle; -1 for a child not accepted yet
	state  sockState
	udp    bool // a SOCK_DGRAM socket: its lines are `udp (N)`

	localPort, remotePort uint16 // live ports (0: not known yet)
	liveLocalISN          uint32
	scriptLocalISN        uint32

	tsMap       map[uint32]uint32 // script TS val -> live TS val
	tsFirst     bool
	tsFirstScr  uint32
	tsFirstLive uint32
}

func newSock(handle int, st sockState) *sock {
	return &sock{handle: handle, state: st, tsMap: map[uint32]uint32{}}
}

// blockedCall is the outstanding blocking syscall.
type blockedCall struct {
	ev       *Event
	start    time.Duration // expected start
	ret      time.Duration // expected return
	duration time.Duration // expected duration, for the tolerance percentage
}

// interp runs one script on one backend.
type interp struct {
	s   *Script
	b   Backend
	ctx context.Context
	log io.Writer // verbose trace, or nil

	tol       time.Duration
	tolPct    float64
	minTol    time.Duration
	tsTick    int64
	strictSeg bool

	base         time.Duration // live time the previous event finished at
	prevExpected time.Duration // expected time of the previous event
	prevInbound  bool          // the previous event was an inbound packet
	prevSched    time.Duration // its scheduled time

	fds           map[int]*sock // script fd -> socket
	under         *sock         // the socket under test
	nextEphemeral uint16
	blocked       *blockedCall
	profile       *Profile
	cfg           *Config
}

// outboundWait is how long past its expected time an outbound packet is
// awaited (packetdrill's "Timed out waiting for packet").
const outboundWait = 2 * time.Second

// anyHorizon bounds a wait written with `*` on a virtual clock.
const anyHorizon = time.Hour

func newInterp(ctx context.Context, s *Script, b Backend, profile *Profile, cfg *Config, log io.Writer) *interp {
	in := &interp{
		s: s, b: b, ctx: ctx, log: log, profile: profile, cfg: cfg,
		tol: cfg.Tolerance, tolPct: cfg.TolerancePct, tsTick: cfg.TSTickUsecs, strictSeg: cfg.StrictSegments,
		fds: map[int]*sock{}, nextEphemeral: 40000,
	}
	if !b.Virtual() {
		// HZ=250 kernels tick every 4 ms; the Linux selftests use 14 ms.
		in.minTol = 14 * time.Millisecond
	}
	return in
}

func (in *interp) logf(format string, args ...any) {
	if in.log != nil {
		fmt.Fprintf(in.log, "  %9.6f  %s\n", in.b.Now().Seconds(), fmt.Sprintf(format, args...))
	}
}

func (in *interp) fail(pos Pos, format string, args ...any) *Failure {
	return &Failure{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// run plays every event.
func (in *interp) run() error {
	for _, ev := range in.s.Events {
		if err := in.checkFinished(); err != nil {
			return err
		}
		var err error
		switch ev.Kind {
		case EventPacket:
			if ev.Packet.Dir == Inbound {
				err = in.inbound(ev)
			} else {
				err = in.outbound(ev)
			}
		case EventSyscall:
			err = in.syscall(ev)
		case EventShell:
			err = in.shell(ev)
		}
		if err != nil {
			return err
		}
	}
	return in.awaitBlocked(nil)
}

// ---- timing ----

// expected returns an event's expected [start, end] times.
func (in *interp) expected(ev *Event) (time.Duration, time.Duration) {
	base := time.Duration(0)
	if ev.Time.Kind == TimeRelative {
		base = in.base
		if in.prevInbound && ev.Kind == EventPacket && ev.Packet.Dir == Inbound {
			base = in.prevSched
		}
	}
	return base + ev.Time.Start, base + ev.Time.End
}

// tolerance for an event expected at t.
func (in *interp) tolerance(interval time.Duration) time.Duration {
	t := max(in.tol, in.minTol)
	if p := time.Duration(in.tolPct / 100 * float64(interval)); p > t {
		t = p
	}
	return t
}

// finish records that an event finished: the base of the next relative time.
func (in *interp) finish(ev *Event, expected time.Duration, live time.Duration) {
	in.base = live
	in.prevExpected = expected
	in.prevInbound = ev.Kind == EventPacket && ev.Packet.Dir == Inbound
	in.prevSched = expected
}

// advanceTo lets the backend's time pass until t.
func (in *interp) advanceTo(t time.Duration) error {
	for in.b.Now() < t {
		if err := in.ctx.Err(); err != nil {
			return errTimeout
		}
		in.b.Wait(t)
		if err := in.checkFinished(); err != nil {
			return err
		}
	}
	return nil
}

var errTimeout = errors.New("script timed out")

// checkStart verifies an event started on time (a real-time backend can
// be late).
func (in *interp) checkStart(ev *Event, lo, hi time.Duration) error {
	if ev.Time.Kind == TimeAny {
		return nil
	}
	now := in.b.Now()
	tol := in.tolerance(lo - in.prevExpected)
	if !in.b.Virtual() {
		// On a real clock the runner itself can be late (a busy machine,
		// a GC pause); that says nothing about the stack, so only gross
		// lateness fails.
		tol = max(tol, 100*time.Millisecond)
	}
	if now < lo-tol || now > hi+tol {
		f := in.fail(ev.Pos, "event started at %.6f, expected %s (tolerance %v): the runner fell behind", now.Seconds(), timeWindow(lo, hi), tol)
		f.Timing = true
		return f
	}
	return nil
}

func timeWindow(lo, hi time.Duration) string {
	if lo == hi {
		return fmt.Sprintf("%.6f", lo.Seconds())
	}
	return fmt.Sprintf("%.6f~%.6f", lo.Seconds(), hi.Seconds())
}

// ---- shell ----

func (in *interp) shell(ev *Event) error {
	if ev.Shell.Command == "" { // an unsupported construct the parser recorded
		return nil
	}
	lo, _ := in.expected(ev)
	if err := in.advanceTo(lo); err != nil {
		return err
	}
	act, err := parseShellCommand(ev.Shell.Command)
	if err != nil {
		return &Unsupported{Feature: err.Error()}
	}
	for _, kv := range act.sysctls {
		in.logf("sysctl %s=%s", kv[0], kv[1])
		if err := in.b.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	in.finish(ev, lo, in.b.Now())
	return nil
}

// ---- packets ----

// inbound injects a scripted packet.
func (in *interp) inbound(ev *Event) error {
	pk := ev.Packet
	lo, hi := in.expected(ev)
	if err := in.advanceTo(lo); err != nil {
		return err
	}
	if err := in.checkStart(ev, lo, hi); err != nil {
		return err
	}
	if pk.UDP != nil || in.under != nil && in.under.udp {
		return in.inboundUDP(ev, lo)
	}
	so := in.under
	if so == nil || so.state == sockListening || so.state == sockNew {
		// A new connection: the peer's port is fresh, its ISN is the
		// packet's seq (used literally). packetdrill does this for no
		// socket or a listener; a socket that is only bound (or not even
		// that) cannot own a connection either, so drill treats it the
		// same way (packetdrill would send such a packet with port 0).
		so = newSock(-1, sockPassivePacketReceived)
		so.localPort = in.cfg.BindPort
		so.remotePort = in.nextEphemeral
		in.nextEphemeral++
		in.under = so
	}
	switch {
	case so.state == sockPassiveSynAckSent && pk.Flags&header.ACK != 0:
		so.state = sockPassiveSynAckAcked
	case so.state == sockActiveSynSent && pk.Flags&header.SYN != 0 && pk.Flags&header.ACK != 0:
		so.state = sockActiveSynAcked
	}
	if so.localPort == 0 {
		return in.fail(ev.Pos, "inbound packet for a connection whose local port is not known yet (the stack's SYN was not seen)")
	}
	off := so.liveLocalISN - so.scriptLocalISN
	if ic := pk.ICMP; ic != nil {
		// The quoted datagram is our segment: from us to the peer, with
		// the live sequence number.
		pkt, err := encodeICMPError(ic, netip.AddrPortFrom(in.cfg.Local, so.localPort), netip.AddrPortFrom(in.cfg.Remote, so.remotePort), ic.Seq+off)
		if err != nil {
			return in.fail(ev.Pos, "icmp: %v", err)
		}
		return in.inject(ev, lo, pkt)
	}
	seg := &segment{
		src:   netip.AddrPortFrom(in.cfg.Remote, so.remotePort),
		dst:   netip.AddrPortFrom(in.cfg.Local, so.localPort),
		seq:   pk.Seq,
		ack:   pk.Ack,
		flags: pk.Flags,
		win:   pk.Win,
		urg:   pk.Urg,
	}
	if pk.AE {
		seg.reserved = 1
	}
	if pk.Flags&header.ACK != 0 {
		seg.ack += off
	}
	for _, o := range pk.Options {
		switch o.Kind {
		case OptSACK:
			o.Blocks = append([][2]uint32(nil), o.Blocks...)
			for i := range o.Blocks {
				o.Blocks[i][0] += off
				o.Blocks[i][1] += off
			}
		case OptTS:
			if pk.Flags&header.ACK != 0 {
				live, ok := so.tsMap[o.TSEcr]
				if !ok {
					return in.fail(ev.Pos, "cannot map TS ecr %d: no earlier outbound packet had script TS val %d", o.TSEcr, o.TSEcr)
				}
				o.TSEcr = live
			}
		}
		seg.opts = append(seg.opts, o)
	}
	seg.payload = make([]byte, pk.Len)
	return in.inject(ev, lo, encodeSegment(seg))
}

// inboundUDP injects a datagram (or an ICMP error about one) for the UDP
// socket under test: to its local port, from the peer's connect_port once
// it has connected or sent, else from a fresh port of the peer's
// (packetdrill's mapping for a socket that has only been bound).
func (in *interp) inboundUDP(ev *Event, lo time.Duration) error {
	pk := ev.Packet
	so := in.under
	if so == nil || !so.udp {
		return in.fail(ev.Pos, "a udp line, but the socket under test is not a UDP socket")
	}
	if pk.UDP == nil && (pk.ICMP == nil || !pk.ICMP.UDP) {
		return in.fail(ev.Pos, "the socket under test is a UDP socket: expected a udp line or an icmp line quoting [udp (N)]")
	}
	local, remote := so.localPort, so.remotePort
	if u := pk.UDP; u != nil && u.DstPort != 0 {
		local = u.DstPort
	}
	if local == 0 {
		return in.fail(ev.Pos, "the UDP socket has no local port yet (bind it, or let it send first)")
	}
	if u := pk.UDP; u != nil && u.SrcPort != 0 {
		remote = u.SrcPort
	} else if remote == 0 {
		so.remotePort = in.nextEphemeral
		in.nextEphemeral++
		remote = so.remotePort
	}
	l, r := netip.AddrPortFrom(in.cfg.Local, local), netip.AddrPortFrom(in.cfg.Remote, remote)
	if ic := pk.ICMP; ic != nil {
		pkt, err := encodeICMPError(ic, l, r, 0)
		if err != nil {
			return in.fail(ev.Pos, "icmp: %v", err)
		}
		return in.inject(ev, lo, pkt)
	}
	return in.inject(ev, lo, encodeDatagram(r, l, pk.UDP.Len))
}

// outboundUDP waits for the datagram the UDP socket under test sends and
// checks it as packetdrill's verify_udp does: the IP header, the UDP
// length, and the payload (zeros).
func (in *interp) outboundUDP(ev *Event, so *sock) error {
	pk := ev.Packet
	lo, hi := in.expected(ev)
	if !so.udp {
		return in.fail(ev.Pos, "a udp line, but the socket under test is not a UDP socket")
	}
	deadline := hi + outboundWait
	if ev.Time.Kind == TimeAny {
		deadline = in.b.Now() + anyHorizon
	}
	seg, at, err := in.sniff(ev, so, deadline)
	if err != nil {
		return err
	}
	in.logf("sniff  %s", seg.scriptString())
	version, ihl := 4, header.IPv4MinSize
	if in.cfg.Wire6() {
		version, ihl = 6, header.IPv6HeaderSize
	}
	var why []string
	check := func(field string, w, g int) {
		if w != g {
			why = append(why, fmt.Sprintf("%s: expected %d, got %d", field, w, g))
		}
	}
	check("ip version", version, int(seg.ipVersion))
	check("ip header length", ihl, seg.ihl)
	check("ip total length", ihl+8+pk.UDP.Len, seg.totalLen)
	check("udp length", 8+pk.UDP.Len, seg.udpLen)
	check("payload length", pk.UDP.Len, len(seg.payload))
	if !seg.ipChecksum {
		why = append(why, "ip checksum: expected valid, got invalid")
	}
	for _, c := range seg.payload {
		if c != 0 {
			why = append(why, "payload: expected zeros")
			break
		}
	}
	detail := sideBySide(fmt.Sprintf("%s %s", timeWindow(lo, hi), pk), fmt.Sprintf("%.6f %s", at.Seconds(), seg.scriptString()))
	if len(why) > 0 {
		return &Failure{Pos: ev.Pos, Msg: "outbound packet mismatch: " + strings.Join(why, "; "), Detail: detail}
	}
	if ev.Time.Kind != TimeAny {
		if tol := in.tolerance(lo - in.prevExpected); at < lo-tol || at > hi+tol {
			return &Failure{Pos: ev.Pos, Timing: true, Detail: detail,
				Msg: fmt.Sprintf("packet sent at %.6f, expected at %s (tolerance %v)", at.Seconds(), timeWindow(lo, hi), tol)}
		}
	}
	in.finish(ev, lo, at)
	return nil
}

// inject hands pkt, the wire form of ev's packet, to the stack, and
// finishes ev, which was due at lo.
func (in *interp) inject(ev *Event, lo time.Duration, pkt []byte) error {
	in.logf("inject %s", ev.Packet)
	if err := in.b.Inject(pkt); err != nil {
		return err
	}
	in.finish(ev, lo, in.b.Now())
	return nil
}

// outbound waits for the stack's next packet on the connection and compares
// it with the script.
func (in *interp) outbound(ev *Event) error {
	pk := ev.Packet
	lo, hi := in.expected(ev)
	so := in.under
	if so == nil {
		return in.fail(ev.Pos, "outbound packet expected but there is no socket under test")
	}
	if pk.UDP != nil || so.udp {
		if pk.UDP == nil {
			return in.fail(ev.Pos, "the socket under test is a UDP socket: expected a udp line")
		}
		return in.outboundUDP(ev, so)
	}
	if pk.Flags&header.SYN != 0 && pk.Flags&header.ACK == 0 && so.state == sockActiveConnecting {
		so.state = sockActiveSynSent
		so.scriptLocalISN = pk.Seq
		so.localPort = 0 // learned from the SYN
	}
	learnSynAck := so.state == sockPassivePacketReceived && pk.Flags&header.SYN != 0 && pk.Flags&header.ACK != 0
	if learnSynAck {
		so.scriptLocalISN = pk.Seq
	}
	deadline := hi + outboundWait
	if ev.Time.Kind == TimeAny {
		deadline = in.b.Now() + anyHorizon
	}
	var segs []*segment
	var firstAt time.Duration
	got := 0
	// A shorter segment is completed by the next ones (packetdrill's
	// segmentation rule, §7), but a segment without data, or one with a
	// FIN, is never the start or middle of a large write: it is compared
	// alone, so a stray ACK cannot hide inside the data that follows it.
	more := func() bool {
		last := segs[len(segs)-1]
		return got < pk.Len && !in.strictSeg && len(last.payload) > 0 && last.flags&header.FIN == 0
	}
	for len(segs) == 0 || more() {
		seg, at, err := in.sniff(ev, so, deadline)
		if err != nil {
			if len(segs) > 0 && errors.Is(err, errNoPacket) {
				return in.fail(ev.Pos, "expected %d payload bytes, the stack sent %d (in %d segments) by %.6f", pk.Len, got, len(segs), deadline.Seconds())
			}
			return err
		}
		if len(segs) == 0 {
			firstAt = at
			if learnSynAck {
				so.liveLocalISN = seg.seq
				so.state = sockPassiveSynAckSent
			}
		}
		in.logf("sniff  %s", in.toScript(so, seg, pk).scriptString())
		segs = append(segs, seg)
		got += len(seg.payload)
	}
	actual := segs[0]
	if len(segs) > 1 {
		agg, err := aggregate(segs)
		if err != nil {
			var got []string
			for _, sg := range segs {
				got = append(got, in.toScript(so, sg, pk).scriptString())
			}
			return &Failure{Pos: ev.Pos, Msg: "segments do not aggregate: " + err.Error(),
				Detail: sideBySide(pk.String(), strings.Join(got, "\n            "))}
		}
		actual = agg
	}
	mapped := in.toScript(so, actual, pk)
	ms := matchSegment(pk, mapped, matchOptions{ipv6: in.cfg.Wire6(), tsTick: in.tsTick, tolerance: int64(in.tolerance(0) / time.Microsecond)})
	if len(ms) > 0 {
		var why []string
		for _, m := range ms {
			why = append(why, m.String())
		}
		return &Failure{
			Pos:    ev.Pos,
			Msg:    "outbound packet mismatch: " + strings.Join(why, "; "),
			Detail: sideBySide(fmt.Sprintf("%s %s", timeWindow(lo, hi), pk), fmt.Sprintf("%.6f %s", firstAt.Seconds(), mapped.scriptString())),
		}
	}
	if ev.Time.Kind != TimeAny {
		tol := in.tolerance(lo - in.prevExpected)
		if firstAt < lo-tol || firstAt > hi+tol {
			return &Failure{
				Pos:    ev.Pos,
				Msg:    fmt.Sprintf("packet sent at %.6f, expected at %s (tolerance %v)", firstAt.Seconds(), timeWindow(lo, hi), tol),
				Timing: true,
				Detail: sideBySide(fmt.Sprintf("%s %s", timeWindow(lo, hi), pk), fmt.Sprintf("%.6f %s", firstAt.Seconds(), mapped.scriptString())),
			}
		}
	}
	in.finish(ev, lo, firstAt)
	return nil
}

var errNoPacket = errors.New("no packet")

// sniff returns the next packet the stack sent on the connection under
// test, skipping packets of other connections, waiting until deadline.
func (in *interp) sniff(ev *Event, so *sock, deadline time.Duration) (*segment, time.Duration, error) {
	for steps := 0; ; steps++ {
		if c, ok := in.b.Next(); ok {
			seg, err := decodeSegment(c.Data)
			if err != nil {
				if !errors.Is(err, errNotTCP) {
					in.logf("skip   malformed packet: %v", err)
				}
				continue
			}
			if in.belongs(so, seg) {
				return seg, c.At, nil
			}
			in.logf("skip   %v > %v (another connection)", seg.src, seg.dst)
			continue
		}
		if err := in.ctx.Err(); err != nil {
			return nil, 0, errTimeout
		}
		if in.b.Now() >= deadline {
			return nil, 0, &Failure{Pos: ev.Pos, Msg: fmt.Sprintf("timed out waiting for packet (until %.6f): the stack sent nothing on the connection", deadline.Seconds()),
				Detail: sideBySide(ev.Packet.String(), "(nothing)")}
		}
		in.b.Wait(deadline)
		if err := in.checkFinished(); err != nil {
			return nil, 0, err
		}
	}
}

// belongs reports whether seg is from the connection under test, learning
// the local port from the SYN of an active open.
func (in *interp) belongs(so *sock, seg *segment) bool {
	if seg.src.Addr() != in.cfg.Local || seg.dst.Addr() != in.cfg.Remote || (seg.proto == header.ProtoUDP) != so.udp {
		return false
	}
	if so.udp {
		// A socket that sent before binding gets its port now.
		if so.localPort == 0 && so.remotePort != 0 && seg.dst.Port() == so.remotePort {
			so.localPort = seg.src.Port()
		}
		return seg.src.Port() == so.localPort && seg.dst.Port() == so.remotePort
	}
	if so.localPort != 0 && so.remotePort != 0 {
		return seg.src.Port() == so.localPort && seg.dst.Port() == so.remotePort
	}
	if so.state == sockActiveSynSent && seg.flags&header.SYN != 0 && seg.flags&header.ACK == 0 && seg.dst.Port() == in.cfg.ConnectPort {
		so.localPort = seg.src.Port()
		so.remotePort = in.cfg.ConnectPort
		so.liveLocalISN = seg.seq
		return true
	}
	return false
}

// toScript maps a live segment into script space: relative seq, TS val
// rebased on the connection's first (packetdrill's map_outbound_live_packet).
func (in *interp) toScript(so *sock, live *segment, want *Packet) *segment {
	s := *live
	s.seq = live.seq - so.liveLocalISN + so.scriptLocalISN
	s.opts = append([]TCPOption(nil), live.opts...)
	var scriptTS *TCPOption
	for i := range want.Options {
		if want.Options[i].Kind == OptTS {
			scriptTS = &want.Options[i]
		}
	}
	for i := range s.opts {
		if s.opts[i].Kind != OptTS || scriptTS == nil {
			continue
		}
		liveVal := s.opts[i].TSVal
		so.tsMap[scriptTS.TSVal] = liveVal
		if !so.tsFirst {
			so.tsFirst, so.tsFirstScr, so.tsFirstLive = true, scriptTS.TSVal, liveVal
		}
		s.opts[i].TSVal = so.tsFirstScr + (liveVal - so.tsFirstLive)
	}
	return &s
}

// sideBySide formats expected and actual for a failure report.
func sideBySide(want, got string) string {
	return fmt.Sprintf("    script: %s\n    actual: %s", want, got)
}

// ---- syscalls ----

func (in *interp) syscall(ev *Event) error {
	if err := in.awaitBlocked(ev); err != nil {
		return err
	}
	sc := ev.Syscall
	lo, hi := in.expected(ev)
	if err := in.advanceTo(lo); err != nil {
		return err
	}
	if err := in.checkStart(ev, lo, hi); err != nil {
		return err
	}
	op, err := in.decode(ev)
	if err != nil {
		return err
	}
	// packetdrill's run_syscall_connect: the socket is connecting from now.
	// For UDP, connect() and sendto() alike set the peer to connect_port.
	if sc.Name == "connect" || sc.Name == "sendto" {
		if so := in.fds[int(sc.Args[0].Int)]; so != nil && so.udp {
			so.remotePort = in.cfg.ConnectPort
		} else if so != nil && so.state == sockNew && sc.Name == "connect" {
			so.state = sockActiveConnecting
			in.under = so
		}
	}
	start := in.b.Now()
	in.logf("call   %s", callString(sc))
	res, blocked, err := in.b.Do(op)
	if err != nil {
		return err
	}
	if blocked {
		if !ev.Time.Blocking {
			return in.fail(ev.Pos, "%s blocked; the script expects it to return at once (write T...E for a blocking call)", sc.Name)
		}
		base := lo - ev.Time.Start
		in.blocked = &blockedCall{ev: ev, start: lo, ret: base + ev.Time.Return, duration: ev.Time.Return - ev.Time.Start}
		in.finish(ev, lo, start)
		return nil
	}
	if ev.Time.Blocking {
		base := lo - ev.Time.Start
		res.At = in.b.Now()
		if err := in.checkReturn(&blockedCall{ev: ev, start: lo, ret: base + ev.Time.Return, duration: ev.Time.Return - ev.Time.Start}, res); err != nil {
			return err
		}
	}
	if err := in.checkResult(ev, op, res); err != nil {
		return err
	}
	in.finish(ev, lo, in.b.Now())
	return nil
}

// awaitBlocked waits for the outstanding blocking call to return: before
// the next syscall (only one may be outstanding) and at the end.
func (in *interp) awaitBlocked(next *Event) error {
	bc := in.blocked
	if bc == nil {
		return nil
	}
	limit := bc.ret + in.tolerance(bc.duration) + outboundWait
	for in.blocked != nil {
		if err := in.ctx.Err(); err != nil {
			return errTimeout
		}
		if in.b.Now() >= limit {
			return in.fail(bc.ev.Pos, "%s did not return (expected at %.6f; waited until %.6f)", bc.ev.Syscall.Name, bc.ret.Seconds(), limit.Seconds())
		}
		in.b.Wait(limit)
		if err := in.checkFinished(); err != nil {
			return err
		}
	}
	return nil
}

// checkFinished checks the blocked call's result once it has returned.
func (in *interp) checkFinished() error {
	if in.blocked == nil {
		return nil
	}
	res, ok := in.b.Finished()
	if !ok {
		return nil
	}
	bc := in.blocked
	in.blocked = nil
	in.logf("return %s = %s", bc.ev.Syscall.Name, res)
	if err := in.checkReturn(bc, res); err != nil {
		return err
	}
	op, err := in.decode(bc.ev)
	if err != nil {
		return err
	}
	return in.checkResult(bc.ev, op, res)
}

// checkReturn checks when a blocking call returned.
func (in *interp) checkReturn(bc *blockedCall, res Result) error {
	tol := in.tolerance(bc.duration)
	if res.At < bc.ret-tol || res.At > bc.ret+tol {
		return &Failure{Pos: bc.ev.Pos, Timing: true, Msg: fmt.Sprintf("%s returned at %.6f, expected at %.6f (tolerance %v)", bc.ev.Syscall.Name, res.At.Seconds(), bc.ret.Seconds(), tol),
			Detail: sideBySide(callString(bc.ev.Syscall), fmt.Sprintf("%s = %s", bc.ev.Syscall.Name, res))}
	}
	return nil
}

func callString(sc *Syscall) string {
	var args []string
	for _, a := range sc.Args {
		args = append(args, a.String())
	}
	s := fmt.Sprintf("%s(%s) = %d", sc.Name, strings.Join(args, ", "), sc.Result)
	if sc.Errno != "" {
		s += " " + sc.Errno
	}
	return s
}

// checkResult compares a call's result with the script, then applies what
// the call means for the connection state (new fds, listening, accepted).
func (in *interp) checkResult(ev *Event, op *Op, res Result) error {
	sc := ev.Syscall
	mismatch := func(format string, args ...any) error {
		return &Failure{Pos: ev.Pos, Msg: fmt.Sprintf(format, args...), Detail: sideBySide(callString(sc), fmt.Sprintf("%s = %s", sc.Name, res))}
	}
	fdResult := sc.Name == "socket" || sc.Name == "accept"
	if fdResult && sc.Result >= 0 {
		if res.Ret < 0 {
			return mismatch("%s: expected a new fd, got %s", sc.Name, res)
		}
	} else if res.Ret != sc.Result {
		return mismatch("%s: expected result %d, got %s", sc.Name, sc.Result, res)
	}
	if sc.Errno != "" {
		if want := errnos[sc.Errno]; res.Errno != want {
			return mismatch("%s: expected errno %s, got %s", sc.Name, sc.Errno, errnoName(res.Errno))
		}
	}
	if res.Ret < 0 {
		return nil
	}
	switch sc.Name {
	case "getsockopt":
		// An int option writes back 4 bytes; struct linger is 8. A [N]
		// buffer for SO_LINGER receives l_onoff, as Linux copies
		// min(len, sizeof(struct linger)) bytes (sock_getsockopt).
		length := int64(4)
		if want := sc.Args[3]; want.Kind == ExprStruct {
			length = 8
			if res.Linger == nil {
				return mismatch("getsockopt %s: the stack returned no struct linger", sc.Args[2])
			}
			on, secs := want.Field("onoff"), want.Field("linger")
			if on.Kind == ExprInt && on.Int != int64(res.Linger[0]) || secs.Kind == ExprInt && secs.Int != int64(res.Linger[1]) {
				return mismatch("getsockopt %s: expected {onoff=%s, linger=%s}, got {onoff=%d, linger=%d}",
					sc.Args[2], on, secs, res.Linger[0], res.Linger[1])
			}
		} else if len(want.List) == 1 && want.List[0].Kind == ExprInt && res.Out != want.List[0].Int {
			return mismatch("getsockopt %s: expected value %d, got %d", sc.Args[2], want.List[0].Int, res.Out)
		}
		if want := sc.Args[4]; len(want.List) == 1 && want.List[0].Kind == ExprInt && want.List[0].Int != length {
			return mismatch("getsockopt %s: expected length %d, got %d", sc.Args[2], want.List[0].Int, length)
		}
	case "ioctl":
		if want := sc.Args[2]; len(want.List) == 1 && want.List[0].Kind == ExprInt && res.Out != want.List[0].Int {
			return mismatch("ioctl %s: expected %d, got %d", sc.Args[1], want.List[0].Int, res.Out)
		}
	case "poll":
		for i, pf := range sc.Args[0].List {
			want := pf.Field("revents")
			if want != nil && i < len(res.Revents) && int64(res.Revents[i]) != want.Int {
				return mismatch("poll: expected revents %s for fd %s, got %s", want, pf.Field("fd"), pollString(res.Revents[i]))
			}
		}
	case "socket":
		so := newSock(res.Handle, sockNew)
		so.udp = op.Dgram
		in.fds[int(sc.Result)] = so
		in.under = so
	case "bind":
		if so := in.fds[int(sc.Args[0].Int)]; so != nil && so.udp {
			so.localPort = in.cfg.BindPort
		}
	case "listen":
		if so := in.fds[int(sc.Args[0].Int)]; so != nil {
			so.state = sockListening
		}
	case "accept":
		child := in.under
		if child == nil || child.handle != -1 || (child.state != sockPassiveSynAckSent && child.state != sockPassiveSynAckAcked) {
			return in.fail(ev.Pos, "accept() returned a connection the script never set up (no scripted handshake)")
		}
		child.handle = res.Handle
		in.fds[int(sc.Result)] = child
	case "close":
		delete(in.fds, int(sc.Args[0].Int))
	}
	return nil
}

func pollString(ev int16) string {
	names := []struct {
		bit  int16
		name string
	}{{0x1, "POLLIN"}, {0x2, "POLLPRI"}, {0x4, "POLLOUT"}, {0x8, "POLLERR"}, {0x10, "POLLHUP"}, {0x20, "POLLNVAL"}, {0x40, "POLLRDNORM"}, {0x100, "POLLWRNORM"}, {0x2000, "POLLRDHUP"}}
	var parts []string
	for _, n := range names {
		if ev&n.bit != 0 {
			parts = append(parts, n.name)
			ev &^= n.bit
		}
	}
	if ev != 0 || len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("%#x", ev))
	}
	return strings.Join(parts, "|")
}
