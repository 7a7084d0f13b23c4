// Package linkpair joins two stacks back to back over their BatchLinks, a
// wire in memory: what one sends, the other receives. Examples and tests
// use it to put a client stack in front of a forwarding one.
package linkpair

import "ustack/stack"

// Join pumps packets between a and b, each way in a goroutine of its own,
// until either link is closed.
func Join(a, b *stack.BatchLink) {
	go pump(a, b)
	go pump(b, a)
}

func pump(from, to *stack.BatchLink) {
	bufs := make([][]byte, from.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, from.MTU())
	}
	sizes := make([]int, len(bufs))
	for {
		n, err := from.Read(bufs, sizes, 0)
		if err != nil {
			return
		}
		out := make([][]byte, n)
		for i := range n {
			out[i] = bufs[i][:sizes[i]]
		}
		if _, err := to.Write(out, 0); err != nil {
			return
		}
	}
}
