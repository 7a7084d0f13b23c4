package stack

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"ustack/stack/header"
)

// icmpAbout injects, from a router on the way, an ICMP error about our
// segment with sequence number seq (relative) on the harness connection.
func (h *harness) icmpAbout(typ, code uint8, mtu uint16, seq uint32) {
	h.t.Helper()
	orig := make([]byte, 40)
	header.EncodeIPv4(orig, header.IPv4Fields{TotalLen: 40, TTL: 64, Protocol: header.ProtoTCP, Src: stackAddr, Dst: peerAddr})
	binary.BigEndian.PutUint16(orig[20:], 80)
	binary.BigEndian.PutUint16(orig[22:], h.port)
	binary.BigEndian.PutUint32(orig[24:], h.ourISN+seq)
	pkt := make([]byte, 20+8+28)
	n := header.PutICMPError(pkt[20:], typ, code, uint32(mtu), orig)
	header.EncodeIPv4(pkt, header.IPv4Fields{TotalLen: 20 + n, TTL: 64, Protocol: header.ProtoICMP, Src: [4]byte{10, 0, 0, 254}, Dst: stackAddr})
	h.s.Inject(pkt[:20+n])
}

// Port unreachable for our SYN: connect fails with ECONNREFUSED at once
// (Linux tcp_v4_err in SYN-SENT).
func TestICMPUnreachableFailsConnect(t *testing.T) {
	h := newHarness(t)
	so := h.s.NewSocket()
	so.Bind(netip.AddrPortFrom(netip.AddrFrom4(stackAddr), 80))
	so.Connect(netip.AddrPortFrom(netip.AddrFrom4(peerAddr), h.port))
	h.expect(seg{flags: flagSYN, seq: 0, win: 65535})
	h.icmpAbout(header.ICMPDestUnreach, 3, 0, 0)
	if err := so.SockError(); err != syscall.ECONNREFUSED {
		t.Fatalf("SO_ERROR %v, want ECONNREFUSED", err)
	}
	h.wantState("gone")
	h.advance(2 * time.Second)
	h.expectNone() // no SYN retransmission
}

// Host unreachable on an open connection is soft (RFC 1122 4.2.3.9): the
// connection keeps retransmitting, and when it times out the error says
// why; SO_ERROR reads it earlier, once. An error about a sequence number
// outside SND.UNA..SND.NXT is ignored.
func TestICMPUnreachableIsSoftWhenOpen(t *testing.T) {
	h, c := established(t, func(o *Options) { o.Retries2 = 2 })
	c.Write([]byte("data"))
	h.expect(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("data")})
	h.icmpAbout(header.ICMPDestUnreach, 1, 0, 100) // out of window
	if got := h.s.Counter("icmp.out_of_window"); got != 1 {
		t.Fatalf("icmp.out_of_window %d, want 1", got)
	}
	h.icmpAbout(header.ICMPDestUnreach, 1, 0, 1)
	h.wantState("ESTAB")
	h.expectAt(200*time.Millisecond, seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("data")})
	h.advance(10 * time.Second)
	h.wantState("gone")
	wantReadErr(t, c, syscall.EHOSTUNREACH) // after the timeout, not ETIMEDOUT
}

// Fragmentation needed with next-hop MTU 1200: the MSS drops to 1160 and
// the 1460-byte segment is sent again at once as 1160 + 300; the next
// connection to that peer starts with the learned MTU, though it still
// announces the link's MSS (RFC 1191, Linux tcp_v4_mtu_reduced).
func TestICMPFragNeededLowersMSS(t *testing.T) {
	h := newHarness(t)
	l := h.listen(5)
	c := h.handshake(l)
	c.Write(make([]byte, smss))
	h.expect(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, n: smss})
	h.icmpAbout(header.ICMPDestUnreach, 4, 1200, 1)
	h.expect(seg{flags: flagACK, seq: 1, ack: 1, n: 1160})
	h.expect(seg{flags: flagACK | flagPSH, seq: 1161, ack: 1, n: 300})
	h.expectNone()

	h.port++
	h.known = false // a new connection: learn its ISN
	h.send(seg{flags: flagSYN, seq: 0, opts: []byte{2, 4, 0x05, 0xb4}})
	synack := h.expect(seg{flags: flagSYN | flagACK, seq: 0, ack: 1})
	if o := tcpOptions(t, synack); o.MSS != 1460 {
		t.Fatalf("the SYN|ACK announces MSS %d, want the link's 1460", o.MSS)
	}
	h.send(seg{flags: flagACK, seq: 1, ack: 1})
	c2, err := l.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	c2.Write(make([]byte, 2000))
	h.expect(seg{flags: flagACK, seq: 1, ack: 1, n: 1160})
	h.expect(seg{flags: flagACK | flagPSH, seq: 1161, ack: 1, n: 840})
}

// RFC 6069: host unreachable for the head while the RTO backs off undoes
// one step: the next retransmission is one RTO (200 ms) after the last, not
// two. An ACK that then gets through clears the soft error.
func TestICMPUnreachableRevertsRTOBackoff(t *testing.T) {
	h := newHarness(t)
	c := h.acceptSocket(h.listenSocket(nil))
	c.Write([]byte("data"))
	h.expect(seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("data")})
	h.expectAt(200*time.Millisecond, seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("data")})
	h.advance(100 * time.Millisecond)
	h.icmpAbout(header.ICMPDestUnreach, 1, 0, 1)
	h.expectAt(400*time.Millisecond, seg{flags: flagACK | flagPSH, seq: 1, ack: 1, data: []byte("data")}) // not 600
	if h.s.Counter("tcp.rto_reverts") != 1 {
		t.Fatal("tcp.rto_reverts not counted")
	}
	h.send(seg{flags: flagACK, seq: 1, ack: 5})
	if err := c.SockError(); err != 0 {
		t.Fatalf("SO_ERROR %v after an ACK got through, want 0", err)
	}
}
