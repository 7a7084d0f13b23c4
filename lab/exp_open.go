package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ustack/stack"
)

// experiments is every experiment, in the order the lab runs them.
var experiments = withIPv6([]*Experiment{
	closedPort,
	boundPort,
	acceptQueue,
	synTimeout,
	synTimeoutLinear,
	simultaneousOpen,
	selfConnect,
	lateSynAck,
	threeWayClose,
	closeUnread,
	lingerZero,
	dataAfterClose,
	halfClose,
	finWait2Timeout,
	simultaneousClose,
	selfClose,
	udpClosedPort,
})

// checkRefused is the B01 answer: the first ustack segment after syn is
// RST|ACK with seq 0 and ack = SYN.seq + 1, and it is the only answer.
func checkRefused(x *Env, id string, syn Segment) {
	all := segs(x.tl.Segments())
	answers := all.from(all.index(syn) + 1).where(and(out, flow(syn.Src, syn.Dst)))
	got := "no answer"
	ok := false
	if len(answers) > 0 {
		a := answers[0]
		got = describe(a)
		ok = a.Is(fRA) && a.Seq == 0 && a.Ack == syn.Seq+1
	}
	x.Expect(id, ok, "ustack answers the SYN with RST|ACK, seq 0, ack = SYN.seq + 1", got)
	synAcks := all.where(and(out, has(fSA)))
	x.Expect(id, len(synAcks) == 0 && len(x.tl.Transitions()) == 0,
		"and with nothing else: no SYN|ACK, no socket created (no state transitions)",
		fmt.Sprintf("%d SYN|ACK, %d transitions", len(synAcks), len(x.tl.Transitions())))
}

var closedPort = &Experiment{
	Name:  "closed-port",
	IDs:   []string{"B01"},
	IPv6:  true,
	Tools: []string{"nc"},
	Title: "A SYN to a port nobody listens on is refused with RST|ACK",
	Explain: `The kernel runs "nc -z 10.0.0.2 9": a connect() to a port where nothing
listens. There is no socket for the SYN, so ustack answers for the port
itself (RFC 9293 3.10.7.1, Linux tcp_v4_send_reset): a RST|ACK whose seq is
0 and whose ack is the SYN's seq + 1, the one acknowledgment a client in
SYN-SENT accepts. The kernel's connect() fails at once with ECONNREFUSED
("Connection refused"): no retransmission, no waiting.

Watch for: the kernel's S, ustack's "R. 0:0(0) ack 1" right after it (ack
1 is relative: SYN.seq + 1; seq 0 is absolute, since ustack never chose an
ISN, having made no socket), no ustack state transition at all, and nc's
error.`,
	Run: func(x *Env) error {
		x.SS()
		r := x.Exec(5*time.Second, "", "nc", "-z", "-v", "-w", "3", x.U.String(), "9")
		refused := strings.Contains(r.Stderr, "Connection refused")
		if refused {
			x.Kernel("=> connect() = ECONNREFUSED")
		}
		syns := segs(x.tl.Segments()).where(and(in, is(fS), toPort(9)))
		if len(syns) == 0 {
			x.Expect("B01", false, "the kernel's SYN reaches ustack", "no SYN arrived")
			return nil
		}
		checkRefused(x, "B01", syns[0])
		x.Expect("B01", refused && r.Code == 1 && len(syns) == 1 && r.Took < time.Second,
			"the kernel's connect() fails at once with ECONNREFUSED (one SYN, no retransmission)",
			fmt.Sprintf("nc exit %d after %s, %d SYN(s): %s", r.Code, secs(r.Took), len(syns), strings.TrimSpace(r.Stderr)))
		return nil
	},
}

