package tun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offload: a device opened with Config.Offload carries a virtio-net header
// (IFF_VNET_HDR) in front of every packet, and TUNSETOFFLOAD tells the
// kernel it may hand us TCP segments of up to 64 KB (TSO4, TSO6) whose
// checksum is left for the device to finish (CSUM). Both directions then
// move up to 64 KB per system call instead of one MTU. The header format is
// struct virtio_net_hdr (include/uapi/linux/virtio_net.h), in the host's
// byte order on a little-endian machine (tun_is_little_endian).
const (
	vnetHdrLen = 10 // sizeof(struct virtio_net_hdr)

	vnetNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: checksum only partial
	vnetDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID: checksum known good

	vnetGSONone  = 0 // VIRTIO_NET_HDR_GSO_NONE
	vnetGSOTCPv4 = 1 // VIRTIO_NET_HDR_GSO_TCPV4
	vnetGSOTCPv6 = 4 // VIRTIO_NET_HDR_GSO_TCPV6

	tunFCsum = 0x01 // TUN_F_CSUM (include/uapi/linux/if_tun.h)
	tunFTSO4 = 0x02 // TUN_F_TSO4
	tunFTSO6 = 0x04 // TUN_F_TSO6

	// GSOMaxSize is the largest packet an offload device reads or writes:
	// an IPv4 total length is 16 bits.
	GSOMaxSize = 65535
)

// vnetHdr is struct virtio_net_hdr.
type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

func (h *vnetHdr) decode(b []byte) {
	h.flags, h.gsoType = b[0], b[1]
	h.hdrLen = binary.LittleEndian.Uint16(b[2:])
	h.gsoSize = binary.LittleEndian.Uint16(b[4:])
	h.csumStart = binary.LittleEndian.Uint16(b[6:])
	h.csumOffset = binary.LittleEndian.Uint16(b[8:])
}

func (h *vnetHdr) encode(b []byte) {
	b[0], b[1] = h.flags, h.gsoType
	binary.LittleEndian.PutUint16(b[2:], h.hdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.gsoSize)
	binary.LittleEndian.PutUint16(b[6:], h.csumStart)
	binary.LittleEndian.PutUint16(b[8:], h.csumOffset)
}

// openOffload opens /dev/net/tun with IFF_VNET_HDR, which water cannot
// ask for, and enables checksum, TSO4 and TSO6 offload. The descriptor is
// close-on-exec and nonblocking from the start, so it lands in the runtime
// poller and no child inherits it. Attaching to an existing persistent
// device leaves its persist flag alone.
func openOffload(name string) (*os.File, string, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, "", err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, "", err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, "", err
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrLen); err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("TUNSETVNETHDRSZ: %w", err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunFCsum|tunFTSO4|tunFTSO6); err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("TUNSETOFFLOAD: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), ifr.Name(), nil
}

// Offload reports whether the device was opened with Config.Offload.
func (d *Device) Offload() bool { return d.offload }

// GSOMaxSize is the largest packet ReadOffload may return and WriteGSO
// accepts: GSOMaxSize with offload, else the MTU.
func (d *Device) GSOMaxSize() int {
	if d.offload {
		return GSOMaxSize
	}
	return d.mtu
}

// ReadOffload is ReadPacket that also reports csumOK: the packet's
// transport checksum need not be checked, because the kernel vouched for
// it (DATA_VALID) or because it was never computed (NEEDS_CSUM: a local
// socket left it to the device, and no wire ever saw the packet). A TCP
// segment may be up to GSOMaxSize bytes, far beyond the MTU: the kernel's
// TSO hands one per 64 KB. On a device without offload it is ReadPacket.
func (d *Device) ReadOffload(b []byte) (n int, csumOK bool, err error) {
	if !d.offload {
		n, err = d.ReadPacket(b)
		return n, false, err
	}
	var hb [vnetHdrLen]byte
	n, err = d.readv(hb[:], b)
	if err != nil || n == 0 {
		return 0, false, err
	}
	var h vnetHdr
	h.decode(hb[:])
	return n, h.flags&(vnetNeedsCsum|vnetDataValid) != 0, nil
}

