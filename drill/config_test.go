package drill

import (
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"ustack/stack/header"
)

// The command line overrides a script's option lines, --ip_version picks
// the addresses the other options are checked against, and each version's
// sockets see the addresses packetdrill's config.c table gives them.
func TestConfigFrom(t *testing.T) {
	script := []Option{{Pos: Pos{Line: 1}, Name: "tolerance_usecs", Value: "10000"}, {Pos: Pos{Line: 2}, Name: "mtu", Value: "1400"}}
	c, err := ConfigFrom(script, SuiteArgs(IPv6))
	if err != nil {
		t.Fatal(err)
	}
	if c.IPVersion != IPv6 || c.MTU != 1520 || c.Tolerance.Microseconds() != 10000 || c.Domain() != unix.AF_INET6 || !c.Wire6() {
		t.Errorf("ipv6 config: %+v", c)
	}
	if c.BindAddr() != netip.MustParseAddrPort("[fd3d:a0b:17d6::1]:8080") || c.ConnectAddr() != netip.MustParseAddrPort("[fd3d:fa7b:d17d::1]:8080") {
		t.Errorf("ipv6 sockets bind %v and connect to %v", c.BindAddr(), c.ConnectAddr())
	}
	c, err = ConfigFrom(SuiteArgs(IPv4MappedIPv6))
	if err != nil {
		t.Fatal(err)
	}
	if c.Wire6() || c.Domain() != unix.AF_INET6 || c.BindAddr() != netip.MustParseAddrPort("[::ffff:192.168.0.1]:8080") || c.Local != netip.MustParseAddr("192.168.0.1") {
		t.Errorf("mapped config: wire6 %v, domain %d, bind %v, local %v", c.Wire6(), c.Domain(), c.BindAddr(), c.Local)
	}
	// An IPv4 address in an IPv6 run, a bad version: errors that say so.
	if _, err := ConfigFrom([]Option{{Name: "ip_version", Value: "ipv6"}, {Name: "local_ip", Value: "192.168.0.1"}}); err == nil {
		t.Error("an IPv4 local_ip was taken for an ipv6 run")
	}
	if _, err := ConfigFrom([]Option{{Name: "ip_version", Value: "ipv5"}}); err == nil {
		t.Error("--ip_version=ipv5 was taken")
	}
	// An option drill does not have is a skip, named.
	var u *Unsupported
	if _, err := ConfigFrom([]Option{{Name: "wire_client"}}); !errors.As(err, &u) {
		t.Errorf("--wire_client: %v, want *Unsupported", err)
	}
}

func TestParseArgs(t *testing.T) {
	opts, rest := ParseArgs([]string{"--stacks", "ustack", "--ip_version=ipv6", "--mtu", "1520", "-v", "a.pkt"})
	if len(opts) != 2 || opts[0] != (Option{Name: "ip_version", Value: "ipv6"}) || opts[1] != (Option{Name: "mtu", Value: "1520"}) {
		t.Errorf("options %v", opts)
	}
	if len(rest) != 4 || rest[0] != "--stacks" || rest[3] != "a.pkt" {
		t.Errorf("rest %v", rest)
	}
}

func TestRunsIn(t *testing.T) {
	for _, c := range []struct {
		path      string
		v4, m, v6 bool
	}{{"b20-pmtu-v4.pkt", true, true, false}, {"b20-pmtu-v6.pkt", false, false, true}, {"b10-passive-open.pkt", true, true, true}} {
		if RunsIn(c.path, IPv4) != c.v4 || RunsIn(c.path, IPv4MappedIPv6) != c.m || RunsIn(c.path, IPv6) != c.v6 {
			t.Errorf("%s: runs in %v %v %v", c.path, RunsIn(c.path, IPv4), RunsIn(c.path, IPv4MappedIPv6), RunsIn(c.path, IPv6))
		}
	}
}

// An IPv6 segment survives encoding and decoding, and the ICMPv6 error
// drill builds is one a stack accepts: the right type, a valid checksum
// and our segment quoted after the 8-byte header.
func TestIPv6Codec(t *testing.T) {
	local, remote := netip.MustParseAddrPort("[fd3d:a0b:17d6::1]:8080"), netip.MustParseAddrPort("[fd3d:fa7b:d17d::1]:40000")
	s := &segment{src: local, dst: remote, seq: 7, ack: 9, flags: header.ACK | header.PSH, win: 100, payload: make([]byte, 10)}
	d, err := decodeSegment(encodeSegment(s))
	if err != nil {
		t.Fatal(err)
	}
	if d.ipVersion != 6 || d.ihl != 40 || d.totalLen != 70 || d.src != local || d.dst != remote || d.seq != 7 || len(d.payload) != 10 {
		t.Errorf("decoded %+v", d)
	}
	pkt, err := encodeICMPError(&ICMPSpec{Type: "packet_too_big", MTU: 1300}, local, remote, 1234)
	if err != nil {
		t.Fatal(err)
	}
	ip := header.IPv6(pkt)
	icmp := ip.Payload()
	if ip.Validate() != nil || ip.NextHeader() != header.ProtoICMPv6 || icmp[0] != 2 || !header.ICMPv6ChecksumValid(ip.Src(), ip.Dst(), icmp) {
		t.Fatalf("ICMPv6 packet too big: % x", pkt)
	}
	quoted := header.IPv6(icmp[header.ICMPv6MinSize:])
	if quoted.Src() != local.Addr().As16() || header.TCP(quoted[40:]).Seq() != 1234 {
		t.Errorf("quoted % x", quoted)
	}
	if _, err := encodeICMPError(&ICMPSpec{Type: "unreachable", Code: "frag_needed"}, local, remote, 1); err == nil {
		t.Error("frag_needed built as ICMPv6")
	}
}