var boundPort = &Experiment{
	Name:  "bound-port",
	IDs:   []string{"B02"},
	Title: "A port that is bound but not listening refuses like a closed one",
	Explain: `ustack binds 10.0.0.2:5000 and never calls listen(): the socket is in the
bind table (ss calls it UNCONN) but not in the listener table. A SYN is
looked up among listeners only (Linux __inet_lookup_listener), finds none,
and gets exactly what a closed port gives (B01): RST|ACK, seq 0, ack =
SYN.seq + 1. The kernel's connect() fails at once with ECONNREFUSED.

Watch for: the UNCONN line in ustack's ss, the S / R. pair, and that the
bound socket is untouched afterwards.`,
	Run: func(x *Env) error {
		addr := ap(ustackAddr, 5000)
		b, err := x.st.Bind(addr)
		if err != nil {
			x.Ustack("bind(%s) = %s", addr, errName(err))
			return err
		}
		x.Defer(func() { b.Close() })
		x.Ustack("bind(%s) = 0, and no listen()", addr)
		before := x.SS()
		bs, ok := sockFor(before, addr, netip.AddrPort{})
		x.Expect("B02", ok && bs.State == "UNCONN", "ss shows the socket bound but not listening (UNCONN)", sockLines(before))

		start := time.Now()
		_, err = x.KDial("", netip.AddrPort{}, addr, 3*time.Second)
		took := time.Since(start)
		syns := segs(x.tl.Segments()).where(and(in, is(fS), toPort(5000)))
		if len(syns) == 0 {
			x.Expect("B02", false, "the kernel's SYN reaches ustack", "no SYN arrived")
			return nil
		}
		checkRefused(x, "B02", syns[0])
		x.Expect("B02", isErrno(err, syscall.ECONNREFUSED) && len(syns) == 1 && took < time.Second,
			"the kernel's connect() fails at once with ECONNREFUSED, as for a closed port",
			fmt.Sprintf("connect() = %s after %s, %d SYN(s)", errName(err), secs(took), len(syns)))
		after := x.SS()
		as, ok := sockFor(after, addr, netip.AddrPort{})
		x.Expect("B02", ok && as.State == "UNCONN", "the bound socket is untouched: still UNCONN", sockLines(after))
		return nil
	},
}

