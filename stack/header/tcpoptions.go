package header

import (
	"encoding/binary"
	"errors"
)

// TCP option kinds (RFC 9293 section 3.1, RFC 7323, RFC 2018).
const (
	OptEOL           = 0
	OptNOP           = 1
	OptMSS           = 2
	OptWScale        = 3
	OptSACKPermitted = 4
	OptSACK          = 5
	OptTimestamp     = 8
)

// Option lengths including kind and length bytes.
const (
	OptMSSLen           = 4
	OptWScaleLen        = 3
	OptSACKPermittedLen = 2
	OptTimestampLen     = 10
	OptSACKBaseLen      = 2
	OptSACKBlockLen     = 8
)

// MaxOptionsLen is the most option space a TCP header has: data offset 15
// words minus the fixed 5.
const MaxOptionsLen = 40

// MaxSACKBlocks is the most SACK blocks that fit in the option space
// (RFC 2018 section 3).
const MaxSACKBlocks = 4

// SACKBlock is one SACK block: sequence numbers [Start, End) (RFC 2018).
type SACKBlock struct{ Start, End uint32 }

// TCPOptions is the parsed option set; the zero value means no options.
type TCPOptions struct {
	MSS    uint16
	HasMSS bool
	// WScale is the shift as received; the caller clamps it to 14
	// (RFC 7323 section 2.3).
	WScale        uint8
	HasWScale     bool
	SACKPermitted bool
	HasTS         bool
	TSVal, TSEcr  uint32
	SACK          [MaxSACKBlocks]SACKBlock
	NumSACK       int
}

// ErrTCPOptions reports a malformed option list.
var ErrTCPOptions = errors.New("header: malformed TCP options")

