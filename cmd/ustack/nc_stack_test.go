package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"ustack/stack"
	"ustack/timers"
)

// nc -N to closer ends with "connection reset by peer" however the RST
// races nc's end of input: a shutdown that fails with ENOTCONN because
// the RST got there first must not be what nc reports (B32).
func TestNCServeResetRacesEOF(t *testing.T) {
	st := startMemStack(t)
	ln, err := st.Listen("tcp", ":8083")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go closerConn(c)
		}
	}()
	path := ncCtl(t, ncOp(st))
	const want = "ustack nc: connection reset by peer\n"
	for i := 0; i < 200; i++ {
		var stdout, stderr bytes.Buffer
		done := make(chan int, 1)
		go func() {
			done <- runNC([]string{"--ctl", path, "-N", "10.0.0.2", "8083"},
				strings.NewReader("data the closer never reads\n"), &stdout, &stderr)
		}()
		select {
		case code := <-done:
			if code != 1 || stderr.String() != want || stdout.Len() != 0 {
				t.Fatalf("run %d: exit %d, stdout %q, stderr %q; want exit 1 and %q", i, code, stdout.String(), stderr.String(), want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d: nc still running after 10s", i)
		}
	}
}

// nc -zv against the stack itself: the open port connects and is closed
// at once with nothing sent (the listener reads EOF), the closed one is
// refused.
func TestNCScanStack(t *testing.T) {
	st := startMemStack(t)
	ln, err := st.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Errorf("the scanned connection: %v", err)
		}
		got <- len(b)
		c.Close()
	}()
	path := ncCtl(t, ncOp(st))
	var stdout, stderr bytes.Buffer
	code := runNC([]string{"--ctl", path, "-zv", "-w", "2", "10.0.0.2", "7-8"}, strings.NewReader("not sent"), &stdout, &stderr)
	if code != 0 || !strings.Contains(stderr.String(), "Connection to 10.0.0.2 7 port [tcp/") ||
		!strings.Contains(stderr.String(), "ustack nc: connect to 10.0.0.2 port 8 (tcp) failed: connection refused\n") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
	select {
	case n := <-got:
		if n != 0 {
			t.Errorf("the listener read %d bytes from a -z connection, want EOF at once", n)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the listener got no connection")
	}
}

// startMemStack is a started stack on an in-memory link, on the wall
// clock, closed when the test ends.
func startMemStack(t *testing.T) *stack.Stack {
	t.Helper()
	o := stack.DefaultOptions()
	o.Clock = timers.Real{}
	st, err := stack.New(stack.NewMemLink(1500), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	st.Start()
	return st
}
