package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sample is what one run of a test measured: metric key → value.
type sample map[string]float64

// test is one kind of measurement; each run gets a fresh server.
type test struct {
	name string
	run  func(ctx context.Context, cfg *config, t *target, s *server) (sample, []string, error)
	// inProcess: the test runs its stacks in this process (s is nil).
	inProcess bool
}

var tests = []test{
	{"upload", stream(serverAddr, "upload", upload), false},
	{"download", stream(serverAddr, "download", download), false},
	{"upload6", stream(serverAddr6, "upload6", upload), false},
	{"download6", stream(serverAddr6, "download6", download), false},
	{"rr", runRR, false},
	{"udp", runUDP, false},
	{"connrate", runConnRate, false},
	{"http", runHTTP, false},
	{"scale", runScale, false},
	{"wg", runWG, true},
	{"fwdup", forwarded(stream(farAddr, "upload", upload)), false},
	{"fwddown", forwarded(stream(farAddr, "download", download)), false},
	{"fwdconn", forwarded(runConnRate), false},
	{"fwdscale", forwarded(runScale), false},
	{"fwdpending", forwarded(runFwdPending), false},
}

// metric is one row of the table.
type metric struct {
	key, name, unit string
	higher          bool // higher is better
	prec            int  // decimals shown
}

var metrics = []metric{
	{"upload_gbps", "upload, 1 stream (kernel → discard)", "Gbit/s", true, 2},
	{"download_gbps", "download, 1 stream (source → kernel)", "Gbit/s", true, 2},
	{"upload6_gbps", "upload over IPv6 (kernel → discard)", "Gbit/s", true, 2},
	{"download6_gbps", "download over IPv6 (source → kernel)", "Gbit/s", true, 2},
	{"rr_tps", "request/response 1 byte, 1 conn", "trans/s", true, 0},
	{"rr_p50_us", "request/response p50 latency", "µs", false, 1},
	{"rr_p99_us", "request/response p99 latency", "µs", false, 1},
	{"udp_pps", "UDP echo 1400 B, 32 in flight", "dgram/s", true, 0},
	{"udp_gbps", "UDP echo 1400 B, payload each way", "Gbit/s", true, 2},
	{"udp64_pps", "UDP echo 64 B, 32 in flight", "dgram/s", true, 0},
	{"conn_rate", "connect+1 req+close, 4 clients", "conn/s", true, 0},
	{"http_rps", "HTTP wrk 64 conns GET /bytes?n=64", "req/s", true, 0},
	{"http_p99_ms", "HTTP wrk p99 latency", "ms", false, 2},
	{"scale_open_s", "open 10,000 idle connections", "s", false, 2},
	{"scale_kib_per_conn", "memory per idle connection (VmRSS)", "KiB", false, 2},
	{"upload_cpu_s_per_gb", "server CPU per GB, upload", "CPU-s/GB", false, 2},
	{"download_cpu_s_per_gb", "server CPU per GB, download", "CPU-s/GB", false, 2},
	{"fwd_upload_gbps", "relayed upload (kernel → forwarder → far discard)", "Gbit/s", true, 2},
	{"fwd_download_gbps", "relayed download (far source → forwarder → kernel)", "Gbit/s", true, 2},
	{"fwd_conn_rate", "connect+1 req+close through the forwarder", "conn/s", true, 0},
	{"fwd_scale_kib_per_conn", "memory per idle forwarded connection", "KiB", false, 2},
	{"fwd_scale_goroutines_per_conn", "goroutines per idle forwarded connection", "", false, 2},
	{"fwd_pending_kib_per_conn", "memory per half-open forwarded connection", "KiB", false, 2},
	{"fwd_pending_goroutines_per_conn", "goroutines per half-open forwarded connection", "", false, 2},
	{"wg_up_gbps", "wireguard-go pair: embedded stack → gVisor peer", "Gbit/s", true, 2},
	{"wg_down_gbps", "wireguard-go pair: gVisor peer → embedded stack", "Gbit/s", true, 2},
}

// dialInAt connects from the target's client namespace to an address of
// the server's (IPv4 or IPv6).
func dialInAt(t *target, addr netip.Addr, port int) (sock, error) {
	var c sock
	err := t.clientNS.Do(func() error {
		var err error
		c, err = dialAddr(addr, port)
		return err
	})
	return c, err
}

