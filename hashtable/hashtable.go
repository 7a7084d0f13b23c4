// Package hashtable holds the lookup tables the TCP demultiplexer needs:
// Established (full 4-tuple match, Linux's ehash), Listeners (local
// address and port with wildcard fallback, Linux's lhash2) and Bind (which
// sockets own which local port, Linux's bhash, plus RFC 6056 ephemeral
// port selection).
//
// None of the tables is safe for concurrent use: the stack serialises
// access under its own lock, so the tables carry no locking of their own.
//
// The tables are built on Go maps. Go seeds each map's hash function
// randomly, so a remote peer cannot precompute keys that collide into one
// bucket; Linux gets the same property by keying inet_ehashfn with a boot
// time secret.
package hashtable

import "net/netip"

// Addr is an IPv4 or IPv6 address in network byte order, in 16 bytes: an
// IPv4 address is IPv4-mapped (::ffff:a.b.c.d), as Linux's dual-stack
// sockets keep it. Any4 (0.0.0.0) and Any6 (::) are the wildcards.
type Addr [16]byte

// The wildcards: INADDR_ANY and in6addr_any.
var (
	Any4 = AddrFrom4([4]byte{})
	Any6 = Addr{}
)

var v4Mapped = [12]byte{10: 0xff, 11: 0xff}

// AddrFrom4 is the IPv4 address a.
func AddrFrom4(a [4]byte) Addr {
	var x Addr
	copy(x[:12], v4Mapped[:])
	copy(x[12:], a[:])
	return x
}

// AddrFrom is a (IPv4 and IPv4-mapped addresses alike become IPv4).
func AddrFrom(a netip.Addr) Addr { return Addr(a.As16()) }

// Is4 reports whether a is an IPv4 address.
func (a Addr) Is4() bool { return [12]byte(a[:12]) == v4Mapped }

// As4 is the IPv4 address of a (Is4 must hold).
func (a Addr) As4() [4]byte { return [4]byte(a[12:]) }

// IsUnspecified reports whether a is a wildcard.
func (a Addr) IsUnspecified() bool { return a == Any4 || a == Any6 }

// Netip is a as a netip.Addr (IPv4 unmapped).
func (a Addr) Netip() netip.Addr { return netip.AddrFrom16(a).Unmap() }

// covers reports whether a socket bound to w receives what is addressed
// to x: the same address, or a wildcard of x's family, or :: for both
// (a dual-stack socket, unless v6only: IPV6_V6ONLY).
func covers(w Addr, v6only bool, x Addr) bool {
	return w == x || w == Any6 && !(v6only && x.Is4()) || w == Any4 && x.Is4()
}

// FourTuple identifies a connection. It has no padding, so it hashes as
// 36 plain bytes and never allocates as a map key.
type FourTuple struct {
	LocalAddr  Addr
	LocalPort  uint16
	RemoteAddr Addr
	RemotePort uint16
}

// Established maps 4-tuples to connections (Linux's ehash). Insert,
// Lookup and Remove are O(1) on average, and Lookup never allocates.
// It is not safe for concurrent use.
type Established[T any] struct {
	m map[FourTuple]T
}

// NewEstablished returns an empty table.
func NewEstablished[T any]() *Established[T] {
	return &Established[T]{m: make(map[FourTuple]T)}
}

// Insert adds k→v. It reports false and changes nothing if k is already
// present: a second connection with the same 4-tuple would make incoming
// segments ambiguous, so the caller must treat it as an error (Linux's
// __inet_check_established).
func (t *Established[T]) Insert(k FourTuple, v T) bool {
	if _, ok := t.m[k]; ok {
		return false
	}
	t.m[k] = v
	return true
}

// Lookup returns the connection for k.
func (t *Established[T]) Lookup(k FourTuple) (T, bool) {
	v, ok := t.m[k]
	return v, ok
}

// Remove deletes k and reports whether it was present.
func (t *Established[T]) Remove(k FourTuple) bool {
	if _, ok := t.m[k]; !ok {
		return false
	}
	delete(t.m, k)
	return true
}

// Len returns the number of connections.
func (t *Established[T]) Len() int { return len(t.m) }

// All yields every entry in unspecified order; use it as
// `for k, v := range t.All`. Removing entries during the iteration is
// allowed (removed entries not yet reached are not yielded); entries
// inserted during it may or may not be yielded.
func (t *Established[T]) All(yield func(FourTuple, T) bool) {
	for k, v := range t.m {
		if !yield(k, v) {
			return
		}
	}
}

// Listeners maps a local address and port to a listening socket (Linux's
// lhash2). A socket listening on 0.0.0.0:p and another on a.b.c.d:p may
// coexist (when the Bind table allows it); Lookup prefers the exact
// address, as __inet_lookup_listener scores a specific bind above a
// wildcard one. It is not safe for concurrent use.
type Listeners[T any] struct {
	m map[ListenKey]T
}

// NewListeners returns an empty table.
func NewListeners[T any]() *Listeners[T] {
	return &Listeners[T]{m: make(map[ListenKey]T)}
}

// Insert adds a listener on addr:port (addr may be a wildcard). It
// reports false and changes nothing if exactly that addr:port is taken;
// overlap between a wildcard and a specific address is the Bind table's
// business, not this one's.
func (t *Listeners[T]) Insert(addr Addr, port uint16, v T) bool {
	k := ListenKey{addr, port}
	if _, ok := t.m[k]; ok {
		return false
	}
	t.m[k] = v
	return true
}

// Lookup finds the listener for a SYN arriving at addr:port: first one
// bound to exactly addr, then one bound to the wildcard of its family,
// then, for IPv4, one bound to :: (a dual-stack listener; the caller
// rejects it if it is IPV6_V6ONLY), as __inet_lookup_listener and
// inet6_lookup_listener score them. It never allocates.
func (t *Listeners[T]) Lookup(addr Addr, port uint16) (T, bool) {
	if v, ok := t.m[ListenKey{addr, port}]; ok {
		return v, true
	}
	if addr.Is4() {
		if v, ok := t.m[ListenKey{Any4, port}]; ok {
			return v, true
		}
	}
	v, ok := t.m[ListenKey{Any6, port}]
	return v, ok
}

// Remove deletes the listener on exactly addr:port and reports whether it
// was present.
func (t *Listeners[T]) Remove(addr Addr, port uint16) bool {
	k := ListenKey{addr, port}
	if _, ok := t.m[k]; !ok {
		return false
	}
	delete(t.m, k)
	return true
}

// Len returns the number of listeners.
func (t *Listeners[T]) Len() int { return len(t.m) }

// All yields every listener in unspecified order until yield returns
// false. Go's range-over-func allows at most two loop variables, so call it
// directly (t.All(func(a Addr, p uint16, v T) bool {...})) or range over
// Entries. Removal during iteration is allowed as for Established.All.
func (t *Listeners[T]) All(yield func(Addr, uint16, T) bool) {
	for k, v := range t.m {
		if !yield(k.Addr, k.Port, v) {
			return
		}
	}
}

// ListenKey is a listener's local address and port, as yielded by Entries.
type ListenKey struct {
	Addr Addr
	Port uint16
}

// Entries is All in a form usable with range:
// `for k, v := range t.Entries`.
func (t *Listeners[T]) Entries(yield func(ListenKey, T) bool) {
	for k, v := range t.m {
		if !yield(k, v) {
			return
		}
	}
}
