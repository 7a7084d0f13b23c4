// Package impair owns link impairment, like Linux's netem: parsing an
// impairment spec ("loss=2%,dup=1%,reorder=1%,delay=50ms,jitter=10ms") and
// a stack.Link wrapper that loses, duplicates, reorders and delays packets
// in both directions. `ustack run --impair` and the lab use it to make the
// stack's retransmission, reassembly and duplicate handling (B20) visible,
// and to put packets "in flight at once" for simultaneous open and close
// (B15, B36).
package impair

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ustack/stack"
)

// Spec is a parsed impairment (`ustack run --impair SPEC`): netem-like
// damage applied to the link in both directions, so that the stack's
// retransmission, reassembly and duplicate handling (B20) can be watched
// against a real kernel client.
type Spec struct {
	Loss    float64       // probability a packet is dropped
	Dup     float64       // probability a packet is sent twice
	Reorder float64       // probability a packet overtakes, or is overtaken (see Link)
	Delay   time.Duration // added to every packet
	Jitter  time.Duration // delay varies uniformly in [Delay-Jitter, Delay+Jitter], never below 0
	Limit   int           // packets held per direction; more are dropped (netem's limit)
	Seed    uint64        // RNG seed; 0 means a random one
}

// DefaultLimit is netem's default queue limit, in packets per direction.
const DefaultLimit = 1000

// reorderHold is how long a packet chosen for reordering is held back when
// no delay is configured, so that the packets after it overtake it. Short
// enough to stay well under the 200 ms minimum RTO.
const reorderHold = 10 * time.Millisecond

// Parse parses "loss=2%,dup=1%,reorder=1%,delay=50ms,jitter=10ms" (any
// subset, any order) plus "limit=N" and "seed=N".
func Parse(s string) (Spec, error) {
	spec := Spec{Limit: DefaultLimit}
	if strings.TrimSpace(s) == "" {
		return spec, errors.New("empty spec (want e.g. loss=2%,delay=50ms)")
	}
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || val == "" {
			return spec, fmt.Errorf("%q: want KEY=VALUE (keys: loss, dup, reorder, delay, jitter, limit, seed)", item)
		}
		if seen[key] {
			return spec, fmt.Errorf("%s given twice", key)
		}
		seen[key] = true
		var err error
		switch key {
		case "loss":
			spec.Loss, err = parsePercent(key, val)
		case "dup":
			spec.Dup, err = parsePercent(key, val)
		case "reorder":
			spec.Reorder, err = parsePercent(key, val)
		case "delay":
			spec.Delay, err = parseNonNegDuration(key, val)
		case "jitter":
			spec.Jitter, err = parseNonNegDuration(key, val)
		case "limit":
			spec.Limit, err = strconv.Atoi(val)
			if err != nil || spec.Limit < 1 {
				err = fmt.Errorf("limit=%s: want a positive packet count", val)
			}
		case "seed":
			spec.Seed, err = strconv.ParseUint(val, 10, 64)
			if err != nil {
				err = fmt.Errorf("seed=%s: want a non-negative integer", val)
			}
		default:
			return spec, fmt.Errorf("unknown key %q (keys: loss, dup, reorder, delay, jitter, limit, seed)", key)
		}
		if err != nil {
			return spec, err
		}
	}
	return spec, nil
}

func parsePercent(key, val string) (float64, error) {
	num, ok := strings.CutSuffix(val, "%")
	if !ok {
		return 0, fmt.Errorf("%s=%s: want a percentage like %s=2%%", key, val, key)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || f > 100 || f != f {
		return 0, fmt.Errorf("%s=%s: want a percentage from 0%% to 100%%", key, val)
	}
	return f / 100, nil
}

func parseNonNegDuration(key, val string) (time.Duration, error) {
	d, err := time.ParseDuration(val)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%s: want a duration like 50ms", key, val)
	}
	return d, nil
}

