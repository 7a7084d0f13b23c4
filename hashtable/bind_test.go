package hashtable

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"syscall"
	"testing"
)

var (
	any4 = Any4
	ipA  = AddrFrom4([4]byte{10, 0, 0, 1})
	ipB  = AddrFrom4([4]byte{10, 0, 0, 2})
)

func testSeed(i uint64) [16]byte {
	var s [16]byte
	binary.LittleEndian.PutUint64(s[:8], i*0x9e3779b97f4a7c15+1)
	binary.LittleEndian.PutUint64(s[8:], ^i)
	return s
}

func TestSipHashVectors(t *testing.T) {
	// Reference vectors from the SipHash paper (vectors.h): key 00..0f,
	// message 00..len-1.
	want := []uint64{
		0x726fdb47dd0e0e31, 0x74f839c593dc67fd, 0x0d6c8009d9a94f5a, 0x85676696d7fb7e2d,
		0xcf2794e0277187b7, 0x18765564cd99a68d, 0xcbc9466e58fee3ce, 0xab0200f58b01d137,
		0x93f5f5799a932462, 0x9e0082df0ba9e4b0, 0x7a5dbbc594ddb9f3, 0xf4b32f46226bada7,
		0x751e8fbc860ee5fb, 0x14ea5627c0843d90, 0xf723ca908e7af2ee, 0xa129ca6149be45e5,
	}
	var key, msg [16]byte
	for i := range key {
		key[i] = byte(i)
		msg[i] = byte(i)
	}
	k := newSipKey(key)
	for n, w := range want {
		if got := k.sum(msg[:n]); got != w {
			t.Errorf("len %d: got %#x, want %#x", n, got, w)
		}
	}
}

func TestBindConflicts(t *testing.T) {
	const port = 8080
	type ent struct {
		addr          Addr
		reuse, listen bool
	}
	tests := []struct {
		name     string
		existing []ent
		add      ent
		want     error
	}{
		{"same addr", []ent{{ipA, false, false}}, ent{ipA, false, false}, syscall.EADDRINUSE},
		{"different addrs", []ent{{ipA, false, false}}, ent{ipB, false, false}, nil},
		{"different addrs, existing listening", []ent{{ipA, false, true}}, ent{ipB, false, false}, nil},
		{"wildcard existing, specific new", []ent{{any4, false, false}}, ent{ipA, false, false}, syscall.EADDRINUSE},
		{"specific existing, wildcard new", []ent{{ipA, false, false}}, ent{any4, false, false}, syscall.EADDRINUSE},
		{"wildcard both", []ent{{any4, false, false}}, ent{any4, false, false}, syscall.EADDRINUSE},
		{"reuseaddr both, not listening", []ent{{ipA, true, false}}, ent{ipA, true, false}, nil},
		{"reuseaddr both, wildcard vs specific", []ent{{any4, true, false}}, ent{ipA, true, false}, nil},
		{"reuseaddr both, specific vs wildcard", []ent{{ipA, true, false}}, ent{any4, true, false}, nil},
		{"reuseaddr both, existing listening", []ent{{ipA, true, true}}, ent{ipA, true, false}, syscall.EADDRINUSE},
		{"reuseaddr both, wildcard existing listening", []ent{{any4, true, true}}, ent{ipA, true, false}, syscall.EADDRINUSE},
		{"reuseaddr both, specific existing listening, wildcard new", []ent{{ipA, true, true}}, ent{any4, true, false}, syscall.EADDRINUSE},
		{"reuseaddr only new", []ent{{ipA, false, false}}, ent{ipA, true, false}, syscall.EADDRINUSE},
		{"reuseaddr only existing", []ent{{ipA, true, false}}, ent{ipA, false, false}, syscall.EADDRINUSE},
		{"reuseaddr, new already listening, existing not", []ent{{ipA, true, false}}, ent{ipA, true, true}, nil},
		{"one compatible, one conflicting", []ent{{ipA, true, false}, {ipB, false, false}}, ent{any4, true, false}, syscall.EADDRINUSE},
		{"several reuseaddr sharers", []ent{{ipA, true, false}, {any4, true, false}, {ipA, true, false}}, ent{ipA, true, false}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBind(testSeed(1), 0, 0)
			for i, e := range tc.existing {
				err := b.Bind(BindEntry{Owner: OwnerID(i + 1), Addr: e.addr, ReuseAddr: e.reuse, Listening: e.listen}, port)
				if err != nil {
					t.Fatalf("setup bind %d: %v", i, err)
				}
			}
			owner := OwnerID(100)
			err := b.Bind(BindEntry{Owner: owner, Addr: tc.add.addr, ReuseAddr: tc.add.reuse, Listening: tc.add.listen}, port)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Bind = %v, want %v", err, tc.want)
			}
			_, bound := b.Port(owner)
			if wantBound := tc.want == nil; bound != wantBound {
				t.Fatalf("owner bound = %v, want %v", bound, wantBound)
			}
			if got, want := len(b.Owners(port)), len(tc.existing)+map[bool]int{true: 1}[tc.want == nil]; got != want {
				t.Fatalf("len(Owners) = %d, want %d", got, want)
			}
			// A different port never conflicts.
			if err := b.Bind(BindEntry{Owner: 200, Addr: tc.add.addr}, port+1); err != nil {
				t.Fatalf("bind on other port: %v", err)
			}
		})
	}
}

