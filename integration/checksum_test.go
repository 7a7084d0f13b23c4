package integration

import (
	"encoding/binary"
	"fmt"
	"net"
	"regexp"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ustack/internal/inetsum"
	"ustack/netns"
)

var (
	kernelAddr = [4]byte{10, 0, 0, 1}
	stackAddr  = [4]byte{10, 0, 0, 2}
)

// tcpCsum is the TCP checksum of seg from src to dst (RFC 9293 3.1: over
// the pseudo-header too).
func tcpCsum(src, dst [4]byte, seg []byte) uint16 {
	var pseudo [12]byte
	copy(pseudo[0:], src[:])
	copy(pseudo[4:], dst[:])
	pseudo[9] = unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)))
	var sum uint32
	for i := 0; i < len(pseudo); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(pseudo[i:]))
	}
	return inetsum.Checksum(seg, sum)
}

// synSegment is a bare TCP SYN from 10.0.0.1:sport to 10.0.0.2:80 with a
// correct checksum, or a wrong one when bad is set.
func synSegment(sport uint16, bad bool) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], 80)
	binary.BigEndian.PutUint32(b[4:], 0x12345678)
	b[12] = 5 << 4
	b[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(b[14:], 64240)
	c := tcpCsum(kernelAddr, stackAddr, b)
	if bad {
		c ^= 0x5a5a
	}
	binary.BigEndian.PutUint16(b[16:], c)
	return b
}

// ipPacket wraps a TCP segment in an IPv4 header from 10.0.0.1 to 10.0.0.2,
// with a wrong header checksum when bad is set.
func ipPacket(tcp []byte, bad bool) []byte {
	p := make([]byte, 20+len(tcp))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], 0x4242)
	p[8] = 64
	p[9] = unix.IPPROTO_TCP
	copy(p[12:], kernelAddr[:])
	copy(p[16:], stackAddr[:])
	c := inetsum.Checksum(p[:20], 0)
	if bad {
		c ^= 0x5a5a
	}
	binary.BigEndian.PutUint16(p[10:], c)
	copy(p[20:], tcp)
	return p
}

// probe is a raw view of the namespace's TCP traffic: a raw IPPROTO_TCP
// socket that sends TCP segments (the kernel adds the IPv4 header, whose
// checksum it computes) and receives a copy of every TCP packet the kernel
// receives, and a packet socket on tun0 that sends whole IPv4 packets
// straight to the stack (so the IPv4 header checksum can be wrong too).
type probe struct {
	raw, pkt int
	ifindex  int
}

