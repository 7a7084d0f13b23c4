package drill

import (
	"fmt"

	"ustack/stack/header"
)

// Mismatch is one field of an outbound packet that differs from the script.
type Mismatch struct {
	Field     string
	Want, Got string
}

func (m Mismatch) String() string {
	return fmt.Sprintf("%s: expected %s, got %s", m.Field, m.Want, m.Got)
}

// matchOptions says how to compare options beyond kind and length.
type matchOptions struct {
	ipv6 bool // the run's packets are IPv6
	// tsTick, when non-zero, checks TS val: |Δ|·tsTick within tolerance.
	tsTick    int64 // µs per tick
	tolerance int64 // µs
}

// matchSegment compares an outbound segment, already mapped into script
// space (relative seq, rebased TS val), with the script's expectation. It
// checks what packetdrill checks (packetdrill.md §7): IP version, protocol,
// header length, total length and header checksum; TCP data offset, every
// flag and the reserved bits, seq, the ack field, the window if written,
// the urgent pointer, the options kind by kind (TS ecr excepted, TS val
// only with a tick), and the payload (zeros).
func matchSegment(want *Packet, got *segment, mo matchOptions) []Mismatch {
	var ms []Mismatch
	check := func(field string, w, g any) {
		if fmt.Sprint(w) != fmt.Sprint(g) {
			ms = append(ms, Mismatch{field, fmt.Sprint(w), fmt.Sprint(g)})
		}
	}
	optLen := 0
	for _, o := range want.Options {
		optLen += o.wireLen()
	}
	optLen = (optLen + 3) &^ 3
	wantDoff := header.TCPMinSize + optLen
	if want.AnyOptions {
		wantDoff = got.doff
	}
	version, ihl := 4, header.IPv4MinSize
	if mo.ipv6 {
		version, ihl = 6, header.IPv6HeaderSize
	}
	check("ip version", version, got.ipVersion)
	check("ip protocol", header.ProtoTCP, got.proto)
	check("ip header length", ihl, got.ihl)
	check("ip total length", ihl+wantDoff+want.Len, got.totalLen)
	if !got.ipChecksum {
		ms = append(ms, Mismatch{"ip checksum", "valid", "invalid"})
	}
	check("tcp data offset", wantDoff, got.doff)
	check("flags", flagString(want.Flags, want.AE), flagString(got.flags, got.reserved&1 != 0))
	check("reserved bits", 0, got.reserved&^1)
	check("seq", want.Seq, got.seq)
	check("ack", want.Ack, got.ack)
	if want.HasWin {
		check("win", want.Win, got.win)
	}
	check("urg", want.Urg, got.urg)
	if !want.AnyOptions {
		if m := matchOptionList(want.Options, got.opts, mo); m != nil {
			ms = append(ms, *m)
		}
	}
	check("payload length", want.Len, len(got.payload))
	for i, c := range got.payload {
		if c != 0 {
			ms = append(ms, Mismatch{"payload", "zero bytes", fmt.Sprintf("byte %d is %#x", i, c)})
			break
		}
	}
	return ms
}

// matchOptionList compares options kind by kind, in order.
func matchOptionList(want, got []TCPOption, mo matchOptions) *Mismatch {
	bad := &Mismatch{"options", optionsString(want), optionsString(got)}
	if len(want) != len(got) {
		return bad
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.Kind != g.Kind {
			return bad
		}
		switch w.Kind {
		case OptMSS, OptWScale:
			if w.Value != g.Value {
				return bad
			}
		case OptSACK:
			if len(w.Blocks) != len(g.Blocks) {
				return bad
			}
			for j := range w.Blocks {
				if w.Blocks[j] != g.Blocks[j] {
					return bad
				}
			}
		case OptTS:
			if mo.tsTick != 0 {
				d := int64(int32(g.TSVal - w.TSVal))
				if d < 0 {
					d = -d
				}
				if d*mo.tsTick > mo.tolerance {
					return &Mismatch{"TS val", fmt.Sprint(w.TSVal), fmt.Sprint(g.TSVal)}
				}
			}
		}
	}
	return nil
}

// aggregate joins segments a stack sent for one script line that expects
// more payload than the first carried (TSO-style, packetdrill.md §7.4): seq
// from the first, flags, ack, window and options from the last. It checks
// that the segments follow each other and that all but the last have the
// same size.
func aggregate(segs []*segment) (*segment, error) {
	first, last := segs[0], segs[len(segs)-1]
	out := *last
	out.seq = first.seq
	var payload []byte
	for i, s := range segs {
		if i > 0 {
			prev := segs[i-1]
			if s.seq != prev.seq+uint32(len(prev.payload)) {
				return nil, fmt.Errorf("segment %d starts at seq %d, not right after the previous one (%d)", i+1, s.seq, prev.seq+uint32(len(prev.payload)))
			}
			if s.flags&^(header.FIN|header.PSH|header.CWR) != prev.flags&^(header.FIN|header.PSH|header.CWR) || s.ack != prev.ack || s.doff != prev.doff {
				return nil, fmt.Errorf("segment %d's header (%s ack %d) differs from the previous segment's (%s ack %d)", i+1, flagString(s.flags, false), s.ack, flagString(prev.flags, false), prev.ack)
			}
			if i < len(segs)-1 && len(s.payload) != len(prev.payload) {
				return nil, fmt.Errorf("segment %d carries %d bytes, the previous %d", i+1, len(s.payload), len(prev.payload))
			}
		}
		payload = append(payload, s.payload...)
	}
	out.payload = payload
	out.totalLen = out.ihl + out.doff + len(payload)
	return &out, nil
}
