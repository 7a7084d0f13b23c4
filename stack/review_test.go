package stack

import (
	"net/netip"
	"testing"
	"time"
)

// An ACK covering our FIN after an RTO (which marked the FIN for sending
// again) still acks it: FIN_WAIT_2, and no phantom FIN beyond the real one.
func TestFinAckedAfterRTO(t *testing.T) {
	h := newHarness(t)
	c := h.handshake(h.listen(5))
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
	h := newHarness(t)
	c := h.handshake(h.listen(5))
	h.send(seg{flags: flagACK, seq: 1, ack: 1, win: 1000})
	c.Write(make([]byte, 2000))
	h.expect(seg{flags: flagACK, seq: 1, ack: 1, n: 1000})
	for i := 0; i < 3; i++ {
		h.send(seg{flags: flagACK, seq: 1, ack: 1, win: 1000})
	}
	h.expect(seg{flags: flagACK, seq: 1, ack: 1, n: 1000}) // not 1460
}

// Shrinking SO_SNDBUF below what is queued cannot panic or lose data.
func TestShrinkSendBufferLive(t *testing.T) {
	h := newHarness(t)
	so := h.s.NewSocket()
	ln := h.s.NewSocket()
	ln.Bind(netip.MustParseAddrPort("10.0.0.2:8080"))
	ln.Listen(1)
	so.Connect(netip.MustParseAddrPort("10.0.0.2:8080"))
	so.Write(make([]byte, 50000))
	if err := so.SetOption(OptSndBuf, 1000); err != nil {
		t.Fatal(err)
	}
	so.Write(make([]byte, 10))
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

// Every goroutine blocked in Accept wakes when the listener closes.
func TestCloseWakesEveryAccept(t *testing.T) {
	h := newHarness(t)
	l := h.listen(5)
	done := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { _, err := l.Accept(); done <- err }()
	}
	time.Sleep(20 * time.Millisecond) // both block (a real sleep: goroutines, not the stack's clock)
	l.Close()
	for i := 0; i < 2; i++ {
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("Accept on a closed listener succeeded")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("an Accept stayed blocked after Close")
		}
	}
}

// Old data (ending before RCV.NXT) is ACKed every time: only segments
// without data are rate limited (Linux tcp_oow_rate_limited).
func TestOldDataAlwaysACKed(t *testing.T) {
	h := newHarness(t)
	h.handshake(h.listen(5))
	h.send(seg{flags: flagACK, seq: 1, ack: 1, n: 200})
	h.expect(seg{flags: flagACK, seq: 1, ack: 201})
	for i := 0; i < 2; i++ {
		h.send(seg{flags: flagACK, seq: 1, ack: 1, n: 100}) // entirely old
		h.expect(seg{flags: flagACK, seq: 1, ack: 201})
	}
}

// An out-of-window segment does not count as a sign of life for keepalive.
func TestKeepaliveIgnoresOutOfWindow(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.KeepaliveIdle, o.KeepaliveIntvl, o.KeepaliveProbes = 10*time.Second, 2*time.Second, 1
	})
	c := h.handshake(h.listen(5))
	c.SetKeepAlive(true)
	h.advance(10 * time.Second)
	h.expect(seg{flags: flagACK, seq: 0, ack: 1}) // probe 1
	h.advance(time.Second)
	h.send(seg{flags: flagACK, seq: 1 + 500000000, ack: 1}) // out of window
	h.link.Outbound()
	h.advance(time.Second)
	h.expect(seg{flags: flagRST | flagACK, seq: 1, ack: 1}) // still gives up
}