func openProbe(t *testing.T, ns *netns.NS) *probe {
	t.Helper()
	p := &probe{raw: -1, pkt: -1}
	err := ns.Do(func() error {
		var err error
		if p.raw, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP); err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		ifi, err := net.InterfaceByName("tun0")
		if err != nil {
			return err
		}
		p.ifindex = ifi.Index
		if p.pkt, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP))); err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		return nil
	})
	t.Cleanup(func() {
		if p.raw >= 0 {
			unix.Close(p.raw)
		}
		if p.pkt >= 0 {
			unix.Close(p.pkt)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(p.raw, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return p
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// sendTCP sends a TCP segment through the kernel's IPv4 output.
func (p *probe) sendTCP(seg []byte) error {
	return unix.Sendto(p.raw, seg, 0, &unix.SockaddrInet4{Addr: stackAddr})
}

// sendIP writes a whole IPv4 packet to tun0, so the stack reads it as is.
func (p *probe) sendIP(pkt []byte) error {
	return unix.Sendto(p.pkt, pkt, 0, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: p.ifindex})
}

// answers collects, for wait, the flags of the TCP segments from
// 10.0.0.2:80 to 10.0.0.1:dport.
func (p *probe) answers(dport uint16, wait time.Duration) []string {
	var got []string
	buf := make([]byte, 65536)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(p.raw, buf, 0)
		if err != nil {
			continue // EAGAIN at the receive timeout
		}
		pkt := buf[:n]
		if n < 20 || pkt[0]>>4 != 4 {
			continue
		}
		ihl := int(pkt[0]&0x0f) * 4
		if n < ihl+20 || [4]byte(pkt[12:16]) != stackAddr {
			continue
		}
		tcp := pkt[ihl:]
		if binary.BigEndian.Uint16(tcp[0:]) != 80 || binary.BigEndian.Uint16(tcp[2:]) != dport {
			continue
		}
		got = append(got, tcpFlags(tcp[13]))
	}
	return got
}

func tcpFlags(f uint8) string {
	s := ""
	for i, n := range []string{"F", "S", "R", "P", "."} {
		if f&(1<<i) != 0 {
			s += n
		}
	}
	return s
}

// TestBadChecksum: a SYN with a wrong TCP checksum, and one in an IPv4
// packet with a wrong header checksum, get no answer at all (no RST, no
// SYN|ACK), create no connection and are counted (B03). The same SYN with
// correct checksums, sent the same way, is answered with SYN|ACK: the
// observation works.
func TestBadChecksum(t *testing.T) {
	t.Parallel()
	ns := newNS(t)
	d := startDaemon(t, ns)
	p := openProbe(t, ns)

	for _, tc := range []struct {
		name    string
		port    uint16
		send    func() error
		counter string // counted when bad
		bad     bool
	}{
		{"good TCP checksum via raw socket", 41001, func() error { return p.sendTCP(synSegment(41001, false)) }, "", false},
		{"bad TCP checksum via raw socket", 41002, func() error { return p.sendTCP(synSegment(41002, true)) }, "tcp.drop.checksum", true},
		{"good checksums via tun0", 41003, func() error { return p.sendIP(ipPacket(synSegment(41003, false), false)) }, "", false},
		{"bad TCP checksum via tun0", 41004, func() error { return p.sendIP(ipPacket(synSegment(41004, true), false)) }, "tcp.drop.checksum", true},
		{"bad IPv4 header checksum via tun0", 41005, func() error { return p.sendIP(ipPacket(synSegment(41005, false), true)) }, "ip.drop.checksum", true},
	} {
		before := d.counters()
		if err := tc.send(); err != nil {
			d.fatalf("%s: send: %v", tc.name, err)
		}
		got := p.answers(tc.port, time.Second)
		after := d.counters()
		if !tc.bad {
			if len(got) == 0 || got[0] != "S." {
				d.errorf("%s: answers %q, want a SYN|ACK (S.) first", tc.name, got)
			}
			continue
		}
		if len(got) != 0 {
			d.errorf("B03 %s: the stack answered %q, want silence", tc.name, got)
		}
		if after[tc.counter] != before[tc.counter]+1 {
			d.errorf("B03 %s: %s went %d -> %d, want +1", tc.name, tc.counter, before[tc.counter], after[tc.counter])
		}
		for _, c := range []string{"tcp.resets_sent", "tcp.passive_opens"} {
			if after[c] != before[c] {
				d.errorf("B03 %s: %s went %d -> %d, want unchanged", tc.name, c, before[c], after[c])
			}
		}
		for _, l := range d.sockets() {
			if l.Peer == fmt.Sprintf("10.0.0.1:%d", tc.port) {
				d.errorf("B03 %s: a socket exists for it: %+v", tc.name, l)
			}
		}
	}
}

// TestMalformedCounted: malformed packets written straight to tun0 (a
// truncated IPv4 header, a first fragment, an unknown protocol, a TCP header
// whose data offset runs past the segment, a truncated ICMP message) are
// dropped without an answer and counted under their reason, on `ustack ss
// --stats` and on the status page (B51); the daemon keeps serving.
func TestMalformedCounted(t *testing.T) {
	t.Parallel()
	needTool(t, "curl")
	ns := newNS(t)
	d := startDaemon(t, ns)
	p := openProbe(t, ns)

	withProto := func(proto byte, payload []byte) []byte {
		pkt := ipPacket(payload, false)
		pkt[9] = proto
		pkt[10], pkt[11] = 0, 0
		binary.BigEndian.PutUint16(pkt[10:], inetsum.Checksum(pkt[:20], 0))
		return pkt
	}
	fragment := func() []byte {
		pkt := ipPacket(synSegment(42002, false), false)
		pkt[6] = 0x20 // MF: the first of several fragments
		pkt[10], pkt[11] = 0, 0
		binary.BigEndian.PutUint16(pkt[10:], inetsum.Checksum(pkt[:20], 0))
		return pkt
	}
	badOffset := func() []byte {
		seg := synSegment(42003, false)
		seg[12] = 15 << 4 // 60-byte header in a 20-byte segment
		seg[16], seg[17] = 0, 0
		// The TCP checksum is left zero: whichever check comes first, the
		// segment is dropped and counted once.
		return withProto(unix.IPPROTO_TCP, seg)
	}
	for _, tc := range []struct {
		name    string
		pkt     []byte
		counter string
		port    uint16 // where an answer would go, 0 for none
	}{
		{"truncated IPv4 header", ipPacket(nil, false)[:12], "ip.drop.malformed", 0},
		{"first fragment of a SYN", fragment(), "ip.drop.fragment", 42002},
		{"unknown protocol 47", withProto(47, make([]byte, 8)), "ip.drop.unknown_protocol", 0},
		{"TCP data offset past the end", badOffset(), "", 42003},
		{"truncated ICMP echo", withProto(unix.IPPROTO_ICMP, []byte{8, 0, 0}), "icmp.drop.malformed", 0},
	} {
		before := d.counters()
		if err := p.sendIP(tc.pkt); err != nil {
			d.fatalf("%s: send: %v", tc.name, err)
		}
		var got []string
		if tc.port != 0 {
			got = p.answers(tc.port, 500*time.Millisecond)
		} else {
			time.Sleep(300 * time.Millisecond)
		}
		after := d.counters()
		if len(got) != 0 {
			d.errorf("B51 %s: the stack answered %q", tc.name, got)
		}
		if tc.counter == "" {
			// Either reason is fine for this one, as long as it is counted.
			if after["tcp.drop.malformed"]+after["tcp.drop.checksum"] != before["tcp.drop.malformed"]+before["tcp.drop.checksum"]+1 {
				d.errorf("B51 %s: neither tcp.drop.malformed nor tcp.drop.checksum went up by one", tc.name)
			}
			continue
		}
		if after[tc.counter] != before[tc.counter]+1 {
			d.errorf("B51 %s: %s went %d -> %d, want +1", tc.name, tc.counter, before[tc.counter], after[tc.counter])
		}
	}
	out, errOut, err := runIn(ns, 30*time.Second, "curl", "-sS", "--max-time", "20", "http://"+stackIP+"/")
	if err != nil {
		d.fatalf("curl after the malformed packets: %v: %s", err, errOut)
	}
	for _, c := range []string{"ip.drop.malformed", "ip.drop.fragment", "ip.drop.unknown_protocol", "icmp.drop.malformed"} {
		if !regexp.MustCompile(`<td>` + regexp.QuoteMeta(c) + `</td><td class="num">[1-9]`).MatchString(out) {
			d.errorf("the status page does not show %s as non-zero", c)
		}
	}
}
