package integration

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ustack/internal/inetsum"
)

// spoofedSYN is an IPv4 packet carrying a SYN from src:sport to
// 10.0.0.2:80, with correct checksums. src is an address nobody has, so the
// SYN|ACKs go unanswered (the kernel does not forward them).
func spoofedSYN(src [4]byte, sport uint16) []byte {
	p := make([]byte, 40)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = unix.IPPROTO_TCP
	copy(p[12:], src[:])
	copy(p[16:], stackAddr[:])
	binary.BigEndian.PutUint16(p[10:], inetsum.Checksum(p[:20], 0))
	tcp := p[20:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], 80)
	binary.BigEndian.PutUint32(tcp[4:], uint32(sport)*7919)
	tcp[12] = 5 << 4
	tcp[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	binary.BigEndian.PutUint16(tcp[16:], tcpCsum(src, stackAddr, tcp))
	return p
}

// TestB43SynFlood: a flood of SYNs from a spoofed address fills the http
// listener's SYN queue (backlog 4096 + 1); the half-open connections stay
// bounded by it, the rest are answered with SYN cookies, and curl, a
// legitimate client arriving during the flood, still gets its page.
func TestB43SynFlood(t *testing.T) {
	t.Parallel()
	needTool(t, "curl")
	ns := newNS(t)
	d := startDaemon(t, ns)
	p := openProbe(t, ns)

	// The TUN device queues only 500 packets towards the stack: the SYNs
	// go in batches, until the stack has answered 200 of them with
	// cookies (or a bounded number has been sent).
	spoofed := [4]byte{10, 0, 0, 77}
	var c map[string]uint64
	sent := 0
	for batch := 0; batch < 150; batch++ {
		for i := 0; i < 100; i++ {
			if err := p.sendIP(spoofedSYN(spoofed, uint16(20000+sent))); err != nil {
				d.fatalf("sending SYN %d: %v", sent, err)
			}
			sent++
		}
		time.Sleep(10 * time.Millisecond)
		if batch%10 == 9 {
			if c = d.counters(); c["tcp.syncookies_sent"] >= 200 {
				break
			}
		}
	}
	c = d.counters()
	if c["tcp.syncookies_sent"] == 0 {
		d.fatalf("no SYN cookies after %d SYNs (passive opens %d, syn queue drops %d)", sent, c["tcp.passive_opens"], c["tcp.syn_queue_drops"])
	}
	half := 0
	for _, l := range d.sockets() {
		if l.State == "SYN-RECV" {
			half++
		}
	}
	if half > 4096+1 {
		d.fatalf("%d connections in SYN-RECV: the SYN queue is not bounded by backlog+1", half)
	}

	out, errOut, err := runIn(ns, 30*time.Second, "curl", "-sS", "--max-time", "20", "http://"+stackIP+"/")
	if err != nil {
		d.fatalf("B43: curl during the SYN flood: %v: %s", err, errOut)
	}
	if !strings.Contains(out, "ustack") {
		d.fatalf("B43: curl got no status page during the flood:\n%.300s", out)
	}
	after := d.counters()
	if after["tcp.syncookies_recv"] == 0 {
		d.fatalf("curl connected, but not through a SYN cookie (syncookies_sent %d, half-open %d)", after["tcp.syncookies_sent"], half)
	}
	t.Logf("%d SYNs: %d half-open kept, %d answered with cookies; curl connected through a cookie", sent, half, after["tcp.syncookies_sent"])
}
