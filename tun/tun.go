// Package tun is the TUN device the stack owns: IPv4 packets written by the
// kernel's clients (curl, nc) to the device's subnet are read here, and
// packets written here are delivered to the kernel as if they had arrived on
// the device.
//
// A *Device implements stack.Link. Open configures the kernel's side of the
// link itself (address, netmask, MTU, up) with ioctls; it does not run ip.
// Everything happens in the network namespace of the calling thread: to put
// the device in a namespace, call Open inside netns.NS.Do. The device stays
// bound to that namespace and may be used from any goroutine afterwards.
package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/songgao/water"
	"golang.org/x/sys/unix"
)

// DefaultMTU is the MTU used when Config.MTU is 0.
const DefaultMTU = 1500

// Config describes the device to open.
type Config struct {
	// Name is the interface name, e.g. "tun0" (at most 15 bytes). Empty lets
	// the kernel pick one (tun0, tun1, ...); Device.Name reports it.
	Name string
	// Addr is the kernel side's address, e.g. 10.0.0.1/24; the kernel adds
	// the route to the subnet through the device itself. The zero Prefix
	// leaves the device's address alone.
	Addr netip.Prefix
	// Addr6 is the kernel side's IPv6 address, e.g. fd00::1/64; the zero
	// Prefix gives the device none.
	Addr6 netip.Prefix
	// MTU is the device's MTU; 0 means DefaultMTU. Linux accepts 68..65535
	// on a TUN device.
	MTU int
	// Offload opens the device with a virtio-net header and TSO4, TSO6 and
	// checksum offload (see ReadOffload and WriteGSO), so that the kernel
	// and the stack exchange up to 64 KB per system call.
	Offload bool
}

