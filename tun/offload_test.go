package tun

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"ustack/netns"
)

func mustOpenOffload(t *testing.T) (*Device, *netns.NS) {
	t.Helper()
	ns := newNS(t)
	d, err := open(t, ns, Config{Name: "tun0", Addr: subnet, Offload: true})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Offload() || d.GSOMaxSize() != GSOMaxSize {
		t.Fatalf("Offload %v, GSOMaxSize %d", d.Offload(), d.GSOMaxSize())
	}
	return d, ns
}

// dialIn dials addr from a socket in ns.
func dialIn(t *testing.T, ns *netns.NS, addr string) (net.Conn, error) {
	return inNSMake(t, ns, func() (net.Conn, error) { return net.DialTimeout("tcp4", addr, 5*time.Second) })
}

// tcpPkt builds a TCP/IPv4 packet from the stack's side with a full
// checksum (or only the pseudo-header sum, for WriteGSO).
func tcpPkt(sport, dport uint16, seq, ack uint32, flags byte, opts, payload []byte, partial bool) []byte {
	th := make([]byte, 20+len(opts)+len(payload))
	binary.BigEndian.PutUint16(th[0:], sport)
	binary.BigEndian.PutUint16(th[2:], dport)
	binary.BigEndian.PutUint32(th[4:], seq)
	binary.BigEndian.PutUint32(th[8:], ack)
	th[12] = byte((20+len(opts))/4) << 4
	th[13] = flags
	binary.BigEndian.PutUint16(th[14:], 65535)
	copy(th[20:], opts)
	copy(th[20+len(opts):], payload)
	s, d := stackAddr.As4(), kernelAddr.As4()
	pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, 6, byte(len(th)>>8), byte(len(th)))
	if partial {
		binary.BigEndian.PutUint16(th[16:], ^checksum(pseudo))
	} else {
		binary.BigEndian.PutUint16(th[16:], checksum(append(pseudo, th...)))
	}
	return ipv4(stackAddr, kernelAddr, 6, th)
}

// A kernel TCP client through an offload device: its segments arrive with
// checksums left to the device (ReadOffload says so; ReadPacket finishes
// them), its data comes in TSO packets larger than the MTU, and one
// WriteGSO packet reaches its socket as three segments' worth of bytes.
func TestOffloadKernelTCP(t *testing.T) {
	d, ns := mustOpenOffload(t)
	type dialed struct {
		c   net.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		c, err := dialIn(t, ns, "10.0.0.2:80")
		ch <- dialed{c, err}
	}()

	// The SYN, through ReadPacket: the checksum comes out complete.
	syn := readUntil(t, d, func(p []byte) bool { return len(p) >= 40 && p[9] == 6 && p[33]&0x02 != 0 })
	if checksum(append(pseudoOf(syn), syn[20:]...)) != 0 {
		t.Fatal("ReadPacket left the SYN's partial checksum unfinished")
	}
	sport := binary.BigEndian.Uint16(syn[20:])
	isn := binary.BigEndian.Uint32(syn[24:])
	const ours = 5000
	mss := []byte{2, 4, 0x05, 0xb4}
	if err := d.WritePacket(tcpPkt(80, sport, ours, isn+1, 0x12, mss, nil, false)); err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.Close()

	// Kernel to us: 200 KB in one write; with TSO some packet is beyond
	// the MTU, and every one has csumOK.
	want := bytes.Repeat([]byte("offload!"), 200000/8)
	go r.c.Write(want)
	buf := make([]byte, 65536)
	got, largest := 0, 0
	next := isn + 1
	deadline := time.Now().Add(5 * time.Second)
	for got < 20000 && time.Now().Before(deadline) {
		n, csumOK, err := d.ReadOffload(buf)
		if err != nil {
			t.Fatal(err)
		}
		p := buf[:n]
		if p[9] != 6 || binary.BigEndian.Uint16(p[22:]) != 80 {
			continue
		}
		if !csumOK {
			t.Fatal("ReadOffload: csumOK false for a local socket's segment")
		}
		hl := int(p[32]>>4) * 4
		data := p[20+hl:]
		if len(data) == 0 || binary.BigEndian.Uint32(p[24:]) != next {
			continue
		}
		if !bytes.Equal(data, want[got:got+len(data)]) {
			t.Fatalf("payload at %d differs", got)
		}
		got += len(data)
		next += uint32(len(data))
		largest = max(largest, n)
		// ACK it all, so the kernel keeps sending.
		if err := d.WritePacket(tcpPkt(80, sport, ours+1, next, 0x10, nil, nil, false)); err != nil {
			t.Fatal(err)
		}
	}
	if got < 20000 {
		t.Fatalf("read %d bytes of data", got)
	}
	if largest <= 1500 {
		t.Fatalf("largest packet %d bytes: no TSO", largest)
	}

	// Us to the kernel: one GSO packet of 3000 bytes cut at 1000.
	payload := bytes.Repeat([]byte("abc"), 1000)
	if err := d.WriteGSO(tcpPkt(80, sport, ours+1, next, 0x18, nil, payload, true), 1000); err != nil {
		t.Fatal(err)
	}
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	in := make([]byte, len(payload))
	if _, err := io.ReadFull(r.c, in); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, payload) {
		t.Fatal("kernel read other bytes than the GSO packet carried")
	}
}

func pseudoOf(p []byte) []byte {
	l := len(p) - 20
	return append(append([]byte{}, p[12:20]...), 0, 6, byte(l>>8), byte(l))
}

// WriteGSO refuses what is not TCP/IPv4 and devices without offload.
func TestWriteGSOErrors(t *testing.T) {
	d, _ := mustOpenOffload(t)
	if err := d.WriteGSO([]byte{0x60, 0, 0}, 1000); err == nil {
		t.Error("WriteGSO took a 3-byte IPv6 packet")
	}
	plain := mustOpen(t, newNS(t))
	if err := plain.WriteGSO(tcpPkt(80, 1, 1, 1, 0x10, nil, nil, true), 1000); err == nil {
		t.Error("WriteGSO worked on a device without offload")
	}
	if n := plain.GSOMaxSize(); n != plain.MTU() {
		t.Errorf("GSOMaxSize without offload %d, want the MTU", n)
	}
}