func (s Spec) String() string {
	var parts []string
	pct := func(k string, p float64) {
		if p > 0 {
			parts = append(parts, k+"="+strconv.FormatFloat(p*100, 'g', -1, 64)+"%")
		}
	}
	pct("loss", s.Loss)
	pct("dup", s.Dup)
	pct("reorder", s.Reorder)
	if s.Delay > 0 {
		parts = append(parts, "delay="+s.Delay.String())
	}
	if s.Jitter > 0 {
		parts = append(parts, "jitter="+s.Jitter.String())
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// Link wraps a stack.Link and damages the traffic in both directions, the way
// netem would on the kernel side. Each direction has a time-ordered queue
// served by its own goroutine: a packet that survives the loss draw gets a
// release time (now + delay ± jitter) and leaves when that time comes, so
// jitter larger than the gap between packets reorders them as netem's does.
//
// Reordering follows netem: with a delay configured, a packet chosen for
// reordering skips the delay and overtakes the packets being held. With no
// delay there is nothing to overtake, so the chosen packet is instead held
// for reorderHold and the ones after it overtake it.
//
// Duplicates get their own delay draw. A queue holds at most Limit packets;
// beyond that, packets are dropped and counted as overflow.
type Link struct {
	link stack.Link
	spec Spec

	rngMu sync.Mutex
	rng   *rand.Rand

	out *queue // stack -> link
	in  *queue // link -> stack

	inCh    chan []byte   // released inbound packets, read by ReadPacket
	readErr error         // the underlying link's read error, set before readEnd closes
	readEnd chan struct{} // closed when the underlying link can no longer be read

	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
}

// Stats counts what a Link did to one direction.
type Stats struct {
	Packets, Lost, Duplicated, Reordered, Overflow uint64
}

func (s Stats) String() string {
	return fmt.Sprintf("%d packets, %d lost, %d duplicated, %d reordered, %d overflowed",
		s.Packets, s.Lost, s.Duplicated, s.Reordered, s.Overflow)
}

var _ stack.Link = (*Link)(nil)

// New wraps link and starts the wrapper's goroutines; Close stops them and
// closes link. A zero Spec.Seed draws a random seed.
func New(link stack.Link, spec Spec) *Link {
	seed := spec.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	if spec.Limit <= 0 {
		spec.Limit = DefaultLimit
	}
	l := &Link{
		link:    link,
		spec:    spec,
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		inCh:    make(chan []byte, spec.Limit),
		readEnd: make(chan struct{}),
		done:    make(chan struct{}),
	}
	l.out = newQueue(spec.Limit, func(p []byte) { link.WritePacket(p) })
	l.in = newQueue(spec.Limit, func(p []byte) {
		select {
		case l.inCh <- p:
		default:
			l.in.overflow.Add(1)
		}
	})
	l.wg.Add(3)
	go func() { defer l.wg.Done(); l.out.run(l.done) }()
	go func() { defer l.wg.Done(); l.in.run(l.done) }()
	go func() { defer l.wg.Done(); l.readLoop() }()
	return l
}

// readLoop moves packets from the underlying link into the inbound queue.
func (l *Link) readLoop() {
	buf := make([]byte, 65536)
	for {
		n, err := l.link.ReadPacket(buf)
		if err != nil {
			l.readErr = err
			close(l.readEnd)
			return
		}
		l.impair(l.in, append([]byte(nil), buf[:n]...))
	}
}

// impair draws the packet's fate and queues it (and its duplicate).
func (l *Link) impair(q *queue, pkt []byte) {
	now := time.Now()
	q.packets.Add(1)
	l.rngMu.Lock()
	lost := l.chance(l.spec.Loss)
	dup := !lost && l.chance(l.spec.Dup)
	reorder := !lost && l.chance(l.spec.Reorder)
	d1, d2 := l.delay(), l.delay()
	l.rngMu.Unlock()
	if lost {
		q.lost.Add(1)
		return
	}
	if reorder {
		q.reordered.Add(1)
		if l.spec.Delay > 0 {
			d1 = 0
		} else {
			d1 += reorderHold
		}
	}
	q.push(now.Add(d1), pkt)
	if dup {
		q.duplicated.Add(1)
		q.push(now.Add(d2), append([]byte(nil), pkt...))
	}
}

// chance reports true with probability p. Called with rngMu held.
func (l *Link) chance(p float64) bool {
	return p > 0 && (p >= 1 || l.rng.Float64() < p)
}

// delay draws one packet's delay. Called with rngMu held.
func (l *Link) delay() time.Duration {
	d := l.spec.Delay
	if j := l.spec.Jitter; j > 0 {
		d += time.Duration(l.rng.Int64N(int64(2*j)+1)) - j
	}
	return max(d, 0)
}

// ReadPacket returns the next inbound packet that survived and is due.
func (l *Link) ReadPacket(b []byte) (int, error) {
	select {
	case p := <-l.inCh:
		return copy(b, p), nil
	default:
	}
	select {
	case p := <-l.inCh:
		return copy(b, p), nil
	case <-l.readEnd:
		return 0, l.readErr
	case <-l.done:
		return 0, net.ErrClosed
	}
}

// WritePacket queues b (copied) for the link; it never blocks on the delay.
func (l *Link) WritePacket(b []byte) error {
	select {
	case <-l.done:
		return net.ErrClosed
	default:
	}
	l.impair(l.out, append([]byte(nil), b...))
	return nil
}

// MTU is the underlying link's.
func (l *Link) MTU() int { return l.link.MTU() }

// Close drops every held packet, closes the underlying link and waits for
// the goroutines.
func (l *Link) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.closeErr = l.link.Close()
		l.wg.Wait()
	})
	return l.closeErr
}

