package timers

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

var (
	_ Clock = Real{}
	_ Clock = (*Virtual)(nil)
)

var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// ms returns the instant n milliseconds after epoch.
func ms(n int) time.Time { return epoch.Add(time.Duration(n) * time.Millisecond) }

// firing is one run of a timer's action: which timer, and the now it was given.
type firing struct {
	id  int
	now time.Time
}

// log records the firings of the timers it makes.
type log struct{ fired []firing }

// timer returns an initialised timer that records its firings as id.
func (l *log) timer(id int) *Timer {
	t := new(Timer)
	t.Init(func(now time.Time) { l.fired = append(l.fired, firing{id, now}) })
	return t
}

// schedule makes a recording timer for each deadline (in ms after epoch),
// its index in deadlines being its id, and schedules it on q.
func (l *log) schedule(q *Queue, deadlines ...int) []*Timer {
	ts := make([]*Timer, len(deadlines))
	for i, d := range deadlines {
		ts[i] = l.timer(i)
		q.Schedule(ts[i], ms(d))
	}
	return ts
}

func (l *log) ids() []int {
	ids := make([]int, len(l.fired))
	for i, f := range l.fired {
		ids[i] = f.id
	}
	return ids
}

// checkHeap fails the test unless q is a valid min-heap whose timers know
// their own positions.
func checkHeap(t *testing.T, q *Queue) {
	t.Helper()
	for i, tm := range q.heap {
		if tm.index != i {
			t.Fatalf("heap[%d].index = %d", i, tm.index)
		}
		if i > 0 && tm.at.Before(q.heap[(i-1)/2].at) {
			t.Fatalf("heap[%d] at %v is before its parent at %v", i, tm.at, q.heap[(i-1)/2].at)
		}
	}
}

func TestExpireRunsInDeadlineOrder(t *testing.T) {
	var l log
	var q Queue
	deadlines := []int{50, 10, 40, 30, 70, 20, 60, 0}
	l.schedule(&q, deadlines...)
	checkHeap(t, &q)
	if q.Len() != len(deadlines) {
		t.Fatalf("Len = %d, want %d", q.Len(), len(deadlines))
	}
	if n := q.Expire(ms(1000)); n != len(deadlines) {
		t.Fatalf("Expire returned %d, want %d", n, len(deadlines))
	}
	var got []int
	for _, id := range l.ids() {
		got = append(got, deadlines[id])
	}
	if want := slices.Sorted(slices.Values(deadlines)); !slices.Equal(got, want) {
		t.Fatalf("fired the deadlines %v, want %v", got, want)
	}
	for _, f := range l.fired {
		if !f.now.Equal(ms(1000)) {
			t.Fatalf("timer %d was given now %v, want the now passed to Expire", f.id, f.now)
		}
	}
	if q.Len() != 0 {
		t.Fatalf("Len after Expire = %d", q.Len())
	}
}

// Timers with equal deadlines fire in no specified order: the heap is not
// stable. Scheduling A, B, C at one instant fires them A, C, B today (Stop
// moves the last element to the root). So only what is guaranteed is
// asserted: each fires once, in the same Expire, and a tie never lets a later
// deadline go first.
func TestEqualDeadlines(t *testing.T) {
	var l log
	var q Queue
	// ids 0..9 at 10 ms, 10..19 at 20 ms, interleaved.
	for i := range 10 {
		q.Schedule(l.timer(i), ms(10))
		q.Schedule(l.timer(10+i), ms(20))
	}
	if n := q.Expire(ms(20)); n != 20 {
		t.Fatalf("Expire returned %d, want 20", n)
	}
	got := l.ids()
	t.Logf("firing order of ties: %v", got)
	for i, id := range got {
		if (i < 10) != (id < 10) {
			t.Fatalf("fired %v: a 20 ms timer ran before a 10 ms one", got)
		}
	}
	slices.Sort(got)
	for i, id := range got {
		if id != i {
			t.Fatalf("fired (sorted) %v, want each of 0..19 once", got)
		}
	}
}

