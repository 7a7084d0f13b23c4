package stack

import (
	"testing"

	"ustack/stack/header"
)

// discardLink drops every packet: benchmarks measure the stack, not a queue.
type discardLink struct{}

func (*discardLink) ReadPacket([]byte) (int, error) { select {} }
func (*discardLink) WritePacket([]byte) error       { return nil }
func (*discardLink) MTU() int                       { return 1500 }
func (*discardLink) Close() error                   { return nil }

func benchConn(b *testing.B) (*harness, *Conn) {
	h, c := established(b)
	h.s.link = &discardLink{}
	return h, c
}

// BenchmarkInputInOrderData is the receive path of one full-sized,
// in-order segment: IPv4 and TCP checks, demux, queueing, the ACK decision.
// Packets are built in batches outside the timed region; the application
// reads between batches so the window stays open.
func BenchmarkInputInOrderData(b *testing.B) {
	h, c := benchConn(b)
	buf := make([]byte, 1<<20)
	const n, batch = 1448, 256
	seq := uint32(1)
	pkts := make([][]byte, batch)
	b.ReportAllocs()
	b.SetBytes(n)
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		b.StopTimer()
		for k := range pkts {
			pkts[k] = h.build(seg{flags: flagACK, seq: seq + uint32(k*n), ack: 1, n: n})
		}
		for c.so.e.rcv.buf.Len() > 0 {
			c.Read(buf)
		}
		b.StartTimer()
		for k := 0; k < batch && i+k < b.N; k++ {
			h.s.Inject(pkts[k])
		}
		seq += batch * n
	}
}

// BenchmarkOutputFullSegment is the send path: Write of one MSS, segment
// built with options and checksum, written to the link; the ACK frees it.
func BenchmarkOutputFullSegment(b *testing.B) {
	h, c := benchConn(b)
	data := make([]byte, 1448)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	acked := uint32(1)
	var ack []byte
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Write(data)
		if i%16 == 15 {
			b.StopTimer()
			h.s.mu.Lock()
			acked = uint32(c.so.e.snd.max) - h.ourISN // all that was sent
			h.s.mu.Unlock()
			ack = h.build(seg{flags: flagACK, seq: 1, ack: acked})
			b.StartTimer()
			h.s.Inject(ack)
		}
	}
}

// BenchmarkSegmentBuild is building one full-sized segment in place.
func BenchmarkSegmentBuild(b *testing.B) {
	buf := make([]byte, 1500)
	opts := buf[40:]
	b.ReportAllocs()
	b.SetBytes(1448)
	for i := 0; i < b.N; i++ {
		ol := header.PutDataOptions(opts, true, uint32(i), 7, nil)
		header.EncodeTCP(buf[20:], header.TCPFields{SrcPort: 80, DstPort: 40000, Seq: uint32(i), Ack: 1, Flags: flagACK, Window: 1000}, ol)
		header.SetTCPChecksum(buf[20:1500], stackAddr, peerAddr)
		header.EncodeIPv4(buf, header.IPv4Fields{TotalLen: 1500, TTL: 64, Protocol: header.ProtoTCP, Src: stackAddr, Dst: peerAddr})
	}
}
