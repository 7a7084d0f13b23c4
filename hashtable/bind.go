package hashtable

import (
	"encoding/binary"
	"slices"
	"syscall"
)

// Linux's default net.ipv4.ip_local_port_range. RFC 6056 section 3.2
// recommends the whole 1024..65535 range; Linux keeps the lower default so
// ephemeral ports do not collide with well-known server ports.
const (
	DefaultEphemeralLo = 32768
	DefaultEphemeralHi = 60999
)

// OwnerID identifies the socket holding a binding. The value is opaque to
// the table and chosen by the caller.
type OwnerID uint64

// BindEntry is one socket's claim on a local port.
type BindEntry struct {
	Owner     OwnerID
	Addr      Addr // 0.0.0.0 binds every local address
	ReuseAddr bool // SO_REUSEADDR
	Listening bool // listen() has been called
}

// Bind is the bind table: which sockets own which local port (Linux's
// bhash). It applies the bind()/listen() conflict rules and picks
// ephemeral ports. It is not safe for concurrent use.
type Bind struct {
	ports  map[uint16][]BindEntry
	owners map[OwnerID]uint16

	lo, hi uint16
	key    sipKey
	// next is RFC 6056 Algorithm 3's next_ephemeral, kept in [0, n).
	next uint32
	// bindCalls feeds the keyed hash that randomises EphemeralBind.
	bindCalls uint64
}

// NewBind returns an empty bind table whose ephemeral range is [lo, hi]
// (lo = hi = 0 selects Linux's default 32768..60999). seed keys the
// RFC 6056 hash and must be secret and random (e.g. from crypto/rand);
// with a known seed an off-path attacker can predict ports. It panics if
// lo is 0 or lo > hi, since port 0 means "unbound" and cannot be handed out.
func NewBind(seed [16]byte, lo, hi uint16) *Bind {
	if lo == 0 && hi == 0 {
		lo, hi = DefaultEphemeralLo, DefaultEphemeralHi
	}
	if lo == 0 || lo > hi {
		panic("hashtable: invalid ephemeral port range")
	}
	return &Bind{
		ports:  make(map[uint16][]BindEntry),
		owners: make(map[OwnerID]uint16),
		lo:     lo,
		hi:     hi,
		key:    newSipKey(seed),
	}
}

// overlaps reports whether two bound addresses can receive the same
// segments: equal, or either is the wildcard.
func overlaps(a, b Addr) bool {
	return a == b || a == Addr{} || b == Addr{}
}

// conflicts is Linux's inet_bind_conflict (inet_connection_sock.c) for
// IPv4 without SO_REUSEPORT or SO_BINDTODEVICE: n may join x on a port only
// if their addresses do not overlap, or both set SO_REUSEADDR and x is not
// listening. The listening exception is what keeps two listeners from
// sharing an address even with SO_REUSEADDR.
func conflicts(n, x BindEntry) bool {
	if !overlaps(n.Addr, x.Addr) {
		return false
	}
	return !(n.ReuseAddr && x.ReuseAddr && !x.Listening)
}

// Bind reserves addr:port for e.Owner (bind(2) with a non-zero port).
// It returns syscall.EADDRINUSE if e conflicts with an existing entry on
// port, and syscall.EINVAL if port is 0 (use EphemeralBind) or e.Owner
// already holds a binding on any port (bind(2) on a bound socket, as in
// __inet_bind).
func (b *Bind) Bind(e BindEntry, port uint16) error {
	if port == 0 {
		return syscall.EINVAL
	}
	if _, ok := b.owners[e.Owner]; ok {
		return syscall.EINVAL
	}
	for _, x := range b.ports[port] {
		if conflicts(e, x) {
			return syscall.EADDRINUSE
		}
	}
	b.insert(e, port)
	return nil
}

func (b *Bind) insert(e BindEntry, port uint16) {
	b.ports[port] = append(b.ports[port], e)
	b.owners[e.Owner] = port
}

// SetListening marks owner's entry on port as listening. Like
// inet_csk_listen_start, which re-runs the bind conflict check via
// get_port once the socket is in LISTEN state, it fails with
// syscall.EADDRINUSE when another entry on an overlapping address is
// already listening (two SO_REUSEADDR sockets may share a port while
// bound, but only one may listen). It returns syscall.EINVAL if owner has
// no entry on port; marking an already listening entry again succeeds.
func (b *Bind) SetListening(owner OwnerID, port uint16) error {
	es := b.ports[port]
	i := slices.IndexFunc(es, func(e BindEntry) bool { return e.Owner == owner })
	if i < 0 {
		return syscall.EINVAL
	}
	if es[i].Listening {
		return nil
	}
	self := es[i]
	self.Listening = true
	for j, x := range es {
		if j != i && conflicts(self, x) {
			return syscall.EADDRINUSE
		}
	}
	es[i].Listening = true
	return nil
}

