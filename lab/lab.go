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

	"ustack/internal/tools"
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
	// Tools are the programs it runs on the kernel's side (nc, curl, ss),
	// each with Env.Exec. When one is not installed the experiment does
	// not run, and says so rather than blaming the stack.
	Tools []string
	// Run drives the experiment and records its checks with x.Expect. An
	// error means it could not be carried out (a tool missing, a socket
	// that would not open); its checks so far still count.
	Run func(x *Env) error
	// IPv6 runs the experiment a second time over IPv6, as NAME-ipv6:
	// its Run must use Env.U and Env.K for the addresses.
	IPv6  bool
	over6 bool // this is the IPv6 run
}

// withIPv6 is the experiment list with each IPv6 experiment followed by
// its run over IPv6.
func withIPv6(list []*Experiment) []*Experiment {
	var out []*Experiment
	for _, e := range list {
		out = append(out, e)
		if e.IPv6 {
			v6 := *e
			v6.Name += "-ipv6"
			v6.Title += " (over IPv6)"
			v6.IPv6, v6.over6 = false, true
			out = append(out, &v6)
		}
	}
	return out
}

// Result is the outcome of one experiment.
type Result struct {
	Name   string
	Match  bool
	Checks []Check
	Err    error
	Took   time.Duration
	// Missing are the tools the experiment needs that are not installed:
	// it could not run, and Err is a *tools.NotInstalledError.
	Missing []string
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
	if m := tools.Missing(e.Tools...); len(m) > 0 {
		res.Missing = m
		res.Err = &tools.NotInstalledError{Tools: m}
		res.Took = time.Since(start)
		writeNotRun(w, res.Err)
		return res
	}
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
	if err := x.execErr(); err != nil {
		res.Err = errors.Join(err, res.Err)
	}
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
	if nie := (*tools.NotInstalledError)(nil); errors.As(res.Err, &nie) {
		// A tool went missing after the check: the checks say nothing.
		res.Missing, res.Err, res.Checks = nie.Tools, nie, nil
		writeNotRun(w, nie)
		return res
	}
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

// writeNotRun says that an experiment could not run for want of a tool:
// what is missing, and that the stack was not tested.
func writeNotRun(w io.Writer, err error) {
	fmt.Fprintln(w, wrap(fmt.Sprintf("NOT RUN: %v. This experiment runs it on the kernel's side, so it could not be carried out; nothing was checked, and this says nothing about the stack.", err), 78, ""))
	fmt.Fprintln(w)
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
	fmt.Fprintf(w, "World: namespace %s; kernel %s and %s on tun0, ustack %s and %s.\n", x.ns.Name, tunPrefix, tunPrefix6, o.Addr, o.Addr6)
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
