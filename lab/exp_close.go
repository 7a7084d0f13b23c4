package lab

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// serve runs f on the next connection accepted on a fresh ustack listener
// at port, on its own goroutine; done is closed when f returns.
func serve(x *Env, port uint16, f func(u *UConn)) (done chan struct{}, err error) {
	ln, err := x.Listen(ap(x.U, port), 8)
	if err != nil {
		return nil, err
	}
	done = make(chan struct{})
	x.Go(func() {
		defer close(done)
		u, err := x.Accept(ln, 5*time.Second)
		if err != nil {
			return
		}
		f(u)
	})
	return done, nil
}

// waitDone waits up to d for done.
func waitDone(done chan struct{}, d time.Duration) bool {
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// connOf finds the ustack side of the first connection to port: (local,
// peer) from the first SYN the kernel sent to it.
func connOf(x *Env, port uint16) (local, peer netip.AddrPort, ok bool) {
	syn, ok := segs(x.tl.Segments()).first(and(in, is(fS), toPort(port)))
	return syn.Dst, syn.Src, ok
}

var threeWayClose = &Experiment{
	Name:  "three-way-close",
	IDs:   []string{"B31"},
	IPv6:  true,
	Tools: []string{"ss"},
	Title: "The passive closer's ACK and FIN leave as one FIN|ACK",
	Explain: `A kernel client sends a request line to ustack's server, which answers at
once, and then closes its socket (FIN). ustack's server reads EOF and
closes at once too. Because ustack answered within the delayed-ACK time of
receiving the request, the connection counts as interactive (Linux's
"pingpong" mode, and ustack's): in that mode an ACK is not sent at once but
after a short delay, in the hope that data follows to carry it. So the
ACK of the kernel's FIN waits, the application closes meanwhile, and
ustack's own FIN carries the ACK: the close takes three segments instead of
four: F. (kernel), F. (ustack, acknowledging the kernel's FIN), . (kernel).
(Linux, and ustack with it, also enters that mode on any FIN it receives,
tcp_fin, so a prompt close() gives three segments even on a connection that
never answered.) The kernel, which closed first, then waits in TIME-WAIT.

Watch for: the request and the immediate answer, the kernel's F., ustack's
CLOSE-WAIT -> LAST-ACK, a single F. from ustack whose ack is the kernel's
FIN + 1 (no bare ACK before it), and the kernel's last ACK taking ustack
from LAST-ACK to CLOSE.`,
	Run: func(x *Env) error {
		var req, rest []byte
		var rerr error
		done, err := serve(x, 7, func(u *UConn) {
			req, _ = u.Read(3 * time.Second)
			u.Write("hello kernel\n")
			rest, rerr = u.ReadAll(3 * time.Second)
			u.Close()
		})
		if err != nil {
			return err
		}
		k, err := x.KDial("", netip.AddrPort{}, ap(x.U, 7), 3*time.Second)
		if err != nil {
			x.Expect("B31", false, "the kernel connects", errName(err))
			return nil
		}
		line := "hello ustack\n"
		k.Write(line)
		reply, _ := k.Read(2 * time.Second)
		k.Close()
		if !waitDone(done, 3*time.Second) {
			return fmt.Errorf("ustack's server did not finish")
		}
		x.Sleep(100 * time.Millisecond)
		kss := x.KernelSS()
		local, peer, ok := connOf(x, 7)
		if !ok {
			x.Expect("B31", false, "the kernel connects", "no SYN seen")
			return nil
		}
		x.Expect("B31", string(req) == line && string(reply) == "hello kernel\n" && len(rest) == 0 && rerr == io.EOF,
			"ustack reads the request, answers it, then reads EOF (the kernel's FIN)",
			fmt.Sprintf("read %q, kernel read %q, then %q and %s", req, reply, rest, errName(rerr)))
		all := segs(x.tl.Segments()).where(flow(local, peer))
		fin, ok := all.first(and(in, has(fF)))
		if !ok {
			x.Expect("B31", false, "the kernel sends FIN", "no FIN from the kernel")
			return nil
		}
		closing := all.from(all.index(fin))
		first, ok := closing.first(out)
		got := "nothing"
		if ok {
			got = describe(first)
		}
		x.Expect("B31", ok && first.Has(fFA) && first.Ack == fin.Seq+fin.SeqLen(),
			"ustack's ACK of the FIN and its own FIN leave as one segment: F. with ack = the kernel's FIN + 1", got)
		x.Expect("B31", len(closing) == 3 && closing[2].In() && closing[2].Is(fA),
			"three segments close the connection: F. (kernel), F. (ustack), . (kernel)", closing.lines())
		tr := trans(x.tl.Transitions()).of(local, peer)
		x.Expect("B31", tr.hasPath("ESTAB", "CLOSE-WAIT", "LAST-ACK", "CLOSE"),
			"ustack goes ESTAB -> CLOSE-WAIT (FIN) -> LAST-ACK (close()) -> CLOSE (ACK)", tr.path())
		x.Expect("B31", strings.Contains(kss, "TIME-WAIT"),
			"the kernel, the active closer, waits in TIME-WAIT", "kernel ss: "+kss)
		return nil
	},
}

// checkReset checks B32's RST: the only thing ustack sends after close(),
// seq = ustack's SND.NXT and ack = everything it received.
func checkReset(x *Env, id string, local, peer netip.AddrPort, closedAt time.Duration) {
	all := segs(x.tl.Segments()).where(flow(local, peer))
	var sndNxt, rcvNxt uint32
	for _, s := range all {
		if s.Out && s.T <= closedAt {
			sndNxt = s.Seq + s.SeqLen()
		}
		if !s.Out && s.T <= closedAt {
			rcvNxt = s.Seq + s.SeqLen()
		}
	}
	after := all.where(func(s Segment) bool { return s.Out && s.T >= closedAt })
	rst, ok := after.first(has(fR))
	fins := all.where(and(out, has(fF)))
	x.Expect(id, ok && len(fins) == 0 && after[0].Has(fR), "close() sends RST, not FIN", after.lines())
	if ok {
		x.Expect(id, rst.Is(fRA) && rst.Seq == sndNxt && rst.Ack == rcvNxt,
			"the RST has seq = SND.NXT (exactly what the kernel expects next, so it is accepted) and acks every byte received, the discarded ones too",
			fmt.Sprintf("%s; SND.NXT %d, RCV.NXT %d (relative)", describe(rst), sndNxt-rst.SeqISN, rcvNxt-rst.AckISN))
	}
	tr := trans(x.tl.Transitions()).of(local, peer)
	est, _ := tr.find("", "ESTAB")
	var afterEst trans
	for _, t := range tr {
		if t.T > est.T {
			afterEst = append(afterEst, t)
		}
	}
	_, left := sockFor(x.st.Sockets(), local, peer)
	x.Expect(id, len(afterEst) == 1 && afterEst[0].From == "ESTAB" && afterEst[0].To == "CLOSE" && !left,
		"the connection is gone at once: ESTAB -> CLOSE, no FIN-WAIT, no TIME-WAIT, not in ss", tr.path())
}

var closeUnread = &Experiment{
	Name:  "close-unread",
	IDs:   []string{"B32"},
	IPv6:  true,
	Tools: []string{"curl"},
	Title: "close() with unread data sends RST, not FIN",
	Explain: `curl sends an HTTP request to ustack. ustack's server accepts the
connection, waits until the request is in its receive queue, and closes
the socket without reading it. A FIN would tell the client "I read
everything you sent and have nothing more to say" - a lie, since the
request was thrown away unread. So Linux (tcp_close: data_was_unread), and
ustack with it, aborts instead: it sends RST and the connection is gone at
once, with no FIN-WAIT and no TIME-WAIT. The RST's seq is exactly the next
sequence number the client expects, so the client accepts it; its next
read() fails with ECONNRESET, which curl reports as "Recv failure:
Connection reset by peer". (This is the classic "connection reset by peer"
of a server that closes without draining the request; SO_LINGER 0 gives
the same abortive close on purpose, see linger-zero.)

Watch for: the request (P.) ACKed by ustack, its bytes waiting in Recv-Q
in ss, ESTAB -> CLOSE at close(), a single R. from ustack and no F at all,
and curl's error.`,
	Run: func(x *Env) error {
		var closedAt time.Duration
		done, err := serve(x, 80, func(u *UConn) {
			if !u.c.WaitReadable(3 * time.Second) {
				x.Ustack("no request within 3 s")
				return
			}
			x.Sleep(50 * time.Millisecond) // the whole request is in
			socks := x.SS()
			n := 0
			if s, ok := sockFor(socks, u.Local(), u.Remote()); ok {
				n = s.RecvQ
			}
			x.Expect("B32", n > 0, "the request reached ustack and waits unread in the receive queue (Recv-Q)", sockLines(socks))
			closedAt = x.tl.Now()
			x.Ustack("close() with %d unread bytes in the receive queue", n)
			u.c.Close()
		})
		if err != nil {
			return err
		}
		r := x.Exec(6*time.Second, "", "curl", "-sS", "--max-time", "3", "http://"+ap(x.U, 80).String()+"/")
		reset := strings.Contains(r.Stderr, "Connection reset by peer")
		if reset {
			x.Kernel("=> curl's read of the response: recv() = ECONNRESET")
		}
		if !waitDone(done, 3*time.Second) {
			return fmt.Errorf("ustack's server did not finish")
		}
		local, peer, ok := connOf(x, 80)
		if !ok || closedAt == 0 {
			x.Expect("B32", false, "curl connects and sends its request", "no connection")
			return nil
		}
		checkReset(x, "B32", local, peer, closedAt)
		x.SS()
		x.Expect("B32", reset && r.Code == 56, "the client's next read fails with ECONNRESET (curl: Recv failure: Connection reset by peer)",
			fmt.Sprintf("curl exit %d: %s", r.Code, strings.TrimSpace(r.Stderr)))
		return nil
	},
}

var lingerZero = &Experiment{
	Name:  "linger-zero",
	IDs:   []string{"B32", "B40"},
	Title: "SO_LINGER 0: an abortive close on purpose; the peer reads ECONNRESET, then EPIPE",
	Explain: `A kernel client connects to ustack and ustack sets SO_LINGER with a zero
timeout on the accepted connection, then closes it. Nothing is unread
this time, yet close() does not send FIN: with a zero linger time, close()
is abortive (Linux tcp_close, B32): RST and gone. On the kernel's side the
RST arrives in ESTABLISHED with exactly the expected seq, so it resets the
connection (B40): the next read() fails with ECONNRESET, and the write()
after that with EPIPE, since the connection no longer exists.

Watch for: ustack's R. instead of F., ESTAB -> CLOSE, and the kernel's
read() = ECONNRESET followed by write() = EPIPE.`,
	Run: func(x *Env) error {
		k, u, err := x.ConnectedPair(7)
		if err != nil {
			return err
		}
		u.c.SetLinger(0)
		x.Ustack("setsockopt(SO_LINGER, {on, 0 s})")
		closedAt := x.tl.Now()
		u.Close()
		x.WaitSegment(time.Second, and(out, has(fR)))
		x.Sleep(50 * time.Millisecond)
		_, rerr := k.Read(time.Second)
		werr := k.Write("anyone there?\n")
		checkReset(x, "B32", u.Local(), u.Remote(), closedAt)
		x.Expect("B40", isErrno(rerr, syscall.ECONNRESET), "the kernel's next read() fails with ECONNRESET", "read() = "+errName(rerr))
		x.Expect("B40", isErrno(werr, syscall.EPIPE), "and the write() after it with EPIPE", "write() = "+errName(werr))
		return nil
	},
}

var dataAfterClose = &Experiment{
	Name:  "data-after-close",
	IDs:   []string{"B33"},
	Title: "Data for a socket that was closed is answered with RST",
	Explain: `ustack accepts a kernel connection and closes it at once: FIN, and once
the kernel ACKs it, FIN-WAIT-2. The socket is now an orphan: no
application will ever read from it again. The kernel, still in
CLOSE-WAIT, reads EOF and then sends more data anyway. RFC 1122 (4.2.2.13)
and Linux answer data for a closed socket with RST - here the RST for the
segment, seq = SEG.ACK and no ACK flag - and forget the connection. The
kernel's socket is dead: its next write() fails with EPIPE. Its read()
returns EOF rather than ECONNRESET: Linux had already received the FIN
(CLOSE-WAIT), and a RST in CLOSE-WAIT sets EPIPE, not ECONNRESET; a peer
that was still in ESTABLISHED (the RST overtaking the FIN) would read
ECONNRESET.

Watch for: ESTAB -> FIN-WAIT-1 -> FIN-WAIT-2, the kernel's P. after its
read() of EOF, ustack's "R" whose seq is the data segment's ack,
FIN-WAIT-2 -> CLOSE, and the kernel's write() = EPIPE.`,
	Run: func(x *Env) error {
		k, u, err := x.ConnectedPair(7)
		if err != nil {
			return err
		}
		local, peer := u.Local(), u.Remote()
		u.Close()
		_, fw2 := x.WaitTransition(time.Second, func(t Transition) bool { return t.Conn(local, peer) && t.To == "FIN-WAIT-2" })
		x.SS()
		k.Read(time.Second)
		mark := len(x.tl.Segments())
		k.Write("more data after your FIN\n")
		rst, ok := x.WaitSegment(time.Second, and(out, has(fR), flow(local, peer)))
		x.Sleep(50 * time.Millisecond)
		rerr := func() error { _, err := k.Read(time.Second); return err }()
		werr := k.Write("and more\n")
		x.SS()

		tr := trans(x.tl.Transitions()).of(local, peer)
		x.Expect("B33", fw2 && tr.hasPath("ESTAB", "FIN-WAIT-1", "FIN-WAIT-2"),
			"ustack's close() sends FIN; the kernel's ACK takes the orphan to FIN-WAIT-2", tr.path())
		later := segs(x.tl.Segments()).from(mark).where(flow(local, peer))
		data, okd := later.first(and(in, func(s Segment) bool { return s.Len > 0 }))
		got := "no data segment"
		if okd {
			got = describe(data)
			if ok {
				got += "; then " + describe(rst)
			}
		}
		x.Expect("B33", okd && ok && rst.Is(fR) && rst.Seq == data.Ack && rst.T >= data.T,
			"the kernel's new data is answered with RST, seq = SEG.ACK, no ACK flag", got)
		_, left := sockFor(x.st.Sockets(), local, peer)
		x.Expect("B33", tr.hasPath("FIN-WAIT-2", "CLOSE") && !left, "and the connection is gone: FIN-WAIT-2 -> CLOSE, not in ss", tr.path())
		x.Expect("B33", isErrno(werr, syscall.EPIPE), "the kernel's next write() fails with EPIPE", "write() = "+errName(werr))
		x.Expect("B33", rerr == io.EOF || isErrno(rerr, syscall.ECONNRESET),
			"its read() reports the end: EOF, since the FIN came before the RST (ECONNRESET only if the RST overtakes the FIN)",
			"read() = "+errName(rerr))
		return nil
	},
}

var halfClose = &Experiment{
	Name:  "half-close",
	IDs:   []string{"B34"},
	Title: "shutdown(SHUT_WR): FIN goes out, data keeps coming in",
	Explain: `ustack accepts a kernel connection, writes a greeting and calls
shutdown(SHUT_WR): its FIN follows the greeting, but the receiving half
stays open. The kernel reads the greeting, then EOF - and, its own sending
half still open, goes on sending. ustack ACKs those bytes and its
application reads them (FIN-WAIT-2 is a state that receives). Only when
the kernel shuts down its side too does ustack see EOF; having sent and
received a FIN, it waits in TIME-WAIT.

Watch for: the greeting (P.) then ustack's F., ESTAB -> FIN-WAIT-1 ->
FIN-WAIT-2, the kernel's read() = EOF, the kernel's data after that and
ustack's read of it, no R anywhere, and FIN-WAIT-2 -> TIME-WAIT on the
kernel's FIN.`,
	Run: func(x *Env) error {
		greeting := "greeting from ustack\n"
		after := "bytes sent after your FIN\n"
		var read []byte
		var rerr error
		done, err := serve(x, 7, func(u *UConn) {
			u.Write(greeting)
			u.CloseWrite()
			read, rerr = u.ReadAll(3 * time.Second)
		})
		if err != nil {
			return err
		}
		k, err := x.KDial("", netip.AddrPort{}, ap(ustackAddr, 7), 3*time.Second)
		if err != nil {
			return err
		}
		kread, kerr := k.ReadAll(2 * time.Second)
		k.Write(after)
		k.CloseWrite()
		if !waitDone(done, 3*time.Second) {
			return fmt.Errorf("ustack's server did not finish")
		}
		local, peer := ap(ustackAddr, 7), k.Local()
		x.WaitTransition(time.Second, func(t Transition) bool { return t.Conn(local, peer) && t.To == "TIME-WAIT" })
		x.SS()
		tr := trans(x.tl.Transitions()).of(local, peer)
		x.Expect("B34", tr.hasPath("ESTAB", "FIN-WAIT-1", "FIN-WAIT-2"),
			"shutdown(SHUT_WR) sends FIN after the greeting: ESTAB -> FIN-WAIT-1 -> FIN-WAIT-2", tr.path())
		x.Expect("B34", string(kread) == greeting && kerr == io.EOF, "the kernel reads the greeting, then EOF",
			fmt.Sprintf("read %q, then %s", kread, errName(kerr)))
		rsts := segs(x.tl.Segments()).where(has(fR))
		x.Expect("B34", string(read) == after && rerr == io.EOF && len(rsts) == 0,
			"the kernel goes on sending; ustack ACKs and reads those bytes, then the kernel's EOF (no RST)",
			fmt.Sprintf("ustack read %q, then %s; %d RST(s)", read, errName(rerr), len(rsts)))
		x.Expect("B34", tr.hasPath("FIN-WAIT-2", "TIME-WAIT"), "the kernel's FIN ends it: FIN-WAIT-2 -> TIME-WAIT", tr.path())
		return nil
	},
}

var finWait2Timeout = &Experiment{
	Name:  "fin-wait-2-timeout",
	IDs:   []string{"B35", "B04"},
	Title: "An orphan in FIN-WAIT-2 gives up after fin_timeout, silently",
	Explain: `Two kernel clients connect and never close. ustack close()s the first
connection and only shutdown(SHUT_WR)s the second. Both send FIN, get it
ACKed, and wait in FIN-WAIT-2 for a FIN that will not come. The closed
one is an orphan - no application can ever use it - so Linux does not
let it wait forever: after tcp_fin_timeout (60 s by default, 3 s here) it
goes straight to CLOSED, skipping TIME-WAIT, and sends nothing at all.
The one that was only shut down still belongs to its application and
waits as long as it takes. When the first kernel client finally closes,
its FIN finds no socket: RST with seq = SEG.ACK (B04).

Watch for: the two FIN-WAIT-2 lines in ss (the orphan's timer counting
down), FIN-WAIT-2 -> CLOSE about 3 s later with no segment on the wire,
ss afterwards, and the RST that answers the kernel's late FIN.`,
	About: 6 * time.Second,
	Run: func(x *Env) error {
		port := uint16(7)
		ln, err := x.Listen(ap(ustackAddr, port), 8)
		if err != nil {
			return err
		}
		ka, err := x.KDial("client A", netip.AddrPort{}, ap(ustackAddr, port), 3*time.Second)
		if err != nil {
			return err
		}
		ua, err := x.Accept(ln, 2*time.Second)
		if err != nil {
			return err
		}
		kb, err := x.KDial("client B", netip.AddrPort{}, ap(ustackAddr, port), 3*time.Second)
		if err != nil {
			return err
		}
		ub, err := x.Accept(ln, 2*time.Second)
		if err != nil {
			return err
		}
		if ua.Remote() != ka.Local() || ub.Remote() != kb.Local() {
			return fmt.Errorf("accepted %v, %v; want %v, %v", ua.Remote(), ub.Remote(), ka.Local(), kb.Local())
		}
		local := ap(ustackAddr, port)
		pa, pb := ka.Local(), kb.Local()
		x.Ustack("close() the connection with client A")
		ua.c.Close()
		x.Ustack("shutdown(SHUT_WR) the connection with client B")
		ub.c.CloseWrite()
		_, okA := x.WaitTransition(time.Second, func(t Transition) bool { return t.Conn(local, pa) && t.To == "FIN-WAIT-2" })
		_, okB := x.WaitTransition(time.Second, func(t Transition) bool { return t.Conn(local, pb) && t.To == "FIN-WAIT-2" })
		x.Sleep(300 * time.Millisecond)
		before := x.SS()
		sa, _ := sockFor(before, local, pa)
		x.Expect("B35", okA && okB && sa.State == "FIN-WAIT-2" && sa.Timer != "",
			"both wait in FIN-WAIT-2 once the kernel ACKs their FIN; the orphan with a timer", sockLines(before))

		gone, okGone := x.WaitTransition(x.opts.FinTimeout+2*time.Second, func(t Transition) bool {
			return t.Conn(local, pa) && t.From == "FIN-WAIT-2"
		})
		x.Sleep(500 * time.Millisecond)
		after := x.SS()
		tra := trans(x.tl.Transitions()).of(local, pa)
		fw2, _ := tra.find("", "FIN-WAIT-2")
		waited := gone.T - fw2.T
		x.Expect("B35", okGone && gone.To == "CLOSE" && near(waited, x.opts.FinTimeout, 500*time.Millisecond),
			fmt.Sprintf("after fin_timeout (%s) the orphan goes straight to CLOSE, without TIME-WAIT", x.opts.FinTimeout),
			fmt.Sprintf("%s, %s after entering FIN-WAIT-2", tra.path(), secs(waited)))
		sent := segs(x.tl.Segments()).where(and(out, flow(local, pa), func(s Segment) bool { return s.T > fw2.T }))
		_, leftA := sockFor(after, local, pa)
		x.Expect("B35", okGone && len(sent) == 0 && !leftA, "silently: ustack sends nothing, and ss no longer shows it",
			fmt.Sprintf("%d segment(s) from ustack on that connection since FIN-WAIT-2; %s", len(sent), sockLines(after)))
		sb, okb := sockFor(after, local, pb)
		x.Expect("B35", okb && sb.State == "FIN-WAIT-2",
			"the connection that was only shut down for writing still waits in FIN-WAIT-2", sockLines(after))

		mark := len(x.tl.Segments())
		ka.Close()
		kb.Close()
		fin, okF := x.WaitSegment(time.Second, and(in, has(fF), flow(local, pa)))
		rst, okR := x.WaitSegment(time.Second, and(out, has(fR), flow(local, pa)))
		got := segs(x.tl.Segments()).from(mark).where(flow(local, pa)).lines()
		x.Expect("B04", okF && okR && rst.Is(fR) && rst.Seq == fin.Ack,
			"the kernel's late FIN finds no socket: RST with seq = SEG.ACK", got)
		x.WaitTransition(time.Second, func(t Transition) bool { return t.Conn(local, pb) && t.To == "TIME-WAIT" })
		trb := trans(x.tl.Transitions()).of(local, pb)
		x.Expect("B35", trb.hasPath("FIN-WAIT-2", "TIME-WAIT"),
			"the other one's wait ends when the kernel's FIN comes: FIN-WAIT-2 -> TIME-WAIT", trb.path())
		return nil
	},
}

// checkSimClose checks B36 on ustack's side of local-peer: FIN-WAIT-1 ->
// CLOSING -> TIME-WAIT -> CLOSE, the FINs crossing, and the ACK of the
// other FIN.
func checkSimClose(x *Env, local, peer netip.AddrPort) {
	tr := trans(x.tl.Transitions()).of(local, peer)
	x.Expect("B36", tr.hasPath("ESTAB", "FIN-WAIT-1", "CLOSING", "TIME-WAIT"),
		"a FIN received in FIN-WAIT-1 moves to CLOSING; the ACK of our FIN then moves to TIME-WAIT", tr.path())
	all := segs(x.tl.Segments()).where(flow(local, peer))
	ourFin, ok1 := all.first(and(out, has(fF)))
	theirFin, ok2 := all.first(and(func(s Segment) bool { return s.Src == peer && s.Dst == local }, has(fF)))
	if local == peer {
		theirFin, ok2 = ourFin, ok1
	}
	crossed := ok1 && ok2 && theirFin.Ack == ourFin.Seq // their FIN did not ack ours
	got := fmt.Sprintf("%s; %s", describe(ourFin), describe(theirFin))
	if local == peer {
		got = describe(ourFin) + ", sent and received: its ack does not cover its own FIN"
	}
	x.Expect("B36", crossed, "the FINs cross: the FIN ustack receives does not acknowledge ustack's own", got)
	ack, ok3 := all.from(all.index(theirFin) + 1).first(and(out, is(fA)))
	got = "no ACK"
	if ok3 {
		got = describe(ack)
	}
	x.Expect("B36", ok1 && ok2 && ok3 && ack.Ack == theirFin.Seq+theirFin.SeqLen(), "ustack ACKs the FIN it received (ack = FIN + 1)", got)
	tw, okTW := tr.find("CLOSING", "TIME-WAIT")
	end, okEnd := x.WaitTransition(x.opts.TimeWait+2*time.Second, func(t Transition) bool {
		return t.Conn(local, peer) && t.From == "TIME-WAIT"
	})
	x.Expect("B36", okTW && okEnd && end.To == "CLOSE" && near(end.T-tw.T, x.opts.TimeWait, 500*time.Millisecond),
		fmt.Sprintf("TIME-WAIT ends after its timer (%s here): CLOSE", x.opts.TimeWait),
		fmt.Sprintf("%s -> %s after %s", end.From, end.To, secs(end.T-tw.T)))
}

var simultaneousClose = &Experiment{
	Name:  "simultaneous-close",
	IDs:   []string{"B36"},
	Tools: []string{"ss"},
	Title: "Both sides close at once: FIN-WAIT-1 -> CLOSING -> TIME-WAIT on both",
	Explain: `A kernel client and ustack are connected; the link delays every packet
by 250 ms. Both close at the same moment, so their FINs cross on the
wire. Each side, in FIN-WAIT-1, receives a FIN that does not acknowledge
its own: it ACKs it and moves to CLOSING (RFC 9293 figure 13). When the
ACK of its own FIN arrives, it moves to TIME-WAIT. Both ends, having both
sent the first FIN, end in TIME-WAIT; four segments in all: F. each way,
then . each way.

Watch for: ustack's F. and the kernel's F. with the same ack they had
before (neither acknowledges the other's FIN), FIN-WAIT-1 -> CLOSING ->
TIME-WAIT, both sockets in TIME-WAIT in the two ss tables, and CLOSE when
ustack's TIME-WAIT timer (2 s here) runs out.`,
	Impair: "delay=250ms",
	About:  4 * time.Second,
	Run: func(x *Env) error {
		k, u, err := x.ConnectedPair(7)
		if err != nil {
			return err
		}
		local, peer := u.Local(), u.Remote()
		x.Sleep(300 * time.Millisecond) // the handshake has settled
		x.Go(func() { k.Close() })
		u.Close()
		x.WaitTransition(2*time.Second, func(t Transition) bool { return t.Conn(local, peer) && t.To == "TIME-WAIT" })
		x.Sleep(300 * time.Millisecond)
		x.SS()
		kss := x.KernelSS()
		checkSimClose(x, local, peer)
		hs := segs(x.tl.Segments()).where(flow(local, peer))
		fin, _ := hs.first(has(fF))
		closing := hs.from(hs.index(fin))
		x.Expect("B36", len(closing) == 4 && strings.Contains(kss, "TIME-WAIT"),
			"four segments (F. each way, then . each way), and the kernel ends in TIME-WAIT too",
			fmt.Sprintf("%s; kernel ss: %s", closing.lines(), kss))
		return nil
	},
}

var selfClose = &Experiment{
	Name:  "self-close",
	IDs:   []string{"B36", "B16"},
	Title: "A self-connected socket closes as a simultaneous close: FIN, ACK",
	Explain: `A ustack socket connected to itself (see self-connect) closes. Its FIN
comes back to it on the loopback path while it is in FIN-WAIT-1: a FIN
that does not acknowledge its own FIN - the simultaneous close of B36,
played by one socket. It moves to CLOSING and sends the ACK of that FIN,
which is also the ACK of its own FIN: it arrives in CLOSING and moves it
to TIME-WAIT. Two segments close the connection: F. and .

Watch for: ESTAB -> FIN-WAIT-1 -> CLOSING -> TIME-WAIT, the two segments
on ":5001 > :5001", and CLOSE when the TIME-WAIT timer (2 s here) runs
out.`,
	About: 3 * time.Second,
	Run: func(x *Env) error {
		self := ap(ustackAddr, 5001)
		so, err := selfConnected(x, self)
		if err != nil {
			return err
		}
		msg := "bye\n"
		socketWrite(x, so, msg)
		socketRead(x, so, len(msg), time.Second) // nothing unread: a FIN, not a RST (B32)
		mark := len(x.tl.Segments())
		x.Ustack("close()")
		so.Close()
		x.WaitTransition(time.Second, func(t Transition) bool { return t.Conn(self, self) && t.To == "TIME-WAIT" })
		x.SS()
		closing := segs(x.tl.Segments()).from(mark)
		x.Expect("B36", len(closing) == 2 && closing[0].Has(fFA) && closing[1].Is(fA) && x.tap.out.Load() == 0,
			"two segments close it, on the loopback path: F. then .", closing.lines())
		checkSimClose(x, self, self)
		return nil
	},
}