// Unbind releases owner's entry on port. It is a no-op if there is none,
// so close paths may call it unconditionally.
func (b *Bind) Unbind(owner OwnerID, port uint16) {
	es := b.ports[port]
	i := slices.IndexFunc(es, func(e BindEntry) bool { return e.Owner == owner })
	if i < 0 {
		return
	}
	es = slices.Delete(es, i, i+1)
	if len(es) == 0 {
		delete(b.ports, port)
	} else {
		b.ports[port] = es
	}
	delete(b.owners, owner)
}

// Owners returns a copy of the entries on port, in bind order (for ss and
// tests). It returns nil if the port is free.
func (b *Bind) Owners(port uint16) []BindEntry {
	return slices.Clone(b.ports[port])
}

// Port returns the port owner is bound to, if any.
func (b *Bind) Port(owner OwnerID) (uint16, bool) {
	p, ok := b.owners[owner]
	return p, ok
}

// InUse reports whether any socket holds a binding on port.
func (b *Bind) InUse(port uint16) bool {
	return len(b.ports[port]) > 0
}

// Len returns the number of bindings.
func (b *Bind) Len() int { return len(b.owners) }

// rangeLen is the number of ports in the ephemeral range (at most 65535).
func (b *Bind) rangeLen() uint32 { return uint32(b.hi-b.lo) + 1 }

// Ephemeral picks a local port for connect() on an unbound socket using
// RFC 6056 section 3.3.3 (Algorithm 3, "Simple Hash-Based"):
//
//	offset = F(local, remote, remotePort, secret)
//	port   = lo + (offset + next_ephemeral) % n, next_ephemeral++ per probe
//
// F is keyed SipHash-2-4, so each destination starts at its own secret
// point in the range and an attacker cannot guess the port another
// connection will get; the shared counter makes successive connections to
// one destination use different ports (less TIME_WAIT reuse).
//
// free decides whether a port is usable. Connections with different
// 4-tuples may share a local port, so the caller normally checks its
// Established table for (local, port, remote, remotePort); Linux's
// __inet_hash_connect additionally skips ports that bind() sockets hold,
// which a caller gets by also rejecting InUse ports. A nil free means
// !InUse(port). The port is not recorded here: the caller Binds it if it
// wants it in the table. Returns syscall.EADDRNOTAVAIL, as connect(2)
// does, once every port in the range has been tried.
func (b *Bind) Ephemeral(local, remote Addr, remotePort uint16, free func(port uint16) bool) (uint16, error) {
	var msg [10]byte
	copy(msg[0:4], local[:])
	copy(msg[4:8], remote[:])
	binary.BigEndian.PutUint16(msg[8:10], remotePort)
	n := b.rangeLen()
	offset := uint32(b.key.sum(msg[:]) % uint64(n))
	for range n {
		port := b.lo + uint16((offset+b.next)%n)
		if b.next++; b.next == n {
			b.next = 0
		}
		if free == nil {
			if !b.InUse(port) {
				return port, nil
			}
		} else if free(port) {
			return port, nil
		}
	}
	return 0, syscall.EADDRNOTAVAIL
}

// EphemeralBind binds e to a port with no owner at all, for bind() with
// port 0 (Linux's inet_csk_find_open_port). The walk starts at a random
// point in the ephemeral range, derived from the secret seed and a call
// counter, so the port is not predictable. It returns syscall.EINVAL if
// e.Owner is already bound and syscall.EADDRINUSE (what bind(2) reports)
// if every port in the range is taken.
func (b *Bind) EphemeralBind(e BindEntry) (uint16, error) {
	if _, ok := b.owners[e.Owner]; ok {
		return 0, syscall.EINVAL
	}
	var msg [12]byte
	binary.LittleEndian.PutUint64(msg[0:8], b.bindCalls)
	copy(msg[8:12], e.Addr[:])
	b.bindCalls++
	n := b.rangeLen()
	start := uint32(b.key.sum(msg[:]) % uint64(n))
	for i := range n {
		port := b.lo + uint16((start+i)%n)
		if !b.InUse(port) {
			b.insert(e, port)
			return port, nil
		}
	}
	return 0, syscall.EADDRINUSE
}
