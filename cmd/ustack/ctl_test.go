package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"ustack/stack"
)

// fakeView is a stackView with fixed contents.
type fakeView struct {
	socks    []stack.SocketInfo
	counters []stack.Counter
}

func (f *fakeView) Sockets() []stack.SocketInfo { return f.socks }
func (f *fakeView) Counters() []stack.Counter   { return f.counters }

var sampleCounters = []stack.Counter{{Name: "TCPActiveOpens", Value: 1}, {Name: "TCPInSegs", Value: 42}}

func startCtl(t *testing.T, view stackView) (string, *ctlServer) {
	t.Helper()
	// Unix socket paths are limited to 108 bytes; t.TempDir can be long.
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "sub", "t.sock")
	srv, err := listenCtl(path, ctlOps(view), log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return path, srv
}

func TestCtlRoundTrip(t *testing.T) {
	view := &fakeView{sampleSockets, sampleCounters}
	path, _ := startCtl(t, view)

	var r ctlResponse
	if err := ctlCall(path, ctlRequest{Op: "ss"}, &r); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Sockets, sampleSockets) {
		t.Errorf("ss:\n got %+v\nwant %+v", r.Sockets, sampleSockets)
	}
	r = ctlResponse{}
	if err := ctlCall(path, ctlRequest{Op: "stats"}, &r); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Counters, sampleCounters) {
		t.Errorf("stats: got %+v", r.Counters)
	}
	r = ctlResponse{}
	if err := ctlCall(path, ctlRequest{Op: "runtime"}, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Counters) != 2 || r.Counters[0].Name != "runtime.goroutines" || r.Counters[0].Value == 0 {
		t.Errorf("runtime: got %+v", r.Counters)
	}
	err := ctlCall(path, ctlRequest{Op: "reboot"}, &r)
	if err == nil || !strings.Contains(err.Error(), `unknown op "reboot" (want runtime, ss, stats)`) {
		t.Errorf("unknown op: %v", err)
	}
}

// The wire format, as a client in another language would see it; several
// requests share one connection.
func TestCtlWire(t *testing.T) {
	path, _ := startCtl(t, &fakeView{sampleSockets[:1], nil})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	io.WriteString(c, `{"op":"ss"}`+"\n"+`{"op":"stats"}`+"\n"+"not json\n")
	for _, want := range []string{
		`{"sockets":[{"State":"LISTEN","RecvQ":0,"SendQ":4096,"Local":"10.0.0.2:80","Peer":"","Timer":"","TimerLeft":0,"Retransmits":0}]}`,
		`{"counters":[]}`,
		`{"error":"bad request: invalid character 'o' in literal null (expecting 'u')"}`,
	} {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(line) != want {
			t.Errorf("got  %s\nwant %s", strings.TrimSpace(line), want)
		}
	}
}

func TestCtlRefusesSecondDaemon(t *testing.T) {
	path, _ := startCtl(t, &fakeView{})
	if err := checkCtlFree(path); err == nil || !strings.Contains(err.Error(), "another ustack daemon") {
		t.Errorf("checkCtlFree: %v", err)
	}
	_, err := listenCtl(path, ctlOps(&fakeView{}), log.New(io.Discard, "", 0))
	if err == nil || !strings.Contains(err.Error(), "another ustack daemon") {
		t.Errorf("second listenCtl: %v", err)
	}
}

func TestCtlReplacesStaleSocket(t *testing.T) {
	dir, _ := os.MkdirTemp("", "ctl")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "s.sock")
	// A socket file nobody listens on, as a killed daemon leaves it.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	srv, err := listenCtl(path, ctlOps(&fakeView{}), log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	var r ctlResponse
	if err := ctlCall(path, ctlRequest{Op: "ss"}, &r); err != nil {
		t.Error(err)
	}
	srv.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}

	// A regular file is not ours to remove.
	os.WriteFile(path, []byte("x"), 0o644)
	if _, err := listenCtl(path, ctlOps(&fakeView{}), log.New(io.Discard, "", 0)); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file: %v", err)
	}
}

func TestCtlNoDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sock")
	var r ctlResponse
	err := ctlCall(path, ctlRequest{Op: "ss"}, &r)
	want := `no daemon at ` + path + ` (is "ustack run" running?)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// Hijack hands the connection to the op: the server writes no reply.
func TestCtlHijack(t *testing.T) {
	dir, _ := os.MkdirTemp("", "ctl")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "h.sock")
	ops := ctlOps(&fakeView{})
	ops["upper"] = func(s *ctlSession) (any, error) {
		c, r := s.Hijack()
		go func() {
			defer c.Close()
			io.WriteString(c, "ok\n")
			b, _ := io.ReadAll(r)
			c.Write(bytes.ToUpper(b))
		}()
		return nil, nil
	}
	srv, err := listenCtl(path, ops, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, `{"op":"upper"}`+"\nhello")
	c.(*net.UnixConn).CloseWrite()
	got, _ := io.ReadAll(c)
	if string(got) != "ok\nHELLO" {
		t.Errorf("got %q", got)
	}
}

func TestCmdSS(t *testing.T) {
	path, _ := startCtl(t, &fakeView{sampleSockets[:3], sampleCounters})
	var stdout, stderr bytes.Buffer
	if code := cmdSS([]string{"--ctl", path, "--stats"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	want := `State      Recv-Q Send-Q Local Address:Port  Peer Address:Port  Timer
