package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// runKernelServer is the bench binary re-executed inside the kernel
// ceiling's server namespace (-kernel-server ADDR): the same four services
// as the daemon's (echo, discard, source, http /bytes), written the same
// way, on the kernel's TCP. It prints "ready" once listening and runs until
// SIGTERM or SIGINT.
func runKernelServer(addr string) int {
	type svc struct {
		port   int
		handle func(net.Conn)
	}
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	var lns []net.Listener
	serve := func(ln net.Listener, handle func(net.Conn)) {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// EMFILE and the like: say so, back off, go on, as
				// net/http does.
				fmt.Fprintln(os.Stderr, "kernel server: accept:", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			go func() {
				handle(c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}
	for _, s := range []svc{{portEcho, kEcho}, {portDiscard, kDiscard}, {portSource, kSource}} {
		// The IPv4 address, and the IPv6 one of the rows over IPv6.
		for _, a := range []string{addr, serverAddr6.String()} {
			ln, err := net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(s.port)))
			if err != nil {
				fmt.Fprintln(os.Stderr, "kernel server:", err)
				return 1
			}
			lns = append(lns, ln)
			go serve(ln, s.handle)
		}
	}
	// udp-echo, on the IPv4 address.
	uc, err := net.ListenPacket("udp4", net.JoinHostPort(addr, strconv.Itoa(portEcho)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kernel server:", err)
		return 1
	}
	go kUDPEcho(uc)
	defer uc.Close()
	hln, err := net.Listen("tcp4", net.JoinHostPort(addr, strconv.Itoa(portHTTP)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kernel server:", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bytes", kBytes)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(hln)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	fmt.Println("ready")
	<-sig
	for _, ln := range lns {
		ln.Close()
	}
	srv.Close()
	mu.Lock()
	for c := range conns {
		c.Close()
	}
	mu.Unlock()
	return 0
}

// kEcho is the daemon's echo. The wrappers hide *net.TCPConn's ReadFrom,
// whose splice(2) would hold a pipe (two more descriptors) per connection.
func kEcho(c net.Conn) {
	defer c.Close()
	if _, err := io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c}); err == nil {
		c.(*net.TCPConn).CloseWrite()
	}
}

// kUDPEcho is the daemon's udp-echo: each datagram back to its sender.
func kUDPEcho(c net.PacketConn) {
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		c.WriteTo(buf[:n], from)
	}
}

func kDiscard(c net.Conn) {
	defer c.Close()
	io.Copy(io.Discard, c)
}

var kPattern = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}()

func kSource(c net.Conn) {
	defer c.Close()
	go io.Copy(io.Discard, c)
	for {
		if _, err := c.Write(kPattern); err != nil {
			return
		}
	}
}

// kBytes is the daemon's /bytes?n=N: N bytes, byte i = i % 251.
var kChunk = func() []byte {
	b := make([]byte, 251*256)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

func kBytes(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
	if err != nil || n < 0 || n > 1<<31 {
		http.Error(w, "bad n", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	for n > 0 {
		k, err := w.Write(kChunk[:min(n, int64(len(kChunk)))])
		if err != nil {
			return
		}
		n -= int64(k)
	}
}
