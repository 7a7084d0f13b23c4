package main

// `ustack nc`: netcat through the daemon's stack. The client sends one
// request line on the control socket; the daemon connects (or listens and
// accepts one connection) with its own TCP and then relays bytes:
//
//	client -> daemon: raw bytes; the client's shutdown(SHUT_WR) is our
//	                  CloseWrite on the TCP connection (nc -N).
//	daemon -> client: frames of [kind byte][4-byte big-endian length][data]:
//	                  'O' the connection is up (data: "local peer"),
//	                  'D' data, 'F' the peer's FIN, 'E' an error text.
//
// Frames are needed because an error (a RST) can arrive mid-stream.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
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
}

const (
	frameUp   = 'O'
	frameData = 'D'
	frameFIN  = 'F'
	frameErr  = 'E'
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
	c, err := ncOpen(st, req)
	if err != nil {
		writeFrame(ctl, frameErr, []byte(errnoText(err)))
		return
	}
	defer c.Close()
	writeFrame(ctl, frameUp, []byte(c.LocalAddr().String()+" "+c.RemoteAddr().String()))

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // client -> peer
		defer wg.Done()
		if _, err := io.Copy(c, r); err == nil {
			c.CloseWrite() // the client's EOF (nc -N): our FIN
		}
	}()
	var mu sync.Mutex // frames from one goroutine only, but keep it obvious
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			mu.Lock()
			werr := writeFrame(ctl, frameData, buf[:n])
			mu.Unlock()
			if werr != nil {
				return // the client went away: close the connection
			}
		}
		if err == io.EOF {
			writeFrame(ctl, frameFIN, nil)
			break
		}
		if err != nil {
			writeFrame(ctl, frameErr, []byte(errnoText(err)))
			return
		}
	}
	// The peer finished; the client may still be sending (half-close).
	wg.Wait()
}

// ncOpen connects, or listens and accepts one connection.
func ncOpen(st *stack.Stack, req ncRequest) (*stack.Conn, error) {
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
	if req.Listen {
		ln, err := st.ListenTCP(local, 1)
		if err != nil {
			return nil, err
		}
		defer ln.Close()
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
	return st.DialTCP(ctx, local, remote)
}

// cmdNC is the client: `ustack nc [-p LPORT] [-s LADDR] [-N] [-w T] HOST PORT`
// or `ustack nc -l [-s LADDR] PORT`.
func cmdNC(args []string, stdout, stderr io.Writer) int {
	return runNC(args, os.Stdin, stdout, stderr)
}

func runNC(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ctl := fs.String("ctl", "", "control socket of the daemon")
	lport := fs.Int("p", 0, "local port to bind first")
	laddr := fs.String("s", "", "local address")
	shutdown := fs.Bool("N", false, "shut down writing at end of input")
	wait := fs.Duration("w", 0, "connect (or accept) timeout, e.g. 5s")
	listen := fs.Bool("l", false, "listen for one connection")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	req := ncRequest{Op: "nc", Listen: *listen, TimeoutMS: wait.Milliseconds()}
	host := "0.0.0.0"
	if *laddr != "" {
		host = *laddr
	}
	var target string
	switch {
	case *listen && fs.NArg() == 1:
		req.Local = net.JoinHostPort(host, fs.Arg(0))
		target = "port " + fs.Arg(0)
	case !*listen && fs.NArg() == 2:
		req.Remote = net.JoinHostPort(fs.Arg(0), fs.Arg(1))
		if *lport != 0 || *laddr != "" {
			req.Local = net.JoinHostPort(host, strconv.Itoa(*lport))
		}
		target = fmt.Sprintf("%s port %s", fs.Arg(0), fs.Arg(1))
	default:
		fmt.Fprintln(stderr, "usage: ustack nc [--ctl PATH] [-p LPORT] [-s LADDR] [-N] [-w TIMEOUT] HOST PORT\n       ustack nc [--ctl PATH] -l [-s LADDR] PORT")
		return 2
	}
	path, err := findCtl(*ctl)
	if err != nil {
		fmt.Fprintln(stderr, "ustack nc:", err)
		return 1
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		fmt.Fprintln(stderr, "ustack nc:", noDaemon(path))
		return 1
	}
	defer c.Close()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		fmt.Fprintln(stderr, "ustack nc:", err)
		return 1
	}
	br := bufio.NewReader(c)
	buf := make([]byte, 64<<10)
	kind, data, err := readFrame(br, buf)
	if err != nil {
		fmt.Fprintln(stderr, "ustack nc: the daemon closed the control connection:", err)
		return 1
	}
	if kind == frameErr {
		fmt.Fprintf(stderr, "ustack nc: connect to %s (tcp) failed: %s\n", target, data)
		return 1
	}
	go func() {
		io.Copy(c, stdin)
		if *shutdown {
			c.(*net.UnixConn).CloseWrite()
		}
	}()
	for {
		kind, data, err := readFrame(br, buf)
		if err != nil {
			fmt.Fprintln(stderr, "ustack nc: the daemon closed the control connection:", err)
			return 1
		}
		switch kind {
		case frameData:
			if _, err := stdout.Write(data); err != nil {
				return 1
			}
		case frameFIN:
			return 0
		case frameErr:
			fmt.Fprintf(stderr, "ustack nc: %s\n", data)
			return 1
		}
	}
}
