package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ustack/internal/tools"
)

// ipv4TCP builds a minimal IPv4+TCP segment (20+20 bytes plus payload) that
// tcpdump can decode. Checksums are left zero: tcpdump -n still prints it.
func ipv4TCP(src, dst [4]byte, sport, dport uint16, flags byte, payload []byte) []byte {
	p := make([]byte, 40+len(payload))
	be := binary.BigEndian
	p[0] = 0x45
	be.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = 6
	copy(p[12:], src[:])
	copy(p[16:], dst[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(be.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	be.PutUint16(p[10:], ^uint16(sum))
	t := p[20:]
	be.PutUint16(t[0:], sport)
	be.PutUint16(t[2:], dport)
	be.PutUint32(t[4:], 1000)
	t[12] = 5 << 4
	t[13] = flags
	be.PutUint16(t[14:], 65535)
	copy(t[20:], payload)
	return p
}

func TestWriterFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(f, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := [4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}
	p1 := ipv4TCP(a, b, 40000, 80, 0x02, nil)           // SYN
	p2 := ipv4TCP(b, a, 80, 40000, 0x18, []byte("hi!")) // PSH|ACK
	t1 := time.Unix(1700000000, 123456000)
	t2 := t1.Add(1500 * time.Microsecond)
	if err := w.WritePacket(t1, p1); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(t2, p2); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(t2, p2); err != ErrClosed {
		t.Fatalf("WritePacket after Close: %v, want ErrClosed", err)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if len(data) < 24 {
		t.Fatalf("file is %d bytes", len(data))
	}
	if m := le.Uint32(data[0:]); m != 0xa1b2c3d4 {
		t.Errorf("magic %#x", m)
	}
	if maj, min := le.Uint16(data[4:]), le.Uint16(data[6:]); maj != 2 || min != 4 {
		t.Errorf("version %d.%d, want 2.4", maj, min)
	}
	if z, s := le.Uint32(data[8:]), le.Uint32(data[12:]); z != 0 || s != 0 {
		t.Errorf("thiszone %d sigfigs %d", z, s)
	}
	if s := le.Uint32(data[16:]); s != DefaultSnaplen {
		t.Errorf("snaplen %d", s)
	}
	if lt := le.Uint32(data[20:]); lt != 101 {
		t.Errorf("linktype %d, want 101", lt)
	}
	rest := data[24:]
	for i, want := range []struct {
		t   time.Time
		pkt []byte
	}{{t1, p1}, {t2, p2}} {
		if len(rest) < 16 {
			t.Fatalf("record %d: %d bytes left", i, len(rest))
		}
		sec, usec := le.Uint32(rest[0:]), le.Uint32(rest[4:])
		incl, orig := le.Uint32(rest[8:]), le.Uint32(rest[12:])
		if int64(sec) != want.t.Unix() || int64(usec) != int64(want.t.Nanosecond()/1000) {
			t.Errorf("record %d: ts %d.%06d, want %d.%06d", i, sec, usec, want.t.Unix(), want.t.Nanosecond()/1000)
		}
		if int(incl) != len(want.pkt) || int(orig) != len(want.pkt) {
			t.Errorf("record %d: incl %d orig %d, want %d", i, incl, orig, len(want.pkt))
		}
		rest = rest[16:]
		if !bytes.Equal(rest[:incl], want.pkt) {
			t.Errorf("record %d: data differs", i)
		}
		rest = rest[incl:]
	}
	if len(rest) != 0 {
		t.Errorf("%d trailing bytes", len(rest))
	}

	// tcpdump reads the file too.
	t.Run("tcpdump -r", func(t *testing.T) {
		tools.Need(t, "tcpdump")
		out, err := exec.Command("tcpdump", "-nr", path).CombinedOutput()
		if err != nil {
			t.Fatalf("tcpdump -nr: %v\n%s", err, out)
		}
		s := string(out)
		for _, want := range []string{"10.0.0.1.40000 > 10.0.0.2.80", "10.0.0.2.80 > 10.0.0.1.40000", "length 3"} {
			if !strings.Contains(s, want) {
				t.Errorf("tcpdump output lacks %q:\n%s", want, s)
			}
		}
	})
}

func TestSnaplenTruncates(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, 30)
	if err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, 100)
	if err := w.WritePacket(time.Unix(1, 0), pkt); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	rec := buf.Bytes()[24:]
	if incl, orig := le.Uint32(rec[8:]), le.Uint32(rec[12:]); incl != 30 || orig != 100 {
		t.Errorf("incl %d orig %d, want 30 100", incl, orig)
	}
	if len(rec) != 16+30 {
		t.Errorf("record is %d bytes", len(rec))
	}
}

// Concurrent writers must never interleave inside a record.
func TestConcurrentWrites(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pkt := bytes.Repeat([]byte{byte(g)}, 10+g)
			for range 200 {
				w.WritePacket(time.Now(), pkt)
			}
		}()
	}
	wg.Wait()
	w.Flush()
	le := binary.LittleEndian
	rest := buf.Bytes()[24:]
	n := 0
	for len(rest) > 0 {
		incl := int(le.Uint32(rest[8:]))
		data := rest[16 : 16+incl]
		g := int(data[0])
		if incl != 10+g || !bytes.Equal(data, bytes.Repeat([]byte{byte(g)}, incl)) {
			t.Fatalf("record %d corrupted", n)
		}
		rest = rest[16+incl:]
		n++
	}
	if n != 8*200 {
		t.Errorf("%d records, want %d", n, 8*200)
	}
}

// failAfter is a writer that takes n bytes and then fails every write.
type failAfter struct{ n int }

var errBroken = errors.New("broken writer")

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, errBroken
	}
	f.n -= len(p)
	return len(p), nil
}

// The first write error is sticky: every later WritePacket and Flush
// returns it, whether it came from Flush or from a WritePacket, until
// Close, after which they return ErrClosed.
func TestWriteErrorIsSticky(t *testing.T) {
	at := time.Unix(1, 0)
	t.Run("from Flush", func(t *testing.T) {
		pw, err := NewWriter(&failAfter{n: 24}, 0) // the global header only
		if err != nil {
			t.Fatal(err)
		}
		if err := pw.WritePacket(at, make([]byte, 40)); err != nil {
			t.Fatalf("buffered WritePacket: %v", err)
		}
		if err := pw.Flush(); !errors.Is(err, errBroken) {
			t.Fatalf("Flush = %v, want %v", err, errBroken)
		}
		if err := pw.WritePacket(at, make([]byte, 40)); !errors.Is(err, errBroken) {
			t.Errorf("WritePacket after the error = %v, want %v", err, errBroken)
		}
		if err := pw.Close(); !errors.Is(err, errBroken) {
			t.Errorf("Close = %v, want %v", err, errBroken)
		}
		if err := pw.Flush(); err != ErrClosed {
			t.Errorf("Flush after Close = %v, want ErrClosed", err)
		}
	})
	t.Run("from WritePacket", func(t *testing.T) {
		pw, err := NewWriter(&failAfter{n: 24}, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Larger than the buffer, so it reaches the failing writer.
		if err := pw.WritePacket(at, make([]byte, 100<<10)); !errors.Is(err, errBroken) {
			t.Fatalf("WritePacket = %v, want %v", err, errBroken)
		}
		if err := pw.Flush(); !errors.Is(err, errBroken) {
			t.Errorf("Flush after the error = %v, want %v", err, errBroken)
		}
		if err := pw.WritePacket(at, make([]byte, 40)); !errors.Is(err, errBroken) {
			t.Errorf("WritePacket after the error = %v, want %v", err, errBroken)
		}
	})
}
