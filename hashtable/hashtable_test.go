package hashtable

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func tuple(i int) FourTuple {
	return FourTuple{
		LocalAddr:  AddrFrom4([4]byte{10, 0, 0, 1}),
		LocalPort:  uint16(32768 + i%28000),
		RemoteAddr: AddrFrom4([4]byte{192, 168, byte(i >> 16), byte(i >> 8)}),
		RemotePort: uint16(i),
	}
}

func TestEstablished(t *testing.T) {
	tb := NewEstablished[string]()
	a := FourTuple{AddrFrom4([4]byte{10, 0, 0, 1}), 40000, AddrFrom4([4]byte{10, 0, 0, 2}), 80}
	b := a
	b.RemotePort = 81

	if _, ok := tb.Lookup(a); ok {
		t.Fatal("lookup in empty table succeeded")
	}
	if !tb.Insert(a, "a") || !tb.Insert(b, "b") {
		t.Fatal("insert of new key failed")
	}
	if tb.Insert(a, "dup") {
		t.Fatal("duplicate insert succeeded")
	}
	if v, ok := tb.Lookup(a); !ok || v != "a" {
		t.Fatalf("Lookup(a) = %q, %v; duplicate insert must not change the value", v, ok)
	}
	if v, ok := tb.Lookup(b); !ok || v != "b" {
		t.Fatalf("Lookup(b) = %q, %v", v, ok)
	}
	if tb.Len() != 2 {
		t.Fatalf("Len = %d, want 2", tb.Len())
	}

	seen := map[FourTuple]string{}
	for k, v := range tb.All {
		seen[k] = v
	}
	if len(seen) != 2 || seen[a] != "a" || seen[b] != "b" {
		t.Fatalf("All yielded %v", seen)
	}
	n := 0
	for range tb.All {
		n++
		break
	}
	if n != 1 {
		t.Fatal("All did not stop when yield returned false")
	}

	if !tb.Remove(a) || tb.Remove(a) {
		t.Fatal("Remove should succeed once")
	}
	if _, ok := tb.Lookup(a); ok || tb.Len() != 1 {
		t.Fatal("removed key still present")
	}
	// Removing while iterating is allowed.
	for k := range tb.All {
		tb.Remove(k)
	}
	if tb.Len() != 0 {
		t.Fatalf("Len = %d after removing all", tb.Len())
	}
}

func TestListeners(t *testing.T) {
	wild := Any4
	a1 := AddrFrom4([4]byte{10, 0, 0, 1})
	a2 := AddrFrom4([4]byte{10, 0, 0, 2})

	tb := NewListeners[string]()
	if !tb.Insert(wild, 80, "wild:80") || !tb.Insert(a1, 80, "a1:80") || !tb.Insert(a2, 443, "a2:443") {
		t.Fatal("insert failed")
	}
	if tb.Insert(a1, 80, "dup") || tb.Insert(wild, 80, "dup") {
		t.Fatal("duplicate exact addr:port accepted")
	}

	tests := []struct {
		name string
		addr Addr
		port uint16
		want string
		ok   bool
	}{
		{"exact preferred over wildcard", a1, 80, "a1:80", true},
		{"wildcard fallback", a2, 80, "wild:80", true},
		{"wildcard address itself", wild, 80, "wild:80", true},
		{"exact only", a2, 443, "a2:443", true},
		{"no wildcard on port", a1, 443, "", false},
		{"unknown port", a1, 81, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, ok := tb.Lookup(tc.addr, tc.port)
			if v != tc.want || ok != tc.ok {
				t.Errorf("Lookup(%v, %d) = %q, %v; want %q, %v", tc.addr, tc.port, v, ok, tc.want, tc.ok)
			}
		})
	}

	if tb.Len() != 3 {
		t.Fatalf("Len = %d, want 3", tb.Len())
	}
	type key = ListenKey
	seen := map[key]string{}
	tb.All(func(a Addr, p uint16, v string) bool {
		seen[key{a, p}] = v
		return true
	})
	if len(seen) != 3 || seen[key{wild, 80}] != "wild:80" || seen[key{a1, 80}] != "a1:80" || seen[key{a2, 443}] != "a2:443" {
		t.Fatalf("All yielded %v", seen)
	}
	seen2 := map[key]string{}
	for k, v := range tb.Entries {
		seen2[k] = v
	}
	if len(seen2) != 3 || seen2[key{a1, 80}] != "a1:80" {
		t.Fatalf("Entries yielded %v", seen2)
	}
	calls := 0
	tb.All(func(Addr, uint16, string) bool { calls++; return false })
	if calls != 1 {
		t.Fatal("All did not stop when yield returned false")
	}

	// Removing the exact listener exposes the wildcard one.
	if !tb.Remove(a1, 80) || tb.Remove(a1, 80) {
		t.Fatal("Remove should succeed once")
	}
	if v, _ := tb.Lookup(a1, 80); v != "wild:80" {
		t.Fatalf("after removing exact, Lookup = %q, want wildcard", v)
	}
	// Removing the wildcard leaves nothing for a1:80.
	tb.Remove(wild, 80)
	if _, ok := tb.Lookup(a1, 80); ok {
		t.Fatal("lookup succeeded after removing both listeners")
	}
	// High address bytes and port survive the key packing.
	hi := AddrFrom4([4]byte{255, 254, 253, 252})
	tb.Insert(hi, 65535, "hi")
	for k, v := range tb.Entries {
		if v == "hi" && (k.Addr != hi || k.Port != 65535) {
			t.Fatalf("Entries decoded %v, want %v:65535", k, hi)
		}
	}
}

