package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Each command line parses as netcat-openbsd would take it, into the
// options or a usage error.
func TestParseNCArgs(t *testing.T) {
	// conn is the options of a plain connect to 10.0.0.2 port 7, changed
	// by f.
	conn := func(f func(o *ncOptions)) *ncOptions {
		o := &ncOptions{Quit: -1, Host: "10.0.0.2", Ports: []int{7}}
		if f != nil {
			f(o)
		}
		return o
	}
	lis := func(host string, port int, f func(o *ncOptions)) *ncOptions {
		o := &ncOptions{Quit: -1, Listen: true, Host: host, Ports: []int{port}}
		if f != nil {
			f(o)
		}
		return o
	}
	for _, tc := range []struct {
		args string
		want *ncOptions
		err  string // a part of the usage error, if any
	}{
		{"10.0.0.2 7", conn(nil), ""},
		{"-w 3 10.0.0.2 7", conn(func(o *ncOptions) { o.Wait = 3 * time.Second }), ""},
		{"-w3 10.0.0.2 7", conn(func(o *ncOptions) { o.Wait = 3 * time.Second }), ""},
		{"-w 0.5 10.0.0.2 7", conn(func(o *ncOptions) { o.Wait = 500 * time.Millisecond }), ""},
		{"-w 2.5s 10.0.0.2 7", conn(func(o *ncOptions) { o.Wait = 2500 * time.Millisecond }), ""},
		{"-w 300ms 10.0.0.2 7", conn(func(o *ncOptions) { o.Wait = 300 * time.Millisecond }), ""},
		{"-w x 10.0.0.2 7", nil, "timeout invalid: x"},
		{"-w -1 10.0.0.2 7", nil, "timeout invalid: -1"},
		{"-w NaN 10.0.0.2 7", nil, "timeout invalid: NaN"},
		{"10.0.0.2 7 -w", nil, "option requires an argument -- 'w'"},
		// glibc getopt permutes: options after the operands count.
		{"10.0.0.2 7 -v -N", conn(func(o *ncOptions) { o.Verbose, o.Shutdown = true, true }), ""},
		{"-vN 10.0.0.2 7", conn(func(o *ncOptions) { o.Verbose, o.Shutdown = true, true }), ""},
		{"-vzw 3 10.0.0.2 7", conn(func(o *ncOptions) { o.Verbose, o.Scan, o.Wait = true, true, 3*time.Second }), ""},
		{"-- 10.0.0.2 7", conn(nil), ""},
		{"-- 10.0.0.2 -v", nil, "port -v"},
		{"-zv 10.0.0.2 20-22 7 http", conn(func(o *ncOptions) {
			o.Verbose, o.Scan, o.Ports = true, true, []int{20, 21, 22, 7, 80}
		}), ""},
		{"-z 10.0.0.2 9-8", conn(func(o *ncOptions) { o.Scan, o.Ports = true, []int{8, 9} }), ""},
		{"10.0.0.2 7 8", nil, "several ports only with -z"},
		{"10.0.0.2 echo", conn(nil), ""},
		{"10.0.0.2 0", nil, "port 0: want 1..65535"},
		{"10.0.0.2 70000", nil, "port 70000"},
		{"10.0.0.2 1-70000", nil, "want a range"},
		{"10.0.0.2 no-such-service", nil, "port no-such-service"},
		{"10.0.0.2", nil, "missing port number"},
		{"", nil, "missing destination"},
		{"example.com 80", nil, "not a numeric IP address"},
		// -q SECS implies -N; negative is nc's default, forever.
		{"-q 1 10.0.0.2 7", conn(func(o *ncOptions) { o.Quit, o.Shutdown = time.Second, true }), ""},
		{"-q0 10.0.0.2 7", conn(func(o *ncOptions) { o.Quit, o.Shutdown = 0, true }), ""},
		{"-q -1 10.0.0.2 7", conn(nil), ""},
		{"-q soon 10.0.0.2 7", nil, "quit timer invalid: soon"},
		{"-p 5555 -s 10.0.0.1 10.0.0.2 7", conn(func(o *ncOptions) { o.LocalPort, o.LocalAddr = 5555, "10.0.0.1" }), ""},
		{"-p5555 10.0.0.2 7", conn(func(o *ncOptions) { o.LocalPort = 5555 }), ""},
		{"-p x 10.0.0.2 7", nil, "-p x"},
		{"-s nowhere 10.0.0.2 7", nil, "-s nowhere: not a numeric IP address"},
		{"-4 -n -d 10.0.0.2 7", conn(func(o *ncOptions) { o.NoStdin = true }), ""},
		{"-6 10.0.0.2 7", conn(func(o *ncOptions) { o.IPv6 = true }), ""},
		{"-u 10.0.0.2 7", conn(func(o *ncOptions) { o.UDP = true }), ""},
		{"-4 -6 10.0.0.2 7", nil, "-4 and -6"},
		{"--ctl /x.sock 10.0.0.2 7", conn(func(o *ncOptions) { o.Ctl = "/x.sock" }), ""},
		{"--ctl=/x.sock 10.0.0.2 7", conn(func(o *ncOptions) { o.Ctl = "/x.sock" }), ""},
		{"10.0.0.2 7 --ctl /x.sock", conn(func(o *ncOptions) { o.Ctl = "/x.sock" }), ""},
		{"-ctl /x.sock 10.0.0.2 7", conn(func(o *ncOptions) { o.Ctl = "/x.sock" }), ""},
		{"10.0.0.2 7 --ctl", nil, "'--ctl' requires an argument"},
		{"--bogus 10.0.0.2 7", nil, "unrecognized option '--bogus'"},
		{"-Y 10.0.0.2 7", nil, "invalid option -- 'Y'"},
		{"-vY 10.0.0.2 7", nil, "invalid option -- 'Y'"},
		{"-k -l 9000", nil, "-k is netcat-openbsd's, not supported"},
		{"-x proxy:1080 10.0.0.2 7", nil, "-x is netcat-openbsd's, not supported"},
		// Listening: [ADDR] PORT, or -p PORT (with -s ADDR); -w is ignored.
		{"-l 9000", lis("", 9000, nil), ""},
		{"-l 10.0.0.2 9000", lis("10.0.0.2", 9000, nil), ""},
		{"-l -p 9000", lis("", 9000, nil), ""},
		{"-lp 9000", lis("", 9000, nil), ""},
		{"-lvp9000", lis("", 9000, func(o *ncOptions) { o.Verbose = true }), ""},
		{"-l -s 10.0.0.2 -p 9000", lis("10.0.0.2", 9000, nil), ""},
		{"-l -s 10.0.0.2 9000", lis("10.0.0.2", 9000, nil), ""},
		{"9000 -l", lis("", 9000, nil), ""},
		{"-l -w 5 9000", lis("", 9000, func(o *ncOptions) { o.Wait = 5 * time.Second }), ""},
		{"-l", nil, "missing port number"},
		{"-l -p 9000 9001", nil, "either with -p or as an operand"},
		{"-l -s 10.0.0.2 10.0.0.2 9000", nil, "either with -s or as an operand"},
		{"-l 10.0.0.2 9000 1", nil, "unexpected operand"},
		{"-l 9000-9001", nil, "port 9000-9001"},
		{"-lz 9000", nil, "cannot use -z and -l"},
		{"-h", nil, "help"},
		{"-vh 10.0.0.2 7", nil, "help"},
		{"--help", nil, "help"},
	} {
		args := strings.Fields(tc.args)
		got, err := parseNCArgs(args)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %+v, %v; want an error with %q", tc.args, got, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case !reflect.DeepEqual(got, tc.want):
			t.Errorf("%q:\n got %+v\nwant %+v", tc.args, got, tc.want)
		}
	}
}

