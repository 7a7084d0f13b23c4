// Package lab owns the guided experiments of `ustack lab`: small, real
// scenes of TCP's life (a refused connection, a simultaneous open, a close
// with unread data, a FIN-WAIT-2 that times out...) played between ustack
// and the Linux kernel, each in a network namespace of its own.
//
// An experiment runs in-process: it makes a namespace, opens tun0 inside
// it (the kernel's side 10.0.0.1/24, ustack at 10.0.0.2), starts a stack
// with short timers whose packet observer and trace logger write into the
// experiment's timeline, drives kernel tools (nc, curl, ss) and kernel
// sockets on one side and ustack sockets on the other, and tears it all
// down again, whatever happened. The output is the timeline (one
// tcpdump-like line per segment with relative sequence numbers, ustack's
// state transitions, what the kernel's applications saw) and a verdict:
// each expectation of the behaviour ids (../shared/spec/behaviours.md),
// checked against what actually happened, and MATCH or MISMATCH.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"time"

	"ustack/stack"
)

// Experiment is one guided experiment.
type Experiment struct {
	Name    string   // what `ustack lab NAME` takes, e.g. "close-unread"
	IDs     []string // the behaviour ids it demonstrates
	Title   string   // one line, for --list and the heading
	Explain string   // what happens, why, and what to watch for
	// Impair, if set, damages the link both ways (package impair's spec),
	// e.g. a delay that keeps two SYNs in flight at once.
	Impair string
	// Options adjusts the stack's tunables beyond the lab's short timers.
	Options func(*stack.Options)
	// About is how long the experiment takes, for the heading.
	About time.Duration
	// Run drives the experiment and records its checks with x.Expect. An
	// error means it could not be carried out (a tool missing, a socket
	// that would not open); its checks so far still count.
	Run func(x *Env) error
}

// Result is the outcome of one experiment.
type Result struct {
	Name   string
	Match  bool
	Checks []Check
	Err    error
	Took   time.Duration
}

// maxExperiment bounds any single experiment, whatever its waits.
const maxExperiment = 60 * time.Second

// Experiments returns every experiment, in the order the lab runs them.
func Experiments() []*Experiment { return experiments }

// Lookup finds an experiment by name.
func Lookup(name string) (*Experiment, bool) {
	for _, e := range experiments {
		if e.Name == name {
			return e, true
		}
	}
	return nil, false
}

// IDList is "B01, B02".
func (e *Experiment) IDList() string { return strings.Join(e.IDs, ", ") }

// Run carries out e, writing its heading at once and the timeline and
// verdict when it is over. The namespace and everything in it are gone
// when Run returns, even if the experiment failed or panicked.
func Run(ctx context.Context, e *Experiment, w io.Writer) (res Result) {
	start := time.Now()
	res.Name = e.Name
	writeHeading(w, e)
	tl := newTimeline(start)
	x := &Env{}
	func() {
		defer func() {
			if p := recover(); p != nil {
				res.Err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
			}
		}()
		ctx, cancel := context.WithTimeout(ctx, maxExperiment)
		defer cancel()
		if err := newEnv(ctx, e, tl, x); err != nil {
			res.Err = fmt.Errorf("setting up: %w", err)
			return
		}
		writeWorld(w, e, x)
		res.Err = e.Run(x)
		if res.Err == nil && ctx.Err() != nil {
			res.Err = ctx.Err()
		}
	}()
	tl.Freeze()
	func() {
		defer func() {
			if p := recover(); p != nil {
				res.Err = errors.Join(res.Err, fmt.Errorf("teardown panicked: %v", p))
			}
		}()
		if err := x.close(); err != nil {
			res.Err = errors.Join(res.Err, fmt.Errorf("teardown: %w", err))
		}
	}()
	res.Checks = x.Checks()
	res.Took = time.Since(start)
	fmt.Fprintln(w, "Timeline (seconds since the start):")
	if l := tl.Legend(); l != "" {
		fmt.Fprintln(w, l)
		fmt.Fprintln(w)
	}
	tl.Render(w)
	fmt.Fprintln(w)
	res.Match = writeVerdict(w, res.Checks, res.Err)
	fmt.Fprintln(w)
	return res
}

func writeHeading(w io.Writer, e *Experiment) {
	head := fmt.Sprintf("== %s [%s] ", e.Name, e.IDList())
	fmt.Fprintln(w, head+strings.Repeat("=", max(0, 78-len([]rune(head)))))
	fmt.Fprintln(w, e.Title)
	fmt.Fprintln(w)
	fmt.Fprintln(w, wrap(e.Explain, 78, "  "))
	fmt.Fprintln(w)
}

func writeWorld(w io.Writer, e *Experiment, x *Env) {
	o := x.opts
	fmt.Fprintf(w, "World: namespace %s; kernel %s on tun0, ustack %s.\n", x.ns.Name, tunPrefix, o.Addr)
	fmt.Fprintln(w, wrap(fmt.Sprintf("ustack's settings: fin_timeout %s, TIME-WAIT %s (both 60s in Linux, shortened here), syn_retries %d, syn_linear_timeouts %d.",
		o.FinTimeout, o.TimeWait, o.SynRetries, o.SynLinearTimeouts), 78, ""))
	if e.Impair != "" {
		fmt.Fprintf(w, "The link is impaired both ways (%s): times are when ustack sends or receives.\n", e.Impair)
	}
	if e.About >= 5*time.Second {
		fmt.Fprintf(w, "This one takes about %s of real time.\n", e.About.Round(time.Second))
	}
	fmt.Fprintln(w)
}