func TestBindInvalid(t *testing.T) {
	b := NewBind(testSeed(1), 0, 0)
	if err := b.Bind(BindEntry{Owner: 1, Addr: ipA}, 0); err != syscall.EINVAL {
		t.Errorf("bind port 0 = %v, want EINVAL", err)
	}
	if err := b.Bind(BindEntry{Owner: 1, Addr: ipA, ReuseAddr: true}, 80); err != nil {
		t.Fatal(err)
	}
	if err := b.Bind(BindEntry{Owner: 1, Addr: ipA, ReuseAddr: true}, 80); err != syscall.EINVAL {
		t.Errorf("same owner twice, same port = %v, want EINVAL", err)
	}
	if err := b.Bind(BindEntry{Owner: 1, Addr: ipB}, 81); err != syscall.EINVAL {
		t.Errorf("same owner twice, other port = %v, want EINVAL", err)
	}
	if _, err := b.EphemeralBind(BindEntry{Owner: 1}); err != syscall.EINVAL {
		t.Errorf("EphemeralBind of bound owner = %v, want EINVAL", err)
	}
	if b.Len() != 1 || len(b.Owners(80)) != 1 || b.InUse(81) {
		t.Fatal("failed binds changed the table")
	}
}

func TestSetListening(t *testing.T) {
	const port = 80
	type ent struct {
		addr  Addr
		reuse bool
	}
	tests := []struct {
		name    string
		ents    []ent
		listens []OwnerID // owners (1-based index into ents) calling listen, in order
		want    []error
	}{
		{"reuseaddr pair, second listen fails", []ent{{ipA, true}, {ipA, true}}, []OwnerID{1, 2}, []error{nil, syscall.EADDRINUSE}},
		{"reuseaddr pair, other order", []ent{{ipA, true}, {ipA, true}}, []OwnerID{2, 1}, []error{nil, syscall.EADDRINUSE}},
		{"wildcard listening blocks specific", []ent{{any4, true}, {ipA, true}}, []OwnerID{1, 2}, []error{nil, syscall.EADDRINUSE}},
		{"specific listening blocks wildcard", []ent{{any4, true}, {ipA, true}}, []OwnerID{2, 1}, []error{nil, syscall.EADDRINUSE}},
		{"distinct addresses both listen", []ent{{ipA, false}, {ipB, false}}, []OwnerID{1, 2}, []error{nil, nil}},
		{"distinct reuseaddr addresses both listen", []ent{{ipA, true}, {ipB, true}}, []OwnerID{1, 2}, []error{nil, nil}},
		{"listen twice is fine", []ent{{ipA, false}}, []OwnerID{1, 1}, []error{nil, nil}},
		{"reuseaddr sharer not listening does not block", []ent{{ipA, true}, {any4, true}}, []OwnerID{1}, []error{nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBind(testSeed(2), 0, 0)
			for i, e := range tc.ents {
				if err := b.Bind(BindEntry{Owner: OwnerID(i + 1), Addr: e.addr, ReuseAddr: e.reuse}, port); err != nil {
					t.Fatalf("bind %d: %v", i, err)
				}
			}
			listening := map[OwnerID]bool{}
			for i, o := range tc.listens {
				err := b.SetListening(o, port)
				if err != tc.want[i] {
					t.Fatalf("SetListening(%d) = %v, want %v", o, err, tc.want[i])
				}
				if err == nil {
					listening[o] = true
				}
			}
			for _, e := range b.Owners(port) {
				if e.Listening != listening[e.Owner] {
					t.Errorf("owner %d Listening = %v, want %v", e.Owner, e.Listening, listening[e.Owner])
				}
			}
		})
	}

	t.Run("errors and release", func(t *testing.T) {
		b := NewBind(testSeed(2), 0, 0)
		b.Bind(BindEntry{Owner: 1, Addr: ipA, ReuseAddr: true}, port)
		b.Bind(BindEntry{Owner: 2, Addr: ipA, ReuseAddr: true}, port)
		if err := b.SetListening(3, port); err != syscall.EINVAL {
			t.Errorf("unknown owner: %v, want EINVAL", err)
		}
		if err := b.SetListening(1, port+1); err != syscall.EINVAL {
			t.Errorf("wrong port: %v, want EINVAL", err)
		}
		if err := b.SetListening(1, port); err != nil {
			t.Fatal(err)
		}
		// While 1 listens, a new reuseaddr bind on the address fails.
		if err := b.Bind(BindEntry{Owner: 3, Addr: ipA, ReuseAddr: true}, port); err != syscall.EADDRINUSE {
			t.Errorf("bind next to listener = %v, want EADDRINUSE", err)
		}
		if err := b.SetListening(2, port); err != syscall.EADDRINUSE {
			t.Errorf("second listener = %v, want EADDRINUSE", err)
		}
		b.Unbind(1, port)
		if err := b.SetListening(2, port); err != nil {
			t.Errorf("listen after the listener closed = %v", err)
		}
	})
}

