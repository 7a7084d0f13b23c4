package drill

import (
	"net/netip"
	"strings"
	"testing"

	"ustack/stack/header"
)

// seg builds a live segment the way a stack would send it.
func testSegment(flags uint8, seq, ack uint32, win uint16, n int, opts ...TCPOption) *segment {
	return &segment{
		src: netip.AddrPortFrom(defaultLocal4, 8080), dst: netip.AddrPortFrom(defaultRemote4.Addr(), 40000),
		seq: seq, ack: ack, flags: flags, win: win, opts: opts, payload: make([]byte, n),
	}
}

// roundTrip encodes and decodes a segment, as a captured packet would be.
func roundTrip(t *testing.T, s *segment) *segment {
	t.Helper()
	d, err := decodeSegment(encodeSegment(s))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMatchSegment(t *testing.T) {
	synAck := roundTrip(t, testSegment(header.SYN|header.ACK, 0, 1, 65535, 0,
		TCPOption{Kind: OptMSS, Value: 1460}, TCPOption{Kind: OptSACKOK},
		TCPOption{Kind: OptTS, TSVal: 7, TSEcr: 100}, TCPOption{Kind: OptNOP}, TCPOption{Kind: OptWScale, Value: 8}))
	want := &Packet{Dir: Outbound, Flags: header.SYN | header.ACK, Ack: 1, Options: []TCPOption{
		{Kind: OptMSS, Value: 1460}, {Kind: OptSACKOK}, {Kind: OptTS, TSVal: 200, TSEcr: 5},
		{Kind: OptNOP}, {Kind: OptWScale, Value: 8}}}
	if ms := matchSegment(want, synAck, matchOptions{}); len(ms) != 0 {
		t.Errorf("exact SYN|ACK: %v", ms)
	}
	// TS val is checked only with a tick; ecr never.
	if ms := matchSegment(want, synAck, matchOptions{tsTick: 1000, tolerance: 4000}); len(ms) != 1 || ms[0].Field != "TS val" {
		t.Errorf("TS val with tick: %v", ms)
	}
	// Window: checked only when written.
	w := *want
	w.Win, w.HasWin = 100, true
	if ms := matchSegment(&w, synAck, matchOptions{}); len(ms) != 1 || ms[0].Field != "win" {
		t.Errorf("win: %v", ms)
	}
	// <...> accepts any options, but still checks the rest.
	w = *want
	w.Options, w.AnyOptions = nil, true
	if ms := matchSegment(&w, synAck, matchOptions{}); len(ms) != 0 {
		t.Errorf("<...>: %v", ms)
	}
	// A different option value, and a missing option.
	w = *want
	w.Options = append([]TCPOption(nil), want.Options...)
	w.Options[4].Value = 7
	ms := matchSegment(&w, synAck, matchOptions{})
	if len(ms) != 1 || ms[0].Field != "options" || !strings.Contains(ms[0].Got, "wscale 8") {
		t.Errorf("wscale: %v", ms)
	}
	// No options written means none: data offset and lengths differ too.
	w = *want
	w.Options = nil
	fields := map[string]bool{}
	for _, m := range matchSegment(&w, synAck, matchOptions{}) {
		fields[m.Field] = true
	}
	for _, f := range []string{"options", "tcp data offset", "ip total length"} {
		if !fields[f] {
			t.Errorf("no options: %s not reported (%v)", f, fields)
		}
	}
}

func TestMatchRSTWithoutACK(t *testing.T) {
	// `> R 2:2(0)` means no ACK flag and an ack field of 0.
	want := &Packet{Dir: Outbound, Flags: header.RST, Seq: 2}
	rstAck := roundTrip(t, testSegment(header.RST|header.ACK, 2, 1, 0, 0))
	fields := map[string]bool{}
	for _, m := range matchSegment(want, rstAck, matchOptions{}) {
		fields[m.Field] = true
	}
	if !fields["flags"] || !fields["ack"] {
		t.Errorf("R vs R.: %v", fields)
	}
	if ms := matchSegment(want, roundTrip(t, testSegment(header.RST, 2, 0, 0, 0)), matchOptions{}); len(ms) != 0 {
		t.Errorf("exact RST: %v", ms)
	}
}

func TestMatchPayloadAndChecksum(t *testing.T) {
	want := &Packet{Dir: Outbound, Flags: header.PSH | header.ACK, Seq: 1, Len: 10, Ack: 1}
	s := testSegment(header.PSH|header.ACK, 1, 1, 100, 10)
	s.payload[3] = 9
	raw := encodeSegment(s)
	raw[10] ^= 0xff // corrupt the IP header checksum
	d, err := decodeSegment(raw)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]bool{}
	for _, m := range matchSegment(want, d, matchOptions{}) {
		fields[m.Field] = true
	}
	if !fields["payload"] || !fields["ip checksum"] {
		t.Errorf("payload/checksum: %v", fields)
	}
}

func TestAggregate(t *testing.T) {
	a := testSegment(header.ACK, 1, 1, 100, 1000)
	b := testSegment(header.ACK, 1001, 1, 100, 1000)
	c := testSegment(header.PSH|header.ACK, 2001, 1, 100, 500)
	agg, err := aggregate([]*segment{a, b, c})
	if err != nil {
		t.Fatal(err)
	}
	want := &Packet{Dir: Outbound, Flags: header.PSH | header.ACK, Seq: 1, Len: 2500, Ack: 1}
	agg.ipChecksum, agg.ipVersion, agg.proto, agg.ihl, agg.doff = true, 4, header.ProtoTCP, 20, 20
	agg.totalLen = 40 + 2500
	if ms := matchSegment(want, agg, matchOptions{}); len(ms) != 0 {
		t.Errorf("aggregate: %v", ms)
	}
	if _, err := aggregate([]*segment{a, c}); err == nil {
		t.Error("a gap in sequence numbers aggregated")
	}
	short := testSegment(header.ACK, 1001, 1, 100, 400)
	if _, err := aggregate([]*segment{a, short, testSegment(header.ACK, 1401, 1, 100, 100)}); err == nil {
		t.Error("unequal non-final segments aggregated")
	}
}

func TestDecodeOptions(t *testing.T) {
	opts := []TCPOption{{Kind: OptNOP}, {Kind: OptNOP}, {Kind: OptSACK, Blocks: [][2]uint32{{5, 10}, {20, 30}}}}
	got, bad := decodeOptions(encodeOptions(opts))
	if bad != "" || optionsString(got) != "<nop,nop,sack 5:10 20:30>" {
		t.Errorf("decode = %s %q", optionsString(got), bad)
	}
	if got, _ := decodeOptions([]byte{42, 4, 0, 0}); len(got) != 1 || got[0].Kind != OptUnknown || got[0].Value != 42 {
		t.Errorf("unknown kind: %+v", got)
	}
}
