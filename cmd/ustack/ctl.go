package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ustack/stack"
)

// The control socket is how "ustack ss" and "ustack nc" reach a
// running daemon: a unix stream socket carrying line-delimited JSON. Each
// request is one JSON object with an "op" field and the op's own fields; each
// reply is one JSON object, {"error":"..."} on failure. A connection may
// carry several requests in turn.
//
//	{"op":"ss"}     -> {"sockets":[{"State":"LISTEN","RecvQ":0,...},...]}
//	{"op":"stats"}  -> {"counters":[{"Name":"...","Value":1},...]}
//	{"op":"runtime"} -> the same shape: the daemon's goroutines and heap
//
// An op that needs the connection itself afterwards (a byte stream for nc)
// calls ctlSession.Hijack after its reply.
//
// The socket is made mode 0666 so that "ustack ss" works without root, as
// ss does. Only the ops in readOnlyOps, which report and change nothing,
// are open to every local user; any other op acts through the daemon (nc
// listens on the stack's ports and connects from its address) and is
// served only to root and to the daemon's own user, as the kernel's
// SO_PEERCRED names them.

// ctlRequest is the envelope every request shares; ops decode their own
// fields from ctlSession.Raw.
type ctlRequest struct {
	Op string `json:"op"`
}

// ctlResponse is the union of every op's reply fields.
type ctlResponse struct {
	Error    string             `json:"error,omitempty"`
	Sockets  []stack.SocketInfo `json:"sockets,omitempty"`
	Counters []stack.Counter    `json:"counters,omitempty"`
}

// ctlOp handles one request; its result is encoded as the reply line unless
// it hijacked the connection.
type ctlOp func(s *ctlSession) (any, error)

// readOnlyOps are the ops every local user may call. An op missing here is
// refused to callers other than root and the daemon's user: a new op is
// privileged unless it is added to this list.
var readOnlyOps = map[string]bool{"ss": true, "stats": true, "runtime": true}

// opActions says what a privileged op does, for its refusal ("only root
// may ..."); ops not listed are named.
var opActions = map[string]string{"nc": "open connections through the daemon"}

// ctlSession is one request on one control connection.
type ctlSession struct {
	Raw      json.RawMessage // the whole request line
	conn     net.Conn
	r        *bufio.Reader
	cred     *unix.Ucred // the client, from SO_PEERCRED; nil if unknown
	hijacked bool
}

// Hijack hands the connection to the op, which then owns it (and must close
// it): the server neither replies nor reads from it again. r holds any bytes
// the client sent after the request line.
func (s *ctlSession) Hijack() (net.Conn, *bufio.Reader) {
	s.hijacked = true
	return s.conn, s.r
}

// ctlOps returns the dispatcher: op name -> handler.
func ctlOps(view stackView) map[string]ctlOp {
	return map[string]ctlOp{
		"ss": func(*ctlSession) (any, error) {
			return struct {
				Sockets []stack.SocketInfo `json:"sockets"`
			}{orEmpty(view.Sockets())}, nil
		},
		"stats": func(*ctlSession) (any, error) {
			return struct {
				Counters []stack.Counter `json:"counters"`
			}{orEmpty(view.Counters())}, nil
		},
		"runtime": func(*ctlSession) (any, error) {
			return struct {
				Counters []stack.Counter `json:"counters"`
			}{runtimeCounters()}, nil
		},
	}
}

// ctlServer serves the control socket.
type ctlServer struct {
	path string
	ln   net.Listener
	ops  map[string]ctlOp
	log  *log.Logger
	// mayAct says whether a client may call the ops outside readOnlyOps;
	// ctlMayAct unless a test replaces it before serve.
	mayAct func(cred *unix.Ucred) bool

	accept *acceptService // once serving
}

// checkCtlPath fails if bindCtl would: a daemon answers on path, or path
// exists and is not a socket. It touches nothing, so "ustack run" calls it
// before creating anything.
func checkCtlPath(path string) error {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() != fs.ModeSocket {
		return errNotSocket(path)
	}
	return checkCtlFree(path)
}

func errNotSocket(path string) error {
	return fmt.Errorf("control socket %s: exists and is not a socket", path)
}

// checkCtlFree fails if a daemon answers on path.
func checkCtlFree(path string) error {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("another ustack daemon is serving control socket %s (stop it, or give this one --ctl or --tun)", path)
	}
	return nil
}

// ctlMayAct is the rule for the ops that act: root, or the user the daemon
// runs as (who could do the same without the daemon's help).
func ctlMayAct(cred *unix.Ucred) bool {
	return cred != nil && (cred.Uid == 0 || int(cred.Uid) == os.Geteuid())
}

// ctlDenied is the refusal of a privileged op.
func ctlDenied(op string) error {
	action, ok := opActions[op]
	if !ok {
		action = fmt.Sprintf("use the %q op", op)
	}
	who := "root"
	if euid := os.Geteuid(); euid != 0 {
		who = fmt.Sprintf("root or uid %d (the daemon's user)", euid)
	}
	return fmt.Errorf("permission denied: only %s may %s", who, action)
}

