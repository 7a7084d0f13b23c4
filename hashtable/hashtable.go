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

// Addr is an IPv4 address in network byte order; zero (0.0.0.0) is the
// wildcard (INADDR_ANY).
type Addr = [4]byte

// FourTuple identifies a connection. It has no padding, so it hashes as
// 12 plain bytes and never allocates as a map key.
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
	m map[uint64]T
}

// listenKey packs addr:port into a uint64 so the map uses Go's fast path
// for 8-byte keys.
func listenKey(addr Addr, port uint16) uint64 {
	return uint64(addr[0])<<40 | uint64(addr[1])<<32 | uint64(addr[2])<<24 |
		uint64(addr[3])<<16 | uint64(port)
}

func unpackListenKey(k uint64) (Addr, uint16) {
	return Addr{byte(k >> 40), byte(k >> 32), byte(k >> 24), byte(k >> 16)}, uint16(k)
}

// NewListeners returns an empty table.
func NewListeners[T any]() *Listeners[T] {
	return &Listeners[T]{m: make(map[uint64]T)}
}

// Insert adds a listener on addr:port (addr may be the wildcard). It
// reports false and changes nothing if exactly that addr:port is taken;
// overlap between a wildcard and a specific address is the Bind table's
// business, not this one's.
func (t *Listeners[T]) Insert(addr Addr, port uint16, v T) bool {
	k := listenKey(addr, port)
	if _, ok := t.m[k]; ok {
		return false
	}
	t.m[k] = v
	return true
}

// Lookup finds the listener for a SYN arriving at addr:port: first one
// bound to exactly addr, then one bound to 0.0.0.0 (__inet_lookup_listener).
// It never allocates.
func (t *Listeners[T]) Lookup(addr Addr, port uint16) (T, bool) {
	if v, ok := t.m[listenKey(addr, port)]; ok {
		return v, true
	}
	v, ok := t.m[listenKey(Addr{}, port)]
	return v, ok
}

// Remove deletes the listener on exactly addr:port and reports whether it
// was present.
func (t *Listeners[T]) Remove(addr Addr, port uint16) bool {
	k := listenKey(addr, port)
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
		addr, port := unpackListenKey(k)
		if !yield(addr, port, v) {
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
		addr, port := unpackListenKey(k)
		if !yield(ListenKey{addr, port}, v) {
			return
		}
	}
}