// Stats returns the counts for packets going out (stack to link) and in.
func (l *Link) Stats() (out, in Stats) {
	return l.out.stats(), l.in.stats()
}

// queue is one direction's packets ordered by release time.
type queue struct {
	mu      sync.Mutex
	h       pktHeap
	seq     uint64 // ties in release time leave in arrival order
	limit   int
	wake    chan struct{}
	deliver func([]byte)

	packets, lost, duplicated, reordered, overflow atomic.Uint64
}

func newQueue(limit int, deliver func([]byte)) *queue {
	return &queue{limit: limit, wake: make(chan struct{}, 1), deliver: deliver}
}

func (q *queue) stats() Stats {
	return Stats{q.packets.Load(), q.lost.Load(), q.duplicated.Load(), q.reordered.Load(), q.overflow.Load()}
}

func (q *queue) push(at time.Time, pkt []byte) {
	q.mu.Lock()
	if len(q.h) >= q.limit {
		q.mu.Unlock()
		q.overflow.Add(1)
		return
	}
	q.seq++
	heap.Push(&q.h, heldPacket{at: at, seq: q.seq, pkt: pkt})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run delivers packets as they come due until done is closed.
func (q *queue) run(done <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		q.mu.Lock()
		var wait time.Duration = -1
		var pkt []byte
		if len(q.h) > 0 {
			if d := time.Until(q.h[0].at); d > 0 {
				wait = d
			} else {
				pkt = heap.Pop(&q.h).(heldPacket).pkt
			}
		}
		q.mu.Unlock()
		if pkt != nil {
			q.deliver(pkt)
			continue
		}
		var tc <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tc = timer.C
		}
		select {
		case <-done:
			timer.Stop()
			return
		case <-q.wake:
			timer.Stop()
		case <-tc:
		}
	}
}

type heldPacket struct {
	at  time.Time
	seq uint64
	pkt []byte
}

type pktHeap []heldPacket

func (h pktHeap) Len() int { return len(h) }
func (h pktHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h pktHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pktHeap) Push(x any)   { *h = append(*h, x.(heldPacket)) }
func (h *pktHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = heldPacket{}
	*h = old[:len(old)-1]
	return x
}
