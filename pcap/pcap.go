// Package pcap writes packet captures in the classic libpcap file format, the
// one tcpdump -r and Wireshark read everywhere.
//
// The link type is LINKTYPE_RAW (101): each record is a bare IPv4 packet with
// no link-layer header, which is exactly what a TUN device carries. Timestamps
// have microsecond resolution (magic 0xa1b2c3d4), the format's default.
package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"time"
)

// LinkTypeRaw is LINKTYPE_RAW: packets begin with an IPv4 or IPv6 header.
const LinkTypeRaw = 101

// Magic is the microsecond-resolution pcap magic number, written in the
// writer's byte order (little endian here); readers detect the order from it.
const Magic = 0xa1b2c3d4

// DefaultSnaplen is used when NewWriter is given a snaplen <= 0; it is what
// tcpdump uses and larger than any IPv4 packet.
const DefaultSnaplen = 262144

// ErrClosed is returned by WritePacket and Flush after Close.
var ErrClosed = errors.New("pcap: writer closed")

// Writer appends packet records to a pcap stream. It is safe for concurrent
// use: the stack calls it from its input path and from every goroutine that
// sends, and each record must land in the file whole.
//
// Records are buffered; call Flush to make them visible to a reader of a live
// file, and Close at the end.
type Writer struct {
	mu      sync.Mutex
	w       *bufio.Writer
	c       io.Closer // the underlying writer, when it is an io.Closer
	snaplen int
	hdr     [16]byte
	err     error // sticky: the first write error, or ErrClosed
}

// NewWriter writes the pcap global header to w and returns a Writer for the
// records. Packets longer than snaplen are truncated in the file (their
// original length is still recorded).
func NewWriter(w io.Writer, snaplen int) (*Writer, error) {
	if snaplen <= 0 {
		snaplen = DefaultSnaplen
	}
	pw := &Writer{w: bufio.NewWriterSize(w, 64<<10), snaplen: snaplen}
	if c, ok := w.(io.Closer); ok {
		pw.c = c
	}
	var h [24]byte
	le := binary.LittleEndian
	le.PutUint32(h[0:], Magic)
	le.PutUint16(h[4:], 2) // version 2.4
	le.PutUint16(h[6:], 4)
	// h[8:16]: thiszone and sigfigs, both 0 (timestamps are UTC).
	le.PutUint32(h[16:], uint32(snaplen))
	le.PutUint32(h[20:], LinkTypeRaw)
	if _, err := pw.w.Write(h[:]); err != nil {
		return nil, err
	}
	// Flush the header at once so even an empty capture is a valid file.
	if err := pw.w.Flush(); err != nil {
		return nil, err
	}
	return pw, nil
}

// WritePacket appends one record with timestamp t. pkt is not retained.
func (pw *Writer) WritePacket(t time.Time, pkt []byte) error {
	capLen := len(pkt)
	if capLen > pw.snaplen {
		capLen = pw.snaplen
	}
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.err != nil {
		return pw.err
	}
	le := binary.LittleEndian
	usec := t.UnixMicro()
	le.PutUint32(pw.hdr[0:], uint32(usec/1e6))
	le.PutUint32(pw.hdr[4:], uint32(usec%1e6))
	le.PutUint32(pw.hdr[8:], uint32(capLen))
	le.PutUint32(pw.hdr[12:], uint32(len(pkt)))
	if _, err := pw.w.Write(pw.hdr[:]); err != nil {
		return pw.keep(err)
	}
	_, err := pw.w.Write(pkt[:capLen])
	return pw.keep(err)
}

// Flush writes buffered records to the underlying writer.
func (pw *Writer) Flush() error {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.err != nil {
		return pw.err
	}
	return pw.keep(pw.w.Flush())
}

// keep returns err, and makes it (if not nil) the error of every later call.
// The caller holds pw.mu.
func (pw *Writer) keep(err error) error {
	if err != nil {
		pw.err = err
	}
	return err
}

// Close flushes the buffer and closes the underlying writer if it is an
// io.Closer. Later writes return ErrClosed.
func (pw *Writer) Close() error {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.err == ErrClosed {
		return nil
	}
	err := pw.err
	if err == nil {
		err = pw.w.Flush()
	}
	pw.err = ErrClosed
	if pw.c != nil {
		if cerr := pw.c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
