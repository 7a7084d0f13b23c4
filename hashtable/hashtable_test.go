package hashtable

import (
	"encoding/binary"
	"testing"
)

func tuple(i int) FourTuple {
	return FourTuple{
		LocalAddr:  Addr{10, 0, 0, 1},
		LocalPort:  uint16(32768 + i%28000),
		RemoteAddr: Addr{192, 168, byte(i >> 16), byte(i >> 8)},
		RemotePort: uint16(i),
	}
}

func TestEstablished(t *testing.T) {
	tb := NewEstablished[string]()
	a := FourTuple{Addr{10, 0, 0, 1}, 40000, Addr{10, 0, 0, 2}, 80}
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
	wild := Addr{}
	a1 := Addr{10, 0, 0, 1}
	a2 := Addr{10, 0, 0, 2}

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
	hi := Addr{255, 254, 253, 252}
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
	ls.Insert(Addr{}, 80, new(int))
	ls.Insert(Addr{10, 0, 0, 1}, 80, new(int))
	hit, miss := tuple(7), tuple(5000)
	allocs := testing.AllocsPerRun(1000, func() {
		est.Lookup(hit)
		est.Lookup(miss)
		ls.Lookup(Addr{10, 0, 0, 1}, 80)
		ls.Lookup(Addr{10, 0, 0, 2}, 80)
		ls.Lookup(Addr{10, 0, 0, 2}, 81)
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
			tb.Insert(Addr{}, p, new(int))
			exact[i] = q{a, p}
			wild[i] = q{Addr{192, 168, byte(i >> 8), byte(i)}, p}
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