// Device is an open TUN device (IFF_TUN|IFF_NO_PI): each read returns one
// IPv4 or IPv6 packet without any header in front, each write injects one.
// With Config.Offload the device also has IFF_VNET_HDR, hidden from the
// caller except through ReadOffload and WriteGSO.
type Device struct {
	name string
	mtu  int
	file *os.File        // the /dev/net/tun queue, nonblocking, in the runtime poller
	raw  syscall.RawConn // file's raw fd, for one write() per packet
	ctl  int             // AF_INET datagram socket for the ioctls, in the device's namespace

	// attached is set when Open attached to an existing persistent device
	// rather than creating one. Then, if setAddr is set, Close puts back
	// oldAddr/oldMask (or removes the address when oldAddr is not valid).
	attached bool
	setAddr  bool
	addr6    netip.Prefix // the IPv6 address we gave the device, if any
	oldAddr  netip.Addr
	oldMask  netip.Addr

	offload bool // IFF_VNET_HDR with TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Open creates the TUN device cfg.Name, or attaches to an existing persistent
// one of that name, then sets its IPv4 address and netmask, its MTU, and
// brings it up. The device is created in the calling thread's network
// namespace.
//
// Errors wrap the errno, so errors.Is(err, unix.EBUSY) and friends hold:
// EPERM/EACCES mean the caller lacks CAP_NET_ADMIN, EBUSY that another
// process has the device open, EEXIST/EADDRINUSE that the address is already
// on the device, EINVAL a bad MTU (or an existing device that is not TUN).
func Open(cfg Config) (*Device, error) {
	if err := validName(cfg.Name); err != nil {
		return nil, err
	}
	display := cfg.Name
	if display == "" {
		display = "a tun device"
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < 0 || mtu > math.MaxInt32 {
		return nil, fmt.Errorf("tun %s: MTU %d is invalid (a TUN device accepts 68..65535): %w", display, mtu, unix.EINVAL)
	}
	if cfg.Addr.IsValid() && !cfg.Addr.Addr().Is4() {
		return nil, fmt.Errorf("tun %s: address %s is not IPv4: %w", display, cfg.Addr, unix.EINVAL)
	}

	if err := checkSubnetFree(cfg.Name, cfg.Addr); err != nil {
		return nil, fmt.Errorf("tun %s: %w", display, err)
	}

	ctl, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tun %s: control socket: %w", display, err)
	}
	existed := false
	if cfg.Name != "" && !strings.Contains(cfg.Name, "%") {
		ifr, _ := unix.NewIfreq(cfg.Name)
		existed = unix.IoctlIfreq(ctl, unix.SIOCGIFINDEX, ifr) == nil
	}

	// water opens /dev/net/tun without O_CLOEXEC. Holding ForkLock until the
	// flag is set keeps a concurrent exec (ip netns exec, curl in a test)
	// from inheriting the descriptor, which would keep the device alive
	// after Close.
	//
	// water always sets the persist flag to Config.Persist, so attaching to
	// an existing (and therefore persistent) device must ask for Persist, or
	// water would make the device vanish when we close it.
	if cfg.Offload {
		return openWith(cfg, display, mtu, ctl, existed)
	}
	openMu.Lock()
	defer openMu.Unlock()
	before := tunFDs()
	syscall.ForkLock.RLock()
	ifce, err := water.New(water.Config{
		DeviceType: water.TUN,
		PlatformSpecificParams: water.PlatformSpecificParams{
			Name:    cfg.Name,
			Persist: existed,
		},
	})
	var file *os.File
	if err == nil {
		var ok bool
		if file, ok = ifce.ReadWriteCloser.(*os.File); !ok {
			ifce.Close()
			err = fmt.Errorf("water returned a %T, not an *os.File", ifce.ReadWriteCloser)
		}
	}
	var raw syscall.RawConn
	if err == nil {
		raw, err = file.SyscallConn()
		if err == nil {
			if cerr := raw.Control(func(fd uintptr) { unix.CloseOnExec(int(fd)) }); cerr != nil {
				err = cerr
			}
		}
		if err != nil {
			file.Close()
		}
	}
	if err != nil && ifce == nil {
		reclaimLeaked(before)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		unix.Close(ctl)
		return nil, openError(display, existed, err)
	}

	d := &Device{
		name:     ifce.Name(),
		mtu:      mtu,
		file:     file,
		raw:      raw,
		ctl:      ctl,
		attached: existed,
	}
	if err := d.configure(cfg.Addr, cfg.Addr6); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// openWith opens the device with unix calls instead of water: the offload
// flags are out of water's reach.
func openWith(cfg Config, display string, mtu, ctl int, existed bool) (*Device, error) {
	file, name, err := openOffload(cfg.Name)
	if err != nil {
		unix.Close(ctl)
		return nil, openError(display, existed, err)
	}
	raw, err := file.SyscallConn()
	if err != nil {
		file.Close()
		unix.Close(ctl)
		return nil, openError(display, existed, err)
	}
	d := &Device{name: name, mtu: mtu, file: file, raw: raw, ctl: ctl, attached: existed, offload: true}
	if err := d.configure(cfg.Addr, cfg.Addr6); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// openMu serialises the calls to water.New, so that reclaimLeaked only
// sees descriptors water opened.
var openMu sync.Mutex

// tunFDs returns the descriptors of this process that are open on
// /dev/net/tun.
func tunFDs() map[int]bool {
	fds := map[int]bool{}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/net/tun" {
			fds[fd] = true
		}
	}
	return fds
}

// reclaimLeaked closes the descriptor a failed water.New leaves behind:
// water opens /dev/net/tun and, when an ioctl on it fails (EBUSY, EPERM,
// EINVAL), returns the error without closing it. The leaked descriptor is
// not close-on-exec and pins the network namespace. It is recognised as the
// /dev/net/tun descriptor that was not open before the call (before);
// openMu and syscall.ForkLock are held, so no other Open can race.
func reclaimLeaked(before map[int]bool) {
	if before == nil {
		return // /proc unreadable: leave it rather than guess
	}
	for fd := range tunFDs() {
		if !before[fd] {
			unix.Close(fd)
		}
	}
}

// validName applies the kernel's rules for interface names (dev_valid_name),
// so a long name is refused rather than silently truncated.
func validName(name string) error {
	if name == "" {
		return nil
	}
	if len(name) >= unix.IFNAMSIZ {
		return fmt.Errorf("tun: interface name %q is longer than %d bytes: %w", name, unix.IFNAMSIZ-1, unix.EINVAL)
	}
	if name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n\r\v\f\x00") {
		return fmt.Errorf("tun: %q is not a valid interface name: %w", name, unix.EINVAL)
	}
	return nil
}

func openError(name string, existed bool, err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("creating %s needs CAP_NET_ADMIN: %w", name, err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%s is busy (another process owns it): %w", name, err)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return fmt.Errorf("creating %s: /dev/net/tun is missing or the tun driver is not loaded: %w", name, err)
	case errors.Is(err, unix.EINVAL) && existed:
		return fmt.Errorf("attaching to %s: it exists but is not a single-queue TUN device: %w", name, err)
	default:
		return fmt.Errorf("creating %s: %w", name, err)
	}
}

