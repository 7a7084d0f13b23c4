package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// estabRow matches a row of the status page's connection table for a
// connection from the kernel's side: ESTAB, local 10.0.0.2:80, peer
// 10.0.0.1:PORT.
var estabRow = regexp.MustCompile(`<tr><td>ESTAB</td><td class="num">\d+</td><td class="num">\d+</td><td>10\.0\.0\.2:80</td><td>10\.0\.0\.1:\d+</td>`)

// TestStatusPageCurl: curl gets the status page from ustack's http service
// over a passive open (B10, B30), and the page lists curl's own connection
// as ESTAB in the connections table, and the counters.
func TestStatusPageCurl(t *testing.T) {
	t.Parallel()
	needTool(t, "curl")
	ns := newNS(t)
	d := startDaemon(t, ns)
	out, errOut, err := runIn(ns, 30*time.Second, "curl", "-sS", "--max-time", "20", "http://"+stackIP+"/")
	if err != nil {
		d.fatalf("curl http://%s/: %v: %s", stackIP, err, errOut)
	}
	for _, want := range []string{`<table id="connections">`, `<table id="counters">`, "<td>LISTEN</td>", "<td>10.0.0.2:80</td>", "tcp.passive_opens"} {
		if !strings.Contains(out, want) {
			d.errorf("status page lacks %q:\n%s", want, out)
		}
	}
	if !estabRow.MatchString(out) {
		d.errorf("status page lists no ESTAB connection from 10.0.0.1 to 10.0.0.2:80 (curl's own):\n%s", out)
	}

	// The same data as JSON.
	out, errOut, err = runIn(ns, 30*time.Second, "curl", "-sS", "--max-time", "20", "http://"+stackIP+"/status.json")
	if err != nil {
		d.fatalf("curl /status.json: %v: %s", err, errOut)
	}
	var st struct {
		Sockets []struct {
			State string
			Local string
		} `json:"sockets"`
		Counters []struct {
			Name  string
			Value uint64
		} `json:"counters"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		d.fatalf("/status.json: %v:\n%s", err, out)
	}
	var estab, listen int
	for _, s := range st.Sockets {
		switch s.State {
		case "ESTAB":
			estab++
		case "LISTEN":
			listen++
		}
	}
	if estab == 0 || listen < 2 || len(st.Counters) == 0 {
		d.errorf("/status.json: %d ESTAB, %d LISTEN sockets, %d counters; want >=1, >=2 (http, echo), >0:\n%s", estab, listen, len(st.Counters), out)
	}
}

// bytesPattern writes n bytes of /bytes's body (byte i = i % 251) to w.
func bytesPattern(w io.Writer, n int) {
	chunk := make([]byte, 251*1024)
	for i := range chunk {
		chunk[i] = byte(i % 251)
	}
	for n > 0 {
		k := min(n, len(chunk))
		w.Write(chunk[:k])
		n -= k
	}
}

// countingHash is an io.Writer that hashes and counts what it is given.
type countingHash struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func newCountingHash() *countingHash { return &countingHash{h: sha256.New()} }

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

func (c *countingHash) sum() string { return hex.EncodeToString(c.h.Sum(nil)) }

// TestBytes20MB: a 20 MB download with curl arrives whole and in order (B20
// on a lossless link, B21 flow control against curl's receive window): the
// length and the SHA-256 of the body match the pattern.
func TestBytes20MB(t *testing.T) {
	t.Parallel()
	needTool(t, "curl")
	ns := newNS(t)
	d := startDaemon(t, ns)
	const n = 20_000_000
	want := newCountingHash()
	bytesPattern(want, n)

	got := newCountingHash()
	start := time.Now()
	errOut, err := streamIn(ns, 120*time.Second, got, "curl", "-sS", "--max-time", "110", fmt.Sprintf("http://%s/bytes?n=%d", stackIP, n))
	elapsed := time.Since(start)
	if err != nil {
		d.fatalf("curl /bytes?n=%d: %v after %v (%d bytes received): %s", n, err, elapsed, got.n, errOut)
	}
	if got.n != n {
		d.fatalf("/bytes?n=%d: received %d bytes", n, got.n)
	}
	if got.sum() != want.sum() {
		d.fatalf("/bytes?n=%d: content differs from the pattern (sha256 %s, want %s)", n, got.sum(), want.sum())
	}
	t.Logf("20 MB in %v (%.1f MB/s)", elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds()/1e6)
}

// TestPcap: --pcap writes a capture that tcpdump and Wireshark (tshark)
// read, holding the SYN of a curl, the stack's SYN|ACK and the HTTP
// exchange.
func TestPcap(t *testing.T) {
	t.Parallel()
	needTool(t, "curl")
	tcpdump := needTool(t, "tcpdump")
	tshark := needTool(t, "tshark")
	ns := newNS(t)
	file := filepath.Join(t.TempDir(), "ustack.pcap")
	d := startDaemon(t, ns, "--pcap", file)
	if _, errOut, err := runIn(ns, 30*time.Second, "curl", "-sS", "-o", "/dev/null", "--max-time", "20", "http://"+stackIP+"/"); err != nil {
		d.fatalf("curl: %v: %s", err, errOut)
	}
	d.stop() // flushes and closes the capture
	if _, err := os.Stat(file); err != nil {
		d.fatalf("--pcap %s: %v", file, err)
	}
	out, errOut, err := runIn(ns, 30*time.Second, tcpdump, "-nr", file)
	if err != nil {
		t.Fatalf("tcpdump -nr %s: %v: %s", file, err, errOut)
	}
	syn := regexp.MustCompile(`IP 10\.0\.0\.1\.\d+ > 10\.0\.0\.2\.80: Flags \[S\]`)
	synAck := regexp.MustCompile(`IP 10\.0\.0\.2\.80 > 10\.0\.0\.1\.\d+: Flags \[S\.\]`)
	if !syn.MatchString(out) || !synAck.MatchString(out) {
		t.Fatalf("tcpdump -nr %s shows no SYN to port 80 and SYN|ACK back:\n%s\n%s", file, out, errOut)
	}
	if !strings.Contains(out, "HTTP/1.1 200 OK") && !strings.Contains(out, "HTTP: HTTP/1.1 200 OK") {
		// tcpdump prints the first line of HTTP payloads.
		t.Logf("note: tcpdump did not print the HTTP response line:\n%s", out)
	}

	// Wireshark's dissectors (tshark, its command line) read the same file:
	// they find the HTTP exchange and no malformed packet.
	out, errOut, err = runIn(ns, 60*time.Second, tshark, "-n", "-r", file, "-Y", "http.response or _ws.malformed",
		"-T", "fields", "-e", "http.response.code", "-e", "_ws.malformed")
	if err != nil {
		t.Fatalf("tshark -r %s: %v: %s", file, err, errOut)
	}
	if fields := strings.Fields(out); len(fields) != 1 || fields[0] != "200" {
		t.Fatalf("tshark -r %s: want one HTTP response, 200, and nothing malformed; got %q\n%s", file, out, errOut)
	}
}
