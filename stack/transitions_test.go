package stack

import (
	"context"
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"ustack/hashtable"
)

// The RFC 9293 section 3.3.2 diagram, one test per transition not covered
// by a behaviour test elsewhere (those name the transition they cover).

// CLOSED -> LISTEN (listen) and LISTEN -> CLOSED (close).
func TestTransitionListenAndClose(t *testing.T) {
	h := newHarness(t)
	l := h.listen(5)
	if st := h.s.Sockets(); len(st) != 1 || st[0].State != "LISTEN" {
		t.Fatalf("after listen: %+v", st)
	}
	l.Close()
	if st := h.s.Sockets(); len(st) != 0 {
		t.Fatalf("after close: %+v", st)
	}
	h.send(seg{flags: flagSYN, seq: 0})
	h.expect(seg{flags: flagRST | flagACK, seq: 0, ack: peerISN + 1, raw: true})
}

// SYN-RECV -> LISTEN on RST: the half-open child just goes away.
func TestTransitionSynRecvReset(t *testing.T) {
	h := newHarness(t)
	h.listen(5)
	h.send(seg{flags: flagSYN, seq: 0})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.send(seg{flags: flagRST, seq: 1})
	h.expectNone()
	h.wantState("gone")
	if st := h.s.Sockets(); len(st) != 1 || st[0].State != "LISTEN" {
		t.Fatalf("listener disturbed: %+v", st)
	}
}

// SYN-RECV (entered from SYN-SENT, a simultaneous open) -> CLOSED on RST:
// RFC 9293 3.10.7.4 "connection refused", and so the dial fails.
func TestTransitionActiveSynRecvReset(t *testing.T) {
	h := newHarness(t)
	ch := h.dial(context.Background())
	h.activeExpect(seg{flags: flagSYN, seq: 0})
	h.activeSend(seg{flags: flagSYN, seq: 0})
	h.activeExpect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.activeSend(seg{flags: flagRST, seq: 1})
	h.expectNone()
	if r := <-ch; !errors.Is(r.err, syscall.ECONNREFUSED) {
		t.Fatalf("dial: %v, want ECONNREFUSED", r.err)
	}
	if st := h.s.Sockets(); len(st) != 0 {
		t.Fatalf("after the RST: %+v", st)
	}
}

// LISTEN -> SYN-SENT (RFC 9293's "SEND" on a listener) is a transition
// Linux does not make: connect() on a listening socket fails with EISCONN
// (inet_stream_connect) and nothing is sent; so does ustack.
func TestTransitionListenConnectRefused(t *testing.T) {
	h := newHarness(t)
	so := h.s.NewSocket()
	if err := so.Bind(netip.AddrPortFrom(netip.AddrFrom4(stackAddr), 80)); err != nil {
		t.Fatal(err)
	}
	if err := so.Listen(5); err != nil {
		t.Fatal(err)
	}
	if err := so.Connect(netip.AddrPortFrom(netip.AddrFrom4(peerAddr), 9)); !errors.Is(err, syscall.EISCONN) {
		t.Fatalf("connect on a listener: %v, want EISCONN", err)
	}
	h.expectNone()
}

// SYN-SENT -> CLOSED on close(): nothing is sent.
func TestTransitionSynSentClose(t *testing.T) {
	h := newHarness(t)
	so := h.s.NewSocket()
	so.Connect(netip.AddrPortFrom(netip.AddrFrom4(peerAddr), h.port))
	h.expect(seg{flags: flagSYN, seq: 0, port: 1})
	so.Close()
	h.expectNone()
	if st := h.s.Sockets(); len(st) != 0 {
		t.Fatalf("after close: %+v", st)
	}
}

// SYN-RECV (simultaneous open) -> FIN-WAIT-1 on close(): the FIN waits
// for ESTABLISHED's sequence space, so it is sent at once after our SYN.
func TestTransitionSynRecvClose(t *testing.T) {
	h := newHarness(t)
	h.dial(context.Background())
	h.activeExpect(seg{flags: flagSYN, seq: 0})
	h.activeSend(seg{flags: flagSYN, seq: 0})
	h.activeExpect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.s.mu.Lock()
	var e *endpoint
	for _, x := range h.s.endpointsLocked() {
		e = x
	}
	e.closeLocked(h.clock.Now())
	h.s.mu.Unlock()
	h.wantStateOf(e, "FIN-WAIT-1")
	// The ACK of our SYN completes the handshake; the FIN then leaves.
	h.activeSend(seg{flags: flagACK, seq: 1, ack: 1})
	h.activeExpect(seg{flags: flagFIN | flagACK, seq: 1, ack: 1})
}

// FIN-WAIT-1 -> TIME-WAIT when one segment carries the peer's FIN and the
// ACK of ours.
func TestTransitionFinWait1ToTimeWait(t *testing.T) {
	h, c := established(t)
	c.Close()
	h.expect(seg{flags: flagFIN | flagACK, seq: 1, ack: 1})
	h.send(seg{flags: flagFIN | flagACK, seq: 1, ack: 2})
	h.expect(seg{flags: flagACK, seq: 2, ack: 2})
	h.wantState("TIME-WAIT")
}

