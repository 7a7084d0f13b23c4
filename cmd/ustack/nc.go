package main

// `ustack nc`: netcat through the daemon's stack. The client sends one
// request line on the control socket; the daemon connects (or listens and
// accepts one connection) with its own TCP and then relays bytes:
//
//	client -> daemon: raw bytes; the client's shutdown(SHUT_WR) is our
//	                  CloseWrite on the TCP connection (nc -N).
//	daemon -> client: frames of [kind byte][4-byte big-endian length][data]:
//	                  'L' listening (with -l; data: the local address),
//	                  'O' the connection is up (data: "local peer"),
//	                  'D' data, 'F' the peer's FIN, 'E' an error text.
//
// Frames are needed because an error (a RST) can arrive mid-stream. A
// request the daemon refuses before opening anything (permission denied)
// gets the control socket's usual JSON error line instead of frames.
//
// The two directions are independent, as in OpenBSD nc: the peer's FIN ends
// the output, and standard input keeps flowing to the peer until its end
// (half-close, B34). The daemon ends the control connection once the peer
// has finished and the client's bytes are all written (or on an error).

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"ustack/stack"
)

// ncRequest is the control request of `ustack nc`.
type ncRequest struct {
	Op        string `json:"op"`
	Remote    string `json:"remote,omitempty"` // ip:port to connect to
	Local     string `json:"local,omitempty"`  // ip:port to bind (port may be 0)
	Listen    bool   `json:"listen,omitempty"`
	TimeoutMS int64  `json:"timeout_ms,omitempty"`
	// Scan (nc -z): connect, report, and close at once, sending nothing.
	Scan bool `json:"scan,omitempty"`
	// UDP (nc -u): datagrams; each chunk of input is one.
	UDP bool `json:"udp,omitempty"`
}

const (
	frameUp     = 'O'
	frameData   = 'D'
	frameFIN    = 'F'
	frameErr    = 'E'
	frameListen = 'L' // with -l, before 'O': listening (data: the local address)
)

func writeFrame(w io.Writer, kind byte, data []byte) error {
	var h [5]byte
	h[0] = kind
	binary.BigEndian.PutUint32(h[1:], uint32(len(data)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if int(n) > len(buf) {
		return 0, nil, fmt.Errorf("frame of %d bytes too large", n)
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return 0, nil, err
	}
	return h[0], buf[:n], nil
}

// errnoText is nc's wording for an error: "connection refused", ...
func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return syscall.ETIMEDOUT.Error()
	}
	return err.Error()
}

// ncOp is the daemon side: open the connection, then relay.
func ncOp(st *stack.Stack) ctlOp {
	return func(sess *ctlSession) (any, error) {
		var req ncRequest
		if err := json.Unmarshal(sess.Raw, &req); err != nil {
			return nil, err
		}
		conn, r := sess.Hijack()
		go ncServe(st, req, conn, r)
		return nil, nil
	}
}

func ncServe(st *stack.Stack, req ncRequest, ctl net.Conn, r *bufio.Reader) {
	defer ctl.Close()
	c, err := ncOpen(st, req, func(local string) { writeFrame(ctl, frameListen, []byte(local)) })
	if err != nil {
		writeFrame(ctl, frameErr, []byte(errnoText(err)))
		return
	}
	defer c.Close()
	writeFrame(ctl, frameUp, []byte(c.LocalAddr().String()+" "+c.RemoteAddr().String()))
	if req.Scan {
		return // nc -z: connected; close without sending anything
	}

	// Both directions write frames: one at a time, and one error frame at
	// most (a RST fails the read and the write alike).
	var mu sync.Mutex
	failed := false
	frame := func(kind byte, data []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if failed {
			return errors.New("connection failed")
		}
		if kind == frameErr {
			failed = true
		}
		return writeFrame(ctl, kind, data)
	}
	sent := make(chan struct{})
	go func() { // client -> peer, on after the peer's FIN
		defer close(sent)
		buf := make([]byte, 32<<10)
		for {
			n, rerr := r.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					frame(frameErr, []byte(errnoText(werr)))
					c.Close() // ends the read below too
					return
				}
			}
			if rerr == io.EOF {
				// The client's end of input (nc -N), or its exit: our FIN.
				// A failed shutdown (ENOTCONN after a RST that raced
				// our EOF) is not reported: as OpenBSD nc ignores it,
				// the read below reports what ended the connection.
				c.CloseWrite()
				return
			}
			if rerr != nil {
				c.Close() // the client went away, as if nc had exited
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if frame(frameData, buf[:n]) != nil {
				return // the client went away (or an error): close the connection
			}
		}
		if err == io.EOF {
			if frame(frameFIN, nil) != nil {
				return
			}
			break
		}
		if err != nil {
			frame(frameErr, []byte(errnoText(err)))
			return
		}
	}
	// The peer finished; the client may still be sending (half-close).
	// Closing the control connection afterwards tells the client that its
	// bytes are all written.
	<-sent
}