func TestUnbind(t *testing.T) {
	b := NewBind(testSeed(3), 0, 0)
	if err := b.Bind(BindEntry{Owner: 1, Addr: any4}, 80); err != nil {
		t.Fatal(err)
	}
	if err := b.Bind(BindEntry{Owner: 2, Addr: ipA}, 80); err != syscall.EADDRINUSE {
		t.Fatalf("bind = %v, want EADDRINUSE", err)
	}
	b.Unbind(1, 81) // wrong port: no-op
	b.Unbind(9, 80) // unknown owner: no-op
	if !b.InUse(80) || b.Len() != 1 {
		t.Fatal("no-op Unbind changed the table")
	}
	b.Unbind(1, 80)
	if b.InUse(80) || b.Owners(80) != nil || b.Len() != 0 {
		t.Fatal("port still in use after Unbind")
	}
	if _, ok := b.Port(1); ok {
		t.Fatal("owner still recorded after Unbind")
	}
	if err := b.Bind(BindEntry{Owner: 2, Addr: ipA}, 80); err != nil {
		t.Fatalf("bind after Unbind: %v", err)
	}
	// The unbound owner may bind again.
	if err := b.Bind(BindEntry{Owner: 1, Addr: ipB}, 80); err != nil {
		t.Fatalf("rebind of released owner: %v", err)
	}

	// Removing from the middle keeps the others intact and in order.
	b = NewBind(testSeed(3), 0, 0)
	for o := OwnerID(1); o <= 3; o++ {
		b.Bind(BindEntry{Owner: o, Addr: ipA, ReuseAddr: true}, 80)
	}
	b.Unbind(2, 80)
	got := b.Owners(80)
	if len(got) != 2 || got[0].Owner != 1 || got[1].Owner != 3 {
		t.Fatalf("Owners after removing middle = %+v", got)
	}
	// Owners returns a copy.
	got[0].Listening = true
	if b.Owners(80)[0].Listening {
		t.Fatal("Owners exposes internal storage")
	}
}

func TestNewBindRange(t *testing.T) {
	b := NewBind(testSeed(0), 0, 0)
	if b.lo != DefaultEphemeralLo || b.hi != DefaultEphemeralHi {
		t.Fatalf("default range = %d..%d", b.lo, b.hi)
	}
	for _, r := range [][2]uint16{{0, 10}, {20, 10}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewBind(%d, %d) did not panic", r[0], r[1])
				}
			}()
			NewBind(testSeed(0), r[0], r[1])
		}()
	}
	// A one-port range and the full range work.
	if p, err := NewBind(testSeed(0), 5000, 5000).Ephemeral(ipA, ipB, 80, nil); p != 5000 || err != nil {
		t.Fatalf("single-port range: %d, %v", p, err)
	}
	if _, err := NewBind(testSeed(0), 1, 65535).Ephemeral(ipA, ipB, 80, nil); err != nil {
		t.Fatal(err)
	}
}

func TestEphemeralRangeAndInUse(t *testing.T) {
	const lo, hi = 40000, 40999
	b := NewBind(testSeed(4), lo, hi)
	// Occupy every third port in the range and a few outside it.
	for p := uint16(lo); p <= hi; p += 3 {
		if err := b.Bind(BindEntry{Owner: OwnerID(p), Addr: ipA}, p); err != nil {
			t.Fatal(err)
		}
	}
	b.Bind(BindEntry{Owner: 1, Addr: ipA}, lo-1)
	b.Bind(BindEntry{Owner: 2, Addr: ipA}, hi+1)

	for i := range 5000 {
		remote := AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)})
		p, err := b.Ephemeral(ipA, remote, uint16(i), nil)
		if err != nil {
			t.Fatal(err)
		}
		if p < lo || p > hi {
			t.Fatalf("port %d outside [%d, %d]", p, lo, hi)
		}
		if b.InUse(p) {
			t.Fatalf("returned in-use port %d", p)
		}
	}

	// A caller-supplied free is honoured (and InUse is then not consulted).
	taken := func(p uint16) bool { return p%2 == 0 }
	for i := range 1000 {
		p, err := b.Ephemeral(ipA, ipB, uint16(i), func(p uint16) bool { return !taken(p) })
		if err != nil || taken(p) || p < lo || p > hi {
			t.Fatalf("Ephemeral with free = %d, %v", p, err)
		}
	}
}