func (h *harness) wantStateOf(e *endpoint, st string) {
	h.t.Helper()
	h.s.mu.Lock()
	got := e.state.String()
	h.s.mu.Unlock()
	if got != st {
		h.t.Fatalf("state %s, want %s", got, st)
	}
}

// PAWS (RFC 7323 5): a segment with an older timestamp is dropped and
// answered with an ACK; its data is not accepted.
func TestPAWSDropsOldTimestamp(t *testing.T) {
	h := newHarness(t)
	c := h.tsHandshake() // the peer's TSval is 1001
	h.send(seg{flags: flagACK, seq: 1, ack: 1, opts: tsOpts(500, 0), data: []byte("old")})
	h.expect(seg{flags: flagACK, seq: 1, ack: 1})
	h.s.mu.Lock()
	n := c.so.e.rcv.buf.Len()
	h.s.mu.Unlock()
	if n != 0 || h.s.Counter("tcp.drop.paws") != 1 {
		t.Fatalf("PAWS: %d bytes accepted, %d drops", n, h.s.Counter("tcp.drop.paws"))
	}
	h.send(seg{flags: flagACK, seq: 1, ack: 1, opts: tsOpts(1002, 0), data: []byte("new")})
	tcp := h.expect(seg{flags: flagACK, seq: 1, ack: 4})
	if o := tcpOptions(t, tcp); !o.HasTS || o.TSEcr != 1002 {
		t.Fatalf("ACK echoes TS %+v, want ecr 1002", o)
	}
}

// RFC 2018: with SACK negotiated, our ACK for out-of-order data carries
// the block we hold.
func TestSACKBlocksInACK(t *testing.T) {
	h := newHarness(t)
	h.listen(5)
	sackOnly := []byte{2, 4, 5, 0xb4, 1, 1, 4, 2} // mss, nop, nop, sackOK
	h.send(seg{flags: flagSYN, seq: 0, opts: sackOnly})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.send(seg{flags: flagACK, seq: 1, ack: 1})
	h.send(seg{flags: flagACK, seq: 101, ack: 1, n: 100})
	h.expectSACK(seg{flags: flagACK, seq: 1, ack: 1}, [2]uint32{101, 201})
	h.send(seg{flags: flagACK, seq: 301, ack: 1, n: 100})
	h.expectSACK(seg{flags: flagACK, seq: 1, ack: 1}, [2]uint32{301, 401}, [2]uint32{101, 201})
	h.send(seg{flags: flagACK, seq: 1, ack: 1, n: 100})
	h.expect(seg{flags: flagACK, seq: 1, ack: 201})
}

// B42: ISNs are a keyed hash of the 4-tuple plus a 4 µs clock (RFC 6528):
// different tuples get unrelated ISNs, one tuple's ISN moves with time.
func TestB42InitialSequenceNumbers(t *testing.T) {
	h := newHarness(t)
	id := hashtable.FourTuple{LocalAddr: hashtable.AddrFrom4(stackAddr), LocalPort: 80, RemoteAddr: hashtable.AddrFrom4(peerAddr), RemotePort: 40000}
	now := h.clock.Now()
	a := h.s.isn(now, id)
	if b := h.s.isn(now.Add(time.Second), id); b-a != 250000 {
		t.Fatalf("ISN moved %d in 1 s, want 250000 (4 µs clock)", b-a)
	}
	id2 := id
	id2.RemotePort++
	if d := h.s.isn(now, id2) - a; d == 1 || d == 0 {
		t.Fatalf("neighbouring tuples' ISNs differ by %d: guessable", d)
	}
	// Another stack (another secret) gives another ISN for the same tuple.
	h2 := newHarness(t)
	if h2.s.isn(now, id) == a {
		t.Fatal("two stacks share an ISN secret")
	}
}

// B42: ephemeral ports for successive connections are not sequential,
// to different destinations or to the same one (RFC 6056 Algorithm 4).
func TestB42EphemeralPorts(t *testing.T) {
	for _, sameDest := range []bool{false, true} {
		h := newHarness(t)
		var ports []int
		for i := 0; i < 16; i++ {
			dport := uint16(1000 + i)
			if sameDest {
				dport = 1000
			}
			so := h.s.NewSocket()
			so.Connect(netip.AddrPortFrom(netip.AddrFrom4(peerAddr), dport))
			p := int(so.LocalAddr().Port())
			if p < 32768 || p > 60999 {
				t.Fatalf("port %d outside 32768-60999", p)
			}
			ports = append(ports, p)
		}
		steps := map[int]bool{}
		for i := 1; i < len(ports); i++ {
			steps[ports[i]-ports[i-1]] = true
		}
		if len(steps) < 4 {
			t.Fatalf("same destination %v: ports %v move in a guessable step", sameDest, ports)
		}
	}
}
