package hashtable

import (
	"encoding/binary"
	"math/rand/v2"
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
	Addr      Addr // a wildcard binds every local address of its family (:: both)
	ReuseAddr bool // SO_REUSEADDR
	V6Only    bool // IPV6_V6ONLY: a :: binding leaves IPv4 alone
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
	// rng is a ChaCha8 stream keyed from the secret seed: the random
	// increments of Ephemeral and the start points of EphemeralBind.
	rng *rand.ChaCha8
	// perturb is RFC 6056 Algorithm 4's table of counters (Linux's
	// table_perturb), indexed by the second keyed hash G and filled with
	// random values at creation.
	perturb [perturbLen]uint32
}

// perturbLen is the number of perturbation counters (a power of two).
// Destinations whose G collides share a counter, so a connection to one
// moves the other's sequence; with 4096 counters that is rare, and an
// observer learns little about other destinations from its own ports.
// Linux uses 65536, at 256 KiB per network namespace.
const perturbLen = 1 << 12

// NewBind returns an empty bind table whose ephemeral range is [lo, hi]
// (lo = hi = 0 selects Linux's default 32768..60999). seed keys the
// RFC 6056 hashes and the random stream behind the perturbation counters
// and their increments; it must be secret and random (e.g. from
// crypto/rand), since with a known seed an off-path attacker can predict
// ports. It panics if
// lo is 0 or lo > hi, since port 0 means "unbound" and cannot be handed out.
func NewBind(seed [16]byte, lo, hi uint16) *Bind {
	if lo == 0 && hi == 0 {
		lo, hi = DefaultEphemeralLo, DefaultEphemeralHi
	}
	if lo == 0 || lo > hi {
		panic("hashtable: invalid ephemeral port range")
	}
	b := &Bind{
		ports:  make(map[uint16][]BindEntry),
		owners: make(map[OwnerID]uint16),
		lo:     lo,
		hi:     hi,
		key:    newSipKey(seed),
	}
	// The random stream is keyed by the SipHash of fixed labels, so it is
	// as secret as the seed but independent of the port hash.
	var rs [32]byte
	for i := range 4 {
		label := [8]byte{'p', 'e', 'r', 't', 'u', 'r', 'b', byte(i)}
		binary.LittleEndian.PutUint64(rs[8*i:], b.key.sum(label[:]))
	}
	b.rng = rand.NewChaCha8(rs)
	for i := range b.perturb {
		b.perturb[i] = uint32(b.rng.Uint64())
	}
	return b
}

// overlaps reports whether two bound addresses can receive the same
// segments: equal, or either is a wildcard that covers the other.
func overlaps(a, b BindEntry) bool {
	return covers(a.Addr, a.V6Only, b.Addr) || covers(b.Addr, b.V6Only, a.Addr)
}