// configure sets the addresses, netmask and MTU and brings the device up.
func (d *Device) configure(addr, addr6 netip.Prefix) error {
	if addr.IsValid() {
		if err := d.setAddress(addr); err != nil {
			return err
		}
	}
	if addr6.IsValid() {
		if err := d.setAddress6(addr6); err != nil {
			return err
		}
	}

	ifr, _ := unix.NewIfreq(d.name)
	ifr.SetUint32(uint32(d.mtu))
	if err := unix.IoctlIfreq(d.ctl, unix.SIOCSIFMTU, ifr); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("%s: MTU %d is invalid (a TUN device accepts 68..65535): %w", d.name, d.mtu, err)
		}
		return d.ioctlError("setting the MTU of", err)
	}

	ifr, _ = unix.NewIfreq(d.name)
	if err := unix.IoctlIfreq(d.ctl, unix.SIOCGIFFLAGS, ifr); err != nil {
		return d.ioctlError("reading the flags of", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(d.ctl, unix.SIOCSIFFLAGS, ifr); err != nil {
		return d.ioctlError("bringing up", err)
	}
	if addr6.IsValid() {
		return d.waitUsable6(addr6.Addr())
	}
	return nil
}

func (d *Device) setAddress(addr netip.Prefix) error {
	a4 := addr.Addr().As4()
	mask := net.CIDRMask(addr.Bits(), 32)

	if d.attached {
		// Remember what was there, to put it back on Close.
		old, oerr := d.getInet4(unix.SIOCGIFADDR)
		oldMask, merr := d.getInet4(unix.SIOCGIFNETMASK)
		if oerr == nil && merr == nil && old == addr.Addr() && oldMask == netip.AddrFrom4([4]byte(mask)) {
			return nil // already configured; not ours to remove
		}
		if oerr == nil && merr == nil {
			d.oldAddr, d.oldMask = old, oldMask
		}
		d.setAddr = true
	}

	if err := d.setInet4(unix.SIOCSIFADDR, a4); err != nil {
		return d.addrError(addr, err)
	}
	if err := d.setInet4(unix.SIOCSIFNETMASK, [4]byte(mask)); err != nil {
		return d.addrError(addr, err)
	}
	return nil
}

func (d *Device) getInet4(req uint) (netip.Addr, error) {
	ifr, err := unix.NewIfreq(d.name)
	if err != nil {
		return netip.Addr{}, err
	}
	if err := unix.IoctlIfreq(d.ctl, req, ifr); err != nil {
		return netip.Addr{}, err
	}
	b, err := ifr.Inet4Addr()
	if err != nil {
		return netip.Addr{}, err
	}
	return netip.AddrFrom4([4]byte(b)), nil
}

func (d *Device) setInet4(req uint, a [4]byte) error {
	ifr, err := unix.NewIfreq(d.name)
	if err != nil {
		return err
	}
	if err := ifr.SetInet4Addr(a[:]); err != nil {
		return err
	}
	return unix.IoctlIfreq(d.ctl, req, ifr)
}

func (d *Device) addrError(addr netip.Prefix, err error) error {
	switch {
	case errors.Is(err, unix.EEXIST), errors.Is(err, unix.EADDRINUSE):
		return fmt.Errorf("%s: address %s is already in use on %s: %w", d.name, addr, d.name, err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%s: address %s rejected by the kernel: %w", d.name, addr, err)
	default:
		return d.ioctlError("setting the address "+addr.String()+" of", err)
	}
}

func (d *Device) ioctlError(what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%s %s needs CAP_NET_ADMIN: %w", what, d.name, err)
	}
	return fmt.Errorf("%s %s: %w", what, d.name, err)
}

// Name returns the interface name, as the kernel knows it.
func (d *Device) Name() string { return d.name }

// MTU returns the device's MTU, the largest packet ReadPacket returns and
// WritePacket should be given.
func (d *Device) MTU() int { return d.mtu }

// ReadPacket blocks until the kernel sends a packet through the device and
// copies it into b, one packet per call. b should be at least MTU() bytes:
// the kernel silently truncates a packet that does not fit, which
// ReadPacket reports as io.ErrShortBuffer (with the truncated packet in b).
// After Close, and in a ReadPacket blocked when Close is called, it returns
// an error for which errors.Is(err, net.ErrClosed) holds. On an offload
// device a TCP packet may be up to GSOMaxSize bytes, and a checksum the
// kernel left partial is finished here, so the packet is complete.
func (d *Device) ReadPacket(b []byte) (int, error) {
	if d.offload {
		return d.readPacketOffload(b)
	}
	if d.closed.Load() {
		return 0, d.closedError("read")
	}
	n, err := d.file.Read(b)
	if err != nil {
		if d.closed.Load() || errors.Is(err, os.ErrClosed) {
			return 0, d.closedError("read")
		}
		return n, fmt.Errorf("%s: read: %w", d.name, err)
	}
	if n > 0 && n == len(b) && truncated(b) {
		return n, fmt.Errorf("%s: read: packet longer than the %d-byte buffer: %w", d.name, len(b), io.ErrShortBuffer)
	}
	return n, nil
}

// truncated reports whether the IP header in b claims more bytes than b has.
func truncated(b []byte) bool {
	switch b[0] >> 4 {
	case 4:
		return len(b) < 4 || int(binary.BigEndian.Uint16(b[2:4])) > len(b)
	case 6:
		return len(b) < 6 || 40+int(binary.BigEndian.Uint16(b[4:6])) > len(b)
	}
	return false
}

// WritePacket hands one IPv4 (or IPv6) packet to the kernel with a single
// write(). b is not retained. The kernel rejects a packet that is not IP
// (EINVAL) and any packet while the device is down (EIO).
func (d *Device) WritePacket(b []byte) error {
	if d.offload {
		if len(b) == 0 {
			return fmt.Errorf("%s: write: empty packet: %w", d.name, unix.EINVAL)
		}
		return d.writev(&vnetHdr{}, b)
	}
	if d.closed.Load() {
		return d.closedError("write")
	}
	var werr error
	err := d.raw.Write(func(fd uintptr) bool {
		_, werr = unix.Write(int(fd), b)
		return werr != unix.EAGAIN && werr != unix.EINTR
	})
	return d.writeError(err, werr)
}

// writeError is the result of a write through d.raw: err is the poller's,
// werr that of the last system call. (The call itself stays in each
// caller's closure: passing it in as a func would cost an allocation a
// packet.)
func (d *Device) writeError(err, werr error) error {
	if err == nil {
		err = werr
	}
	if err == nil {
		return nil
	}
	if d.closed.Load() {
		return d.closedError("write")
	}
	return fmt.Errorf("%s: write: %w", d.name, err)
}

func (d *Device) closedError(op string) error {
	return fmt.Errorf("%s: %s: %w (%w)", d.name, op, net.ErrClosed, os.ErrClosed)
}

// Close closes the device. A device Open created is not persistent, so it
// disappears with its descriptor, taking its address and route with it. On a
// persistent device Open attached to, Close removes the address Open set
// (putting back the one it replaced, if any) and leaves the device. A
// ReadPacket blocked in another goroutine returns net.ErrClosed. Close is
// idempotent.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		var errs []error
		if d.attached && d.setAddr {
			// While we still hold the device, so no one else has it yet.
			var err error
			if d.oldAddr.IsValid() {
				err = d.setInet4(unix.SIOCSIFADDR, d.oldAddr.As4())
				if err == nil {
					err = d.setInet4(unix.SIOCSIFNETMASK, d.oldMask.As4())
				}
			} else {
				// SIOCSIFADDR with 0.0.0.0 deletes the address.
				err = d.setInet4(unix.SIOCSIFADDR, [4]byte{})
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: restoring the address: %w", d.name, err))
			}
		}
		if d.attached && d.addr6.IsValid() {
			if err := d.ioctl6(unix.SIOCDIFADDR, d.addr6); err != nil {
				errs = append(errs, fmt.Errorf("%s: removing %s: %w", d.name, d.addr6, err))
			}
		}
		if err := d.file.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: close: %w", d.name, err))
		}
		if err := unix.Close(d.ctl); err != nil {
			errs = append(errs, fmt.Errorf("%s: close control socket: %w", d.name, err))
		}
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// checkSubnetFree fails when another interface already has an address in
// prefix: the kernel would route the stack's address there, not to the
// device, and nothing would ever reach the stack.
func checkSubnetFree(name string, prefix netip.Prefix) error {
	if !prefix.IsValid() {
		return nil
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil // cannot tell; the device still works if the subnet is free
	}
	for _, ifc := range ifaces {
		if ifc.Name == name {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			p, ok := netipPrefix(ipn)
			if ok && p.Addr().Is4() && p.Overlaps(prefix) {
				return fmt.Errorf("subnet %s is already in use on %s (%s): the kernel would route it there: %w",
					prefix.Masked(), ifc.Name, p, unix.EADDRINUSE)
			}
		}
	}
	return nil
}

func netipPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}