func TestExpireRunsOnlyWhatIsDue(t *testing.T) {
	var l log
	var q Queue
	l.schedule(&q, 10, 20, 30)
	if n := q.Expire(ms(9)); n != 0 || len(l.fired) != 0 {
		t.Fatalf("Expire before any deadline ran %d (%v)", n, l.ids())
	}
	// A deadline equal to now is due.
	if n := q.Expire(ms(20)); n != 2 {
		t.Fatalf("Expire(20ms) returned %d, want 2", n)
	}
	if got := l.ids(); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("fired %v, want [0 1] (10 and 20 ms)", got)
	}
	if q.Len() != 1 {
		t.Fatalf("Len = %d, want 1", q.Len())
	}
	if next, ok := q.Next(); !ok || !next.Equal(ms(30)) {
		t.Fatalf("Next = %v, %v; want 30ms, true", next, ok)
	}
	if n := q.Expire(ms(20)); n != 0 {
		t.Fatalf("second Expire(20ms) returned %d, want 0", n)
	}
	if n := q.Expire(ms(30)); n != 1 {
		t.Fatalf("Expire(30ms) returned %d, want 1", n)
	}
	if n := q.Expire(ms(1000)); n != 0 {
		t.Fatalf("Expire of an empty queue returned %d", n)
	}
}

func TestNext(t *testing.T) {
	var l log
	var q Queue
	if at, ok := q.Next(); ok || !at.IsZero() {
		t.Fatalf("Next of an empty queue = %v, %v; want zero, false", at, ok)
	}
	a, b := l.timer(1), l.timer(2)
	q.Schedule(a, ms(30))
	q.Schedule(b, ms(20))
	if at, ok := q.Next(); !ok || !at.Equal(ms(20)) {
		t.Fatalf("Next = %v, %v; want 20ms, true", at, ok)
	}
	q.Stop(b)
	if at, ok := q.Next(); !ok || !at.Equal(ms(30)) {
		t.Fatalf("Next after Stop = %v, %v; want 30ms, true", at, ok)
	}
	q.Stop(a)
	if _, ok := q.Next(); ok {
		t.Fatal("Next reports a timer after all were stopped")
	}
}

func TestStop(t *testing.T) {
	var l log
	var q Queue
	ts := l.schedule(&q, 0, 10, 20, 30, 40, 50, 60, 70)
	// Stop the root, an inner node and a leaf.
	for _, i := range []int{0, 1, 7} {
		q.Stop(ts[i])
		if ts[i].Pending() {
			t.Fatalf("timer %d still Pending after Stop", i)
		}
		checkHeap(t, &q)
	}
	if q.Len() != 5 {
		t.Fatalf("Len = %d, want 5", q.Len())
	}
	// Stopping again, or stopping a timer never scheduled, changes nothing.
	q.Stop(ts[0])
	q.Stop(l.timer(99))
	if q.Len() != 5 {
		t.Fatalf("Len after harmless Stops = %d, want 5", q.Len())
	}
	checkHeap(t, &q)
	if n := q.Expire(ms(1000)); n != 5 {
		t.Fatalf("Expire returned %d, want 5", n)
	}
	if got := l.ids(); !slices.Equal(got, []int{2, 3, 4, 5, 6}) {
		t.Fatalf("fired %v, want [2 3 4 5 6]", got)
	}
	// A timer that has fired is no longer pending; Stop of it is harmless.
	if ts[2].Pending() {
		t.Fatal("fired timer still Pending")
	}
	q.Stop(ts[2])
	if q.Len() != 0 {
		t.Fatalf("Len = %d, want 0", q.Len())
	}
}