LISTEN     0      4096   10.0.0.2:80         *:*
UNCONN     0      0      10.0.0.2:81         *:*
ESTAB      5      1448   10.0.0.2:7          10.0.0.1:41234     on (1.2sec)

TCPActiveOpens 1
TCPInSegs      42
`
	if stdout.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", stdout.String(), want)
	}

	stdout.Reset()
	stderr.Reset()
	missing := filepath.Join(t.TempDir(), "x.sock")
	if code := cmdSS([]string{"--ctl", missing}, &stdout, &stderr); code != 1 {
		t.Errorf("no daemon: exit %d", code)
	}
	if want := "ustack ss: no daemon at " + missing + " (is \"ustack run\" running?)\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
}

func TestCtlJSONShape(t *testing.T) {
	// The ops reply [] rather than null for empty lists.
	b, _ := json.Marshal(struct {
		Sockets []stack.SocketInfo `json:"sockets"`
	}{orEmpty[stack.SocketInfo](nil)})
	if string(b) != `{"sockets":[]}` {
		t.Errorf("got %s", b)
	}
}

// Ops outside readOnlyOps are refused to a caller mayAct rejects, with a
// reply that says who may; ss and stats stay open to everyone.
func TestCtlRefusesActingOps(t *testing.T) {
	dir, _ := os.MkdirTemp("", "ctl")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "p.sock")
	srv, err := bindCtl(path, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var seen atomic.Pointer[unix.Ucred]
	srv.mayAct = func(cred *unix.Ucred) bool { seen.Store(cred); return false }
	ops := ctlOps(&fakeView{sampleSockets[:1], sampleCounters})
	var called atomic.Bool
	ops["nc"] = func(*ctlSession) (any, error) { called.Store(true); return nil, nil }
	ops["frob"] = func(*ctlSession) (any, error) { called.Store(true); return nil, nil }
	srv.serve(ops)

	var r ctlResponse
	for _, op := range []string{"ss", "stats"} {
		if err := ctlCall(path, ctlRequest{Op: op}, &r); err != nil {
			t.Errorf("%s: %v", op, err)
		}
	}
	who := "root"
	if os.Geteuid() != 0 {
		who = fmt.Sprintf("root or uid %d (the daemon's user)", os.Geteuid())
	}
	for op, action := range map[string]string{"nc": "open connections through the daemon", "frob": `use the "frob" op`} {
		err := ctlCall(path, ctlRequest{Op: op}, &r)
		if want := "permission denied: only " + who + " may " + action; err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", op, err, want)
		}
	}
	if called.Load() {
		t.Error("a refused op ran")
	}
	// SO_PEERCRED named this process.
	if seen := seen.Load(); seen == nil || int(seen.Pid) != os.Getpid() || int(seen.Uid) != os.Geteuid() {
		t.Errorf("peer credentials %+v, want pid %d uid %d", seen, os.Getpid(), os.Geteuid())
	}

	// `ustack nc` prints the refusal like any error of its own.
	var stdout, stderr bytes.Buffer
	if code := runNC([]string{"--ctl", path, "-N", "10.0.0.1", "9000"}, strings.NewReader("x"), &stdout, &stderr); code != 1 {
		t.Errorf("ustack nc refused: exit %d", code)
	}
	if want := "ustack nc: permission denied: only " + who + " may open connections through the daemon\n"; stderr.String() != want || stdout.Len() != 0 {
		t.Errorf("ustack nc refused: stdout %q, stderr %q; want %q", stdout.String(), stderr.String(), want)
	}
}

func TestCtlMayAct(t *testing.T) {
	euid := uint32(os.Geteuid())
	for _, tc := range []struct {
		cred *unix.Ucred
		want bool
	}{
		{nil, false},
		{&unix.Ucred{Uid: 0}, true},
		{&unix.Ucred{Uid: euid}, true},
		{&unix.Ucred{Uid: 65534}, euid == 65534},
		{&unix.Ucred{Uid: 1000, Gid: 0}, euid == 1000}, // group root is not enough
	} {
		if got := ctlMayAct(tc.cred); got != tc.want {
			t.Errorf("ctlMayAct(%+v) = %v, want %v", tc.cred, got, tc.want)
		}
	}
}