func TestLookupsDoNotAllocate(t *testing.T) {
	est := NewEstablished[*int]()
	for i := range 1000 {
		est.Insert(tuple(i), new(int))
	}
	ls := NewListeners[*int]()
	ls.Insert(Any4, 80, new(int))
	ls.Insert(AddrFrom4([4]byte{10, 0, 0, 1}), 80, new(int))
	hit, miss := tuple(7), tuple(5000)
	allocs := testing.AllocsPerRun(1000, func() {
		est.Lookup(hit)
		est.Lookup(miss)
		ls.Lookup(AddrFrom4([4]byte{10, 0, 0, 1}), 80)
		ls.Lookup(AddrFrom4([4]byte{10, 0, 0, 2}), 80)
		ls.Lookup(AddrFrom4([4]byte{10, 0, 0, 2}), 81)
	})
	if allocs != 0 {
		t.Fatalf("lookups allocate %v times per run", allocs)
	}
}

const benchEntries = 100_000

// benchSizes are the table sizes the lookup benchmarks run at: O(1)
// lookups show as a time per lookup that stays about flat from 1k to 100k
// entries, at 0 allocs/op. What growth there is comes from the table
// outgrowing the CPU caches, not from longer probe chains: the "hot"
// variants look up the same 1,000 keys at every size and stay flat.
var benchSizes = []struct {
	name string
	n    int
}{{"1k", 1_000}, {"10k", 10_000}, {"100k", benchEntries}}

// hotKeys is how many keys the "hot" lookup benchmarks cycle through.
const hotKeys = 1_000

func BenchmarkEstablishedLookup(b *testing.B) {
	for _, size := range benchSizes {
		tb := NewEstablished[*int]()
		keys := make([]FourTuple, size.n)
		for i := range keys {
			keys[i] = tuple(i)
			if !tb.Insert(keys[i], new(int)) {
				b.Fatalf("duplicate key %d", i)
			}
		}
		misses := make([]FourTuple, size.n)
		for i := range misses {
			misses[i] = keys[i]
			misses[i].RemoteAddr[0] = 172
		}
		run := func(b *testing.B, ks []FourTuple, want bool) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := tb.Lookup(ks[i]); ok != want {
					b.Fatal("unexpected lookup result")
				}
				if i++; i == len(ks) {
					i = 0
				}
			}
		}
		b.Run("hit/"+size.name, func(b *testing.B) { run(b, keys, true) })
		b.Run("miss/"+size.name, func(b *testing.B) { run(b, misses, false) })
		b.Run("hot/"+size.name, func(b *testing.B) { run(b, keys[:hotKeys], true) })
	}
}

func BenchmarkListenersLookup(b *testing.B) {
	for _, size := range benchSizes {
		// size.n/2 ports, each with a wildcard listener and one on a
		// specific address.
		ports := size.n / 2
		tb := NewListeners[*int]()
		type q struct {
			a Addr
			p uint16
		}
		exact := make([]q, ports)
		wild := make([]q, ports)
		for i := range ports {
			p := uint16(10000 + i)
			var a Addr
			binary.BigEndian.PutUint32(a[:], 0x0a000000|uint32(i))
			tb.Insert(a, p, new(int))
			tb.Insert(Any4, p, new(int))
			exact[i] = q{a, p}
			wild[i] = q{AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)}), p}
		}
		if tb.Len() != size.n {
			b.Fatalf("Len = %d, want %d", tb.Len(), size.n)
		}
		run := func(b *testing.B, qs []q) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := tb.Lookup(qs[i].a, qs[i].p); !ok {
					b.Fatal("lookup missed")
				}
				if i++; i == len(qs) {
					i = 0
				}
			}
		}
		b.Run("exact/"+size.name, func(b *testing.B) { run(b, exact) })
		b.Run("wildcard/"+size.name, func(b *testing.B) { run(b, wild) })
		b.Run("hot/"+size.name, func(b *testing.B) { run(b, exact[:hotKeys/2]) })
	}
}