// conflicts is Linux's inet_bind_conflict (inet_connection_sock.c) for
// IPv4 without SO_REUSEPORT or SO_BINDTODEVICE: n may join x on a port only
// if their addresses do not overlap, or both set SO_REUSEADDR and x is not
// listening. The listening exception is what keeps two listeners from
// sharing an address even with SO_REUSEADDR.
func conflicts(n, x BindEntry) bool {
	if !overlaps(n, x) {
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
func (b *Bind) rangeLen() uint32 { return span(b.lo, b.hi) }

// span is the number of ports in lo..hi.
func span(lo, hi uint16) uint32 { return uint32(hi-lo) + 1 }

// Ephemeral picks a local port for connect() on an unbound socket using
// RFC 6056 section 3.3.4 (Algorithm 4, "Double-Hash Port Selection"), as
// Linux's __inet_hash_connect does:
//
//	h      = SipHash(secret; local, remote, remotePort)
//	offset = F + perturb[G], with F = h>>32 and G = h mod len(perturb)
//	try lo + (offset+i) % n for i = 0, 1, ... n-1
//
// F gives each destination its own secret start in the range. The counter
// perturb[G] moves that start on after every successful pick, by the
// number of busy ports tried plus 1, or by a random 1..16 if that is more
// (Linux: max(i, get_random_u32_below(8)*2) + 2, in steps of 2). So
// successive connections to one destination get different ports, spaced
// by a random step an observer cannot predict; connections to other
// destinations (with another G) leave the counter alone, unlike Algorithm
// 3's single shared counter; and when ports are busy the next walk starts
// past them, so a destination with many connections does not rescan them.
//
// Unlike Linux, the walk does not try ports of one parity first (leaving
// the others to bind()): once half the range is busy that makes every
// connect() rescan the whole first half, the slowdown Linux shows with
// many connections; bind() with port 0 starts at its own random point.
//
// free decides whether a port is usable. Connections with different
// 4-tuples may share a local port, so the caller normally checks its
// Established table for (local, port, remote, remotePort); Linux's
// __inet_hash_connect additionally skips ports that bind() sockets hold,
// which a caller gets by also rejecting InUse ports. A nil free means
// !InUse(port). The port is not recorded here: the caller Binds it if it
// wants it in the table. Returns syscall.EADDRNOTAVAIL, as connect(2)
// does, once every port in the range has been tried; the counter is then
// left as it was.
func (b *Bind) Ephemeral(local, remote Addr, remotePort uint16, free func(port uint16) bool) (uint16, error) {
	return b.EphemeralIn(b.lo, b.hi, local, remote, remotePort, free)
}

// Range narrows the table's ephemeral range to a socket's own lo..hi
// (Linux's IP_LOCAL_PORT_RANGE, inet_sk_get_local_port_range): each bound
// is used only if it lies inside the table's range; 0 leaves it alone.
func (b *Bind) Range(lo, hi uint16) (uint16, uint16) {
	rlo, rhi := b.lo, b.hi
	if lo >= rlo && lo <= rhi {
		rlo = lo
	}
	if hi >= rlo && hi <= rhi {
		rhi = hi
	}
	return rlo, rhi
}

// EphemeralIn is Ephemeral within lo..hi, a part of the table's range
// that Range gives.
func (b *Bind) EphemeralIn(lo, hi uint16, local, remote Addr, remotePort uint16, free func(port uint16) bool) (uint16, error) {
	var buf [34]byte
	h := b.key.sum(portHashInput(local, remote, remotePort, &buf))
	g := &b.perturb[h%perturbLen]
	n := span(lo, hi)
	pos := (uint32(h>>32) + *g) % n
	for tries := range n {
		port := lo + uint16(pos)
		if pos++; pos == n {
			pos = 0
		}
		if free == nil {
			if b.InUse(port) {
				continue
			}
		} else if !free(port) {
			continue
		}
		*g += max(tries, uint32(b.rng.Uint64()%16)) + 1
		return port, nil
	}
	return 0, syscall.EADDRNOTAVAIL
}

// portHashInput is RFC 6056's hash input: local and remote address (4
// bytes each for IPv4, 16 for IPv6) and the remote port, in buf.
func portHashInput(local, remote Addr, remotePort uint16, buf *[34]byte) []byte {
	l, r := local[:], remote[:]
	if local.Is4() && remote.Is4() {
		l, r = local[12:], remote[12:]
	}
	n := copy(buf[:], l)
	n += copy(buf[n:], r)
	binary.BigEndian.PutUint16(buf[n:], remotePort)
	return buf[:n+2]
}

// EphemeralBind binds e to a port with no owner at all, for bind() with
// port 0 (Linux's inet_csk_find_open_port). The walk starts at a random
// point in the ephemeral range (from the seeded random stream), so the
// port is not predictable. It returns syscall.EINVAL if e.Owner is already
// bound and syscall.EADDRINUSE (what bind(2) reports) if every port in the
// range is taken.
func (b *Bind) EphemeralBind(e BindEntry) (uint16, error) {
	return b.EphemeralBindIn(b.lo, b.hi, e)
}

// EphemeralBindIn is EphemeralBind within lo..hi, a part of the table's
// range that Range gives.
func (b *Bind) EphemeralBindIn(lo, hi uint16, e BindEntry) (uint16, error) {
	if _, ok := b.owners[e.Owner]; ok {
		return 0, syscall.EINVAL
	}
	n := span(lo, hi)
	start := uint32(b.rng.Uint64() % uint64(n))
	for i := range n {
		port := lo + uint16((start+i)%n)
		if !b.InUse(port) {
			b.insert(e, port)
			return port, nil
		}
	}
	return 0, syscall.EADDRINUSE
}
