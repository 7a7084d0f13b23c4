package gvisor

import (
	"io"
	"testing"
	"time"

	"ustack/stack"
	"ustack/stack/header"
)

// offloadPair is pair over links with offload: GSO packets are cut into
// segments by the links, as the kernel does for a TUN device, and every
// segment arrives with csumOK, as a local socket's would.
func offloadPair(t *testing.T) (*stack.Stack, *Stack, *stack.MemLink, *stack.MemLink) {
	t.Helper()
	cl, sl := stack.NewMemLink(1500), stack.NewMemLink(1500)
	cl.EnableOffload()
	sl.EnableOffload()
	cl.OnWrite = func(p []byte) { sl.DeliverOffload(p, true) }
	sl.OnWrite = func(p []byte) { cl.DeliverOffload(p, true) }
	c, s := startPair(t, cl, sl)
	return c, s, cl, sl
}

// Both stacks send bulk data as GSO packets, and every byte arrives.
func TestOffloadBothWays(t *testing.T) {
	c, s, cl, sl := offloadPair(t)
	ln := listen(t, s, 7)
	go func() {
		sc, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(sc, sc)
		sc.Close()
	}()
	conn, err := dial(t, c, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	want := make([]byte, 2<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	echoes(t, conn, want)
	if len(cl.GSOWrites()) == 0 {
		t.Error("ustack sent no GSO packet")
	}
	if len(sl.GSOWrites()) == 0 {
		t.Error("gVisor sent no GSO packet")
	}
}

// gVisor skips checksums on an RX-offload NIC, so the adapter checks those
// the link did not vouch for: a SYN with a bad checksum gets no answer
// unless the link says its checksum was left to offload.
func TestOffloadChecksumOnlyWhenVouched(t *testing.T) {
	_, s, _, sl := offloadPair(t)
	listen(t, s, 80)
	var out [][]byte
	got := make(chan []byte, 16)
	sl.OnWrite = func(p []byte) { got <- append([]byte(nil), p...) }

	syn := make([]byte, 40)
	header.EncodeTCP(syn[20:], header.TCPFields{SrcPort: 40000, DstPort: 80, Seq: 1, Flags: 0x02, Window: 65535}, 0)
	header.SetTCPChecksum(syn[20:], clientAddr.As4(), serverAddr.As4())
	syn[20+16] ^= 0xff // corrupt it
	header.EncodeIPv4(syn, header.IPv4Fields{TotalLen: 40, TTL: 64, Protocol: header.ProtoTCP, Src: clientAddr.As4(), Dst: serverAddr.As4()})

	sl.DeliverOffload(syn, false)
	select {
	case p := <-got:
		t.Fatalf("answered a SYN with a bad checksum: % x", p)
	case <-time.After(300 * time.Millisecond):
	}
	sl.DeliverOffload(syn, true)
	select {
	case p := <-got:
		out = append(out, p)
	case <-time.After(5 * time.Second):
		t.Fatal("no answer to a SYN whose checksum the link vouched for")
	}
	if f := header.TCP(header.IPv4(out[0]).Payload()).Flags(); f != 0x12 {
		t.Fatalf("answer flags %#x, want SYN|ACK", f)
	}
}
