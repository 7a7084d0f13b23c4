package drill

import (
	"container/heap"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// vclock is a virtual tcpip.Clock for gVisor. faketime.ManualClock would do,
// but it cannot say when its next timer is due, and the drill must step from
// timer to timer (to stamp each packet and each blocked call's return with
// the exact time). Timer callbacks run only from run, on the interpreter's
// goroutine, never under the clock's lock.
type vclock struct {
	mu     sync.Mutex
	epoch  time.Time
	now    time.Time
	timers timerHeap
	seq    uint64 // FIFO order among timers due at the same instant
}

func newVclock() *vclock {
	// A fixed, non-zero epoch: gVisor uses the zero time as "inactive".
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &vclock{epoch: t, now: t}
}

func (c *vclock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *vclock) NowMonotonic() tcpip.MonotonicTime {
	var mt tcpip.MonotonicTime
	return mt.Add(c.Now().Sub(c.epoch) + time.Second)
}

func (c *vclock) AfterFunc(d time.Duration, f func()) tcpip.Timer {
	t := &vtimer{clock: c, f: f, index: -1}
	t.Reset(d)
	return t
}

// set moves the clock forward to epoch+d.
func (c *vclock) set(d time.Duration) {
	c.mu.Lock()
	if t := c.epoch.Add(d); t.After(c.now) {
		c.now = t
	}
	c.mu.Unlock()
}

// next is the earliest pending deadline, as a time since epoch.
func (c *vclock) next() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return 0, false
	}
	return c.timers[0].at.Sub(c.epoch), true
}

// run fires every timer due now, including ones the callbacks arm for now.
func (c *vclock) run() {
	for range maxSteps {
		c.mu.Lock()
		if len(c.timers) == 0 || c.timers[0].at.After(c.now) {
			c.mu.Unlock()
			return
		}
		t := heap.Pop(&c.timers).(*vtimer)
		c.mu.Unlock()
		t.f()
	}
}

type vtimer struct {
	clock *vclock
	f     func()
	at    time.Time
	seq   uint64
	index int // in the heap, -1 when not pending
}

func (t *vtimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&c.timers, t.index)
	return true
}

func (t *vtimer) Reset(d time.Duration) {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.index >= 0 {
		heap.Remove(&c.timers, t.index)
	}
	// A timer for now or the past fires at the next run, not inline: the
	// caller may hold locks its callback takes.
	t.at = c.now.Add(max(d, 0))
	c.seq++
	t.seq = c.seq
	heap.Push(&c.timers, t)
}

type timerHeap []*vtimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *timerHeap) Push(x any) {
	t := x.(*vtimer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.index = -1
	return t
}