// A bad command line prints the problem and the usage, and exits 2,
// before any daemon is asked; -h prints the help and exits 0.
func TestNCUsageExit(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stderr []string
	}{
		{[]string{"-Y", "10.0.0.2", "7"}, 2, []string{"ustack nc: invalid option -- 'Y'\n", "usage: ustack nc"}},
		{[]string{"-w", "x", "10.0.0.2", "7"}, 2, []string{"timeout invalid: x", "usage: ustack nc"}},
		{[]string{"10.0.0.2"}, 2, []string{"missing port number", "usage: ustack nc"}},
		{[]string{"-6", "10.0.0.2", "7"}, 2, []string{"-6: 10.0.0.2 is not an IPv6 address"}},
		{[]string{"-h"}, 0, []string{"usage: ustack nc", "-w SECS"}},
	} {
		var stdout, stderr bytes.Buffer
		code := runNC(append([]string{"--ctl", "/nonexistent/x.sock"}, tc.args...), strings.NewReader(""), &stdout, &stderr)
		ok := code == tc.code && stdout.Len() == 0
		for _, s := range tc.stderr {
			ok = ok && strings.Contains(stderr.String(), s)
		}
		if !ok {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, stdout.String(), stderr.String(), tc.code, tc.stderr)
		}
	}
}

