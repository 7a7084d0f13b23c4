package main

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// The clients are plain blocking sockets, one OS thread each, the way
// netperf's are: each runs inside netns.Do on its locked thread, so a read
// or write sleeps in the kernel rather than in Go's netpoller, and the
// measurement is of the server, not of the client's scheduler hand-offs.

// sock is a blocking TCP socket.
type sock int

// ioTimeout bounds every blocking read, write and connect: a stack that
// stalls turns into an error, never a hung benchmark.
const ioTimeout = 5 * time.Second

// dial connects to ip:port from the calling thread's network namespace.
// TCP_SYNCNT bounds the handshake (3 SYNs: about 7 s), SO_SNDTIMEO and
// SO_RCVTIMEO every later call.
func dial(ip [4]byte, port int) (sock, error) { return dialAddr(netip.AddrFrom4(ip), port) }

// dialAddr is dial to an IPv4 or IPv6 address.
func dialAddr(addr netip.Addr, port int) (sock, error) {
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: port, Addr: addr.As16()}
	if addr.Unmap().Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: port, Addr: addr.Unmap().As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	s := sock(fd)
	tv := unix.NsecToTimeval(ioTimeout.Nanoseconds())
	for _, o := range []struct{ level, opt, v int }{
		{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		{unix.IPPROTO_TCP, unix.TCP_SYNCNT, 2},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
			s.close()
			return -1, fmt.Errorf("setsockopt: %w", err)
		}
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		s.close()
		return -1, err
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		s.close()
		return -1, err
	}
	err = unix.Connect(fd, sa)
	if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EINPROGRESS) {
		// Interrupted (or timed out by SO_SNDTIMEO) while the handshake
		// goes on: wait for it.
		err = waitConnect(fd)
	}
	if err != nil {
		s.close()
		return -1, fmt.Errorf("connect %s: %w", netip.AddrPortFrom(addr, uint16(port)), err)
	}
	return s, nil
}

func waitConnect(fd int) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return unix.ETIMEDOUT
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			continue
		}
		e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if e != 0 {
			return unix.Errno(e)
		}
		return nil
	}
}

// write writes all of b.
func (s sock) write(b []byte) error {
	for len(b) > 0 {
		n, err := s.writeSome(b)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// writeSome is one write() call: it returns how much the kernel took.
func (s sock) writeSome(b []byte) (int, error) {
	return retry("write", "no progress", func() (int, error) { return unix.Write(int(s), b) })
}

// read is one read() call; 0 means EOF.
func (s sock) read(b []byte) (int, error) {
	return retry("read", "nothing", func() (int, error) { return unix.Read(int(s), b) })
}

// retry makes the system call op until it is not interrupted. EAGAIN is
// the socket's timeout running out, which the error reports as idle (for
// ioTimeout).
func retry(op, idle string, call func() (int, error)) (int, error) {
	for {
		n, err := call()
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return 0, fmt.Errorf("%s: %s for %v", op, idle, ioTimeout)
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", op, err)
		}
		return n, nil
	}
}

// readFull reads exactly len(b) bytes.
func (s sock) readFull(b []byte) error {
	for len(b) > 0 {
		n, err := s.read(b)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("read: unexpected EOF")
		}
		b = b[n:]
	}
	return nil
}

func (s sock) shutdownWrite() error { return unix.Shutdown(int(s), unix.SHUT_WR) }

func (s sock) close() { unix.Close(int(s)) }
