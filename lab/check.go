package lab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Check is one expectation of an experiment: what the behaviour id says
// should happen, whether it did, and what was actually seen.
type Check struct {
	ID   string // behaviour id, e.g. "B32"
	Want string
	Got  string
	OK   bool
}

// formatCheck renders a check as verdict lines.
func formatCheck(c Check) string {
	mark := "✓"
	if !c.OK {
		mark = "✗"
	}
	s := fmt.Sprintf("  %s %-4s %s", mark, c.ID, strings.TrimLeft(wrap(c.Want, 96, "         "), " "))
	if c.Got != "" {
		s += "\n" + wrap("seen: "+c.Got, 96, "           ")
	}
	return s
}

// matched is the verdict over a list of checks: MATCH when there is at
// least one and every one held, and the experiment ran to its end.
func matched(checks []Check, err error) bool {
	if err != nil || len(checks) == 0 {
		return false
	}
	for _, c := range checks {
		if !c.OK {
			return false
		}
	}
	return true
}

// writeVerdict prints the checks and MATCH or MISMATCH.
func writeVerdict(w io.Writer, checks []Check, err error) bool {
	fmt.Fprintln(w, "Verdict:")
	for _, c := range checks {
		fmt.Fprintln(w, formatCheck(c))
	}
	if err != nil {
		fmt.Fprintf(w, "  ✗ the experiment did not run to its end: %v\n", err)
	}
	if len(checks) == 0 && err == nil {
		fmt.Fprintln(w, "  ✗ nothing was checked")
	}
	ok := matched(checks, err)
	if ok {
		fmt.Fprintln(w, "MATCH")
	} else {
		fmt.Fprintln(w, "MISMATCH")
	}
	return ok
}

// synSchedule is Linux's SYN retransmission schedule (B14) for
// tcp_syn_retries retries and tcp_syn_linear_timeouts linear, with the
// initial RTO of 1 s: the times of the SYN and its retransmissions, from
// the first, and the time connect() fails with ETIMEDOUT. The first linear
// retransmissions wait the initial RTO; then the RTO doubles, starting
// from the initial RTO (tcp_retransmit_timer); the attempt is given up
// when the timer fires after retries+linear retransmissions
// (tcp_write_timeout).
func synSchedule(retries, linear int) (syns []time.Duration, timeout time.Duration) {
	const rtoInit, rtoMax = time.Second, 120 * time.Second
	var t time.Duration
	for i := 0; i <= retries+linear; i++ {
		syns = append(syns, t)
		rto := rtoInit
		if i >= linear {
			for k := 0; k < i-linear && rto < rtoMax; k++ {
				rto *= 2
			}
			rto = min(rto, rtoMax)
		}
		t += rto
	}
	return syns, t
}

// errName names an error like strace would: "ECONNRESET", "EOF", "timeout".
func errName(err error) string {
	if err == nil {
		return "0"
	}
	if errors.Is(err, io.EOF) {
		return "0 (EOF)"
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		if n := unix.ErrnoName(en); n != "" {
			return n
		}
		return en.Error()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "timed out (the lab's deadline)"
	}
	return err.Error()
}

// isErrno reports whether err is the errno e.
func isErrno(err error, e syscall.Errno) bool { return errors.Is(err, e) }

// secs formats a duration as seconds with milliseconds: "1.003 s".
func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

// durations formats a list of times as "0, 1.00, 3.01 s".
func durations(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%.2f", d.Seconds()))
	}
	return strings.Join(parts, ", ") + " s"
}

// close reports whether got is within tol of want.
func near(got, want, tol time.Duration) bool {
	d := got - want
	return d >= -tol && d <= tol
}

// quote shortens and quotes application data for the timeline.
func quote(b []byte) string {
	const max = 40
	s := string(b)
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
