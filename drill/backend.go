package drill

import (
	"fmt"
	"syscall"
	"time"
)

// Backend is one stack under test. The interpreter drives it from a single
// goroutine: it injects packets, takes the packets the stack sends, makes
// system calls, and lets the backend's time pass with Wait.
//
// Time is the backend's own: virtual for the userspace stacks (Wait runs
// their timers and returns at once), real for Linux (Wait sleeps). Times are
// durations since Start.
type Backend interface {
	// Name is the stack's name on the command line: ustack, gvisor, linux.
	Name() string
	// Start brings up a fresh stack configured from p, with c's addresses
	// and MTU. An *Unsupported error means the profile asks for something
	// this stack cannot do.
	Start(p *Profile, c *Config) error
	// Close tears the stack down (and everything it created).
	Close() error
	// Virtual reports whether the backend's clock is virtual, which makes
	// timing exact.
	Virtual() bool
	// Now is the time since Start.
	Now() time.Duration
	// Wait lets time pass until until, returning earlier once the stack has
	// sent a new packet or the blocked call (see Do) has finished.
	Wait(until time.Duration)
	// Inject delivers one IP packet to the stack as if the peer sent it.
	Inject(pkt []byte) error
	// Next takes the oldest packet the stack has sent and not yet taken.
	Next() (Captured, bool)
	// Do makes one system call. When the call blocks (a blocking socket
	// with nothing to do yet), Do returns blocked and the call goes on;
	// Finished reports its result later. At most one call is blocked at a
	// time. An *Unsupported error means this stack cannot make the call.
	Do(op *Op) (res Result, blocked bool, err error)
	// Finished returns the result of the blocked call once it has returned.
	Finished() (Result, bool)
	// Sysctl applies a sysctl during the run. *Unsupported when the stack
	// cannot.
	Sysctl(name, value string) error
}

// Captured is one packet the stack sent, with the time it was sent.
type Captured struct {
	Data []byte
	At   time.Duration
}

// popCaptured takes the oldest packet of q, for a Backend's Next.
func popCaptured(q *[]Captured) (Captured, bool) {
	if len(*q) == 0 {
		return Captured{}, false
	}
	c := (*q)[0]
	*q = (*q)[1:]
	return c, true
}

// Op is a decoded system call. Socket handles are the backend's own (the
// interpreter maps the script's fd numbers to them).
type Op struct {
	Name string
	FD   int // the live handle the call is on (unused by socket and poll)

	Nonblock bool // socket: SOCK_NONBLOCK
	Dgram    bool // socket: SOCK_DGRAM (UDP)
	Backlog  int  // listen
	Count    int  // read, write, send, recv, sendto, recvfrom: bytes
	Flags    int  // send, recv, sendto, recvfrom: MSG_* flags
	Level    int  // setsockopt, getsockopt
	OptName  int
	IntVal   int // setsockopt: the value; fcntl F_SETFL: the flags
	// Linger is set for setsockopt(SO_LINGER): onoff and linger seconds.
	Linger *[2]int
	How    int // shutdown
	Cmd    int // fcntl command, ioctl request
	// Poll: the fds (live handles) with their events, and the timeout in
	// milliseconds (-1: forever).
	Poll    []PollFD
	Timeout int
}

// PollFD is one entry of a poll() call.
type PollFD struct {
	FD     int
	Events int16
}

// Result is what a call returned.
type Result struct {
	Ret   int64
	Errno syscall.Errno
	// Out is the value written back by getsockopt and ioctl.
	Out int64
	// Linger is getsockopt(SO_LINGER)'s struct linger: l_onoff and
	// l_linger. Out holds l_onoff, the int a 4-byte buffer receives.
	Linger *[2]int
	// Revents are poll()'s revents, one per PollFD.
	Revents []int16
	// Handle is the live handle socket() and accept() returned.
	Handle int
	// At is when the call returned (for a blocked call).
	At time.Duration
}

func (r Result) String() string {
	if r.Ret < 0 && r.Errno != 0 {
		return fmt.Sprintf("%d %s (%v)", r.Ret, errnoName(r.Errno), r.Errno)
	}
	return fmt.Sprint(r.Ret)
}

// Unsupported is a feature a backend cannot run; the script is skipped on
// that backend with the feature named.
type Unsupported struct{ Feature string }

func (u *Unsupported) Error() string { return "unsupported feature: " + u.Feature }

func unsupported(format string, args ...any) *Unsupported {
	return &Unsupported{Feature: fmt.Sprintf(format, args...)}
}

// errnoResult is the -1/errno result of a failed call.
func errnoResult(e syscall.Errno) Result { return Result{Ret: -1, Errno: e} }