// streamBuf is the size of each write() and read() of the throughput
// tests, like iperf3's default 128 KiB.
const streamBuf = 128 << 10

// stream is a throughput test (upload or download) to the server's addr,
// its metrics named after name.
func stream(addr netip.Addr, name string, run func(ctx context.Context, cfg *config, t *target, s *server, addr netip.Addr, name string) (sample, []string, error)) func(ctx context.Context, cfg *config, t *target, s *server) (sample, []string, error) {
	return func(ctx context.Context, cfg *config, t *target, s *server) (sample, []string, error) {
		return run(ctx, cfg, t, s, addr, name)
	}
}

// upload sends to discard for cfg.stream, then shuts down writing and
// waits for discard's FIN, so every byte counted has been taken by the
// server's application.
func upload(ctx context.Context, cfg *config, t *target, s *server, addr netip.Addr, name string) (sample, []string, error) {
	return runStream(cfg, t, s, addr, portDiscard, name, func(c sock, buf []byte, end time.Time) (total int64, err error) {
		for time.Now().Before(end) && ctx.Err() == nil {
			n, err := c.writeSome(buf)
			if err != nil {
				return 0, fmt.Errorf("after %d bytes: %w", total, err)
			}
			total += int64(n)
		}
		if err := c.shutdownWrite(); err != nil {
			return 0, err
		}
		for {
			n, err := c.read(buf)
			if err != nil {
				return 0, fmt.Errorf("waiting for discard's FIN: %w", err)
			}
			if n == 0 {
				return total, nil
			}
		}
	})
}

// download reads from source for cfg.stream.
func download(ctx context.Context, cfg *config, t *target, s *server, addr netip.Addr, name string) (sample, []string, error) {
	return runStream(cfg, t, s, addr, portSource, name, func(c sock, buf []byte, end time.Time) (total int64, err error) {
		for time.Now().Before(end) && ctx.Err() == nil {
			n, err := c.read(buf)
			if err != nil {
				return 0, fmt.Errorf("after %d bytes: %w", total, err)
			}
			if n == 0 {
				return 0, fmt.Errorf("source closed after %d bytes", total)
			}
			total += int64(n)
		}
		return total, nil
	})
}

// runStream is the frame of the throughput tests: it connects to port and
// times move, which moves bytes through a streamBuf-sized buffer until end
// and returns how many; the rate and the server's CPU time per GB meanwhile
// are the sample's name_gbps and name_cpu_s_per_gb.
func runStream(cfg *config, t *target, s *server, addr netip.Addr, port int, name string, move func(c sock, buf []byte, end time.Time) (int64, error)) (sample, []string, error) {
	c, err := dialInAt(t, addr, port)
	if err != nil {
		return nil, nil, err
	}
	defer c.close()
	cpu0, err := s.cpu()
	if err != nil {
		return nil, nil, err
	}
	buf := make([]byte, streamBuf)
	start := time.Now()
	total, err := move(c, buf, start.Add(cfg.stream))
	if err != nil {
		return nil, nil, err
	}
	el := time.Since(start)
	cpu1, err := s.cpu()
	if err != nil {
		return nil, nil, err
	}
	return sample{
		name + "_gbps":         float64(total) * 8 / el.Seconds() / 1e9,
		name + "_cpu_s_per_gb": (cpu1 - cpu0).Seconds() / (float64(total) / 1e9),
		name + "_bytes":        float64(total),
	}, nil, nil
}