// ncConn is what nc relays: a TCP connection, or a connected UDP socket.
type ncConn interface {
	io.ReadWriteCloser
	CloseWrite() error
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
}

// udpNC is a connected UDP socket as nc relays it: no FIN to send, and the
// first datagram of a listening nc -u given back to the first read.
type udpNC struct {
	*stack.UDPConn
	first []byte
}

func (u *udpNC) CloseWrite() error { return nil }

func (u *udpNC) Read(p []byte) (int, error) {
	if u.first != nil {
		n := copy(p, u.first)
		u.first = nil
		return n, nil
	}
	return u.UDPConn.Read(p)
}

// ncOpenUDP is nc -u: a socket connected to the remote, or (-l) bound and
// connected to whoever sends the first datagram, as netcat does.
func ncOpenUDP(ctx context.Context, st *stack.Stack, req ncRequest, local netip.AddrPort, listening func(local string)) (ncConn, error) {
	if !req.Listen {
		remote, err := netip.ParseAddrPort(req.Remote)
		if err != nil {
			return nil, err
		}
		c, err := st.DialUDP(local, remote)
		if err != nil {
			return nil, err
		}
		return &udpNC{UDPConn: c}, nil
	}
	c, err := st.ListenUDP(local)
	if err != nil {
		return nil, err
	}
	listening(c.LocalAddr().String())
	if dl, ok := ctx.Deadline(); ok {
		c.SetReadDeadline(dl)
	}
	buf := make([]byte, 65536)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err == nil {
		err = c.Connect(from)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetReadDeadline(time.Time{})
	return &udpNC{UDPConn: c, first: buf[:n:n]}, nil
}

// ncOpen connects, or listens (telling listening the local address) and
// accepts one connection.
func ncOpen(st *stack.Stack, req ncRequest, listening func(local string)) (ncConn, error) {
	ctx := context.Background()
	if req.TimeoutMS > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMS)*time.Millisecond)
		defer cancel()
	}
	var local netip.AddrPort
	if req.Local != "" {
		var err error
		if local, err = netip.ParseAddrPort(req.Local); err != nil {
			return nil, err
		}
	}
	if req.UDP {
		return ncOpenUDP(ctx, st, req, local, listening)
	}
	if req.Listen {
		ln, err := st.ListenTCP(local, 1)
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		listening(ln.Addr().String())
		type res struct {
			c   *stack.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			c, err := ln.AcceptTCP()
			ch <- res{c, err}
		}()
		select {
		case r := <-ch:
			return r.c, r.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	remote, err := netip.ParseAddrPort(req.Remote)
	if err != nil {
		return nil, err
	}
	c, err := st.DialTCP(ctx, local, remote)
	if err != nil {
		return nil, err // not a nil *stack.Conn in an interface
	}
	return c, nil
}

// cmdNC is the client: `ustack nc [flags] HOST PORT...` or
// `ustack nc -l [flags] [[LADDR] PORT]`, with netcat-openbsd's flags
// (ncflags.go).
func cmdNC(args []string, stdout, stderr io.Writer) int {
	return runNC(args, os.Stdin, stdout, stderr)
}

func runNC(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseNCArgs(args)
	if err == errNCHelp {
		fmt.Fprintln(stderr, ncHelp)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "ustack nc: %v\n%s\n", err, ncUsage)
		return 2
	}
	switch {
	case o.IPv6 && o.Host != "" && !isIPv6Literal(o.Host):
		fmt.Fprintf(stderr, "ustack nc: -6: %s is not an IPv6 address (ustack nc resolves no names)\n", o.Host)
		return 2
	}
	path, err := findCtl(o.Ctl)
	if err != nil {
		fmt.Fprintln(stderr, "ustack nc:", err)
		return 1
	}
	if o.Scan {
		return ncScan(path, o, stderr)
	}
	req := ncRequest{Op: "nc", Listen: o.Listen, UDP: o.UDP}
	if o.Listen {
		host := o.Host
		switch {
		case host == "" && o.IPv6:
			host = "::"
		case host == "":
			host = "0.0.0.0"
		}
		req.Local = net.JoinHostPort(host, strconv.Itoa(o.Ports[0]))
	} else {
		req.Remote = net.JoinHostPort(o.Host, strconv.Itoa(o.Ports[0]))
		req.Local = o.local()
		req.TimeoutMS = o.Wait.Milliseconds()
	}
	c, br, code := ncDial(path, req, stderr)
	if c == nil {
		return code
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	kind, data, err := readFrame(br, buf)
	if err == nil && kind == frameListen {
		if o.Verbose {
			fmt.Fprintf(stderr, "Listening on %s\n", hostPort(string(data)))
		}
		kind, data, err = readFrame(br, buf)
	}
	if err != nil {
		fmt.Fprintln(stderr, "ustack nc: the daemon closed the control connection:", err)
		return 1
	}
	if kind == frameErr {
		if o.Listen {
			fmt.Fprintf(stderr, "ustack nc: listen on %s (tcp) failed: %s\n", req.Local, data)
		} else {
			fmt.Fprintf(stderr, "ustack nc: connect to %s port %d (tcp) failed: %s\n", o.Host, o.Ports[0], data)
		}
		return 1
	}
	if o.Verbose {
		_, peer, _ := strings.Cut(string(data), " ")
		if o.Listen {
			fmt.Fprintf(stderr, "Connection received on %s\n", hostPort(peer))
		} else {
			fmt.Fprintf(stderr, "Connection to %s %d port [tcp/%s] succeeded!\n", o.Host, o.Ports[0], tcpServiceName(o.Ports[0]))
		}
	}
	if o.NoStdin {
		stdin = nil
	}
	return ncRelay(c, br, buf, stdin, stdout, stderr, o)
}

// local is the address to bind before connecting, "" for none.
func (o *ncOptions) local() string {
	if o.LocalPort == 0 && o.LocalAddr == "" {
		return ""
	}
	host := o.LocalAddr
	if host == "" {
		host = "0.0.0.0"
	}
	return net.JoinHostPort(host, strconv.Itoa(o.LocalPort))
}

// hostPort is "10.0.0.1:4000" as nc prints it: "10.0.0.1 4000".
func hostPort(addr string) string {
	if h, p, err := net.SplitHostPort(addr); err == nil {
		return h + " " + p
	}
	return addr
}

// ncDial sends req on a new control connection. On failure it has said
// why, and returns a nil connection and the exit status.
func ncDial(path string, req ncRequest, stderr io.Writer) (*net.UnixConn, *bufio.Reader, int) {
	c, err := net.Dial("unix", path)
	if err != nil {
		fmt.Fprintln(stderr, "ustack nc:", noDaemon(path))
		return nil, nil, 1
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		c.Close()
		fmt.Fprintln(stderr, "ustack nc:", err)
		return nil, nil, 1
	}
	br := bufio.NewReader(c)
	// A refusal before anything is opened (permission denied, nc not
	// available) is the control socket's JSON error line, not a frame.
	if b, err := br.Peek(1); err == nil && b[0] == '{' {
		c.Close()
		fmt.Fprintln(stderr, "ustack nc:", ctlReplyError(br))
		return nil, nil, 1
	}
	return c.(*net.UnixConn), br, 0
}

// ncScan is nc -z: a connection to each port in turn, closed as soon as it
// is up, nothing sent. The exit status is 0 when one connected, as nc's.
func ncScan(path string, o *ncOptions, stderr io.Writer) int {
	code := 1
	buf := make([]byte, 64<<10)
	for _, port := range o.Ports {
		req := ncRequest{Op: "nc", Scan: true, Remote: net.JoinHostPort(o.Host, strconv.Itoa(port)),
			Local: o.local(), TimeoutMS: o.Wait.Milliseconds()}
		c, br, fail := ncDial(path, req, stderr)
		if c == nil {
			return fail
		}
		kind, data, err := readFrame(br, buf)
		c.Close()
		switch {
		case err != nil:
			fmt.Fprintln(stderr, "ustack nc: the daemon closed the control connection:", err)
			return 1
		case kind == frameErr:
			fmt.Fprintf(stderr, "ustack nc: connect to %s port %d (tcp) failed: %s\n", o.Host, port, data)
		default:
			code = 0
			if o.Verbose {
				fmt.Fprintf(stderr, "Connection to %s %d port [tcp/%s] succeeded!\n", o.Host, port, tcpServiceName(port))
			}
		}
	}
	return code
}

// ctlReplyError reads a JSON reply line from the daemon and returns its
// error.
func ctlReplyError(br *bufio.Reader) error {
	line, err := readLine(br, maxCtlLine)
	if err != nil {
		return fmt.Errorf("the daemon closed the control connection: %w", err)
	}
	var resp ctlResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		return fmt.Errorf("bad reply from the daemon: %w", err)
	}
	if resp.Error == "" {
		return fmt.Errorf("unexpected reply from the daemon: %s", line)
	}
	return errors.New(resp.Error)
}