// parseSecs takes nc's seconds and Go's durations.
func TestParseSecs(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"3": 3 * time.Second, "0": 0, "0.25": 250 * time.Millisecond, "-1": -time.Second,
		"2.5s": 2500 * time.Millisecond, "1m": time.Minute, "300ms": 300 * time.Millisecond,
	} {
		if got, err := parseSecs(in); err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "3x", "Inf", "1e300"} {
		if got, err := parseSecs(in); err == nil {
			t.Errorf("%q: %v, want an error", in, got)
		}
	}
}

// fakeNCRequestDaemon is fakeNCDaemon whose script also gets the request,
// each of which it sends on the channel too.
func fakeNCRequestDaemon(t *testing.T, script func(c net.Conn, r *bufio.Reader, req ncRequest)) (string, <-chan ncRequest) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "nc.sock")
	reqs := make(chan ncRequest, 64)
	ops := ctlOps(&fakeView{})
	ops["nc"] = func(s *ctlSession) (any, error) {
		var req ncRequest
		if err := json.Unmarshal(s.Raw, &req); err != nil {
			return nil, err
		}
		reqs <- req
		c, r := s.Hijack()
		go func() {
			defer c.Close()
			script(c, r, req)
		}()
		return nil, nil
	}
	srv, err := listenCtl(path, ops, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return path, reqs
}

// -v says that the connection is up, as nc -v does; -w goes to the daemon
// as the connect timeout.
func TestNCVerboseConnect(t *testing.T) {
	path, reqs := fakeNCRequestDaemon(t, func(c net.Conn, r *bufio.Reader, req ncRequest) {
		writeFrame(c, frameUp, []byte("10.0.0.1:40000 10.0.0.2:7"))
		io.Copy(io.Discard, r)
		writeFrame(c, frameFIN, nil)
	})
	var stdout, stderr bytes.Buffer
	code := runNC([]string{"--ctl", path, "10.0.0.2", "7", "-v", "-N", "-w", "3"}, strings.NewReader("x"), &stdout, &stderr)
	want := fmt.Sprintf("Connection to 10.0.0.2 7 port [tcp/%s] succeeded!\n", tcpServiceName(7))
	if code != 0 || stderr.String() != want {
		t.Errorf("exit %d, stderr %q; want 0 and %q", code, stderr.String(), want)
	}
	if req := <-reqs; req.TimeoutMS != 3000 || req.Remote != "10.0.0.2:7" || req.Scan || req.Listen {
		t.Errorf("request %+v", req)
	}
}

// -l -v says where it listens and whom it got, as nc -lv does; -w does not
// bound the wait for a connection (nc ignores it with -l).
func TestNCVerboseListen(t *testing.T) {
	path, reqs := fakeNCRequestDaemon(t, func(c net.Conn, r *bufio.Reader, req ncRequest) {
		writeFrame(c, frameListen, []byte("0.0.0.0:9000"))
		writeFrame(c, frameUp, []byte("10.0.0.2:9000 10.0.0.1:40000"))
		writeFrame(c, frameData, []byte("hi\n"))
		writeFrame(c, frameFIN, nil)
		io.Copy(io.Discard, r)
	})
	r := startNC("--ctl", path, "-lvp", "9000", "-w", "1")
	if code := r.exit(t, 5*time.Second); code != 0 || r.stdout.String() != "hi\n" ||
		r.stderr.String() != "Listening on 0.0.0.0 9000\nConnection received on 10.0.0.1 40000\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, r.stdout.String(), r.stderr.String())
	}
	r.stdin.Close()
	if req := <-reqs; !req.Listen || req.Local != "0.0.0.0:9000" || req.TimeoutMS != 0 {
		t.Errorf("request %+v", req)
	}
}