// peerCred is the kernel's record of who connected c (SO_PEERCRED): the
// process's pid and effective ids at connect().
func peerCred(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("not a unix socket: %T", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		cred, gerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, gerr
}

// listenCtl creates the control socket at path and serves ops on it.
func listenCtl(path string, ops map[string]ctlOp, lg *log.Logger) (*ctlServer, error) {
	s, err := bindCtl(path, lg)
	if err != nil {
		return nil, err
	}
	s.serve(ops)
	return s, nil
}

// bindCtl creates the control socket at path without serving it yet: it
// creates the directory, refuses if another daemon answers there or if path
// is not a socket, and replaces a stale socket left by a daemon that died.
// Clients that connect before serve wait in the backlog.
func bindCtl(path string, lg *log.Logger) (*ctlServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, errNotSocket(path)
		}
		if err := checkCtlFree(path); err != nil {
			return nil, err
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale control socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Close must not unlink the path: we remove it ourselves, after making
	// sure it is still ours.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &ctlServer{path: path, ln: ln, log: lg, mayAct: ctlMayAct}, nil
}

// maxCtlLine bounds a request line.
const maxCtlLine = 1 << 20

// serve starts answering requests with ops, one goroutine a client, as
// the services accept their connections (acceptService).
func (s *ctlServer) serve(ops map[string]ctlOp) {
	s.ops = ops
	s.accept = serveConns(s.ln, "control socket", s.log, s.serveConn)
}

func (s *ctlServer) serveConn(c net.Conn) {
	hijacked := false
	defer func() {
		if !hijacked {
			c.Close()
		}
	}()
	cred, err := peerCred(c)
	if err != nil {
		s.log.Printf("control socket: reading the client's credentials: %v", err)
	}
	r := bufio.NewReaderSize(c, 4096)
	enc := json.NewEncoder(c)
	for {
		line, err := readLine(r, maxCtlLine)
		if err != nil {
			return
		}
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		sess := &ctlSession{Raw: line, conn: c, r: r, cred: cred}
		reply := s.handle(sess)
		if sess.hijacked {
			hijacked = true
			return
		}
		if err := enc.Encode(reply); err != nil {
			return
		}
	}
}

// handle decodes the envelope and runs the op.
func (s *ctlServer) handle(sess *ctlSession) any {
	var req ctlRequest
	if err := json.Unmarshal(sess.Raw, &req); err != nil {
		return ctlResponse{Error: "bad request: " + err.Error()}
	}
	op, ok := s.ops[req.Op]
	if !ok {
		names := make([]string, 0, len(s.ops))
		for n := range s.ops {
			names = append(names, n)
		}
		sort.Strings(names)
		return ctlResponse{Error: fmt.Sprintf("unknown op %q (want %s)", req.Op, strings.Join(names, ", "))}
	}
	if !readOnlyOps[req.Op] && !s.mayAct(sess.cred) {
		return ctlResponse{Error: ctlDenied(req.Op).Error()}
	}
	reply, err := op(sess)
	if err != nil {
		return ctlResponse{Error: err.Error()}
	}
	return reply
}

// readLine reads one '\n'-terminated line without the newline, failing on
// lines longer than max.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, errors.New("request line too long")
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return nil, err
		}
		return line[:len(line)-1], nil
	}
}

// Close stops serving, ends the open connections and removes the socket
// file.
func (s *ctlServer) Close() error {
	var err error
	if s.accept != nil {
		err = s.accept.Close() // the listener, the clients, their handlers
	} else {
		err = s.ln.Close()
	}
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

// findCtl picks the control socket: the one given, or else the only socket
// in ctlDir.
func findCtl(given string) (string, error) {
	if given != "" {
		return given, nil
	}
	matches, _ := filepath.Glob(filepath.Join(ctlDir, "*.sock"))
	switch len(matches) {
	case 0:
		return "", noDaemon(defaultCtlPath("tun0"))
	case 1:
		return matches[0], nil
	default:
		names := make([]string, len(matches))
		for i, m := range matches {
			names[i] = filepath.Base(m)
		}
		return "", fmt.Errorf("several daemons in %s (%s): choose one with --ctl", ctlDir, strings.Join(names, ", "))
	}
}

func noDaemon(path string) error {
	return fmt.Errorf("no daemon at %s (is \"ustack run\" running?)", path)
}

// ctlCall sends one request to the daemon at path and decodes its reply into
// resp; a reply with "error" becomes the returned error.
func ctlCall(path string, req any, resp *ctlResponse) error {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
			return noDaemon(path)
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			return fmt.Errorf("%s: permission denied", path)
		}
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	line, err := readLine(bufio.NewReader(c), 64<<20)
	if err != nil {
		return fmt.Errorf("control socket %s: no reply: %w", path, err)
	}
	if err := json.Unmarshal(line, resp); err != nil {
		return fmt.Errorf("control socket %s: bad reply: %w", path, err)
	}
	if resp.Error != "" {
		return errors.New(resp.Error)
	}
	return nil
}

// runtimeCounters are the daemon's own costs, for the bench's memory and
// goroutines per connection.
func runtimeCounters() []stack.Counter {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return []stack.Counter{
		{Name: "runtime.goroutines", Value: uint64(runtime.NumGoroutine())},
		{Name: "runtime.heap_inuse_bytes", Value: m.HeapInuse},
	}
}