// readv reads one packet with its virtio-net header into hdr and b.
func (d *Device) readv(hdr, b []byte) (int, error) {
	if d.closed.Load() {
		return 0, d.closedError("read")
	}
	if len(b) == 0 {
		return 0, fmt.Errorf("%s: read: empty buffer: %w", d.name, io.ErrShortBuffer)
	}
	iov := [2]unix.Iovec{{Base: &hdr[0]}, {Base: &b[0]}}
	iov[0].SetLen(len(hdr))
	iov[1].SetLen(len(b))
	var n int
	var rerr error
	err := d.raw.Read(func(fd uintptr) bool {
		r, _, e := unix.Syscall(unix.SYS_READV, fd, uintptr(unsafe.Pointer(&iov[0])), 2)
		n, rerr = int(r), nil
		if e != 0 {
			n, rerr = 0, e
		}
		return rerr != unix.EAGAIN && rerr != unix.EINTR
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		if d.closed.Load() || errors.Is(err, os.ErrClosed) {
			return 0, d.closedError("read")
		}
		return 0, fmt.Errorf("%s: read: %w", d.name, err)
	}
	n -= len(hdr)
	if n < 0 {
		return 0, fmt.Errorf("%s: read: %d bytes, shorter than the virtio-net header", d.name, n+len(hdr))
	}
	if n == len(b) && truncated(b) {
		return n, fmt.Errorf("%s: read: packet longer than the %d-byte buffer: %w", d.name, len(b), io.ErrShortBuffer)
	}
	return n, nil
}

// readPacketOffload is ReadPacket on an offload device, for callers that
// check checksums themselves: it finishes a partial checksum in software.
func (d *Device) readPacketOffload(b []byte) (int, error) {
	var hb [vnetHdrLen]byte
	n, err := d.readv(hb[:], b)
	if err != nil {
		return n, err
	}
	var h vnetHdr
	h.decode(hb[:])
	if h.flags&vnetNeedsCsum != 0 {
		finishChecksum(b[:n], int(h.csumStart), int(h.csumOffset))
	}
	return n, nil
}

// finishChecksum does what a NIC does for a CHECKSUM_PARTIAL packet: the
// field at start+off holds the pseudo-header sum; the one's complement of
// the sum from start to the end goes there (skb_checksum_help).
func finishChecksum(p []byte, start, off int) {
	if start+off+2 > len(p) {
		return
	}
	var sum uint32
	q := p[start:]
	for len(q) >= 2 {
		sum += uint32(q[0])<<8 | uint32(q[1])
		q = q[2:]
	}
	if len(q) == 1 {
		sum += uint32(q[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[start+off:], ^uint16(sum))
}

// WriteGSO writes one TCP/IPv4 packet of up to GSOMaxSize bytes that the
// kernel treats as segments of mss payload bytes each, the way a NIC's TSO
// would cut it (tcp_gso_segment: the sequence number advances, PSH and FIN
// stay on the last segment only). The TCP checksum field must hold the
// pseudo-header sum of the whole packet (not complemented), as for
// CHECKSUM_PARTIAL; the kernel finishes it. b is not retained.
func (d *Device) WriteGSO(b []byte, mss int) error {
	if !d.offload {
		return fmt.Errorf("%s: write: GSO needs a device opened with Offload: %w", d.name, unix.EINVAL)
	}
	// The IP header: IPv4 with its options, or IPv6's fixed header (a
	// TSO packet carries no extension headers).
	var ihl int
	gsoType := uint8(vnetGSOTCPv4)
	switch {
	case len(b) >= 40 && b[0]>>4 == 4:
		ihl = int(b[0]&0xf) * 4
	case len(b) >= 60 && b[0]>>4 == 6 && b[6] == 6: // next header TCP
		ihl, gsoType = 40, vnetGSOTCPv6
	default:
		return fmt.Errorf("%s: write: a GSO packet must be TCP over IPv4 or IPv6: %w", d.name, unix.EINVAL)
	}
	if len(b) < ihl+20 {
		return fmt.Errorf("%s: write: GSO packet too short: %w", d.name, unix.EINVAL)
	}
	thl := int(b[ihl+12]>>4) * 4
	h := vnetHdr{
		flags:      vnetNeedsCsum,
		gsoType:    gsoType,
		hdrLen:     uint16(ihl + thl),
		gsoSize:    uint16(mss),
		csumStart:  uint16(ihl),
		csumOffset: 16, // offsetof(struct tcphdr, check)
	}
	if len(b)-ihl-thl <= mss {
		h.gsoType = vnetGSONone
	}
	return d.writev(&h, b)
}

// writev writes hdr and b with one writev().
func (d *Device) writev(h *vnetHdr, b []byte) error {
	if d.closed.Load() {
		return d.closedError("write")
	}
	var hb [vnetHdrLen]byte
	h.encode(hb[:])
	iov := [2]unix.Iovec{{Base: &hb[0]}, {Base: &b[0]}}
	iov[0].SetLen(len(hb))
	iov[1].SetLen(len(b))
	var werr error
	err := d.raw.Write(func(fd uintptr) bool {
		_, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), 2)
		werr = nil
		if e != 0 {
			werr = e
		}
		return werr != unix.EAGAIN && werr != unix.EINTR
	})
	return d.writeError(err, werr)
}
