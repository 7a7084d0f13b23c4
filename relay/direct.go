package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"

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
