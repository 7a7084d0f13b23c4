package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"ustack/pcap"
)

// pcapFlushEvery is how often the capture file is flushed, so that a
// tcpdump -r (or Wireshark reload) on a live capture sees recent packets.
const pcapFlushEvery = time.Second

// captureHoldMax bounds the packets a capture holds in memory before its
// file is created.
const captureHoldMax = 4 << 20

// capture is --pcap: the stack's packet hook, writing every packet in and
// out to a pcap file. The stack takes its hook when it is created, but the
// daemon creates (and so truncates) the file only once nothing else can
// fail, so that a start that fails leaves an existing file as it was. The
// packets seen in between (the kernel's first IPv6 solicitations on the new
// device, an early client) are held in memory and written first.
type capture struct {
	path string
	lg   *log.Logger
	w    atomic.Pointer[pcap.Writer] // nil until open

	mu      sync.Mutex
	held    []heldPacket
	heldLen int
	dropped int  // packets beyond captureHoldMax before open
	closed  bool // close came first: hold nothing more
	stop    chan struct{}
	errOnce sync.Once
}

type heldPacket struct {
	t   time.Time
	pkt []byte
}

func newCapture(path string, lg *log.Logger) *capture {
	return &capture{path: path, lg: lg}
}

// checkPcapPath refuses, before anything changes, a --pcap path where no
// file can be created: a directory, or a file in a directory that does not
// exist. It only looks.
func checkPcapPath(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("--pcap %s: is a directory", path)
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("--pcap %s: %w", path, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--pcap %s: %s is not a directory", path, dir)
	}
	return nil
}

// packet is the stack's Packet hook (stack.Options.Packet); pkt is only
// valid during the call.
func (c *capture) packet(out bool, pkt []byte) {
	now := time.Now()
	if w := c.w.Load(); w != nil {
		c.write(w, now, pkt)
		return
	}
	c.mu.Lock()
	if w := c.w.Load(); w != nil { // opened meanwhile, after what it held
		c.mu.Unlock()
		c.write(w, now, pkt)
		return
	}
	switch {
	case c.closed:
	case c.heldLen+len(pkt) > captureHoldMax:
		c.dropped++
	default:
		c.held = append(c.held, heldPacket{now, append([]byte(nil), pkt...)})
		c.heldLen += len(pkt)
	}
	c.mu.Unlock()
}

func (c *capture) write(w *pcap.Writer, t time.Time, pkt []byte) {
	if err := w.WritePacket(t, pkt); err != nil && err != pcap.ErrClosed {
		c.errOnce.Do(func() { c.lg.Printf("ustack run: pcap %s: %v (capture stopped)", c.path, err) })
	}
}

// open creates the file, writes the packets held so far and from then on
// every packet as it comes, flushing every pcapFlushEvery.
func (c *capture) open() error {
	f, err := os.Create(c.path)
	if err != nil {
		return err
	}
	w, err := pcap.NewWriter(f, 0)
	if err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", c.path, err)
	}
	c.mu.Lock()
	for _, h := range c.held {
		c.write(w, h.t, h.pkt)
	}
	c.held, c.heldLen = nil, 0
	dropped := c.dropped
	c.stop = make(chan struct{})
	c.w.Store(w)
	c.mu.Unlock()
	if dropped > 0 {
		c.lg.Printf("ustack run: pcap %s: the %d packets beyond the first %d MB before the file was created are missing", c.path, dropped, captureHoldMax>>20)
	}
	go func(stop chan struct{}) {
		t := time.NewTicker(pcapFlushEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				w.Flush()
			}
		}
	}(c.stop)
	return nil
}

// close flushes and closes the file, if open got that far; what is held
// otherwise is dropped.
func (c *capture) close() error {
	c.mu.Lock()
	c.closed = true
	c.held, c.heldLen = nil, 0
	c.mu.Unlock()
	w := c.w.Load()
	if w == nil {
		return nil
	}
	close(c.stop)
	return w.Close()
}
