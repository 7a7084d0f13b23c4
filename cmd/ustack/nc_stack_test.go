package main

import (
	"bytes"
	"io"
	"log"
	"os"
	"path/filepath"
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
	o := stack.DefaultOptions()
	o.Clock = timers.Real{}
	st, err := stack.New(stack.NewMemLink(1500), o)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.Start()
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
	dir, err := os.MkdirTemp("", "nc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "nc.sock")
	ops := ctlOps(&fakeView{})
	ops["nc"] = ncOp(st)
	srv, err := listenCtl(path, ops, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
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
