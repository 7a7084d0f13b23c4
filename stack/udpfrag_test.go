package stack

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"

	"ustack/stack/header"
)

// A datagram larger than the MTU leaves in fragments of the MTU, 8-byte
// aligned, one ID, MF on all but the last, DF clear; put back together
// they are the datagram, checksum and all (RFC 791 §3.2, ip_fragment).
func TestUDPFragmentsOnIPv4(t *testing.T) {
	h := newHarness(t)
	u := udpSocket(t, h, 6000)
	peer := netip.AddrPortFrom(netip.AddrFrom4(peerAddr), 53)
	data := make([]byte, 3000)
	for i := range data {
		data[i] = byte(i % 251)
	}
	if n, err := u.SendTo(data, peer); n != 3000 || err != nil {
		t.Fatalf("SendTo(3000 bytes): %d, %v", n, err)
	}
	out := h.link.Outbound()
	wantLens := []int{1500, 1500, 68} // 3008 UDP bytes: 1480 + 1480 + 48
	if len(out) != len(wantLens) {
		t.Fatalf("%d packets, want %d fragments", len(out), len(wantLens))
	}
	var whole []byte
	for i, p := range out {
		ip := header.IPv4(p)
		if err := ip.Validate(); err != nil {
			t.Fatalf("fragment %d: %v", i, err)
		}
		flags := binary.BigEndian.Uint16(p[6:8])
		more, off := flags&0x2000 != 0, int(flags&0x1fff)*8
		if len(p) != wantLens[i] || ip.ID() != header.IPv4(out[0]).ID() || ip.DF() || more != (i < 2) || off != len(whole) || ip.Protocol() != header.ProtoUDP {
			t.Errorf("fragment %d: len %d id %d DF %v MF %v offset %d, want len %d, the first's id, DF clear, MF %v, offset %d",
				i, len(p), ip.ID(), ip.DF(), more, off, wantLens[i], i < 2, len(whole))
		}
		whole = append(whole, ip.Payload()...)
	}
	if len(whole) != 3008 || binary.BigEndian.Uint16(whole[4:6]) != 3008 || !bytes.Equal(whole[8:], data) {
		t.Fatalf("reassembled: %d bytes, length field %d", len(whole), binary.BigEndian.Uint16(whole[4:6]))
	}
	if header.Checksum(whole, header.PseudoHeaderSum(stackAddr, peerAddr, header.ProtoUDP, len(whole))) != 0 {
		t.Errorf("the reassembled datagram's checksum is wrong")
	}
	if got := h.s.Counter("ip.fragments.out"); got != 3 {
		t.Errorf("ip.fragments.out = %d, want 3", got)
	}

	// One that fits leaves whole, with DF (IP_PMTUDISC_WANT).
	u.SendTo(data[:100], peer)
	if p := header.IPv4(h.link.Outbound()[0]); !p.DF() || p.IsFragment() || p.TotalLen() != 128 {
		t.Errorf("a datagram that fits: DF %v fragment %v length %d", p.DF(), p.IsFragment(), p.TotalLen())
	}
	// The largest IPv4 datagram is 65507 bytes of data; one more is EMSGSIZE.
	if _, err := u.SendTo(make([]byte, 65507), peer); err != nil {
		t.Errorf("65507 bytes: %v", err)
	}
	if n := len(h.link.Outbound()); n != 45 {
		t.Errorf("65507 bytes in %d fragments, want 45", n)
	}
	if _, err := u.SendTo(make([]byte, 65508), peer); err != syscall.EMSGSIZE {
		t.Errorf("65508 bytes: %v, want EMSGSIZE", err)
	}
}

// IP_MTU_DISCOVER as ip(7): DO refuses what does not fit, DONT clears DF
// even on a datagram that fits; IPv6 never fragments here.
func TestUDPMTUDiscover(t *testing.T) {
	h := newHarness6(t)
	u := udpSocket(t, h, 6000)
	peer := netip.AddrPortFrom(netip.AddrFrom4(peerAddr), 53)
	if v, err := u.Option(OptMTUDiscover); v != PMTUDiscWant || err != nil {
		t.Errorf("default IP_MTU_DISCOVER %d, %v, want IP_PMTUDISC_WANT", v, err)
	}
	if err := u.SetOption(OptMTUDiscover, 6); err != syscall.EINVAL {
		t.Errorf("IP_MTU_DISCOVER 6: %v, want EINVAL", err)
	}
	// OMIT fragments as WANT does; INTERFACE refuses as DO does.
	u.SetOption(OptMTUDiscover, PMTUDiscOmit)
	if _, err := u.SendTo(make([]byte, 1473), peer); err != nil || len(h.link.Outbound()) != 2 {
		t.Errorf("IP_PMTUDISC_OMIT, 1501 bytes: %v, want two fragments", err)
	}
	u.SetOption(OptMTUDiscover, PMTUDiscInterface)
	if _, err := u.SendTo(make([]byte, 1473), peer); err != syscall.EMSGSIZE {
		t.Errorf("IP_PMTUDISC_INTERFACE, 1501 bytes: %v, want EMSGSIZE", err)
	}
	u.SetOption(OptMTUDiscover, PMTUDiscDo)
	if _, err := u.SendTo(make([]byte, 1473), peer); err != syscall.EMSGSIZE {
		t.Errorf("IP_PMTUDISC_DO, 1501 bytes: %v, want EMSGSIZE", err)
	}
	if _, err := u.SendTo(make([]byte, 1472), peer); err != nil {
		t.Errorf("IP_PMTUDISC_DO, 1500 bytes: %v", err)
	}
	h.link.Outbound()
	u.SetOption(OptMTUDiscover, PMTUDiscDont)
	u.SendTo([]byte("small"), peer)
	if p := header.IPv4(h.link.Outbound()[0]); p.DF() || p.IsFragment() {
		t.Errorf("IP_PMTUDISC_DONT: DF %v fragment %v, want neither", p.DF(), p.IsFragment())
	}
	if _, err := u.SendTo(make([]byte, 1453), netip.AddrPortFrom(peer6, 53)); err != syscall.EMSGSIZE {
		t.Errorf("IPv6, 1501 bytes: %v, want EMSGSIZE", err)
	}
	if len(h.link.Outbound()) != 0 {
		t.Errorf("a refused datagram left anyway")
	}
}