var acceptQueue = &Experiment{
	Name:  "accept-queue",
	IDs:   []string{"B11"},
	Title: "Connections and their data wait in the accept queue; a full queue drops SYNs",
	Explain: `ustack listens on port 8000 with a backlog of 1 and does not call accept()
yet. Like Linux, it completes handshakes in the stack on its own: the
accept queue holds backlog + 1 = 2 established connections. Two kernel
clients connect and send a line each before anyone accepts; ustack ACKs the
bytes and keeps them (ss: the listener's Recv-Q is the queue length and
its Send-Q the backlog, each connection's Recv-Q its unread bytes). A third client finds the queue
full: its SYN is dropped silently (no SYN|ACK, no RST), so the kernel
retransmits it (1 s later, and again) until the client gives up. Then
ustack accepts: the first two connections come out in order, their bytes
intact.

Watch for: the two handshakes completing with nobody in accept(), the
ACKs of the data, the ss table, the third client's repeated S with the
same seq and no answer, and the reads after accept().`,
	About: 4 * time.Second,
	Run: func(x *Env) error {
		port := uint16(8000)
		ln, err := x.Listen(ap(ustackAddr, port), 1)
		if err != nil {
			return err
		}
		dst := ap(ustackAddr, port)
		msgs := map[string]string{"client A": "hello from A\n", "client B": "hello from B\n"}
		var clients []*KConn
		for _, name := range []string{"client A", "client B"} {
			k, err := x.KDial(name, netip.AddrPort{}, dst, 3*time.Second)
			x.Expect("B11", err == nil, name+" connects although nobody calls accept(): the handshake completes in the stack",
				"connect() = "+errName(err))
			if err != nil {
				return nil
			}
			if err := k.Write(msgs[name]); err != nil {
				return err
			}
			clients = append(clients, k)
		}
		full := x.WaitFor(2*time.Second, func() bool {
			n := 0
			for _, s := range x.st.Sockets() {
				if s.State == "LISTEN" && s.RecvQ == 2 {
					n++
				}
				if s.State == "ESTAB" && s.RecvQ > 0 {
					n++
				}
			}
			return n == 3
		})
		socks := x.SS()
		all := segs(x.tl.Segments())
		for _, k := range clients {
			local := k.Local()
			data, ok := all.first(and(in, flow(local, dst), func(s Segment) bool { return s.Len > 0 }))
			if !ok {
				x.Expect("B11", false, k.name+"'s data reaches ustack", "no data segment")
				continue
			}
			ack, ok := all.from(all.index(data) + 1).first(and(out, flow(local, dst), func(s Segment) bool { return s.Ack-data.Seq >= uint32(data.Len) }))
			got := "no ACK"
			if ok {
				got = describe(ack)
			}
			x.Expect("B11", ok, k.name+"'s bytes, sent before accept(), are ACKed", got)
		}
		lis, _ := sockFor(socks, dst, netip.AddrPort{})
		qOK := full && lis.State == "LISTEN" && lis.RecvQ == 2
		for _, k := range clients {
			s, ok := sockFor(socks, dst, k.Local())
			qOK = qOK && ok && s.State == "ESTAB" && s.RecvQ == len(msgs[k.name])
		}
		x.Expect("B11", qOK, "ss shows them waiting: LISTEN Recv-Q 2 (the queue), each connection's Recv-Q its unread bytes", sockLines(socks))

		x.Lab("the accept queue is full (backlog 1 + 1): a third client tries")
		mark := len(x.tl.Segments())
		_, errC := x.KDial("client C", netip.AddrPort{}, dst, 2500*time.Millisecond)
		later := segs(x.tl.Segments()).from(mark)
		cSyns := later.where(and(in, is(fS), toPort(port)))
		sameSeq := len(cSyns) >= 2
		for _, s := range cSyns {
			sameSeq = sameSeq && s.Seq == cSyns[0].Seq && s.Src == cSyns[0].Src
		}
		var answers segs
		if len(cSyns) > 0 {
			answers = later.where(and(out, func(s Segment) bool { return s.Dst == cSyns[0].Src }))
		}
		outcome := "connect() = " + errName(errC)
		if isTimeout(errC) {
			outcome = "connect() gave up at its own 2.5 s timeout"
		}
		x.Expect("B11", sameSeq && len(answers) == 0 && isTimeout(errC),
			"with the queue full, the third client's SYN is dropped silently (no SYN|ACK, no RST) and the kernel retransmits it",
			fmt.Sprintf("%d SYN(s) from client C (%s), %d answer(s) from ustack, %s", len(cSyns), later.where(and(in, is(fS))).lines(), len(answers), outcome))

		var reads []string
		var from []netip.AddrPort
		for range clients {
			u, err := x.Accept(ln, time.Second)
			if err != nil {
				break
			}
			b, _ := u.Read(time.Second)
			reads = append(reads, string(b))
			from = append(from, u.Remote())
		}
		ok := len(reads) == 2
		for i := 0; ok && i < 2; i++ {
			ok = from[i] == clients[i].Local() && reads[i] == msgs[clients[i].name]
		}
		x.Expect("B11", ok, "after accept(), the connections come out in order with their bytes delivered intact",
			fmt.Sprintf("accepted %v, read %q", from, reads))
		return nil
	},
}

