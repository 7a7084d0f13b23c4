package netns

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"ustack/internal/tools"
)

func newNS(t *testing.T) *NS {
	t.Helper()
	if ok, why := Available(); !ok {
		t.Skip(why)
	}
	n, err := New("ustack-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

// threadNetns returns the inode of the calling thread's network namespace.
// The caller must have locked its OS thread.
func threadNetns(t *testing.T) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestNewAndClose(t *testing.T) {
	n := newNS(t)
	if !strings.HasPrefix(n.Name, "ustack-test-") || len(n.Name) != len("ustack-test-")+8 {
		t.Errorf("name %q, want ustack-test-<8 hex>", n.Name)
	}
	if n.path() == "" {
		t.Fatalf("no bind mount for %s", n.Name)
	}
	out, err := n.Run("ip", "-o", "link", "show", "lo")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "UP") {
		t.Errorf("lo is not up: %s", out)
	}
	t.Run("ping on lo", func(t *testing.T) {
		tools.Need(t, "ping")
		if out, err := n.Run("ping", "-c", "1", "-W", "2", "127.0.0.1"); err != nil {
			t.Errorf("ping on lo: %v\n%s", err, out)
		}
	})
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if n.path() != "" {
		t.Errorf("namespace %s still exists after Close", n.Name)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := n.Do(func() error { return nil }); err == nil {
		t.Error("Do on a deleted namespace succeeded")
	}
}

func TestNamesDiffer(t *testing.T) {
	a := newNS(t)
	b := newNS(t)
	if a.Name == b.Name {
		t.Fatalf("two namespaces named %s", a.Name)
	}
}

func TestBadPrefix(t *testing.T) {
	if _, err := New("a/b"); err == nil {
		t.Fatal("prefix with / accepted")
	}
}

func TestDoReturnsThread(t *testing.T) {
	n := newNS(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadNetns(t)

	var inside uint64
	var ifaces []net.Interface
	err := n.Do(func() error {
		inside = threadNetns(t)
		var err error
		ifaces, err = net.Interfaces()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside == before {
		t.Errorf("inside Do the thread is still in namespace %d", before)
	}
	if after := threadNetns(t); after != before {
		t.Errorf("after Do the thread is in namespace %d, want %d", after, before)
	}
	if len(ifaces) != 1 || ifaces[0].Name != "lo" {
		t.Errorf("interfaces inside the namespace: %v, want only lo", ifaces)
	}

	// The error of f is returned, and the thread still comes back.
	sentinel := errors.New("sentinel")
	if err := n.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do returned %v, want %v", err, sentinel)
	}
	if after := threadNetns(t); after != before {
		t.Errorf("after a failing f the thread is in namespace %d, want %d", after, before)
	}

	// A panic in f still switches back.
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic swallowed")
			}
		}()
		n.Do(func() error { panic("boom") })
	}()
	if after := threadNetns(t); after != before {
		t.Errorf("after a panic the thread is in namespace %d, want %d", after, before)
	}
}

// A socket opened inside Do stays in the namespace and works from another
// goroutine (so on another thread) after Do returns.
func TestDoFDStaysInNamespace(t *testing.T) {
	n := newNS(t)
	var ln net.Listener
	if err := n.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	tools.Need(t, "ss")
	out, err := n.Run("ss", "-Htln", "sport", "=", ":"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, out)
	}
	if !strings.Contains(out, strconv.Itoa(port)) {
		t.Errorf("listener on port %d not seen inside the namespace: %q", port, out)
	}
	// Not seen from the original namespace.
	outside, err := os.ReadFile("/proc/self/net/tcp")
	if err == nil && strings.Contains(strings.ToUpper(string(outside)), ":"+fmt.Sprintf("%04X", port)+" ") {
		// /proc/self/net follows the thread group leader's namespace, which
		// is the original one.
		t.Errorf("listener on port %d visible outside the namespace", port)
	}
}

func TestRunErrorIncludesOutput(t *testing.T) {
	n := newNS(t)
	_, err := n.Run("ip", "link", "show", "nosuchdev0")
	if err == nil {
		t.Fatal("no error for a missing device")
	}
	if !strings.Contains(err.Error(), "nosuchdev0") || !strings.Contains(strings.ToLower(err.Error()), "not exist") {
		t.Errorf("error lacks the output: %v", err)
	}
}

func TestCommand(t *testing.T) {
	n := newNS(t)
	out, err := n.Command("ip", "-o", "link").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if lines := strings.Count(strings.TrimSpace(string(out)), "\n") + 1; lines != 1 {
		t.Errorf("want only lo in a fresh namespace, got:\n%s", out)
	}
}
