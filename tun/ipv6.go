package tun

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
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

// Address flags of /proc/net/if_inet6 (include/uapi/linux/if_addr.h).
const (
	ifaDADFailed = 0x08 // IFA_F_DADFAILED
	ifaTentative = 0x40 // IFA_F_TENTATIVE
)

// waitUsable6 waits until the kernel lets the device's IPv6 address be
// used. An address set while the device was down stays tentative until
// addrconf's DAD work runs after the device comes up; it runs soon (DAD is
// off), but in a workqueue, after Open would return. A connect in that gap
// picks another source (::1 if lo is up, whose answers the kernel then
// drops as martians), so Open waits for the work rather than leave the
// race to its caller.
func (d *Device) waitUsable6(a netip.Addr) error {
	want := fmt.Sprintf("%032x", a.As16())
	deadline := time.Now().Add(2 * time.Second)
	for {
		flags, err := d.addrFlags6(want)
		switch {
		case err != nil:
			return fmt.Errorf("%s: reading the state of %s: %w", d.name, a, err)
		case flags&ifaDADFailed != 0:
			return fmt.Errorf("%s: %s failed duplicate address detection: %w", d.name, a, unix.EADDRNOTAVAIL)
		case flags&ifaTentative == 0:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("%s: %s still tentative after 2s: %w", d.name, a, unix.EADDRNOTAVAIL)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// addrFlags6 returns the flags of the device's address addr (32 hex
// digits), read from if_inet6 of the calling thread's namespace (the
// thread-self view: /proc/self/net is the main thread's namespace).
func (d *Device) addrFlags6(addr string) (uint64, error) {
	b, err := os.ReadFile("/proc/thread-self/net/if_inet6")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		// address ifindex prefixlen scope flags name
		f := strings.Fields(line)
		if len(f) == 6 && f[0] == addr && f[5] == d.name {
			return strconv.ParseUint(f[4], 16, 32)
		}
	}
	return 0, fmt.Errorf("the address is not on the device: %w", unix.EADDRNOTAVAIL)
}
