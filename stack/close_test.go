package stack

import (
	"io"
	"syscall"
	"testing"
	"time"
)

// B30, active side: FIN_WAIT_1 -> (ACK) FIN_WAIT_2 -> (FIN, send ACK)
// TIME_WAIT -> CLOSED after 60 s.
func TestB30ActiveClose(t *testing.T) {
	h, c := established(t)
	h.closeToFinWait2(c) // -> FIN|ACK 1 ack 1, <- ACK 1 ack 2
	h.send(seg{flags: flagFIN | flagACK, seq: 1, ack: 2})
	h.expect(seg{flags: flagACK, seq: 2, ack: 2})
	h.wantState("TIME-WAIT")
	h.lastsFor(60*time.Second, "TIME-WAIT")
}

// B30, passive side: CLOSE_WAIT -> (close) LAST_ACK -> (ACK) CLOSED; the
// application reads EOF. The FIN's ACK is delayed (Linux tcp_fin enters
// pingpong mode), by one timer tick on a connection that has received no
// data (Linux's ato is still 0).
func TestB30PassiveClose(t *testing.T) {
	h, c := established(t)
	h.peerCloses() // <- FIN|ACK 1 ack 1, delayed -> ACK 1 ack 2
	wantEOF(t, c)
	c.Close()
	h.expect(seg{flags: flagFIN | flagACK, seq: 1, ack: 2})
	h.wantState("LAST-ACK")
	h.send(seg{flags: flagACK, seq: 2, ack: 2})
	h.wantState("gone")
}

// B30: queued data goes out before the FIN, which rides on the last segment.
func TestB30FinAfterData(t *testing.T) {
	h, c := established(t)
	c.Write([]byte("bye"))
	h.expect(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("bye")})
	h.send(seg{flags: flagACK, seq: 1, ack: 4})
	c.Close()
	h.expect(seg{flags: flagFIN | flagACK, seq: 4, ack: 1})
}

// B31: three-way close. Once the connection is interactive (we answered
// a request within the ATO: Linux's pingpong mode), the ACK of the peer's
// FIN waits, so an application that closes at once sends one FIN|ACK.
func TestB31ThreeWayClose(t *testing.T) {
	h, c := established(t)
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("request")})
	h.expect(seg{flags: flagACK, seq: 1, ack: 8})
	c.Read(make([]byte, 100))
	c.Write([]byte("reply"))
	h.expect(seg{flags: flagACK | flagPSH, seq: 1, ack: 8, data: []byte("reply")})
	h.send(seg{flags: flagFIN | flagACK, seq: 8, ack: 6})
	h.expectNone()
	wantEOF(t, c)
	c.Close()
	h.expect(seg{flags: flagFIN | flagACK, seq: 6, ack: 9})
	h.expectNone()
}

// B32: close() with unread data sends RST instead of FIN; gone at once.
func TestB32CloseWithUnreadData(t *testing.T) {
	h, c := established(t)
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("unread")})
	h.expect(seg{flags: flagACK, seq: 1, ack: 7})
	c.Close()
	h.expect(seg{flags: flagRST | flagACK, seq: 1, ack: 7})
	h.wantState("gone")
	if h.s.Counter("tcp.abort_on_close") != 1 {
		t.Fatal("abort not counted")
	}
}

// B32: SO_LINGER 0 is an abortive close too.
func TestB32LingerZero(t *testing.T) {
	h, c := established(t)
	c.SetLinger(0)
	c.Close()
	h.expect(seg{flags: flagRST | flagACK, seq: 1, ack: 1})
	h.wantState("gone")
}

// B33: a close()d socket in FIN_WAIT_2 answers new data with RST
// (seq = SEG.ACK) and is gone.
func TestB33DataAfterClose(t *testing.T) {
	h, c := established(t)
	h.closeToFinWait2(c)
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 2, data: []byte("late")})
	h.expect(seg{flags: flagRST, seq: 2, ack: 0})
	h.wantState("gone")
}

// B33 in FIN_WAIT_1: the same.
func TestB33DataAfterCloseFinWait1(t *testing.T) {
	h, c := established(t)
	h.closeToFinWait1(c)
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("late")})
	h.expect(seg{flags: flagRST, seq: 1, ack: 0})
	h.wantState("gone")
}

// B34: shutdown(SHUT_WR) sends FIN but keeps receiving; the peer's data
// after our FIN is delivered.
func TestB34HalfClose(t *testing.T) {
	h, c := established(t)
	c.CloseWrite()
	h.expect(seg{flags: flagFIN | flagACK, seq: 1, ack: 1})
	h.send(seg{flags: flagACK, seq: 1, ack: 2})
	h.wantState("FIN-WAIT-2")
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 2, data: []byte("more")})
	h.expect(seg{flags: flagACK, seq: 2, ack: 5})
	wantRead(t, c, "more")
	wantWriteErr(t, c, syscall.EPIPE) // after CloseWrite
	// B35: only shut down, not closed: FIN_WAIT_2 lasts as long as it takes.
	h.advance(10 * time.Minute)
	h.wantState("FIN-WAIT-2")
	h.expectNone()
	h.send(seg{flags: flagFIN | flagACK, seq: 5, ack: 2})
	h.expect(seg{flags: flagACK, seq: 2, ack: 6})
	h.wantState("TIME-WAIT")
	wantEOF(t, c)
}

