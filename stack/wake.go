package stack

// Wake-ups between the stack and callers blocked in the socket API.

// waiter wakes a goroutine blocked in the socket API; it never blocks the
// stack (a pending wake-up is kept, extra ones are dropped).
type waiter chan struct{}

func newWaiter() waiter { return make(waiter, 1) }

// cond wakes every goroutine blocked on it, however many (several Accepts,
// a Read and a WaitReadable...): a channel closed on notify and replaced.
// Guarded by Stack.mu; take the channel before unlocking, then wait on it.
type cond struct{ ch chan struct{} }

func (c *cond) wait() <-chan struct{} {
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

func (c *cond) notify() {
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}

func (w waiter) notify() {
	select {
	case w <- struct{}{}:
	default:
	}
}

// notifyRead wakes a reader, and a Socket's poller if there is one.
func (e *endpoint) notifyRead() {
	e.rdWait.notify()
	e.ev.notify()
}

// notifyWrite wakes a writer (or a dialer), and a Socket's poller.
func (e *endpoint) notifyWrite() {
	e.wrWait.notify()
	e.ev.notify()
}

// notify wakes Accept, and a Socket's poller.
func (l *listener) notify() {
	l.wait.notify()
	l.ev.notify()
}
