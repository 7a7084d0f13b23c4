package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"
)

// Outcome of one script on one stack.
type Outcome string

const (
	Pass Outcome = "PASS"
	Fail Outcome = "FAIL"
	Skip Outcome = "SKIP"
	// Diverged is a FAIL on a stack the script declares a divergence for
	// (`// divergence: STACK: reason`): expected, explained, not a failure.
	Diverged Outcome = "DIVERGES"
)

// Report is the result of one script on one stack.
type Report struct {
	Script  string
	Stack   string
	Outcome Outcome
	Reason  string // why it failed or was skipped
	Detail  string // expected vs actual, for a failure
	// Divergence is the script's declared divergence for this stack, if any.
	Divergence string
	Elapsed    time.Duration
	// Timing is set for a failure in timing only (see Failure.Timing).
	Timing bool
	// Notes are settings the stack could not take (a sysctl a network
	// namespace refuses): not a failure, but printed with the result.
	Notes []string
}

// Line is the report's one-line form.
func (r Report) Line() string {
	name := filepath.Base(r.Script)
	switch r.Outcome {
	case Pass:
		if r.Divergence != "" {
			return fmt.Sprintf("%s [%s]: PASS (a divergence is declared but did not occur: %s)", name, r.Stack, r.Divergence)
		}
		return fmt.Sprintf("%s [%s]: PASS", name, r.Stack)
	case Diverged:
		return fmt.Sprintf("%s [%s]: DIVERGES (documented: %s): %s", name, r.Stack, r.Divergence, r.Reason)
	}
	return fmt.Sprintf("%s [%s]: %s: %s", name, r.Stack, r.Outcome, r.Reason)
}

// Options control a run.
type Options struct {
	// Timeout bounds one script on one stack in wall-clock time; a stack
	// that hangs is reported as a failure. Zero means DefaultTimeout.
	Timeout time.Duration
	// Verbose, when set, receives a trace of every event.
	Verbose io.Writer
	// Context, when set, stops a run when it is cancelled (an interrupted
	// `ustack drill`): the backend is closed all the same, so the Linux
	// backend's namespace is deleted.
	Context context.Context
	// Args are packetdrill's command-line options (--ip_version=ipv6,
	// --mtu=1520, ...): they override the script's own option lines.
	Args []Option
}

// DefaultTimeout is the per-script wall-clock limit.
const DefaultTimeout = 60 * time.Second

// Backends maps stack names to constructors.
var Backends = map[string]func() Backend{
	"ustack": NewUstack,
	"gvisor": NewGVisor,
	"linux":  NewLinux,
}

// StackNames is the default order of stacks.
var StackNames = []string{"ustack", "gvisor", "linux"}

// RunFile parses path and runs it on the named stack.
func RunFile(path, stackName string, opts Options) Report {
	s, err := ParseFile(path)
	if err != nil {
		return Report{Script: path, Stack: stackName, Outcome: Fail, Reason: err.Error()}
	}
	return RunScript(s, stackName, opts)
}