func TestStopFromCallback(t *testing.T) {
	var l log
	var q Queue
	b := l.timer(2)
	c := l.timer(3)
	var a *Timer
	a = new(Timer)
	a.Init(func(now time.Time) {
		l.fired = append(l.fired, firing{1, now})
		q.Stop(b) // due in this same Expire
		q.Stop(a) // itself: already removed, so harmless
	})
	q.Schedule(a, ms(10))
	q.Schedule(b, ms(20))
	q.Schedule(c, ms(30))
	if n := q.Expire(ms(30)); n != 2 {
		t.Fatalf("Expire returned %d, want 2", n)
	}
	if got := l.ids(); !slices.Equal(got, []int{1, 3}) {
		t.Fatalf("fired %v, want [1 3]", got)
	}
	if b.Pending() || q.Len() != 0 {
		t.Fatalf("b.Pending = %v, Len = %d; want false, 0", b.Pending(), q.Len())
	}
}

func TestReschedule(t *testing.T) {
	var l log
	var q Queue
	ts := l.schedule(&q, 10, 20, 30, 40, 50, 60, 70)
	// Move timer 5 (60 ms) earlier than all, and timer 0 (10 ms) later than all.
	q.Schedule(ts[5], ms(5))
	checkHeap(t, &q)
	q.Schedule(ts[0], ms(100))
	checkHeap(t, &q)
	if q.Len() != len(ts) {
		t.Fatalf("Len = %d after rescheduling, want %d (a move must not add)", q.Len(), len(ts))
	}
	if !ts[5].Pending() || !ts[5].Deadline().Equal(ms(5)) {
		t.Fatalf("timer 5: Pending %v, Deadline %v; want true, 5ms", ts[5].Pending(), ts[5].Deadline())
	}
	if !ts[0].Deadline().Equal(ms(100)) {
		t.Fatalf("timer 0 Deadline %v, want 100ms", ts[0].Deadline())
	}
	if at, _ := q.Next(); !at.Equal(ms(5)) {
		t.Fatalf("Next = %v, want 5ms", at)
	}
	// Moving to the same deadline is a no-op.
	q.Schedule(ts[3], ts[3].Deadline())
	checkHeap(t, &q)
	if n := q.Expire(ms(1000)); n != len(ts) {
		t.Fatalf("Expire returned %d, want %d", n, len(ts))
	}
	if got := l.ids(); !slices.Equal(got, []int{5, 1, 2, 3, 4, 6, 0}) {
		t.Fatalf("fired %v, want [5 1 2 3 4 6 0]", got)
	}
}

// The contract of Expire for timers scheduled by an action, which the code
// gives and its comment states: a timer is removed before its action runs, and
// Expire keeps taking the root while it is due, so anything scheduled during
// Expire at a deadline not after now runs in the same call (and is counted);
// anything scheduled later than now waits. (An action that always reschedules
// itself at now would therefore never let Expire return.)
func TestScheduleDuringExpire(t *testing.T) {
	t.Run("self", func(t *testing.T) {
		var q Queue
		var tick Timer
		var runs []time.Time
		tick.Init(func(now time.Time) {
			runs = append(runs, tick.Deadline())
			q.Schedule(&tick, tick.Deadline().Add(10*time.Millisecond))
		})
		q.Schedule(&tick, ms(10))
		if n := q.Expire(ms(35)); n != 3 {
			t.Fatalf("Expire returned %d, want 3 (10, 20 and 30 ms)", n)
		}
		if !slices.Equal(runs, []time.Time{ms(10), ms(20), ms(30)}) {
			t.Fatalf("ran at %v", runs)
		}
		if !tick.Pending() || !tick.Deadline().Equal(ms(40)) {
			t.Fatalf("Pending %v, Deadline %v; want true, 40ms", tick.Pending(), tick.Deadline())
		}
	})
	t.Run("other", func(t *testing.T) {
		var l log
		var q Queue
		due, later, first := l.timer(2), l.timer(3), new(Timer)
		first.Init(func(now time.Time) {
			l.fired = append(l.fired, firing{1, now})
			q.Schedule(due, now)
			q.Schedule(later, now.Add(time.Nanosecond))
		})
		q.Schedule(first, ms(10))
		if n := q.Expire(ms(10)); n != 2 {
			t.Fatalf("Expire returned %d, want 2", n)
		}
		if got := l.ids(); !slices.Equal(got, []int{1, 2}) {
			t.Fatalf("fired %v, want [1 2]", got)
		}
		if !later.Pending() || q.Len() != 1 {
			t.Fatalf("later.Pending %v, Len %d; want true, 1", later.Pending(), q.Len())
		}
	})
}

func TestScheduleWithoutInitPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Schedule of a Timer without Init did not panic")
		}
	}()
	var q Queue
	q.Schedule(new(Timer), epoch)
}

// TestMany drives a queue with random schedules, moves and stops against a
// map of what should be pending, expiring in steps: each Expire must run
// exactly the due timers, each once, in nondecreasing deadline order.
func TestMany(t *testing.T) {
	const n = 10000
	rng := rand.New(rand.NewPCG(1, 2))
	var q Queue
	want := map[int]time.Time{} // the model: pending id -> deadline
	var fired []firing          // here firing.now holds the timer's deadline
	ts := make([]*Timer, n)
	for i := range ts {
		id := i
		ts[i] = new(Timer)
		ts[i].Init(func(now time.Time) {
			fired = append(fired, firing{id, ts[id].Deadline()})
		})
	}
	deadline := func(after int) time.Time { return ms(after + rng.IntN(10000)) }
	for i, tm := range ts {
		at := deadline(0)
		q.Schedule(tm, at)
		want[i] = at
	}
	nowMS := 0
	for step := 0; q.Len() > 0; step++ {
		// Stir: stop some, move some (earlier or later), revive some fired
		// or stopped ones.
		for range 200 {
			id := rng.IntN(n)
			switch rng.IntN(3) {
			case 0:
				q.Stop(ts[id])
				delete(want, id)
			default:
				if step > 20 && !ts[id].Pending() {
					continue // let the queue drain
				}
				at := deadline(nowMS)
				q.Schedule(ts[id], at)
				want[id] = at
			}
		}
		checkHeap(t, &q)
		if q.Len() != len(want) {
			t.Fatalf("step %d: Len = %d, model has %d", step, q.Len(), len(want))
		}
		nowMS += 500
		now := ms(nowMS)
		var due []int
		for id, at := range want {
			if !at.After(now) {
				due = append(due, id)
			}
		}
		fired = fired[:0]
		if got := q.Expire(now); got != len(due) {
			t.Fatalf("step %d: Expire returned %d, %d were due", step, got, len(due))
		}
		if len(fired) != len(due) {
			t.Fatalf("step %d: %d ran, %d were due", step, len(fired), len(due))
		}
		for i, f := range fired {
			if at, ok := want[f.id]; !ok || !at.Equal(f.now) || at.After(now) {
				t.Fatalf("step %d: timer %d ran with deadline %v; model: %v, %v", step, f.id, f.now, at, ok)
			}
			if i > 0 && f.now.Before(fired[i-1].now) {
				t.Fatalf("step %d: deadline %v ran after %v", step, f.now, fired[i-1].now)
			}
			delete(want, f.id) // a second run of the same timer would fail above
		}
		if len(want) != q.Len() {
			t.Fatalf("step %d: after Expire Len = %d, model has %d", step, q.Len(), len(want))
		}
	}
	if len(want) != 0 {
		t.Fatalf("queue empty but the model still has %d pending", len(want))
	}
}