// B34: shutdown(SHUT_RD) sends nothing.
func TestB34ShutRead(t *testing.T) {
	h, c := established(t)
	c.CloseRead()
	h.expectNone()
	wantEOF(t, c) // after CloseRead
}

// B35: a close()d socket in FIN_WAIT_2 gives up after tcp_fin_timeout,
// straight to CLOSED, no TIME_WAIT, no segment.
func TestB35FinWait2Timeout(t *testing.T) {
	h, c := established(t, func(o *Options) { o.FinTimeout = 5 * time.Second })
	h.closeToFinWait2(c)
	h.lastsFor(5*time.Second, "FIN-WAIT-2")
}

// B36: simultaneous close: FIN in FIN_WAIT_1 -> CLOSING; the ACK of our
// FIN -> TIME_WAIT.
func TestB36SimultaneousClose(t *testing.T) {
	h, c := established(t)
	h.closeToClosing(c) // -> FIN|ACK 1 ack 1, <- FIN|ACK 1 ack 1, -> ACK 2 ack 2
	h.send(seg{flags: flagACK, seq: 2, ack: 2})
	h.wantState("TIME-WAIT")
}

// B37: TIME_WAIT answers a retransmitted FIN with an ACK and restarts
// its timer; a new SYN with a higher sequence number reuses the pair.
func TestB37TimeWait(t *testing.T) {
	h, c := established(t)
	h.closeToTimeWait(c) // -> FIN|ACK 1 ack 1, <- FIN|ACK 1 ack 2, -> ACK 2 ack 2
	h.advance(30 * time.Second)
	h.send(seg{flags: flagFIN | flagACK, seq: 1, ack: 2}) // our ACK was lost
	h.expect(seg{flags: flagACK, seq: 2, ack: 2})
	h.advance(59 * time.Second)
	h.wantState("TIME-WAIT") // restarted at 30 s: ends at 90 s
	h.send(seg{flags: flagSYN, seq: 100})
	// Linux's new ISN: the old SND.NXT + 65535 + 2.
	h.expect(seg{flags: flagSYN | flagACK, seq: 2 + 65535 + 2, ack: 101})
	h.wantState("SYN-RECV")
}

// B40: a RST with seq == RCV.NXT resets (ECONNRESET, then EPIPE); in the
// window but not exact: challenge ACK; outside: dropped.
func TestB40ResetHandling(t *testing.T) {
	h, c := established(t)
	h.send(seg{flags: flagRST, seq: 1 + 100000000}) // outside the window
	h.expectNone()
	h.send(seg{flags: flagRST, seq: 5}) // in the window, not exact
	h.expect(seg{flags: flagACK, seq: 1, ack: 1})
	h.wantState("ESTAB")
	h.send(seg{flags: flagRST, seq: 1})
	h.expectNone()
	h.wantState("gone")
	wantWriteErr(t, c, syscall.ECONNRESET) // the first write
	wantWriteErr(t, c, syscall.EPIPE)      // the second
}

// B40: the reader sees ECONNRESET.
func TestB40ResetRead(t *testing.T) {
	h, c := established(t)
	h.send(seg{flags: flagRST | flagACK, seq: 1, ack: 1})
	wantReadErr(t, c, syscall.ECONNRESET)
}

// B41: a SYN in a synchronized state gets a challenge ACK, not a reset.
func TestB41SynInEstablished(t *testing.T) {
	h, _ := established(t)
	h.send(seg{flags: flagSYN, seq: 500})
	h.expect(seg{flags: flagACK, seq: 1, ack: 1})
	h.wantState("ESTAB")
	if h.s.Counter("tcp.challenge_acks") != 1 {
		t.Fatal("challenge ACK not counted")
	}
}

// RFC 5961 5.2 (Linux 6.x): an ACK for data never sent gets a challenge
// ACK and is dropped.
func TestAckOfUnsentData(t *testing.T) {
	h, c := established(t)
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 500, data: []byte("zz")})
	h.expect(seg{flags: flagACK, seq: 1, ack: 1})
	h.s.mu.Lock()
	n := c.so.e.rcv.buf.Len()
	h.s.mu.Unlock()
	if n != 0 {
		t.Fatal("data of a segment with a bad ACK was accepted")
	}
}

// Challenge ACKs are rate limited per connection (Linux tcp_oow_rate_limited).
func TestChallengeACKRateLimit(t *testing.T) {
	h, _ := established(t)
	h.send(seg{flags: flagSYN, seq: 500})
	h.expect(seg{flags: flagACK, seq: 1, ack: 1})
	h.send(seg{flags: flagSYN, seq: 500})
	h.expectNone()
	h.advance(500 * time.Millisecond)
	h.send(seg{flags: flagSYN, seq: 500})
	h.expect(seg{flags: flagACK, seq: 1, ack: 1})
}