// -z connects to each port in turn, sends nothing, and exits 0 when one
// was open; the refused ones are reported as nc reports them.
func TestNCScan(t *testing.T) {
	path, reqs := fakeNCRequestDaemon(t, func(c net.Conn, r *bufio.Reader, req ncRequest) {
		if strings.HasSuffix(req.Remote, ":8") {
			writeFrame(c, frameErr, []byte("connection refused"))
			return
		}
		writeFrame(c, frameUp, []byte("10.0.0.1:40000 "+req.Remote))
		if n, _ := io.Copy(io.Discard, r); n != 0 {
			t.Errorf("-z sent %d bytes", n)
		}
	})
	var stdout, stderr bytes.Buffer
	code := runNC([]string{"--ctl", path, "-zv", "10.0.0.2", "7-8"}, strings.NewReader("not sent"), &stdout, &stderr)
	want := fmt.Sprintf("Connection to 10.0.0.2 7 port [tcp/%s] succeeded!\n", tcpServiceName(7)) +
		"ustack nc: connect to 10.0.0.2 port 8 (tcp) failed: connection refused\n"
	if code != 0 || stderr.String() != want || stdout.Len() != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0 and %q", code, stdout.String(), stderr.String(), want)
	}
	for i := 0; i < 2; i++ {
		if req := <-reqs; !req.Scan {
			t.Errorf("request %+v: not a scan", req)
		}
	}
	stderr.Reset()
	if code := runNC([]string{"--ctl", path, "-z", "10.0.0.2", "8"}, strings.NewReader(""), &stdout, &stderr); code != 1 {
		t.Errorf("-z on a refused port: exit %d, stderr %q; want 1", code, stderr.String())
	}
}

// -q SECS quits SECS after the end of input (and shuts down writing, as
// -N), even though the peer never closes; without it nc waits.
func TestNCQuitAfterEOF(t *testing.T) {
	eof := make(chan struct{}, 4)
	path, _ := fakeNCRequestDaemon(t, func(c net.Conn, r *bufio.Reader, req ncRequest) {
		writeFrame(c, frameUp, []byte("10.0.0.1:40000 10.0.0.2:8082"))
		io.Copy(io.Discard, r) // until the client's shutdown
		eof <- struct{}{}
		time.Sleep(10 * time.Second) // the peer never closes
	})
	r := startNC("--ctl", path, "-q", "0.2", "10.0.0.2", "8082")
	r.stdin.Write([]byte("hello"))
	r.running(t, 300*time.Millisecond, "before the end of its input")
	start := time.Now()
	r.stdin.Close()
	if code := r.exit(t, 5*time.Second); code != 0 || r.stderr.String() != "" {
		t.Errorf("exit %d, stderr %q", code, r.stderr.String())
	}
	if took := time.Since(start); took < 150*time.Millisecond || took > 3*time.Second {
		t.Errorf("-q 0.2 quit %v after the end of input", took)
	}
	select {
	case <-eof:
	case <-time.After(5 * time.Second):
		t.Errorf("-q did not shut down writing (implies -N)")
	}
	r = startNC("--ctl", path, "10.0.0.2", "8082")
	r.stdin.Close()
	r.running(t, 500*time.Millisecond, "without -q, at the end of its input")
}

// -d never reads standard input: nc ends at the peer's FIN.
func TestNCNoStdin(t *testing.T) {
	path, _ := fakeNCRequestDaemon(t, func(c net.Conn, r *bufio.Reader, req ncRequest) {
		writeFrame(c, frameUp, []byte("10.0.0.1:40000 10.0.0.2:8084"))
		writeFrame(c, frameData, []byte(halfCloseGreeting))
		writeFrame(c, frameFIN, nil)
		io.Copy(io.Discard, r)
	})
	r := startNC("--ctl", path, "-d", "10.0.0.2", "8084") // stdin stays open
	if code := r.exit(t, 5*time.Second); code != 0 || r.stdout.String() != halfCloseGreeting {
		t.Errorf("exit %d, stdout %q, stderr %q", code, r.stdout.String(), r.stderr.String())
	}
	r.stdin.Close()
}