func TestScheduleStopAllocatesNothing(t *testing.T) {
	var l log
	var q Queue
	for i := range 100 {
		q.Schedule(l.timer(i), ms(i))
	}
	tm := l.timer(-1)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		q.Schedule(tm, ms(i%200))
		q.Schedule(tm, ms(i%150)) // a move
		q.Stop(tm)
	})
	if allocs != 0 {
		t.Fatalf("Schedule+Stop allocates %v times per run, want 0", allocs)
	}
}

func TestVirtual(t *testing.T) {
	v := NewVirtual(epoch)
	if !v.Now().Equal(epoch) {
		t.Fatalf("Now = %v, want %v", v.Now(), epoch)
	}
	v.Advance(time.Second)
	if !v.Now().Equal(epoch.Add(time.Second)) {
		t.Fatalf("after Advance(1s) Now = %v", v.Now())
	}
	v.Set(epoch.Add(5 * time.Second))
	if !v.Now().Equal(epoch.Add(5 * time.Second)) {
		t.Fatalf("after Set(+5s) Now = %v", v.Now())
	}
	// Set never moves the clock backwards: an earlier time is ignored.
	v.Set(epoch.Add(2 * time.Second))
	if !v.Now().Equal(epoch.Add(5 * time.Second)) {
		t.Fatalf("Set to an earlier time moved the clock to %v", v.Now())
	}
	v.Set(epoch.Add(5 * time.Second))
	if !v.Now().Equal(epoch.Add(5 * time.Second)) {
		t.Fatalf("Set to the same time moved the clock to %v", v.Now())
	}
	// Advance has no such guard: a negative duration moves the clock back.
	// This pins today's behaviour (nothing in the tree calls it so); it is
	// not a promise of the API.
	v.Advance(-3 * time.Second)
	if !v.Now().Equal(epoch.Add(2 * time.Second)) {
		t.Fatalf("after Advance(-3s) Now = %v, want +2s", v.Now())
	}
}

func TestVirtualConcurrent(t *testing.T) {
	v := NewVirtual(epoch)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				v.Advance(time.Millisecond)
				v.Set(epoch.Add(time.Duration(g*i) * time.Microsecond))
				_ = v.Now()
			}
		})
	}
	wg.Wait()
	// Every Set asks for a time (at most 3 ms in) the clock has already
	// passed by then, so it changes nothing, and no Advance may be lost.
	if got := v.Now().Sub(epoch); got != 4000*time.Millisecond {
		t.Fatalf("Now = +%v, want +4s", got)
	}
}

func TestReal(t *testing.T) {
	before := time.Now()
	got := Real{}.Now()
	after := time.Now()
	if got.Before(before) || got.After(after) {
		t.Fatalf("Real.Now = %v, not within [%v, %v]", got, before, after)
	}
}

// BenchmarkScheduleStop arms and disarms one timer in a queue of 1000
// pending ones: the steady state of a retransmission timer.
func BenchmarkScheduleStop(b *testing.B) {
	var q Queue
	noop := func(time.Time) {}
	others := make([]Timer, 1000)
	for i := range others {
		others[i].Init(noop)
		q.Schedule(&others[i], ms(i))
	}
	var tm Timer
	tm.Init(noop)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		q.Schedule(&tm, ms(i%1000))
		q.Stop(&tm)
	}
}

// BenchmarkExpire schedules and then expires 1000 timers per op.
func BenchmarkExpire(b *testing.B) {
	const n = 1000
	var q Queue
	noop := func(time.Time) {}
	ts := make([]Timer, n)
	for i := range ts {
		ts[i].Init(noop)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	at := make([]time.Time, n)
	for i := range at {
		at[i] = ms(rng.IntN(n))
	}
	// One round outside the timing grows the heap to its steady size.
	for i := range ts {
		q.Schedule(&ts[i], at[i])
	}
	q.Expire(ms(n))
	b.ReportAllocs()
	for b.Loop() {
		for i := range ts {
			q.Schedule(&ts[i], at[i])
		}
		if q.Expire(ms(n)) != n {
			b.Fatal("not all expired")
		}
	}
}