func TestEphemeralExhaustion(t *testing.T) {
	const lo, hi = 50000, 50009
	b := NewBind(testSeed(5), lo, hi)
	for p := uint16(lo); p <= hi; p++ {
		if _, err := b.Ephemeral(ipA, ipB, 80, nil); err != nil {
			t.Fatalf("range not yet full: %v", err)
		}
		b.Bind(BindEntry{Owner: OwnerID(p), Addr: ipA}, p)
	}
	if _, err := b.Ephemeral(ipA, ipB, 80, nil); err != syscall.EADDRNOTAVAIL {
		t.Fatalf("full range: %v, want EADDRNOTAVAIL", err)
	}

	// With free always false, every port is probed exactly once.
	b = NewBind(testSeed(5), lo, hi)
	probed := map[uint16]int{}
	_, err := b.Ephemeral(ipA, ipB, 80, func(p uint16) bool { probed[p]++; return false })
	if err != syscall.EADDRNOTAVAIL {
		t.Fatalf("err = %v, want EADDRNOTAVAIL", err)
	}
	if len(probed) != hi-lo+1 {
		t.Fatalf("probed %d distinct ports, want %d", len(probed), hi-lo+1)
	}
	for p, n := range probed {
		if n != 1 || p < lo || p > hi {
			t.Fatalf("port %d probed %d times", p, n)
		}
	}
	// A single remaining port is found from any starting point.
	for i := range 50 {
		p, err := b.Ephemeral(ipA, AddrFrom4([4]byte{1, 2, 3, byte(i)}), 80, func(p uint16) bool { return p == lo+7 })
		if p != lo+7 || err != nil {
			t.Fatalf("last free port: %d, %v", p, err)
		}
	}
}

func TestEphemeralSuccessiveDiffer(t *testing.T) {
	b := NewBind(testSeed(6), 0, 0)
	seen := map[uint16]bool{}
	for range 1000 {
		p, err := b.Ephemeral(ipA, ipB, 443, nil)
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d repeated for the same destination", p)
		}
		seen[p] = true
	}
}

// perturbSlot returns G, the perturbation counter Ephemeral uses for a
// destination, and F, the destination's fixed offset.
func perturbSlot(b *Bind, local, remote Addr, remotePort uint16) (g int, f uint32) {
	// RFC 6056's input for IPv4: the two 4-byte addresses, then the port.
	l, r := local.As4(), remote.As4()
	msg := append(append(l[:], r[:]...), byte(remotePort>>8), byte(remotePort))
	h := b.key.sum(msg)
	return int(h % perturbLen), uint32(h >> 32)
}

// step returns how far the walk moved from port p to port q, in [0, n).
func step(b *Bind, p, q uint16) int {
	n := int(b.rangeLen())
	return ((int(q)-int(p))%n + n) % n
}

