// Package timers is the one timer facility of the stack: a min-heap of
// deadlines that its owner drives with the current time, and the clock that
// supplies that time. Nothing here sleeps or starts a goroutine, so a test can
// replace the clock with a Virtual one and run a 60 s TIME_WAIT in microseconds.
//
// A Queue is not safe for concurrent use; its owner (the stack) holds its own
// lock around every call.
package timers

import (
	"sync"
	"time"
)

// Clock tells the time. The stack never reads time.Now directly.
type Clock interface {
	Now() time.Time
}

// Real is the wall clock (with Go's monotonic reading).
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// Virtual is a clock that only moves when told to. Safe for concurrent use.
type Virtual struct {
	mu  sync.Mutex
	now time.Time
}

// NewVirtual returns a virtual clock reading start.
func NewVirtual(start time.Time) *Virtual { return &Virtual{now: start} }

// Now returns the clock's current reading.
func (v *Virtual) Now() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.now
}

// Set moves the clock to t; it never moves backwards.
func (v *Virtual) Set(t time.Time) {
	v.mu.Lock()
	if t.After(v.now) {
		v.now = t
	}
	v.mu.Unlock()
}

// Advance moves the clock forward by d.
func (v *Virtual) Advance(d time.Duration) {
	v.mu.Lock()
	v.now = v.now.Add(d)
	v.mu.Unlock()
}

// Timer is one deadline with its action. Embed it in the object it serves so
// that arming it allocates nothing.
type Timer struct {
	at    time.Time
	index int // position in the heap, -1 when not pending
	fire  func(now time.Time)
}

// Init sets the action run when the timer expires. It must be called once
// before the timer is scheduled.
func (t *Timer) Init(fire func(now time.Time)) {
	t.fire = fire
	t.index = -1
}

// Pending reports whether the timer is scheduled.
func (t *Timer) Pending() bool { return t.index >= 0 }

// Deadline returns when the timer fires; meaningful only while Pending.
func (t *Timer) Deadline() time.Time { return t.at }

// Queue holds the pending timers ordered by deadline.
type Queue struct {
	heap []*Timer
}

// Len returns the number of pending timers.
func (q *Queue) Len() int { return len(q.heap) }

// Schedule arms t to fire at at, moving it if it is already pending.
func (q *Queue) Schedule(t *Timer, at time.Time) {
	if t.fire == nil {
		panic("timers: Schedule of a Timer without Init")
	}
	t.at = at
	if t.index >= 0 {
		q.fix(t.index)
		return
	}
	t.index = len(q.heap)
	q.heap = append(q.heap, t)
	q.up(t.index)
}

// Stop disarms t; stopping a timer that is not pending does nothing.
func (q *Queue) Stop(t *Timer) {
	i := t.index
	if i < 0 {
		return
	}
	last := len(q.heap) - 1
	if i != last {
		q.swap(i, last)
	}
	q.heap[last] = nil
	q.heap = q.heap[:last]
	t.index = -1
	if i != last {
		q.fix(i)
	}
}

// Next returns the earliest deadline, if any timer is pending.
func (q *Queue) Next() (time.Time, bool) {
	if len(q.heap) == 0 {
		return time.Time{}, false
	}
	return q.heap[0].at, true
}

// Expire runs, in deadline order, every timer whose deadline is not after
// now, and returns how many ran. A timer is removed before its action runs, so
// the action may schedule it (or any other timer) again; a timer rescheduled
// to a deadline not after now runs again in the same call.
func (q *Queue) Expire(now time.Time) int {
	n := 0
	for len(q.heap) > 0 && !q.heap[0].at.After(now) {
		t := q.heap[0]
		q.Stop(t)
		t.fire(now)
		n++
	}
	return n
}

func (q *Queue) less(i, j int) bool { return q.heap[i].at.Before(q.heap[j].at) }

func (q *Queue) swap(i, j int) {
	q.heap[i], q.heap[j] = q.heap[j], q.heap[i]
	q.heap[i].index = i
	q.heap[j].index = j
}

func (q *Queue) fix(i int) {
	if !q.down(i) {
		q.up(i)
	}
}

func (q *Queue) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !q.less(j, i) {
			break
		}
		q.swap(i, j)
		j = i
	}
}

func (q *Queue) down(i0 int) bool {
	i, n := i0, len(q.heap)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && q.less(r, l) {
			j = r
		}
		if !q.less(j, i) {
			break
		}
		q.swap(i, j)
		i = j
	}
	return i > i0
}