// RunScript runs a parsed script on the named stack.
func RunScript(s *Script, stackName string, opts Options) Report {
	rep := Report{Script: s.Path, Stack: stackName, Divergence: s.Divergences[stackName]}
	start := time.Now()
	defer func() { rep.Elapsed = time.Since(start) }()
	newBackend := Backends[stackName]
	if newBackend == nil {
		rep.Outcome, rep.Reason = Fail, fmt.Sprintf("unknown stack %q", stackName)
		return rep
	}
	if len(s.Unsupported) > 0 {
		rep.Outcome, rep.Reason = Skip, "unsupported feature "+s.Unsupported[0].String()
		return rep
	}
	cfg, err := ConfigFrom(s.Options, opts.Args)
	var u *Unsupported
	switch {
	case errors.As(err, &u):
		rep.Outcome, rep.Reason = Skip, "unsupported feature "+u.Feature
		return rep
	case err != nil:
		rep.Outcome, rep.Reason = Fail, err.Error()
		return rep
	}
	profile, events, err := setupProfile(s)
	if err != nil {
		rep.Outcome, rep.Reason = Skip, err.Error()
		return rep
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	parent := opts.Context
	if parent == nil {
		parent = context.Background()
	}
	b := newBackend()
	err = runOn(parent, s, events, b, profile, cfg, timeout, opts.Verbose)
	if n, ok := b.(interface{ notes() []string }); ok {
		rep.Notes = n.notes()
	}
	var f *Failure
	switch {
	case err == nil:
		rep.Outcome = Pass
		return rep
	case errors.As(err, &u):
		rep.Outcome, rep.Reason = Skip, u.Error()
		return rep
	case errors.As(err, &f):
		rep.Outcome, rep.Reason, rep.Detail, rep.Timing = Fail, f.Error(), f.Detail, f.Timing
	default:
		rep.Outcome, rep.Reason = Fail, err.Error()
	}
	if rep.Divergence != "" {
		if at := s.DivergenceLine[stackName]; f != nil && f.Pos.Line == at {
			rep.Outcome = Diverged
		} else {
			rep.Reason += fmt.Sprintf(" (the documented divergence is at line %d, not here)", at)
		}
	}
	return rep
}

// setupProfile builds the profile: the Linux defaults, the init command,
// and the sysctl commands that open the script before its first syscall or
// packet (those configure the stack before it starts, which is also the
// only time ustack can take them). It returns the events left to run.
func setupProfile(s *Script) (*Profile, []*Event, error) {
	p := NewProfile()
	apply := func(sh *Shell) error {
		act, err := parseShellCommand(sh.Command)
		if err != nil {
			return fmt.Errorf("unsupported feature %v (line %d)", err, sh.Pos.Line)
		}
		for _, kv := range act.sysctls {
			p.Set(kv[0], kv[1])
		}
		return nil
	}
	if s.Init != nil {
		if err := apply(s.Init); err != nil {
			return nil, nil, err
		}
	}
	events := s.Events
	for len(events) > 0 && events[0].Kind == EventShell && events[0].Shell.Command != "" && events[0].Time.Start == 0 {
		if err := apply(events[0].Shell); err != nil {
			return nil, nil, err
		}
		events = events[1:]
	}
	return p, events, nil
}

// runOn runs events on b within timeout. The interpreter runs on its own
// goroutine so that a stack that hangs (a Linux call that never returns)
// is cut off; closing the backend then releases it.
func runOn(parent context.Context, s *Script, events []*Event, b Backend, p *Profile, cfg *Config, timeout time.Duration, verbose io.Writer) (err error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	if err := b.Start(p, cfg); err != nil {
		b.Close()
		return err
	}
	sub := *s
	sub.Events = events
	in := newInterp(ctx, &sub, b, p, cfg, verbose)
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("internal error: %v", r)
			}
		}()
		done <- in.run()
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		// Give the interpreter a moment to notice the deadline itself.
		select {
		case err = <-done:
		case <-time.After(2 * time.Second):
			err = errTimeout
		}
	}
	if errors.Is(err, errTimeout) {
		err = &Failure{Msg: fmt.Sprintf("timed out after %v (the stack hung or the script waits forever)", timeout)}
		if parent.Err() != nil {
			err = &Failure{Msg: "interrupted"}
		}
	}
	if cerr := b.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("closing %s: %w", b.Name(), cerr)
	}
	return err
}

// Summary counts reports the way `ustack drill` prints them. Expected
// divergences count as skipped: they are known, explained non-passes.
type Summary struct{ Passed, Failed, Skipped, Diverged int }

func Summarize(reps []Report) Summary {
	var s Summary
	for _, r := range reps {
		switch r.Outcome {
		case Pass:
			s.Passed++
		case Fail:
			s.Failed++
		case Skip:
			s.Skipped++
		case Diverged:
			s.Diverged++
			s.Skipped++
		}
	}
	return s
}

func (s Summary) String() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped", s.Passed, s.Failed, s.Skipped)
}

// WriteReport prints one line per report, the failure details, and the
// summary line.
func WriteReport(w io.Writer, reps []Report) Summary {
	for _, r := range reps {
		fmt.Fprintln(w, r.Line())
		if (r.Outcome == Fail || r.Outcome == Diverged) && r.Detail != "" {
			fmt.Fprintln(w, strings.TrimRight(r.Detail, "\n"))
		}
		for _, n := range r.Notes {
			fmt.Fprintln(w, "    note:", n)
		}
	}
	s := Summarize(reps)
	if s.Diverged > 0 {
		fmt.Fprintf(w, "(%d documented divergences, counted as skipped)\n", s.Diverged)
	}
	fmt.Fprintln(w, s)
	return s
}
