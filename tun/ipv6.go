package tun

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// in6Ifreq is Linux's struct in6_ifreq (include/uapi/linux/ipv6.h), what
// SIOCSIFADDR and SIOCDIFADDR take on an AF_INET6 socket.
type in6Ifreq struct {
	addr      [16]byte
	prefixLen uint32
	ifindex   int32
}

// setAddress6 gives the device an IPv6 address. Duplicate address
// detection is turned off for the device first (accept_dad 0, the sysctl
// of the device's namespace): nothing on the far side of a TUN answers it,
// and the kernel would keep the address tentative, unusable for connect
// and bind, for a second.
func (d *Device) setAddress6(p netip.Prefix) error {
	for _, c := range []struct{ knob, val string }{{"disable_ipv6", "0"}, {"accept_dad", "0"}} {
		path := filepath.Join("/proc/sys/net/ipv6/conf", d.name, c.knob)
		if err := os.WriteFile(path, []byte(c.val), 0); err != nil {
			return fmt.Errorf("%s: setting %s (IPv6 on the device): %w", d.name, path, err)
		}
	}
	if err := d.ioctl6(unix.SIOCSIFADDR, p); err != nil {
		return d.addrError(p, err)
	}
	d.addr6 = p
	return nil
}

// ioctl6 applies req (SIOCSIFADDR, SIOCDIFADDR) for p on the device.
func (d *Device) ioctl6(req uintptr, p netip.Prefix) error {
	ifi, err := net.InterfaceByName(d.name)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	r := in6Ifreq{addr: p.Addr().As16(), prefixLen: uint32(p.Bits()), ifindex: int32(ifi.Index)}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(&r))); errno != 0 {
		return errno
	}
	return nil
}