// runRR ping-pongs one byte with echo on one connection for cfg.short,
// from one thread in the client namespace.
func runRR(ctx context.Context, cfg *config, t *target, s *server) (sample, []string, error) {
	var (
		lat []time.Duration
		el  time.Duration
	)
	err := t.clientNS.Do(func() error {
		c, err := dial(serverIP, portEcho)
		if err != nil {
			return err
		}
		defer c.close()
		lat = make([]time.Duration, 0, 1<<20)
		b := []byte{'x'}
		start := time.Now()
		end := start.Add(cfg.short)
		for ctx.Err() == nil {
			t0 := time.Now()
			if t0.After(end) {
				break
			}
			if err := c.write(b); err != nil {
				return fmt.Errorf("after %d transactions: %w", len(lat), err)
			}
			if err := c.readFull(b); err != nil {
				return fmt.Errorf("after %d transactions: %w", len(lat), err)
			}
			lat = append(lat, time.Since(t0))
		}
		el = time.Since(start)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(lat) == 0 {
		return nil, nil, errors.New("no transaction completed")
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Nanoseconds()) / 1e3
	}
	return sample{
		"rr_tps":    float64(len(lat)) / el.Seconds(),
		"rr_p50_us": pct(0.50),
		"rr_p99_us": pct(0.99),
	}, nil, nil
}

// runUDP sends datagrams to udp-echo from a connected kernel UDP socket,
// keeping udpWindow of them in flight, for cfg.short with 1400-byte
// datagrams and again with 64-byte ones, and counts the echoes. A datagram
// lost either way is given up after udpLossWait and replaced, so a loss
// costs time but never stalls the window.
func runUDP(ctx context.Context, cfg *config, t *target, s *server) (sample, []string, error) {
	out := sample{}
	for _, size := range []int{1400, 64} {
		var got, lost int
		var el time.Duration
		err := t.clientNS.Do(func() error {
			c, err := net.Dial("udp4", net.JoinHostPort(serverIPs, strconv.Itoa(portEcho)))
			if err != nil {
				return err
			}
			defer c.Close()
			msg, buf := make([]byte, size), make([]byte, 2048)
			inFlight := 0
			start := time.Now()
			end := start.Add(cfg.short)
			for ctx.Err() == nil && time.Now().Before(end) {
				for ; inFlight < udpWindow; inFlight++ {
					if _, err := c.Write(msg); err != nil {
						return fmt.Errorf("after %d echoes: %w", got, err)
					}
				}
				c.SetReadDeadline(time.Now().Add(udpLossWait))
				n, err := c.Read(buf)
				switch {
				case errors.Is(err, os.ErrDeadlineExceeded):
					lost += inFlight
					inFlight = 0
				case err != nil:
					return fmt.Errorf("after %d echoes: %w", got, err)
				case n != size:
					return fmt.Errorf("a %d-byte echo of a %d-byte datagram", n, size)
				default:
					got++
					inFlight--
				}
			}
			el = time.Since(start)
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("%d-byte datagrams: %w", size, err)
		}
		if got == 0 {
			return nil, nil, fmt.Errorf("no %d-byte datagram came back (%d given up)", size, lost)
		}
		pps := float64(got) / el.Seconds()
		if size == 64 {
			out["udp64_pps"] = pps
		} else {
			out["udp_pps"], out["udp_gbps"] = pps, pps*float64(size)*8/1e9
		}
	}
	return out, nil, nil
}

// udpWindow is how many datagrams runUDP keeps in flight, and udpLossWait
// how long it waits for one before counting the window lost.
const (
	udpWindow   = 32
	udpLossWait = 100 * time.Millisecond
)

// runConnRate has cfg.clients (4) client threads each connect to echo, send a byte, read
// it back and close, over and over for cfg.short.
func runConnRate(ctx context.Context, cfg *config, t *target, s *server) (sample, []string, error) {
	workers := cfg.clients
	var (
		ok, failed atomic.Int64
		firstErr   error
		errOnce    sync.Once
		wg         sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(cfg.short)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := t.clientNS.Do(func() error {
				b := []byte{'x'}
				for time.Now().Before(end) && ctx.Err() == nil {
					err := func() error {
						c, err := dial(t.ip, portEcho)
						if err != nil {
							return err
						}
						defer c.close()
						if err := c.write(b); err != nil {
							return err
						}
						return c.readFull(b)
					}()
					if err != nil {
						failed.Add(1)
						errOnce.Do(func() { firstErr = err })
						time.Sleep(10 * time.Millisecond)
						continue
					}
					ok.Add(1)
				}
				return nil
			})
			if err != nil {
				errOnce.Do(func() { firstErr = err })
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	var notes []string
	if n := failed.Load(); n > 0 {
		notes = append(notes, fmt.Sprintf("%d of %d connections failed (first: %v)", n, n+ok.Load(), firstErr))
	}
	if ok.Load() == 0 {
		return nil, notes, fmt.Errorf("no connection completed: %v", firstErr)
	}
	return sample{"conn_rate": float64(ok.Load()) / el.Seconds()}, notes, nil
}

// runHTTP runs wrk in the client namespace against the http service.
func runHTTP(ctx context.Context, cfg *config, t *target, s *server) (sample, []string, error) {
	if _, err := exec.LookPath("wrk"); err != nil {
		return nil, nil, errSkip{"wrk not installed (Debian package wrk)"}
	}
	secs := max(1, int(cfg.short.Seconds()))
	cctx, cancel := context.WithTimeout(ctx, cfg.short+30*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s:%d/bytes?n=64", serverIPs, portHTTP)
	cmd := exec.CommandContext(cctx, "ip", "netns", "exec", t.clientNS.Name,
		"wrk", "-t2", "-c64", fmt.Sprintf("-d%ds", secs), "--latency", "--timeout", "5s", url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, nil, fmt.Errorf("wrk: %v: %s", err, strings.TrimSpace(string(out)))
	}
	var (
		rps, p99 float64
		gotRPS   bool
		gotP99   bool
		notes    []string
	)
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			rps, err = strconv.ParseFloat(f[1], 64)
			gotRPS = err == nil
		case len(f) == 2 && f[0] == "99%" || len(f) == 2 && f[0] == "99.000%":
			p99, gotP99 = parseWrkDuration(f[1])
		case strings.HasPrefix(line, "Socket errors:"), strings.HasPrefix(line, "Non-2xx"):
			notes = append(notes, "wrk: "+line)
		}
	}
	if !gotRPS || !gotP99 {
		return nil, nil, fmt.Errorf("could not parse wrk's output: %s", strings.TrimSpace(string(out)))
	}
	return sample{"http_rps": rps, "http_p99_ms": p99}, notes, nil
}

// parseWrkDuration parses wrk's 123.45us, 1.23ms, 1.02s, 2.00m into ms.
func parseWrkDuration(s string) (float64, bool) {
	for _, u := range []struct {
		suffix string
		ms     float64
	}{{"us", 1e-3}, {"ms", 1}, {"s", 1e3}, {"m", 60e3}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f * u.ms, err == nil
		}
	}
	return 0, false
}

// runScale opens cfg.conns connections to echo from 8 client threads, each
// proven established and accepted by a one-byte round trip, and measures
// how long that took and how much the server's resident memory grew.
func runScale(ctx context.Context, cfg *config, t *target, s *server) (sample, []string, error) {
	const workers = 8
	before, err := s.costs()
	if err != nil {
		return nil, nil, err
	}
	per := (cfg.conns + workers - 1) / workers
	socks := make([][]sock, workers)
	errs := make([]error, workers)
	deadline := time.Now().Add(90 * time.Second)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		n := min(per, cfg.conns-w*per)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = t.clientNS.Do(func() error {
				b := []byte{'x'}
				for i := 0; i < n; i++ {
					if ctx.Err() != nil || time.Now().After(deadline) {
						return fmt.Errorf("gave up after %d connections", i)
					}
					c, err := dial(t.ip, portEcho)
					if err != nil {
						return fmt.Errorf("connection %d: %w", i, err)
					}
					socks[w] = append(socks[w], c)
					if err := c.write(b); err != nil {
						return fmt.Errorf("connection %d: %w", i, err)
					}
					if err := c.readFull(b); err != nil {
						return fmt.Errorf("connection %d: %w", i, err)
					}
				}
				return nil
			})
		}()
	}
	wg.Wait()
	el := time.Since(start)
	defer func() {
		for _, ss := range socks {
			for _, c := range ss {
				c.close()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		open := 0
		for _, ss := range socks {
			open += len(ss)
		}
		return nil, nil, fmt.Errorf("%d of %d connections opened: %w", open, cfg.conns, err)
	}
	// Let the server's handlers settle before reading its memory.
	time.Sleep(time.Second)
	if err := s.exited(); err != nil {
		return nil, nil, err
	}
	after, err := s.costs()
	if err != nil {
		return nil, nil, err
	}
	smp := sample{
		"scale_open_s":     el.Seconds(),
		"scale_rss_before": float64(before.rss),
		"scale_rss_after":  float64(after.rss),
	}
	after.perConn(before, cfg.conns, "scale_", smp)
	return smp, nil, nil
}

// errSkip marks a measurement that cannot run here, with the reason.
type errSkip struct{ why string }

func (e errSkip) Error() string { return e.why }
