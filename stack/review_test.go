package stack

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// An ACK covering our FIN after an RTO (which marked the FIN for sending
// again) still acks it: FIN_WAIT_2, and no phantom FIN beyond the real one.
func TestFinAckedAfterRTO(t *testing.T) {
	h, c := established(t)
	c.Write(make([]byte, 3000))
	c.Close()
	h.expect(seg{flags: flagACK, seq: 1, ack: 1, n: 1460})
	h.expect(seg{flags: flagACK, seq: 1461, ack: 1, n: 1460})
	h.expect(seg{flags: flagACK | flagPSH, seq: 2921, ack: 1, n: 80})
	h.expect(seg{flags: flagACK | flagFIN, seq: 3001, ack: 1})
	h.advance(201 * time.Millisecond) // the ACK was lost: RTO, one segment
	h.expect(seg{flags: flagACK, seq: 1, ack: 1, n: 1460})
	h.send(seg{flags: flagACK, seq: 1, ack: 3002}) // everything, FIN included
	h.expectNone()
	h.wantState("FIN-WAIT-2")
}

// Retransmissions stop at what was sent: with the window full, the fast
// retransmit holds only sent bytes (an ACK for unsent ones would be refused).
func TestRetransmitNeverBeyondSent(t *testing.T) {
	h, c := established(t)
	h.send(seg{flags: flagACK, seq: 1, ack: 1, win: 1000})
	c.Write(make([]byte, 2000))
	h.expect(seg{flags: flagACK, seq: 1, ack: 1, n: 1000})
	for i := 0; i < 3; i++ {
		h.send(seg{flags: flagACK, seq: 1, ack: 1, win: 1000})
	}
	h.expect(seg{flags: flagACK, seq: 1, ack: 1, n: 1000}) // not 1460
}

// Shrinking SO_SNDBUF below what is queued loses nothing: getsockopt reads
// the doubled (and floored) size back, a write waits (EAGAIN) while more
// than that is queued, and every byte reaches the peer in order.
func TestShrinkSendBufferLive(t *testing.T) {
	h := newHarness(t)
	ln := h.s.NewSocket()
	ln.SetOption(OptRcvBuf, 10000) // the peer's window holds the data back
	ln.Bind(netip.MustParseAddrPort("10.0.0.2:8080"))
	ln.Listen(1)
	so := h.s.NewSocket()
	so.Connect(netip.MustParseAddrPort("10.0.0.2:8080"))
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 50000)
	for i := range want {
		want[i] = byte(i % 251)
	}
	if n, err := so.Write(want); n != len(want) || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	if err := so.SetOption(OptSndBuf, 1000); err != nil {
		t.Fatal(err)
	}
	wantOption(t, so, OptSndBuf, 4608) // Linux: max(2 * 1000, SOCK_MIN_SNDBUF)
	if so.InQ() != 0 || so.e.snd.buf.Len() <= 4608 {
		t.Fatalf("%d bytes queued: the test needs more than the new limit", so.e.snd.buf.Len())
	}
	if n, err := so.Write([]byte("tail")); n != 0 || err != syscall.EAGAIN {
		t.Fatalf("write over the shrunk buffer: %d, %v; want EAGAIN", n, err)
	}
	var got []byte
	buf := make([]byte, 4096)
	for range 1000 {
		n, err := peer.Read(buf)
		got = append(got, buf[:n]...)
		if err == syscall.EAGAIN {
			if len(got) == len(want) {
				break
			}
			h.advance(50 * time.Millisecond) // delayed ACKs, window updates
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the peer read %d bytes, want the %d written, in order", len(got), len(want))
	}
	if n, err := so.Write([]byte("tail")); n != 4 || err != nil {
		t.Fatalf("write once drained: %d, %v", n, err)
	}
}

// A retransmitted SYN in SYN-RECV (our SYN|ACK was lost) gets the SYN|ACK
// again, as Linux's tcp_check_req does, not a bare ACK.
func TestDuplicateSynInSynRecv(t *testing.T) {
	h := newHarness(t)
	h.listen(5)
	h.send(seg{flags: flagSYN, seq: 0})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	h.advance(600 * time.Millisecond)
	h.send(seg{flags: flagSYN, seq: 0})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
}

// Every goroutine blocked in Accept wakes when the listener closes. The
// test closes only once both are asleep in the socket core's wait (their
// stacks say so), not after some real time.
func TestCloseWakesEveryAccept(t *testing.T) {
	h := newHarness(t)
	l := h.listen(5)
	var wg sync.WaitGroup
	wg.Add(2)
	done := make(chan error, 2)
	for range 2 {
		go func() {
			wg.Done()
			_, err := l.Accept()
			done <- err
		}()
	}
	wg.Wait()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(5 * time.Second); ; runtime.Gosched() {
		if strings.Count(string(buf[:runtime.Stack(buf, true)]), "(*Socket).waitLocked") == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the two Accepts never blocked")
		}
	}
	l.Close()
	for range 2 {
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Accept on a closed listener: %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("an Accept stayed blocked after Close")
		}
	}
}

// Old data (ending before RCV.NXT) is ACKed every time: only segments
// without data are rate limited (Linux tcp_oow_rate_limited).
func TestOldDataAlwaysACKed(t *testing.T) {
	h, _ := established(t)
	h.send(seg{flags: flagACK, seq: 1, ack: 1, n: 200})
	h.expect(seg{flags: flagACK, seq: 1, ack: 201})
	for i := 0; i < 2; i++ {
		h.send(seg{flags: flagACK, seq: 1, ack: 1, n: 100}) // entirely old
		h.expect(seg{flags: flagACK, seq: 1, ack: 201})
	}
}

// An out-of-window segment does not count as a sign of life for keepalive.
func TestKeepaliveIgnoresOutOfWindow(t *testing.T) {
	h, _ := keepaliveProbed(t, 1) // -> probe 1 at 10 s
	h.advance(time.Second)
	h.send(seg{flags: flagACK, seq: 1 + 500000000, ack: 1}) // out of window
	h.link.Outbound()
	h.advance(time.Second)
	h.expect(seg{flags: flagRST | flagACK, seq: 1, ack: 1}) // still gives up
}