// ncEvent is what the frame reader of ncRelay reports: the peer's FIN, an
// error frame, a failed write to stdout, or the end of the control
// connection.
type ncEvent struct {
	kind byte // frameFIN, frameErr, ncStdoutFailed or ncCtlEnded
	text string
	err  error
}

const (
	ncStdoutFailed = 'w'
	ncCtlEnded     = 'x'
)

// ncRelay moves the bytes once the connection is up: standard input to the
// daemon, data frames to stdout. The two directions end on their own, as in
// OpenBSD nc: the peer's FIN ends the output but standard input keeps
// flowing (half-close, B34), and with -N its end becomes our FIN. It returns
// 0 when both directions are done, 1 on an error. With -l it returns at the
// peer's FIN, as nc -l does. With -q SECS it also returns 0 SECS after the
// end of input. A nil stdin (-d) is never read: as if it had ended, without
// a FIN.
func ncRelay(c *net.UnixConn, br *bufio.Reader, buf []byte, stdin io.Reader, stdout, stderr io.Writer, o *ncOptions) int {
	shutdown, listen := o.Shutdown && stdin != nil, o.Listen
	quit := make(chan struct{})
	defer close(quit)

	// eofSent: all of standard input went to the daemon, then our
	// shutdown (-N). The daemon ends the control connection only after
	// it has passed both on, so an end after the FIN is then a success.
	var eofSent atomic.Bool
	inDone := make(chan struct{})
	go func() {
		defer close(inDone)
		if stdin == nil {
			return
		}
		if _, err := io.Copy(c, stdin); err == nil && shutdown {
			eofSent.Store(true)
			c.CloseWrite()
		}
	}()
	var quitTimer <-chan time.Time // -q: started at the end of input

	events := make(chan ncEvent)
	go func() {
		send := func(ev ncEvent) bool {
			select {
			case events <- ev:
				return true
			case <-quit:
				return false
			}
		}
		for {
			kind, data, err := readFrame(br, buf)
			if err != nil {
				send(ncEvent{kind: ncCtlEnded, err: err})
				return
			}
			switch kind {
			case frameData:
				if _, err := stdout.Write(data); err != nil {
					send(ncEvent{kind: ncStdoutFailed, err: err})
					return
				}
			case frameFIN:
				if !send(ncEvent{kind: frameFIN}) {
					return
				}
			case frameErr:
				send(ncEvent{kind: frameErr, text: string(data)})
				return
			}
		}
	}()

	fin := false
	for {
		select {
		case <-inDone:
			inDone = nil // input done; without -N nothing more to wait for
			if fin && !shutdown {
				return 0
			}
			if o.Quit >= 0 && stdin != nil {
				quitTimer = time.After(o.Quit)
			}
		case <-quitTimer:
			return 0 // nc -q: quit SECS after the end of input
		case ev := <-events:
			switch ev.kind {
			case frameFIN:
				fin = true
				if listen || (inDone == nil && !shutdown) {
					return 0
				}
			case frameErr:
				fmt.Fprintf(stderr, "ustack nc: %s\n", ev.text)
				return 1
			case ncStdoutFailed:
				return 1
			case ncCtlEnded:
				if fin && ev.err == io.EOF && eofSent.Load() {
					return 0 // the daemon wrote everything, then our FIN
				}
				fmt.Fprintln(stderr, "ustack nc: the daemon closed the control connection:", ev.err)
				return 1
			}
		}
	}
}

// isIPv6Literal reports whether host is an IPv6 address (not IPv4-mapped).
func isIPv6Literal(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && a.Is6() && !a.Is4In6()
}