func TestAddrForms(t *testing.T) {
	v4 := AddrFrom4([4]byte{10, 0, 0, 2})
	if !v4.Is4() || v4.As4() != [4]byte{10, 0, 0, 2} || v4.Netip() != netip.MustParseAddr("10.0.0.2") {
		t.Fatalf("IPv4 round trip: %v", v4.Netip())
	}
	if AddrFrom(netip.MustParseAddr("10.0.0.2")) != v4 || AddrFrom(netip.MustParseAddr("::ffff:10.0.0.2")) != v4 {
		t.Fatal("an IPv4 and an IPv4-mapped netip.Addr must give the same Addr")
	}
	v6 := AddrFrom(netip.MustParseAddr("fd00::2"))
	if v6.Is4() || v6.Netip() != netip.MustParseAddr("fd00::2") {
		t.Fatalf("IPv6 round trip: %v", v6.Netip())
	}
	if !Any4.IsUnspecified() || !Any6.IsUnspecified() || v4.IsUnspecified() || Any4 == Any6 || !Any4.Is4() || Any6.Is4() {
		t.Fatal("the two wildcards are unspecified, of their own family, and distinct")
	}
}

// A listener is found for its own family only: 0.0.0.0 takes no IPv6 SYN,
// :: takes IPv6, and an exact IPv6 address beats the wildcard.
func TestListenerLookupFamilies(t *testing.T) {
	ls := NewListeners[string]()
	v6 := AddrFrom(netip.MustParseAddr("fd00::2"))
	ls.Insert(Any4, 80, "any4")
	if _, ok := ls.Lookup(v6, 80); ok {
		t.Fatal("0.0.0.0:80 must not take an IPv6 SYN")
	}
	ls.Insert(Any6, 80, "any6")
	ls.Insert(v6, 81, "exact6")
	ls.Insert(Any6, 81, "any6-81")
	for _, c := range []struct {
		addr Addr
		port uint16
		want string
	}{{v6, 80, "any6"}, {AddrFrom4([4]byte{10, 0, 0, 2}), 80, "any4"}, {v6, 81, "exact6"}, {AddrFrom(netip.MustParseAddr("fd00::3")), 81, "any6-81"}} {
		if got, _ := ls.Lookup(c.addr, c.port); got != c.want {
			t.Errorf("Lookup(%v, %d) = %q, want %q", c.addr.Netip(), c.port, got, c.want)
		}
	}
}

// Lookups never allocate, for IPv4 and IPv6 keys alike.
func TestLookupsDoNotAllocateEitherFamily(t *testing.T) {
	est := NewEstablished[int]()
	ls := NewListeners[int]()
	v6a, v6b := AddrFrom(netip.MustParseAddr("fd00::1")), AddrFrom(netip.MustParseAddr("fd00::2"))
	k4 := FourTuple{AddrFrom4([4]byte{10, 0, 0, 2}), 80, AddrFrom4([4]byte{10, 0, 0, 1}), 40000}
	k6 := FourTuple{v6b, 80, v6a, 40000}
	est.Insert(k4, 1)
	est.Insert(k6, 2)
	ls.Insert(Any6, 80, 3)
	if n := testing.AllocsPerRun(100, func() {
		est.Lookup(k4)
		est.Lookup(k6)
		ls.Lookup(v6b, 80)
		ls.Lookup(k4.LocalAddr, 80)
	}); n != 0 {
		t.Fatalf("%v allocations per lookup round, want 0", n)
	}
}

func BenchmarkEstablishedLookupIPv6(b *testing.B) {
	t := NewEstablished[int]()
	keys := make([]FourTuple, 1024)
	for i := range keys {
		r := AddrFrom(netip.MustParseAddr("fd00::1"))
		r[14], r[15] = byte(i>>8), byte(i)
		keys[i] = FourTuple{AddrFrom(netip.MustParseAddr("fd00::2")), 80, r, uint16(40000 + i)}
		t.Insert(keys[i], i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		t.Lookup(keys[i&1023])
	}
}

// An IPv4 SYN finds a :: listener when no IPv4 one is there (dual stack).
func TestListenerLookupDualStack(t *testing.T) {
	ls := NewListeners[string]()
	ls.Insert(Any6, 80, "any6")
	v4 := AddrFrom4([4]byte{10, 0, 0, 2})
	if got, _ := ls.Lookup(v4, 80); got != "any6" {
		t.Fatalf("IPv4 SYN to port 80: %q, want the :: listener", got)
	}
	ls.Insert(Any4, 80, "any4")
	if got, _ := ls.Lookup(v4, 80); got != "any4" {
		t.Fatalf("IPv4 SYN with both wildcards: %q, want 0.0.0.0's", got)
	}
}