// ParseTCPOptions resets *o and parses opts into it (RFC 9293 section 3.1).
// EOL ends the list and NOP is skipped. Unknown kinds with a valid length
// are skipped. A known kind with the wrong length is skipped too but makes
// the result ErrTCPOptions; parsing goes on, so o holds every well-formed
// option, which is what Linux (tcp_parse_options) uses. A length byte that
// is missing, below 2 or past the end stops parsing with ErrTCPOptions; o
// keeps the options before it, as Linux does. Whether an option is allowed
// on this segment (MSS only on SYN, ...) is the caller's call.
func ParseTCPOptions(opts []byte, o *TCPOptions) error {
	*o = TCPOptions{}
	var err error
	for len(opts) > 0 {
		kind := opts[0]
		switch kind {
		case OptEOL:
			return err
		case OptNOP:
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 {
			return ErrTCPOptions
		}
		n := int(opts[1])
		if n < 2 || n > len(opts) {
			return ErrTCPOptions
		}
		opt := opts[:n]
		opts = opts[n:]
		switch kind {
		case OptMSS:
			if n != OptMSSLen {
				err = ErrTCPOptions
				continue
			}
			o.MSS = binary.BigEndian.Uint16(opt[2:4])
			o.HasMSS = true
		case OptWScale:
			if n != OptWScaleLen {
				err = ErrTCPOptions
				continue
			}
			o.WScale = opt[2]
			o.HasWScale = true
		case OptSACKPermitted:
			if n != OptSACKPermittedLen {
				err = ErrTCPOptions
				continue
			}
			o.SACKPermitted = true
		case OptTimestamp:
			if n != OptTimestampLen {
				err = ErrTCPOptions
				continue
			}
			o.TSVal = binary.BigEndian.Uint32(opt[2:6])
			o.TSEcr = binary.BigEndian.Uint32(opt[6:10])
			o.HasTS = true
		case OptSACK:
			blocks := (n - OptSACKBaseLen) / OptSACKBlockLen
			if (n-OptSACKBaseLen)%OptSACKBlockLen != 0 || blocks < 1 || blocks > MaxSACKBlocks {
				err = ErrTCPOptions
				continue
			}
			for i := range blocks {
				p := opt[OptSACKBaseLen+i*OptSACKBlockLen:]
				o.SACK[i] = SACKBlock{
					Start: binary.BigEndian.Uint32(p[0:4]),
					End:   binary.BigEndian.Uint32(p[4:8]),
				}
			}
			clear(o.SACK[blocks:]) // a repeated SACK option replaces the first
			o.NumSACK = blocks
		}
	}
	return err
}

// SYNOptionsLen is the number of bytes PutSYNOptions writes for the same
// arguments.
func SYNOptionsLen(wscale int, sackOK bool, ts bool) int {
	n := OptMSSLen
	if ts || sackOK {
		// TS alone is NOP,NOP,TS; SACK_PERM alone is NOP,NOP,SACK_PERM;
		// both share one 12-byte group.
		if ts {
			n += 12
		} else {
			n += 4
		}
	}
	if wscale >= 0 {
		n += 4
	}
	return n
}

// PutSYNOptions writes the options of a SYN or SYN-ACK in Linux's layout
// (net/ipv4/tcp_output.c tcp_options_write) and returns the length, a
// multiple of 4. wscale < 0 means no window scale option. b must have room
// for SYNOptionsLen bytes (at most 20).
//
// With ts:    MSS, SACK_PERM+TS (or NOP,NOP,TS without sackOK), NOP,WSCALE.
// Without ts: MSS, NOP,NOP,SACK_PERM (if sackOK), NOP,WSCALE.
func PutSYNOptions(b []byte, mss uint16, wscale int, sackOK bool, ts bool, tsVal, tsEcr uint32) int {
	b = b[:SYNOptionsLen(wscale, sackOK, ts)]
	b[0], b[1] = OptMSS, OptMSSLen
	binary.BigEndian.PutUint16(b[2:4], mss)
	n := 4
	switch {
	case ts:
		if sackOK {
			b[n], b[n+1] = OptSACKPermitted, OptSACKPermittedLen
		} else {
			b[n], b[n+1] = OptNOP, OptNOP
		}
		b[n+2], b[n+3] = OptTimestamp, OptTimestampLen
		binary.BigEndian.PutUint32(b[n+4:n+8], tsVal)
		binary.BigEndian.PutUint32(b[n+8:n+12], tsEcr)
		n += 12
	case sackOK:
		b[n], b[n+1], b[n+2], b[n+3] = OptNOP, OptNOP, OptSACKPermitted, OptSACKPermittedLen
		n += 4
	}
	if wscale >= 0 {
		b[n], b[n+1], b[n+2], b[n+3] = OptNOP, OptWScale, OptWScaleLen, uint8(wscale)
		n += 4
	}
	return n
}

// DataSACKBlocks is how many of nsacks SACK blocks fit beside the timestamp
// option in the 40-byte option space: 4 without timestamps, 3 with.
func DataSACKBlocks(ts bool, nsacks int) int {
	limit := MaxSACKBlocks
	if ts {
		limit = (MaxOptionsLen - 12 - 4) / OptSACKBlockLen
	}
	return max(0, min(nsacks, limit))
}

// DataOptionsLen is the number of bytes PutDataOptions writes for the same
// arguments.
func DataOptionsLen(ts bool, nsacks int) int {
	n := 0
	if ts {
		n += 12
	}
	if k := DataSACKBlocks(ts, nsacks); k > 0 {
		n += 4 + k*OptSACKBlockLen
	}
	return n
}

// PutDataOptions writes the options of a data or ACK segment in Linux's
// layout and returns the length, a multiple of 4: NOP,NOP,TS if ts, then
// NOP,NOP,SACK with the blocks in the order given (most recent first, as
// RFC 2018 section 4 asks). Blocks that do not fit in 40 bytes are dropped.
// b must have room for DataOptionsLen bytes (at most 40).
func PutDataOptions(b []byte, ts bool, tsVal, tsEcr uint32, sacks []SACKBlock) int {
	b = b[:DataOptionsLen(ts, len(sacks))]
	n := 0
	if ts {
		b[0], b[1], b[2], b[3] = OptNOP, OptNOP, OptTimestamp, OptTimestampLen
		binary.BigEndian.PutUint32(b[4:8], tsVal)
		binary.BigEndian.PutUint32(b[8:12], tsEcr)
		n = 12
	}
	k := DataSACKBlocks(ts, len(sacks))
	if k == 0 {
		return n
	}
	b[n], b[n+1], b[n+2], b[n+3] = OptNOP, OptNOP, OptSACK, uint8(OptSACKBaseLen+k*OptSACKBlockLen)
	n += 4
	for _, s := range sacks[:k] {
		binary.BigEndian.PutUint32(b[n:n+4], s.Start)
		binary.BigEndian.PutUint32(b[n+4:n+8], s.End)
		n += 8
	}
	return n
}