// readSNMP returns the kernel's IP counter name from /proc/net/snmp in
// the namespace.
func readSNMP(x *Env, name string) (int64, error) {
	out, err := x.ns.Run("cat", "/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	var header []string
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "Ip:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i := range header {
			if header[i] == name && i < len(f) {
				return strconv.ParseInt(f[i], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no Ip %s in /proc/net/snmp", name)
}

// runSynTimeout dials 10.0.0.77:80, which nobody answers, and checks the
// SYN schedule against Linux's for the stack's tunables.
func runSynTimeout(x *Env) error {
	retries, linear := x.opts.SynRetries, x.opts.SynLinearTimeouts
	wantSyns, wantTimeout := synSchedule(retries, linear)
	dst := ap(netip.MustParseAddr("10.0.0.77"), 80)
	x.Lab("%s is in tun0's subnet, but nobody has it; this namespace's kernel does not forward (ip_forward = 0), so it drops whatever is not addressed to itself", dst.Addr())
	before, errB := readSNMP(x, "InAddrErrors")
	x.Ustack("connect(%s)", dst)
	ctx, cancel := context.WithTimeout(x.ctx, wantTimeout+5*time.Second)
	defer cancel()
	start := x.tl.Now()
	c, err := x.st.DialTCP(ctx, netip.AddrPort{}, dst)
	took := x.tl.Now() - start
	if err == nil {
		c.Close()
	}
	x.Ustack("connect() = %s after %s", errName(err), secs(took))
	after, errA := readSNMP(x, "InAddrErrors")
	x.SS()

	all := segs(x.tl.Segments())
	syns := all.where(and(out, is(fS), func(s Segment) bool { return s.Dst == dst }))
	var times []time.Duration
	same := len(syns) > 0
	for _, s := range syns {
		times = append(times, s.T-syns[0].T)
		same = same && s.Seq == syns[0].Seq && s.Src == syns[0].Src
	}
	ok := len(times) == len(wantSyns)
	for i := 0; ok && i < len(times); i++ {
		ok = near(times[i], wantSyns[i], 200*time.Millisecond)
	}
	x.Expect("B14", ok, fmt.Sprintf("the SYN is sent at %s (syn_retries %d, syn_linear_timeouts %d: %s)",
		durations(wantSyns), retries, linear, scheduleWords(linear)),
		"SYNs at "+durations(times))
	x.Expect("B14", same, "each retransmission is the same SYN (same port, same ISN)", syns.lines())
	var timeout time.Duration
	if len(syns) > 0 {
		timeout = took - (syns[0].T - start)
	}
	x.Expect("B14", isErrno(err, syscall.ETIMEDOUT) && near(timeout, wantTimeout, 500*time.Millisecond),
		fmt.Sprintf("connect() fails with ETIMEDOUT %s after the first SYN", secs(wantTimeout)),
		fmt.Sprintf("connect() = %s after %s", errName(err), secs(timeout)))
	var local netip.AddrPort
	if len(syns) > 0 {
		local = syns[0].Src
	}
	tr := trans(x.tl.Transitions()).of(local, dst)
	_, closed := tr.find("SYN-SENT", "CLOSE")
	_, left := sockFor(x.st.Sockets(), local, dst)
	x.Expect("B14", closed && !left, "the socket gives up: SYN-SENT -> CLOSE, and ss no longer shows it", tr.path())
	inbound := all.where(in)
	got := fmt.Sprintf("%d segment(s) came back", len(inbound))
	if errA == nil && errB == nil {
		got += fmt.Sprintf("; the kernel counted %d more packets not for it (Ip InAddrErrors %d -> %d)", after-before, before, after)
	}
	x.Expect("B14", len(inbound) == 0, "nothing answers: no RST, no SYN|ACK (the host is down)", got)
	return nil
}

func scheduleWords(linear int) string {
	if linear == 0 {
		return "the wait doubles from 1 s"
	}
	return fmt.Sprintf("%d waits of 1 s, then it doubles from 1 s", linear)
}

var synTimeout = &Experiment{
	Name:  "syn-timeout",
	IDs:   []string{"B14"},
	Title: "SYN retransmission with exponential backoff, then ETIMEDOUT (host down)",
	Explain: `ustack connects to 10.0.0.77, an address in tun0's subnet that no host
has: nobody answers. The SYN is retransmitted on a timer that starts at
the initial RTO (1 s) and doubles each time, until tcp_syn_retries
retransmissions have gone unanswered; then connect() fails with
ETIMEDOUT. This experiment uses syn_retries 3 and syn_linear_timeouts 0
(the textbook schedule and older kernels): SYNs at 0, 1, 3 and 7 s, and
ETIMEDOUT at 15 s. With Linux's defaults (6 retries, 4 linear) the same
rule gives SYNs up to 67 s and ETIMEDOUT after about 131 s.

Watch for: the four S lines with the same seq and the growing gaps between
them, the silence in the other direction, and SYN-SENT -> CLOSE when the
last wait runs out. This is real time: about 15 s.`,
	Options: func(o *stack.Options) { o.SynRetries, o.SynLinearTimeouts = 3, 0 },
	About:   15 * time.Second,
	Run:     runSynTimeout,
}

var synTimeoutLinear = &Experiment{
	Name:  "syn-timeout-linear",
	IDs:   []string{"B14"},
	Title: "SYN retransmission as current kernels do it: linear first, then exponential",
	Explain: `The same unanswered connect() to 10.0.0.77, with the schedule of current
Linux kernels: tcp_syn_linear_timeouts retransmissions 1 s apart first,
then the exponential backoff starting again from 1 s. Here syn_retries 2
and syn_linear_timeouts 2, so 4 retransmissions in all: SYNs at 0, 1, 2,
3 and 5 s, and ETIMEDOUT at 9 s (the defaults, 6 and 4, give SYNs at 0,
1, 2, 3, 4, 5, 7, 11, 19, 35, 67 s and ETIMEDOUT at 131 s).

Watch for: the equal 1 s gaps, then the doubling, and ETIMEDOUT after the
last wait. About 9 s of real time.`,
	Options: func(o *stack.Options) { o.SynRetries, o.SynLinearTimeouts = 2, 2 },
	About:   9 * time.Second,
	Run:     runSynTimeout,
}

// waitState waits up to d for the socket to reach state.
func waitState(x *Env, so *stack.Socket, state string, d time.Duration) bool {
	return x.WaitFor(d, func() bool { return so.State() == state })
}

// socketWrite writes msg on a non-blocking socket.
func socketWrite(x *Env, so *stack.Socket, msg string) {
	start := x.tl.Now()
	n, err := so.Write([]byte(msg))
	if err != nil {
		x.tl.NoteAt(start, "ustack", "write(%s) = %s", quote([]byte(msg)), errName(err))
		return
	}
	x.tl.NoteAt(start, "ustack", "write(%s) = %d", quote([]byte(msg)), n)
}

// socketConnect is a non-blocking connect(), noted where the call began:
// before the SYN it sends and whatever that sets off before it returns.
func socketConnect(x *Env, so *stack.Socket, to netip.AddrPort) error {
	start := x.tl.Now()
	err := so.Connect(to)
	x.tl.NoteAt(start, "ustack", "connect(%s) = %s", to, errName(err))
	return err
}

// socketRead reads a non-blocking socket until n bytes came or d passed.
func socketRead(x *Env, so *stack.Socket, n int, d time.Duration) string {
	var got []byte
	buf := make([]byte, 4096)
	x.WaitFor(d, func() bool {
		k, err := so.Read(buf)
		if err == nil && k > 0 {
			got = append(got, buf[:k]...)
		}
		return len(got) >= n || (err != nil && !errors.Is(err, syscall.EAGAIN))
	})
	x.Ustack("read() = %d bytes %s", len(got), quote(got))
	return string(got)
}

var simultaneousOpen = &Experiment{
	Name:  "simultaneous-open",
	IDs:   []string{"B15"},
	Title: "Two sockets connect() to each other at once: no listener, four segments",
	Explain: `A kernel socket bound to 10.0.0.1:6000 connects to 10.0.0.2:5000 while a
ustack socket bound to 10.0.0.2:5000 connects to 10.0.0.1:6000. Neither
listens. The link delays every packet by 250 ms, so both SYNs are in
flight at once. Each side, in SYN-SENT, receives a SYN without ACK: it
moves to SYN-RECV and sends a SYN|ACK that repeats its own ISN (same seq
as its SYN) and acknowledges the other's. Each SYN|ACK then completes the
other side's open: ESTABLISHED, with four segments in all and no
listener anywhere (RFC 9293 figure 8). Then each side, Linux and ustack
alike, adds a bare ACK with a D-SACK block, "<sack 0:1>": once
established, it takes the SYN of the other's SYN|ACK, already
acknowledged, for a duplicate and says so (RFC 2883).

Watch for: S in both directions first, then S. in both directions with
the same seq as the S before them (relative seq 0), ustack's SYN-SENT ->
SYN-RECV -> ESTAB, and data flowing both ways afterwards.`,
	Impair: "delay=250ms",
	About:  3 * time.Second,
	Run: func(x *Env) error {
		local, remote := ap(ustackAddr, 5000), ap(kernelAddr, 6000)
		so := x.st.NewSocket()
		x.Defer(func() { so.Close() })
		if err := so.Bind(local); err != nil {
			x.Ustack("bind(%s) = %s", local, errName(err))
			return err
		}
		x.Ustack("bind(%s) = 0", local)
		before := x.SS()
		type dialed struct {
			k   *KConn
			err error
		}
		kch := make(chan dialed, 1)
		x.Go(func() {
			k, err := x.KDial("", remote, local, 3*time.Second)
			kch <- dialed{k, err}
		})
		x.Sleep(50 * time.Millisecond) // the kernel's SYN is on its way
		socketConnect(x, so, remote)
		estab := waitState(x, so, "ESTAB", 3*time.Second)
		var kd dialed
		select {
		case kd = <-kch:
		case <-time.After(4 * time.Second):
			kd.err = errors.New("the kernel's connect() did not return")
		}
		x.Sleep(600 * time.Millisecond) // anything else the handshake makes
		handshake := segs(x.tl.Segments())

		lis := 0
		for _, s := range before {
			if s.State == "LISTEN" {
				lis++
			}
		}
		x.Expect("B15", lis == 0, "there is no listener", sockLines(before))
		checkSimOpen(x, "B15", handshake, local, remote)
		tr := trans(x.tl.Transitions()).of(local, remote)
		x.Expect("B15", tr.hasPath("SYN-SENT", "SYN-RECV", "ESTAB") && estab,
			"ustack goes SYN-SENT -> SYN-RECV (on the SYN) -> ESTAB (on the SYN|ACK)", tr.path())
		x.Expect("B15", kd.err == nil, "the kernel's connect() succeeds too", "connect() = "+errName(kd.err))
		hs := handshake.where(and(flow(local, remote), has(fS)))
		ours := handshake.where(and(flow(local, remote), out))
		x.Expect("B15", len(hs) == 4,
			"four segments open the connection: S and S. each way",
			fmt.Sprintf("%d SYN segments: %s", len(hs), hs.lines()))
		dsack := len(ours) == 3 && ours[2].Flags == fA && ours[2].Opts.NumSACK == 1 &&
			ours[2].Opts.SACK[0].End-ours[2].Opts.SACK[0].Start == 1
		x.Expect("B15", dsack,
			"then, like Linux, ustack ACKs the duplicated SYN of the kernel's S. with a D-SACK (nothing else)",
			ours.lines())
		if kd.err != nil || !estab {
			return nil
		}
		msg := "hello from ustack\n"
		socketWrite(x, so, msg)
		kgot, _ := kd.k.Read(2 * time.Second)
		reply := "hello from the kernel\n"
		kd.k.Write(reply)
		ugot := socketRead(x, so, len(reply), 2*time.Second)
		x.Expect("B15", string(kgot) == msg && ugot == reply, "the connection carries data both ways",
			fmt.Sprintf("kernel read %q, ustack read %q", kgot, ugot))
		return nil
	},
}

// checkSimOpen checks the four handshake segments of a simultaneous open
// or a self-connect: each side's S, then its S. with the same ISN and the
// other's ISN + 1.
func checkSimOpen(x *Env, id string, all segs, local, remote netip.AddrPort) {
	sides := []struct {
		name     string
		src, dst netip.AddrPort
	}{{"ustack", local, remote}, {"kernel", remote, local}}
	if local == remote {
		sides = sides[:1]
	}
	for _, side := range sides {
		from := func(s Segment) bool { return s.Src == side.src && s.Dst == side.dst }
		syn, ok1 := all.first(and(from, is(fS)))
		synack, ok2 := all.first(and(from, is(fSA)))
		peerSyn, ok3 := all.first(and(func(s Segment) bool { return s.Src == side.dst && s.Dst == side.src }, is(fS)))
		ok := ok1 && ok2 && ok3 && synack.Seq == syn.Seq && synack.Ack == peerSyn.Seq+1 && synack.T >= peerSyn.T
		got := "missing"
		if ok1 && ok2 {
			got = describe(syn) + "; then " + describe(synack)
		}
		x.Expect(id, ok, side.name+" sends S, then, on the other's S, S. with the same ISN and ack = the other's ISN + 1", got)
	}
}

var selfConnect = &Experiment{
	Name:  "self-connect",
	IDs:   []string{"B16"},
	Title: "A socket that connects to itself is connected",
	Explain: `A ustack socket bound to 10.0.0.2:5000 connects to 10.0.0.2:5000: its own
address and port. Packets for the stack's own address never leave: they
take the stack's loopback path, so nothing crosses tun0 (the lines below
come from the stack's packet observer). connect() on this non-blocking
socket returns EINPROGRESS at once, as Linux's does, having sent the SYN;
the rest happens without the application. The SYN comes back to the socket
that sent it, in SYN-SENT: a SYN without ACK, so, as in a simultaneous
open (B15), it moves to SYN-RECV and answers SYN|ACK with the same ISN.
That SYN|ACK comes back too and completes the open: ESTABLISHED with
itself. What it writes, it reads back. (This is why Go's net.Dial, and
ustack's Dial, check that an ephemeral port did not happen to pick the
destination and retry if it did.)

Watch for: S then S. on ":5000 > :5000", SYN-SENT -> SYN-RECV -> ESTAB,
and the echo of the socket's own bytes. Like Linux, ustack then sends a
third segment, an ACK (with a D-SACK when SACK is on), because once
established it sees its own SYN|ACK's SYN as a duplicate.`,
	Run: func(x *Env) error {
		self := ap(ustackAddr, 5000)
		so, err := selfConnected(x, self)
		if err != nil {
			return err
		}
		_ = so
		tr := trans(x.tl.Transitions()).of(self, self)
		x.Expect("B16", tr.hasPath("SYN-SENT", "SYN-RECV", "ESTAB") && so.State() == "ESTAB",
			"the socket reaches ESTAB on its own: SYN-SENT -> SYN-RECV -> ESTAB", tr.path())
		all := segs(x.tl.Segments())
		checkSimOpen(x, "B16", all, self, self)
		x.Expect("B16", x.tap.out.Load() == 0, "all of it on the stack's loopback path: no packet goes out on tun0",
			fmt.Sprintf("%d TCP packet(s) written to tun0", x.tap.out.Load()))
		msg := "ping\n"
		socketWrite(x, so, msg)
		got := socketRead(x, so, len(msg), 2*time.Second)
		x.Expect("B16", got == msg, "what it writes it reads back", fmt.Sprintf("read %q", got))
		return nil
	},
}

// selfConnected makes a ustack socket bound to self and connected to it.
func selfConnected(x *Env, self netip.AddrPort) (*stack.Socket, error) {
	so := x.st.NewSocket()
	x.Defer(func() { so.Close() })
	if err := so.Bind(self); err != nil {
		x.Ustack("bind(%s) = %s", self, errName(err))
		return nil, err
	}
	x.Ustack("bind(%s) = 0", self)
	socketConnect(x, so, self)
	if !waitState(x, so, "ESTAB", 2*time.Second) {
		x.Ustack("still %s after 2 s", so.State())
	}
	return so, nil
}

var lateSynAck = &Experiment{
	Name:  "late-synack",
	IDs:   []string{"B17", "B04"},
	Tools: []string{"ss"},
	Title: "A SYN|ACK for a client that gave up is answered with RST",
	Explain: `The kernel listens on 10.0.0.1:7000; the link delays every packet by
400 ms each way. ustack dials it with a 200 ms timeout: the dialer gives
up in SYN-SENT and closes the socket, which simply disappears (nothing is
sent). The kernel answers the SYN anyway, and its SYN|ACK arrives 800 ms
after the SYN left, for a connection that no longer exists. A segment
with ACK for no socket gets B04's answer: RST with seq = SEG.ACK (which is
the ISN ustack had chosen + 1, so relative seq 1) and no ACK flag. The
kernel's half-open connection (SYN-RECV) is dropped on that RST: nothing
is ever accepted.

Watch for: ustack's S, the dial error and the empty ss, then the late S.
and ustack's "R 1:1(0)" right after it, and the kernel's empty accept().`,
	Impair: "delay=400ms",
	About:  3 * time.Second,
	Run: func(x *Env) error {
		kaddr := ap(kernelAddr, 7000)
		kln, err := x.KListen(kaddr)
		if err != nil {
			return err
		}
		x.Ustack("connect(%s) with a 200 ms timeout", kaddr)
		ctx, cancel := context.WithTimeout(x.ctx, 200*time.Millisecond)
		c, err := x.st.DialTCP(ctx, netip.AddrPort{}, kaddr)
		cancel()
		gaveUp := x.tl.Now()
		if err == nil {
			c.Close()
			x.Ustack("connect() = 0 (too early: the delay did not hold the SYN|ACK back)")
		} else {
			x.Ustack("connect() gave up: %v", err)
		}
		socks := x.SS()
		x.Expect("B17", err != nil && len(socks) == 0, "the dialer gives up in SYN-SENT and the socket is gone",
			fmt.Sprintf("connect() = %v; %s", err, sockLines(socks)))
		synack, ok := x.WaitSegment(2*time.Second, and(in, is(fSA)))
		if !ok {
			x.Expect("B17", false, "the kernel's SYN|ACK arrives late", "no SYN|ACK within 2 s")
			return nil
		}
		x.Expect("B17", synack.T > gaveUp, "the kernel's SYN|ACK arrives after that",
			fmt.Sprintf("gave up at %.3f, %s", gaveUp.Seconds(), describe(synack)))
		rst, ok := x.WaitSegment(time.Second, and(out, has(fR), flow(synack.Dst, synack.Src)))
		got := "no RST"
		if ok {
			got = describe(rst)
		}
		x.Expect("B04", ok && rst.Is(fR) && rst.Seq == synack.Ack && rst.T >= synack.T,
			"it meets no socket: ustack answers RST with seq = SEG.ACK and no ACK flag", got)
		x.Sleep(900 * time.Millisecond) // the RST reaches the kernel
		kln.SetDeadline(time.Now().Add(300 * time.Millisecond))
		kc, aerr := kln.Accept()
		if aerr == nil {
			kc.Close()
			x.Kernel("accept() = a connection from %s", kc.RemoteAddr())
		} else {
			x.Kernel("accept() = nothing to accept within 0.3 s")
		}
		kss := x.KernelSS()
		halfOpen := strings.Contains(kss, "SYN-RECV") || strings.Contains(kss, "ESTAB")
		x.Expect("B17", aerr != nil && !halfOpen, "the RST drops the kernel's half-open connection: nothing to accept(), no SYN-RECV left",
			fmt.Sprintf("accept() found nothing: %v; kernel ss: %s", aerr != nil, kss))
		return nil
	},
}
