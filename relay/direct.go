package relay

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Direct reaches the destinations through the host's own sockets. Its
// sockets must not route back into the TUN device the stack serves (the
// routes that bring clients to the stack would bring the relay's packets
// there too), so they are bound to Device (SO_BINDTODEVICE) or carry Mark
// (SO_MARK) for a policy-routing rule, or both.
type Direct struct {
	Device string
	Mark   int
}

// NewDirect checks that d keeps its sockets off the TUN device.
func NewDirect(device string, mark int) (Direct, error) {
	if device == "" && mark == 0 {
		return Direct{}, errors.New("relay: direct needs an outgoing device or a mark, or its own sockets would route back into the TUN device")
	}
	return Direct{Device: device, Mark: mark}, nil
}

func (d Direct) control(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if d.Device != "" {
			if serr = unix.BindToDevice(int(fd), d.Device); serr != nil {
				serr = fmt.Errorf("SO_BINDTODEVICE %s: %w", d.Device, serr)
				return
			}
		}
		if d.Mark != 0 {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, d.Mark); serr != nil {
				serr = fmt.Errorf("SO_MARK %#x: %w", d.Mark, serr)
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// DialTCP connects to dst from the host.
func (d Direct) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	dl := net.Dialer{Control: d.control}
	return dl.DialContext(ctx, "tcp", dst.String())
}

// ListenUDP opens a host UDP socket on an ephemeral port.
func (d Direct) ListenUDP(ctx context.Context, v6 bool) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: d.control}
	if v6 {
		return lc.ListenPacket(ctx, "udp6", "[::]:0")
	}
	return lc.ListenPacket(ctx, "udp4", "0.0.0.0:0")
}

// DefaultRouteDevice is the device of the IPv4 default route other than
// exclude (the stack's own TUN device), from /proc/net/route: where
// Direct's sockets go when no device is named.
func DefaultRouteDevice(exclude string) (string, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header line
	for sc.Scan() {
		// Iface Destination Gateway Flags ...; a default route's
		// destination is 00000000.
		fields := strings.Fields(sc.Text())
		if len(fields) > 1 && fields[1] == "00000000" && fields[0] != exclude {
			return fields[0], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("relay: no IPv4 default route outside the TUN device to send the relayed traffic through (name a device or a mark)")
}

// Echo pings dst from the host through a raw ICMP socket kept off the TUN
// device like the others, and reports whether dst answered before ctx
// ended: what the relay's echo forwarder needs to answer for real.
func (d Direct) Echo(ctx context.Context, dst netip.Addr, data []byte) (bool, error) {
	network, typ, want := "ip4:icmp", byte(8), byte(0)
	if dst.Is6() && !dst.Is4In6() {
		network, typ, want = "ip6:ipv6-icmp", 128, 129
	}
	lc := net.ListenConfig{Control: d.control}
	c, err := lc.ListenPacket(ctx, network, "")
	if err != nil {
		return false, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	var idb [2]byte
	rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	msg := append([]byte{typ, 0, 0, 0, idb[0], idb[1], 0, 1}, data...)
	if typ == 8 { // ICMPv6's checksum is the kernel's (RFC 3542 3.1)
		binary.BigEndian.PutUint16(msg[2:], inetChecksum(msg))
	}
	to := &net.IPAddr{IP: dst.Unmap().AsSlice()}
	if _, err := c.WriteTo(msg, to); err != nil {
		return false, err
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return false, nil // no answer: none to give
			}
			return false, err
		}
		m := buf[:n]
		if len(m) >= 8 && m[0] == want && binary.BigEndian.Uint16(m[4:]) == id && from.(*net.IPAddr).IP.Equal(to.IP) {
			return true, nil
		}
	}
}

// inetChecksum is the Internet checksum of b (RFC 1071).
func inetChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