// B33 without close(): shutdown of both directions also makes new data in
// FIN_WAIT_2 a reset (Linux checks RCV_SHUTDOWN, which SHUT_RD sets).
func TestB33ShutdownBoth(t *testing.T) {
	h, c := established(t)
	c.CloseRead()
	c.CloseWrite()
	h.expect(seg{flags: flagFIN | flagACK, seq: 1, ack: 1})
	h.send(seg{flags: flagACK, seq: 1, ack: 2})
	h.send(seg{flags: flagACK | flagPSH, seq: 1, ack: 2, data: []byte("late")})
	h.expect(seg{flags: flagRST, seq: 2, ack: 0})
	h.wantState("gone")
}

// B30: the peer retransmits its FIN (our ACK was lost) while we sit in
// CLOSE-WAIT: it is ACKed at once (Linux tcp_data_queue, a retransmission),
// not left to the peer's retries.
func TestB30RetransmittedFinInCloseWait(t *testing.T) {
	h, _ := established(t)
	h.peerCloses()
	h.advance(300 * time.Millisecond)
	h.send(seg{flags: flagACK | flagFIN, seq: 1, ack: 1})
	h.expect(seg{flags: flagACK, seq: 1, ack: 2})
	h.wantState("CLOSE-WAIT")
}

// After the peer's FIN nothing new can come (Linux tcp_rcv_state_process):
// data at RCV.NXT is ignored, no ACK; data that starts before RCV.NXT and
// runs past it resets the connection, as for a RST in CLOSE-WAIT (EPIPE).
func TestCloseWaitDataAfterFin(t *testing.T) {
	h, c := established(t)
	h.peerCloses()
	h.send(seg{flags: flagACK, seq: 2, ack: 1, n: 10})
	h.expectNone()
	h.wantState("CLOSE-WAIT")
	if h.s.Counter("tcp.drop.ignored_in_state") != 1 {
		t.Fatal("ignored segment not counted")
	}
	h.send(seg{flags: flagACK, seq: 1, ack: 1, n: 10})
	h.expect(seg{flags: flagRST, seq: 1, ack: 0})
	h.wantState("gone")
	wantWriteErr(t, c, syscall.EPIPE) // after the reset
}

// B40: in CLOSE-WAIT, CLOSING and LAST-ACK a RST may carry the FIN's own
// sequence number, RCV.NXT - 1 (Linux tcp_reset_check), and resets.
func TestB40RSTAtFinSequenceInCloseWait(t *testing.T) {
	h, _ := established(t)
	h.peerCloses()
	h.send(seg{flags: flagRST, seq: 1})
	h.expectNone()
	h.wantState("gone")
}

// B37: TIME-WAIT is killed only by a RST exactly at RCV.NXT (Linux
// tcp_timewait_state_process); one at RCV.NXT - 1 is ignored.
func TestB37TimeWaitRSTMustBeExact(t *testing.T) {
	h, c := established(t)
	h.closeToTimeWait(c)
	h.send(seg{flags: flagRST, seq: 1})
	h.wantState("TIME-WAIT")
	h.send(seg{flags: flagRST, seq: 2})
	h.wantState("gone")
}

// B31: data and FIN in one segment (an HTTP response and close): the FIN
// puts the connection in pingpong mode before the ACK is decided (Linux
// tcp_data_queue -> tcp_fin -> __tcp_ack_snd_check), so the ACK waits and
// a prompt close sends one FIN|ACK.
func TestB31DataAndFinInOneSegment(t *testing.T) {
	h, c := established(t)
	h.send(seg{flags: flagACK | flagPSH | flagFIN, seq: 1, ack: 1, data: []byte("response")})
	h.expectNone()
	io.ReadAll(c)
	c.Close()
	h.expect(seg{flags: flagFIN | flagACK, seq: 1, ack: 10})
}

// B36: in CLOSING, the ACK of our FIN moves to TIME-WAIT and the rest of
// the segment is consumed (Linux: tcp_time_wait, then "goto consume"):
// nothing answers a retransmitted FIN riding on it, and data past the FIN
// does not reset the TIME-WAIT socket.
func TestB36ClosingToTimeWaitConsumesSegment(t *testing.T) {
	for _, last := range []seg{
		{flags: flagFIN | flagACK, seq: 1, ack: 2}, // the peer's FIN again
		{flags: flagACK, seq: 1, ack: 2, n: 2},     // bytes past its FIN
	} {
		h, c := established(t)
		h.closeToClosing(c)
		h.send(last)
		h.expectNone()
		h.wantState("TIME-WAIT")
	}
}

// B37 and B43: a SYN that reuses a TIME-WAIT pair is not held to the SYN
// queue's limit (Linux tcp_conn_request: "TW buckets are converted to open
// requests without limitations").
func TestB37TimeWaitReuseWithSynQueueFull(t *testing.T) {
	h := newHarness(t)
	c := h.handshake(h.listen(2))
	h.closeToTimeWait(c)
	h.fillSynQueue(2)
	h.send(seg{flags: flagSYN, seq: 100})
	h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 101})
	h.wantState("SYN-RECV")
}
