// Package netns owns throwaway network namespaces for tests, the demo and the lab.
//
// A namespace made by New is a named one (`ip netns add`), so ordinary tools
// can be run inside it with Command/Run (`ip netns exec`), and Go code can run
// inside it with Do, which moves one locked OS thread into the namespace for
// the duration of a function. Nothing here touches the namespace the process
// started in.
package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// NS is a named network namespace created by New.
type NS struct {
	Name string

	mu     sync.Mutex
	closed bool
}

// runDirs are where iproute2 keeps the bind mounts of named namespaces.
var runDirs = []string{"/run/netns", "/var/run/netns"}

// New creates a namespace named prefix-<random hex> and brings its lo up.
// It needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the ip command; without
// them it returns an error that says so.
func New(prefix string) (*NS, error) {
	if prefix == "" {
		prefix = "ustack"
	}
	if strings.ContainsAny(prefix, "/ \t\n\x00") || prefix == "." || prefix == ".." {
		return nil, fmt.Errorf("netns: bad namespace prefix %q", prefix)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("netns: creating a network namespace needs root (running as uid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("netns: creating a network namespace needs the ip command (iproute2): %w", err)
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("netns: random name: %w", err)
	}
	name := prefix + "-" + hex.EncodeToString(rnd[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("netns: ip netns add %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	n := &NS{Name: name}
	if _, err := n.Run("ip", "link", "set", "lo", "up"); err != nil {
		n.Close()
		return nil, fmt.Errorf("netns: bringing lo up in %s: %w", name, err)
	}
	return n, nil
}

// path returns the bind mount of the namespace, or "" when there is none.
func (n *NS) path() string {
	for _, d := range runDirs {
		p := d + "/" + n.Name
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Close deletes the namespace (ip netns del). It is idempotent: closing a
// namespace that is already gone returns nil. Devices in the namespace go
// with it once nothing holds it (a TUN file descriptor opened inside keeps
// the namespace alive until it is closed).
func (n *NS) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	if n.path() == "" {
		n.closed = true
		return nil
	}
	out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput()
	if err != nil && n.path() != "" {
		return fmt.Errorf("netns: ip netns del %s: %w: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	n.closed = true
	return nil
}

// Do runs f on a locked OS thread that has entered the namespace, then
// switches the thread back to the namespace it was in. File descriptors
// opened inside f (a TUN device, a socket) stay bound to the namespace and
// may be used from any goroutine afterwards. f must do its namespace-bound
// work on its own goroutine: goroutines it starts run on other threads, in
// the original namespace. If f panics, the thread is switched back before
// the panic continues. If switching back fails, the thread stays locked, so
// the runtime terminates it instead of reusing it.
func (n *NS) Do(f func() error) (err error) {
	p := n.path()
	if p == "" {
		return fmt.Errorf("netns: namespace %s does not exist", n.Name)
	}
	target, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns: open %s: %w", p, err)
	}
	defer unix.Close(target)

	runtime.LockOSThread()
	// Opened after locking: this is the namespace of the thread we will move.
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: open /proc/thread-self/ns/net: %w", err)
	}
	defer unix.Close(orig)

	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: entering %s: %w", n.Name, err)
	}
	defer func() {
		if berr := unix.Setns(orig, unix.CLONE_NEWNET); berr != nil {
			// Leave the thread locked: it is in the wrong namespace and the
			// runtime kills a thread whose goroutine exits while locked.
			err = errors.Join(err, fmt.Errorf("netns: returning from %s to the original namespace (thread abandoned): %w", n.Name, berr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return f()
}

// Command returns an exec.Cmd that runs name with args inside the namespace
// (`ip netns exec NAME name args...`).
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs name with args inside the namespace and returns its combined
// output. On failure the error includes the command and its output.
func (n *NS) Run(name string, args ...string) (string, error) {
	out, err := n.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("netns %s: %s %s: %w: %s", n.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

var avail struct {
	once   sync.Once
	ok     bool
	reason string
}

// Available reports whether namespaces can be made here (root, the ip
// command, and the kernel letting us create one), with the reason if not.
// Tests call t.Skip with the reason. The answer is computed once, by making
// and deleting a namespace.
func Available() (bool, string) {
	avail.once.Do(func() {
		if os.Geteuid() != 0 {
			avail.reason = fmt.Sprintf("network namespaces need root (running as uid %d)", os.Geteuid())
			return
		}
		if _, err := exec.LookPath("ip"); err != nil {
			avail.reason = "network namespaces need the ip command (iproute2), not found in PATH"
			return
		}
		n, err := New("ustack-probe")
		if err != nil {
			avail.reason = "cannot create a network namespace: " + err.Error()
			return
		}
		if err := n.Do(func() error { return nil }); err != nil {
			n.Close()
			avail.reason = "cannot enter a network namespace: " + err.Error()
			return
		}
		if err := n.Close(); err != nil {
			avail.reason = "cannot delete a network namespace: " + err.Error()
			return
		}
		avail.ok = true
	})
	return avail.ok, avail.reason
}