// TestEphemeralAlgorithm4 pins the RFC 6056 Algorithm 4 structure: the
// walk starts at F + perturb[G], and a pick with no busy ports advances
// only that counter, by a random amount in [1, 16].
func TestEphemeralAlgorithm4(t *testing.T) {
	b := NewBind(testSeed(7), 0, 0)
	n := b.rangeLen()
	g, f := perturbSlot(b, ipA, ipB, 80)
	before := b.perturb
	p1, err := b.Ephemeral(ipA, ipB, 80, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := b.lo + uint16((f+before[g])%n); p1 != want {
		t.Fatalf("first pick = %d, want %d", p1, want)
	}
	if d := b.perturb[g] - before[g]; d < 1 || d > 16 {
		t.Fatalf("counter advanced by %d, want a step in [1, 16]", d)
	}
	for i := range b.perturb {
		if i != g && b.perturb[i] != before[i] {
			t.Fatalf("counter %d (not the destination's %d) changed", i, g)
		}
	}
	// Same seed, same sequence; different seed, different sequence.
	seq := func(seed uint64) (ps []uint16) {
		c := NewBind(testSeed(seed), 0, 0)
		for range 20 {
			p, _ := c.Ephemeral(ipA, ipB, 80, nil)
			ps = append(ps, p)
		}
		return ps
	}
	if a, c := seq(7), seq(7); !slices.Equal(a, c) {
		t.Fatalf("same seed gave %v then %v", a, c)
	}
	if a, c := seq(7), seq(8); slices.Equal(a, c) {
		t.Fatalf("different seeds gave the same sequence %v", a)
	}
}

// TestEphemeralSequenceUnpredictable: successive ports to one destination
// do not advance by a fixed step (B42; Algorithm 3 gave 43363, 43364, ...).
// With nothing busy each step is 1..16, chosen at random.
func TestEphemeralSequenceUnpredictable(t *testing.T) {
	const seeds, picks = 20, 100
	counts := map[int]int{}
	for s := range uint64(seeds) {
		b := NewBind(testSeed(s), 0, 0)
		prev, err := b.Ephemeral(ipA, ipB, 443, nil)
		if err != nil {
			t.Fatal(err)
		}
		steps := map[int]int{}
		for range picks {
			p, err := b.Ephemeral(ipA, ipB, 443, nil)
			if err != nil {
				t.Fatal(err)
			}
			d := step(b, prev, p)
			if d < 1 || d > 16 {
				t.Fatalf("seed %d: step %d -> %d is %d, want a step in [1, 16]", s, prev, p, d)
			}
			steps[d]++
			counts[d]++
			prev = p
		}
		// Not all equal, not all +1/+2: at least 10 of the 16 step sizes.
		if len(steps) < 10 {
			t.Fatalf("seed %d: only %d distinct steps over %d picks: %v", s, len(steps), picks, steps)
		}
	}
	// The steps are roughly uniform over the 16 sizes (expected 125 each;
	// the standard deviation is about 11).
	for d := 1; d <= 16; d++ {
		if c := counts[d]; c < 70 || c > 180 {
			t.Fatalf("step %d seen %d times of %d, want about %d: %v", d, c, seeds*picks, seeds*picks/16, counts)
		}
	}
}

// TestEphemeralSkipsBusyPorts: ports found busy move the counter past
// them (Linux's max(i, random) + 2), so the next pick does not retry them.
func TestEphemeralSkipsBusyPorts(t *testing.T) {
	for s := range uint64(20) {
		b := NewBind(testSeed(s), 0, 0)
		var tried []uint16
		p1, err := b.Ephemeral(ipA, ipB, 80, func(p uint16) bool {
			tried = append(tried, p)
			return len(tried) > 20
		})
		if err != nil || len(tried) != 21 || tried[20] != p1 {
			t.Fatalf("pick after 20 busy ports = %d, %v (tried %v)", p1, err, tried)
		}
		for i := 1; i < len(tried); i++ {
			if d := step(b, tried[i-1], tried[i]); d != 1 {
				t.Fatalf("probes %v do not step by 1", tried)
			}
		}
		// 20 busy probes: the counter moves by 20 + 1 (more than any
		// random step), so the next walk starts right after p1.
		p2, err := b.Ephemeral(ipA, ipB, 80, nil)
		if err != nil || step(b, p1, p2) != 1 {
			t.Fatalf("pick after %d = %d, %v; want %d", p1, p2, err, p1+1)
		}
	}
}

// TestEphemeralFillsRange: connect()s that Bind their ports use every
// free port once, never a bound one, and then fail.
func TestEphemeralFillsRange(t *testing.T) {
	const lo, hi = 40000, 40999
	b := NewBind(testSeed(14), lo, hi)
	owner := OwnerID(1)
	bind := func(p uint16) {
		t.Helper()
		if err := b.Bind(BindEntry{Owner: owner, Addr: ipA}, p); err != nil {
			t.Fatalf("bind %d: %v", p, err)
		}
		owner++
	}
	pre := 0
	for p := uint16(lo); p <= hi; p += 3 {
		bind(p)
		pre++
	}
	bind(lo - 1)
	bind(hi + 1)
	picks := 0
	for {
		p, err := b.Ephemeral(ipA, ipB, 80, nil)
		if err != nil {
			if err != syscall.EADDRNOTAVAIL {
				t.Fatalf("err = %v, want EADDRNOTAVAIL", err)
			}
			break
		}
		if p < lo || p > hi {
			t.Fatalf("port %d outside [%d, %d]", p, lo, hi)
		}
		if b.InUse(p) {
			t.Fatalf("returned bound port %d", p)
		}
		bind(p)
		picks++
	}
	if want := hi - lo + 1 - pre; picks != want {
		t.Fatalf("%d picks before EADDRNOTAVAIL, want %d free ports", picks, want)
	}
	if _, err := b.EphemeralBind(BindEntry{Owner: owner}); err != syscall.EADDRINUSE {
		t.Fatalf("EphemeralBind on a full range = %v, want EADDRINUSE", err)
	}
	// A port freed again is found, from any destination.
	b.Unbind(OwnerID(1), lo)
	for i := range 20 {
		if p, err := b.Ephemeral(ipA, AddrFrom4([4]byte{10, 1, 0, byte(i)}), 80, nil); p != lo || err != nil {
			t.Fatalf("only free port: %d, %v; want %d", p, err, lo)
		}
	}
}

// TestEphemeralDestinationsIndependent: each destination walks its own
// sequence. Connections to one (with another G) leave the other's counter
// untouched, unlike Algorithm 3's shared counter, and the two sequences
// step differently.
func TestEphemeralDestinationsIndependent(t *testing.T) {
	b := NewBind(testSeed(15), 0, 0)
	dA, dB := AddrFrom4([4]byte{93, 184, 216, 34}), AddrFrom4([4]byte{93, 184, 216, 35})
	gA, _ := perturbSlot(b, ipA, dA, 443)
	gB, _ := perturbSlot(b, ipA, dB, 443)
	if gA == gB {
		t.Fatal("test destinations share a counter; pick others")
	}
	a1, _ := b.Ephemeral(ipA, dA, 443, nil)
	cA := b.perturb[gA]
	for range 1000 {
		if _, err := b.Ephemeral(ipA, dB, 443, nil); err != nil {
			t.Fatal(err)
		}
	}
	if b.perturb[gA] != cA {
		t.Fatal("connections to B moved A's counter")
	}
	a2, _ := b.Ephemeral(ipA, dA, 443, nil)
	if d := step(b, a1, a2); d < 1 || d > 16 {
		t.Fatalf("A went %d -> %d (step %d) across 1000 picks for B", a1, a2, d)
	}

	// Interleaved, the two step sequences are unrelated: they agree about
	// as often as chance (1 in 16) says.
	pa, _ := b.Ephemeral(ipA, dA, 443, nil)
	pb, _ := b.Ephemeral(ipA, dB, 443, nil)
	same := 0
	const picks = 400
	for range picks {
		qa, _ := b.Ephemeral(ipA, dA, 443, nil)
		qb, _ := b.Ephemeral(ipA, dB, 443, nil)
		if step(b, pa, qa) == step(b, pb, qb) {
			same++
		}
		pa, pb = qa, qb
	}
	if same > picks/8 {
		t.Fatalf("A and B took the same step %d times of %d", same, picks)
	}

	// Destinations whose G collides share a counter (Algorithm 4's
	// trade-off): a pick for one moves the other.
	gC := -1
	var pC uint16
	for p := range 65536 {
		if g, _ := perturbSlot(b, ipA, dB, uint16(p)); g == gA && uint16(p) != 443 {
			gC, pC = g, uint16(p)
			break
		}
	}
	if gC < 0 {
		t.Fatal("no colliding destination found")
	}
	cA = b.perturb[gA]
	b.Ephemeral(ipA, dB, pC, nil)
	if b.perturb[gA] == cA {
		t.Fatal("a pick for a destination sharing G did not move the counter")
	}
}

func TestEphemeralUnguessable(t *testing.T) {
	const seeds = 200
	dests := []struct {
		addr Addr
		port uint16
	}{{ipB, 80}, {AddrFrom4([4]byte{10, 0, 0, 3}), 80}, {ipB, 81}}

	spread := 0 // destination pairs whose start points are not adjacent
	pairs := 0
	firsts := map[uint16]bool{}
	for s := range uint64(seeds) {
		var start []uint16
		for _, d := range dests {
			// A fresh table per destination: only the first pick each.
			p, err := NewBind(testSeed(s), 0, 0).Ephemeral(ipA, d.addr, d.port, nil)
			if err != nil {
				t.Fatal(err)
			}
			start = append(start, p)
		}
		firsts[start[0]] = true
		for i := range start {
			for j := i + 1; j < len(start); j++ {
				pairs++
				d := int(start[i]) - int(start[j])
				if d < -1 || d > 1 {
					spread++
				}
			}
		}
	}
	if spread < pairs*95/100 {
		t.Fatalf("only %d of %d destination pairs got distinct, non-adjacent start points", spread, pairs)
	}
	if len(firsts) < seeds*95/100 {
		t.Fatalf("one destination got only %d distinct start points over %d seeds", len(firsts), seeds)
	}
}

func TestEphemeralBind(t *testing.T) {
	const lo, hi = 45000, 45099
	b := NewBind(testSeed(8), lo, hi)
	// Shareable (reuseaddr) owners still make a port unavailable.
	for p := uint16(lo); p < hi; p++ {
		if err := b.Bind(BindEntry{Owner: OwnerID(p), Addr: ipA, ReuseAddr: true}, p); err != nil {
			t.Fatal(err)
		}
	}
	e := BindEntry{Owner: 1, Addr: ipB, ReuseAddr: true}
	p, err := b.EphemeralBind(e)
	if err != nil || p != hi {
		t.Fatalf("EphemeralBind = %d, %v; want the only free port %d", p, err, hi)
	}
	if got := b.Owners(hi); len(got) != 1 || got[0] != e {
		t.Fatalf("Owners(%d) = %+v", hi, got)
	}
	if bp, ok := b.Port(1); !ok || bp != hi {
		t.Fatalf("Port(1) = %d, %v", bp, ok)
	}
	if _, err := b.EphemeralBind(BindEntry{Owner: 2}); err != syscall.EADDRINUSE {
		t.Fatalf("full range: %v, want EADDRINUSE", err)
	}

	// Start points are random: fresh tables with different seeds spread out.
	starts := map[uint16]bool{}
	for s := range uint64(100) {
		p, err := NewBind(testSeed(s), 0, 0).EphemeralBind(BindEntry{Owner: 1})
		if err != nil || p < DefaultEphemeralLo || p > DefaultEphemeralHi {
			t.Fatalf("EphemeralBind = %d, %v", p, err)
		}
		starts[p] = true
	}
	if len(starts) < 95 {
		t.Fatalf("only %d distinct ports over 100 seeds", len(starts))
	}
	// And successive calls on one table do not walk sequentially.
	b = NewBind(testSeed(9), 0, 0)
	adjacent := 0
	prev, _ := b.EphemeralBind(BindEntry{Owner: 1})
	for o := OwnerID(2); o <= 100; o++ {
		p, err := b.EphemeralBind(BindEntry{Owner: o})
		if err != nil {
			t.Fatal(err)
		}
		if d := int(p) - int(prev); d >= -1 && d <= 1 {
			adjacent++
		}
		prev = p
	}
	if adjacent > 5 {
		t.Fatalf("%d of 99 successive EphemeralBind ports were adjacent", adjacent)
	}
}

func TestEphemeralDoesNotAllocate(t *testing.T) {
	b := NewBind(testSeed(10), 0, 0)
	for p := uint16(DefaultEphemeralLo); p < DefaultEphemeralLo+1000; p++ {
		b.Bind(BindEntry{Owner: OwnerID(p), Addr: ipA}, p)
	}
	free := func(p uint16) bool { return p%7 != 0 }
	allocs := testing.AllocsPerRun(1000, func() {
		b.Ephemeral(ipA, ipB, 80, nil)
		b.Ephemeral(ipA, ipB, 80, free)
		b.InUse(80)
	})
	if allocs != 0 {
		t.Fatalf("Ephemeral allocates %v times per run", allocs)
	}
}

func BenchmarkEphemeral(b *testing.B) {
	// 100,000 established connections from one local address to 10
	// destinations (10,000 each), plus every 4th port in the range held by
	// bind(); free mirrors what the stack does: no bind owner and no
	// connection with the same 4-tuple.
	local := AddrFrom4([4]byte{10, 0, 0, 1})
	type dest struct {
		a Addr
		p uint16
	}
	var dests [10]dest
	for i := range dests {
		dests[i] = dest{AddrFrom4([4]byte{93, 184, 216, byte(i)}), 443}
	}
	bt := NewBind(testSeed(11), 0, 0)
	for p := uint16(DefaultEphemeralLo); p <= DefaultEphemeralHi; p += 4 {
		bt.Bind(BindEntry{Owner: OwnerID(p), Addr: local}, p)
	}
	est := NewEstablished[struct{}]()
	for i := range benchEntries {
		d := dests[i%len(dests)]
		for {
			p, err := bt.Ephemeral(local, d.a, d.p, func(p uint16) bool {
				_, busy := est.Lookup(FourTuple{local, p, d.a, d.p})
				return !busy && !bt.InUse(p)
			})
			if err != nil {
				b.Fatal(err)
			}
			if est.Insert(FourTuple{local, p, d.a, d.p}, struct{}{}) {
				break
			}
		}
	}
	if est.Len() != benchEntries {
		b.Fatalf("Len = %d", est.Len())
	}

	b.Run("established-100k", func(b *testing.B) {
		b.ReportAllocs()
		var cur dest
		free := func(p uint16) bool {
			_, busy := est.Lookup(FourTuple{local, p, cur.a, cur.p})
			return !busy && !bt.InUse(p)
		}
		i := 0
		for b.Loop() {
			cur = dests[i%len(dests)]
			i++
			if _, err := bt.Ephemeral(local, cur.a, cur.p, free); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("nil-free", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			d := dests[i%len(dests)]
			i++
			if _, err := bt.Ephemeral(local, d.a, d.p, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkBindLookup(b *testing.B) {
	for _, size := range benchSizes {
		// size.n bindings on up to 50,000 ports; at 100k, two SO_REUSEADDR
		// sockets on different addresses share each port.
		ports := min(size.n, 50_000)
		bt := NewBind(testSeed(17), 0, 0)
		for i := range size.n {
			var a Addr
			binary.BigEndian.PutUint32(a[:], 0x0a000000|uint32(i))
			if err := bt.Bind(BindEntry{Owner: OwnerID(i + 1), Addr: a, ReuseAddr: true}, uint16(1+i%ports)); err != nil {
				b.Fatal(err)
			}
		}
		if bt.Len() != size.n {
			b.Fatalf("Len = %d, want %d", bt.Len(), size.n)
		}
		b.Run("in-use/"+size.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if !bt.InUse(uint16(1 + i)) {
					b.Fatal("port not in use")
				}
				if i++; i == ports {
					i = 0
				}
			}
		})
		b.Run("port/"+size.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := bt.Port(OwnerID(1 + i)); !ok {
					b.Fatal("owner not bound")
				}
				if i++; i == size.n {
					i = 0
				}
			}
		})
	}
}

func BenchmarkEphemeralBind(b *testing.B) {
	bt := NewBind(testSeed(12), 0, 0)
	for p := uint16(DefaultEphemeralLo); p <= DefaultEphemeralHi; p += 2 {
		bt.Bind(BindEntry{Owner: OwnerID(p), Addr: ipA}, p)
	}
	b.ReportAllocs()
	for b.Loop() {
		p, err := bt.EphemeralBind(BindEntry{Owner: 1})
		if err != nil {
			b.Fatal(err)
		}
		bt.Unbind(1, p)
	}
}

// Range narrows the table's range bound by bound, ignoring a bound outside
// it, as Linux's inet_sk_get_local_port_range.
func TestBindRange(t *testing.T) {
	b := NewBind(testSeed(0), 32768, 60999)
	for _, c := range []struct{ lo, hi, wantLo, wantHi uint16 }{
		{0, 0, 32768, 60999},
		{40000, 0, 40000, 60999},
		{0, 40000, 32768, 40000},
		{40000, 40010, 40000, 40010},
		{1000, 2000, 32768, 60999},   // both outside
		{1000, 33000, 32768, 33000},  // low outside
		{50000, 61000, 50000, 60999}, // high outside
	} {
		if lo, hi := b.Range(c.lo, c.hi); lo != c.wantLo || hi != c.wantHi {
			t.Errorf("Range(%d, %d) = %d-%d, want %d-%d", c.lo, c.hi, lo, hi, c.wantLo, c.wantHi)
		}
	}
	for range 50 {
		p, err := b.EphemeralIn(40000, 40001, ipA, ipB, 80, nil)
		if err != nil || p < 40000 || p > 40001 {
			t.Fatalf("EphemeralIn(40000, 40001) = %d, %v", p, err)
		}
	}
}

// Sockets of different families share a port, except that :: (IPV6_V6ONLY
// off) covers IPv4 too, as Linux's inet_bind_conflict with a dual-stack
// socket.
func TestBindFamilies(t *testing.T) {
	v6 := AddrFrom(netip.MustParseAddr("fd00::2"))
	b := NewBind(testSeed(3), 0, 0)
	if err := b.Bind(BindEntry{Owner: 1, Addr: Any4}, 80); err != nil {
		t.Fatal(err)
	}
	if err := b.Bind(BindEntry{Owner: 2, Addr: v6}, 80); err != nil {
		t.Fatalf("[fd00::2]:80 beside 0.0.0.0:80: %v", err)
	}
	if err := b.Bind(BindEntry{Owner: 3, Addr: Any6}, 80); err != syscall.EADDRINUSE {
		t.Fatalf("[::]:80 over 0.0.0.0:80 and [fd00::2]:80: %v, want EADDRINUSE", err)
	}
	if err := b.Bind(BindEntry{Owner: 4, Addr: Any6}, 81); err != nil {
		t.Fatal(err)
	}
	if err := b.Bind(BindEntry{Owner: 5, Addr: ipB}, 81); err != syscall.EADDRINUSE {
		t.Fatalf("10.0.0.2:81 under [::]:81: %v, want EADDRINUSE", err)
	}
	if p, err := b.Ephemeral(v6, AddrFrom(netip.MustParseAddr("fd00::1")), 443, nil); err != nil || p < DefaultEphemeralLo || p > DefaultEphemeralHi {
		t.Fatalf("an IPv6 ephemeral port: %d, %v", p, err)
	}
}

// An IPV6_V6ONLY :: binding leaves IPv4 addresses to others.
func TestBindV6Only(t *testing.T) {
	b := NewBind(testSeed(4), 0, 0)
	if err := b.Bind(BindEntry{Owner: 1, Addr: Any6, V6Only: true}, 80); err != nil {
		t.Fatal(err)
	}
	if err := b.Bind(BindEntry{Owner: 2, Addr: Any4}, 80); err != nil {
		t.Fatalf("0.0.0.0:80 beside a v6-only [::]:80: %v", err)
	}
	if err := b.Bind(BindEntry{Owner: 3, Addr: AddrFrom(netip.MustParseAddr("fd00::2"))}, 80); err != syscall.EADDRINUSE {
		t.Fatalf("[fd00::2]:80 under [::]:80: %v, want EADDRINUSE", err)
	}
}
