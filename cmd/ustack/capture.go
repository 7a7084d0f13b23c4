package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	"ustack/pcap"
)

// pcapFlushEvery is how often the capture file is flushed, so that a
// tcpdump -r (or Wireshark reload) on a live capture sees recent packets.
const pcapFlushEvery = time.Second

// capture is --pcap: the stack's packet hook, writing every packet in and
// out. It writes to a temporary file beside the target from the start, and
// commit renames it over the target once the daemon is up: a start that
// fails removes the temporary file and leaves an earlier capture as it was.
type capture struct {
	path, tmp string // tmp is "" once committed
	lg        *log.Logger
	w         *pcap.Writer
	stop      chan struct{}
	errOnce   sync.Once
}

// startCapture creates the temporary file and starts flushing it.
func startCapture(path string, lg *log.Logger) (*capture, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("--pcap %s: is a directory", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, fmt.Errorf("--pcap %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("--pcap %s: %w", path, err)
	}
	w, err := pcap.NewWriter(f, 0)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("--pcap %s: %w", path, err)
	}
	c := &capture{path: path, tmp: f.Name(), lg: lg, w: w, stop: make(chan struct{})}
	go func() {
		t := time.NewTicker(pcapFlushEvery)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
				w.Flush()
			}
		}
	}()
	return c, nil
}

// packet is the stack's Packet hook (stack.Options.Packet); pkt is only
// valid during the call.
func (c *capture) packet(out bool, pkt []byte) {
	if err := c.w.WritePacket(time.Now(), pkt); err != nil && err != pcap.ErrClosed {
		c.errOnce.Do(func() { c.lg.Printf("ustack run: pcap %s: %v (capture stopped)", c.path, err) })
	}
}

// commit puts the capture at its path, replacing an earlier file.
func (c *capture) commit() error {
	if err := os.Rename(c.tmp, c.path); err != nil {
		return fmt.Errorf("--pcap %s: %w", c.path, err)
	}
	c.tmp = ""
	return nil
}

// close flushes and closes the file; an uncommitted one is removed.
func (c *capture) close() error {
	close(c.stop)
	err := c.w.Close()
	if c.tmp != "" {
		os.Remove(c.tmp)
	}
	return err
}
