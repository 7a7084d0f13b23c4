// Command bench measures ustack against gVisor's netstack and against the
// kernel itself, the way users would feel the difference: `make bench`
// (go run ./integration/bench).
//
// It builds the ustack binary once, makes network namespaces of its own, and
// for each column starts a fresh server per measurement:
//
//   - ustack: `ustack run --engine ustack` on a TUN device in namespace
//     ustack-bench-*, the clients being the kernel on the device's other side;
//   - gvisor: the same with `--engine gvisor` (gVisor's netstack behind the
//     same services and the same TUN plumbing);
//   - kernel: the ceiling, the kernel talking to itself over a veth pair
//     between two more namespaces, serving the same services from this
//     program re-executed with -kernel-server.
//
// The clients are kernel sockets driven from Go inside the client namespace
// (netns.Do) and wrk. Every load is bounded in count and time, every packet
// stays in the namespaces made here, and the namespaces are deleted on exit,
// failure or ^C. It needs root.
//
// It prints one table (median of -reps runs, ustack/gvisor ratio per row)
// and writes every sample to -json, so runs can be compared.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"ustack/netns"
)

// config is the command line.
type config struct {
	procs   int
	quick   bool
	reps    int
	stream  time.Duration // each throughput run
	short   time.Duration // each request/response, connection rate and wrk run
	conns   int           // idle connections of the scale test
	clients int           // parallel clients of the connection-rate test
	columns []string
	tests   []string
	json    string
	bin     string
	profile string // directory for CPU profiles of the daemons, "" for none
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-kernel-server" {
		os.Exit(runKernelServer(os.Args[2]))
	}
	var (
		cfg             config
		columns, testsF string
	)
	flag.BoolVar(&cfg.quick, "quick", false, "one repetition and short runs (3 s throughput, 2 s others), for development")
	flag.IntVar(&cfg.reps, "reps", 3, "repetitions of each measurement (the table shows the median)")
	flag.DurationVar(&cfg.stream, "stream", 10*time.Second, "length of each throughput run")
	flag.DurationVar(&cfg.short, "short", 5*time.Second, "length of each request/response, connection-rate and HTTP run")
	flag.IntVar(&cfg.conns, "conns", 10000, "idle connections the scale test opens")
	flag.IntVar(&cfg.clients, "clients", 4, "parallel clients of the connection-rate test")
	flag.StringVar(&columns, "engines", "ustack,gvisor,kernel", "columns to measure: ustack, gvisor, kernel (the veth ceiling)")
	flag.StringVar(&testsF, "tests", "upload,download,upload6,download6,rr,udp,connrate,http,scale,wg,fwdup,fwddown,fwdconn,fwdscale,fwdpending", "measurements to run")
	flag.StringVar(&cfg.json, "json", "bench-results.json", "write the results as JSON to `FILE` (\"\" for none)")
	flag.IntVar(&cfg.procs, "procs", 0, "pass --procs `N` to both daemons (0: their default)")
	flag.StringVar(&cfg.bin, "bin", "", "use this ustack binary instead of building one")
	flag.StringVar(&cfg.profile, "profile", "", "also write CPU profiles of the ustack and gvisor daemons, one run of each measurement but scale, to `DIR` (go tool pprof)")
	flag.Parse()
	if cfg.quick {
		cfg.reps = 1
		cfg.stream = 3 * time.Second
		cfg.short = 2 * time.Second
	}
	cfg.columns = strings.Split(columns, ",")
	cfg.tests = strings.Split(testsF, ",")
	for _, c := range cfg.columns {
		if c != "ustack" && c != "gvisor" && c != "kernel" {
			fmt.Fprintf(os.Stderr, "bench: -engines: unknown column %q\n", c)
			os.Exit(2)
		}
	}
	for _, n := range cfg.tests {
		if !slices.ContainsFunc(tests, func(t test) bool { return t.name == n }) {
			fmt.Fprintf(os.Stderr, "bench: -tests: unknown test %q\n", n)
			os.Exit(2)
		}
	}
	if cfg.reps < 1 || cfg.conns < 1 || cfg.clients < 1 || cfg.clients > 256 {
		fmt.Fprintln(os.Stderr, "bench: -reps and -conns must be positive, -clients 1..256")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// cell is one column's measurements of one metric.
type cell struct {
	Median  *float64  `json:"median"`
	Samples []float64 `json:"samples"`
	Error   string    `json:"error,omitempty"`
}

// row is one metric across the columns.
type row struct {
	Metric string           `json:"metric"`
	Name   string           `json:"name"`
	Unit   string           `json:"unit"`
	Better string           `json:"better"` // "higher" or "lower"
	Cells  map[string]*cell `json:"columns"`
	Ratio  *float64         `json:"ustack_over_gvisor,omitempty"`
}

type report struct {
	Time    string   `json:"time"`
	Host    hostInfo `json:"host"`
	Quick   bool     `json:"quick"`
	Reps    int      `json:"reps"`
	Stream  string   `json:"stream_duration"`
	Short   string   `json:"short_duration"`
	Conns   int      `json:"idle_connections"`
	Rows    []*row   `json:"rows"`
	Notes   []string `json:"notes"`
	Elapsed string   `json:"elapsed"`
}

type hostInfo struct {
	CPUs   int    `json:"cpus"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	Commit string `json:"commit,omitempty"`
	// Load is the 1-minute load average when the bench started: anything
	// else running on the machine skews every number.
	Load string `json:"load_at_start"`
}

func run(ctx context.Context, cfg *config) error {
	began := time.Now()
	if ok, why := netns.Available(); !ok {
		return fmt.Errorf("cannot run: %s", why)
	}
	raiseNofile()
	hostAtStart := host()
	if l, err := strconv.ParseFloat(hostAtStart.Load, 64); err == nil && l > 0.5 {
		fmt.Fprintf(os.Stderr, "bench: warning: load average %s at start: other work on this machine will skew the numbers\n", hostAtStart.Load)
	}
	dir, err := os.MkdirTemp("", "ustack-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}

	bin := cfg.bin
	if bin == "" && (slices.Contains(cfg.columns, "ustack") || slices.Contains(cfg.columns, "gvisor")) {
		bin = filepath.Join(dir, "ustack")
		fmt.Fprintf(os.Stderr, "bench: building ustack\n")
		bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		out, err := exec.CommandContext(bctx, "go", "build", "-o", bin, "ustack/cmd/ustack").CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("go build ustack/cmd/ustack: %v\n%s", err, out)
		}
	}

	// Namespaces, deleted whatever happens below.
	var nss []*netns.NS
	defer func() {
		for _, ns := range nss {
			if err := ns.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "bench:", err)
			}
		}
	}()
	newNS := func(prefix string) (*netns.NS, error) {
		ns, err := netns.New(prefix)
		if err == nil {
			nss = append(nss, ns)
		}
		return ns, err
	}
	var targets []*target
	if slices.Contains(cfg.columns, "ustack") || slices.Contains(cfg.columns, "gvisor") {
		ns, err := newNS("ustack-bench")
		if err != nil {
			return err
		}
		if err := clientSysctls(ns); err != nil {
			return err
		}
		var fwd *fwdSetup
		if slices.ContainsFunc(cfg.tests, func(n string) bool { return strings.HasPrefix(n, "fwd") }) {
			if fwd, err = setupForward(ctx, self, dir, newNS); err != nil {
				return err
			}
			defer fwd.far.stop()
		}
		for _, name := range []string{"ustack", "gvisor"} {
			if slices.Contains(cfg.columns, name) {
				t := daemonTarget(name, bin, dir, ns, cfg.procs)
				if fwd != nil {
					t.fwd = fwdTarget(name, bin, dir, fwd, cfg.procs)
				}
				targets = append(targets, t)
			}
		}
	}
	if slices.Contains(cfg.columns, "kernel") {
		cli, err := newNS("ustack-bench-kc")
		if err != nil {
			return err
		}
		srv, err := newNS("ustack-bench-ks")
		if err != nil {
			return err
		}
		if err := vethPair(cli, srv); err != nil {
			return err
		}
		if err := clientSysctls(cli); err != nil {
			return err
		}
		targets = append(targets, kernelTarget(self, dir, cli, srv))
	}

	// samples[column][metric]
	samples := map[string]map[string][]float64{}
	errs := map[string]map[string]string{}
	for _, t := range targets {
		samples[t.name] = map[string][]float64{}
		errs[t.name] = map[string]string{}
	}
	var notes []string
	broken := map[string]bool{} // columns whose server would not start
	note := func(s string) {
		if !slices.Contains(notes, s) {
			notes = append(notes, s)
		}
	}

	// Runs are interleaved across columns (rep 1 of each, then rep 2...),
	// so that a drift of the machine does not favour one column.
	for _, tst := range tests {
		if !slices.Contains(cfg.tests, tst.name) {
			continue
		}
		for rep := 1; rep <= cfg.reps; rep++ {
			for _, t := range targets {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if _, skipped := errs[t.name]["skip:"+tst.name]; skipped || broken[t.name] {
					continue
				}
				smp, ns, err := runOne(ctx, cfg, tst, t, "")
				var died errExited
				if _, ok := err.(errStart); ok && errors.As(err, &died) {
					// A server that dies while starting (a build that
					// panics at init, a missing capability) will die next
					// time too: skip the rest of its column.
					broken[t.name] = true
					note(fmt.Sprintf("%s: remaining runs skipped: %v", t.name, err))
				}
				for _, n := range ns {
					note(fmt.Sprintf("%s %s: %s", t.name, tst.name, n))
				}
				if err != nil {
					if sk, ok := err.(errSkip); ok {
						errs[t.name]["skip:"+tst.name] = sk.why
						note(fmt.Sprintf("%s: skipped: %s", tst.name, sk.why))
					} else {
						note(fmt.Sprintf("%s %s run %d: %v", t.name, tst.name, rep, err))
					}
					fmt.Fprintf(os.Stderr, "bench: %-6s %-8s %d/%d: %v\n", t.name, tst.name, rep, cfg.reps, err)
					for _, m := range metricsOf(tst.name) {
						if errs[t.name][m] == "" {
							errs[t.name][m] = err.Error()
						}
					}
					continue
				}
				fmt.Fprintf(os.Stderr, "bench: %-6s %-8s %d/%d: %s\n", t.name, tst.name, rep, cfg.reps, formatSample(smp))
				for k, v := range smp {
					samples[t.name][k] = append(samples[t.name][k], v)
				}
			}
		}
	}

	if cfg.profile != "" {
		if err := profiles(ctx, cfg, targets); err != nil {
			note("profiles: " + err.Error())
		}
	}

	rep := &report{
		Time:   began.UTC().Format(time.RFC3339),
		Host:   hostAtStart,
		Quick:  cfg.quick,
		Reps:   cfg.reps,
		Stream: cfg.stream.String(),
		Short:  cfg.short.String(),
		Conns:  cfg.conns,
		Notes:  notes,
	}
	for _, m := range metrics {
		if !slices.Contains(cfg.tests, testOf(m.key)) {
			continue
		}
		r := &row{Metric: m.key, Name: metricName(m, cfg), Unit: m.unit, Better: "lower", Cells: map[string]*cell{}}
		if m.higher {
			r.Better = "higher"
		}
		for _, t := range targets {
			c := &cell{Samples: samples[t.name][m.key]}
			if len(c.Samples) > 0 {
				v := median(c.Samples)
				c.Median = &v
			}
			if e := errs[t.name][m.key]; e != "" {
				c.Error = e
			} else if e := errs[t.name]["skip:"+testOf(m.key)]; e != "" {
				c.Error = "skipped: " + e
			}
			r.Cells[t.name] = c
		}
		if u, g := r.Cells["ustack"], r.Cells["gvisor"]; u != nil && g != nil && u.Median != nil && g.Median != nil && *g.Median != 0 {
			v := *u.Median / *g.Median
			r.Ratio = &v
		}
		rep.Rows = append(rep.Rows, r)
	}
	rep.Elapsed = time.Since(began).Round(time.Second).String()
	printTable(os.Stdout, rep, targets)
	if cfg.json != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(cfg.json, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: results in %s\n", cfg.json)
	}
	return nil
}

// errStart is a server that did not start.
type errStart struct{ error }

func (e errStart) Unwrap() error { return e.error }

// runOne starts a fresh server, runs one measurement, and stops the server.
func runOne(ctx context.Context, cfg *config, tst test, t *target, cpuprofile string) (sample, []string, error) {
	if tst.inProcess {
		return tst.run(ctx, cfg, t, nil)
	}
	if strings.HasPrefix(tst.name, "fwd") {
		if t.fwd == nil {
			return nil, nil, errSkip{"the kernel column has no forwarder to relay through"}
		}
		t = t.fwd
	}
	s, err := t.start(ctx, cpuprofile)
	if err != nil {
		return nil, nil, errStart{fmt.Errorf("starting %s: %w", t.name, err)}
	}
	smp, notes, err := tst.run(ctx, cfg, t, s)
	if err == nil {
		if e := s.exited(); e != nil {
			err = e
		}
	} else {
		err = fmt.Errorf("%w (server log: %s)", err, s.logTail())
	}
	if serr := s.stop(); serr != nil {
		notes = append(notes, serr.Error())
	}
	return smp, notes, err
}

// profiles runs each selected measurement (but scale) once more on each
// daemon with --cpuprofile, writing DIR/ENGINE-TEST.pprof.
func profiles(ctx context.Context, cfg *config, targets []*target) error {
	if err := os.MkdirAll(cfg.profile, 0o755); err != nil {
		return err
	}
	for _, t := range targets {
		if t.name == "kernel" {
			continue
		}
		for _, tst := range tests {
			if !slices.Contains(cfg.tests, tst.name) || tst.name == "scale" || tst.inProcess {
				continue
			}
			path, _ := filepath.Abs(filepath.Join(cfg.profile, t.name+"-"+tst.name+".pprof"))
			smp, _, err := runOne(ctx, cfg, tst, t, path)
			if err != nil {
				return fmt.Errorf("%s %s: %w", t.name, tst.name, err)
			}
			fmt.Fprintf(os.Stderr, "bench: profile %s (%s)\n", path, formatSample(smp))
		}
	}
	return nil
}

// testOf is the test that measures the metric key.
func testOf(key string) string {
	for _, p := range [...]struct{ prefix, test string }{
		{"upload6", "upload6"}, {"download6", "download6"},
		{"upload", "upload"}, {"download", "download"}, {"rr_", "rr"},
		{"udp", "udp"}, {"conn_", "connrate"}, {"http_", "http"}, {"scale_", "scale"},
		{"wg_", "wg"}, {"fwd_upload", "fwdup"}, {"fwd_download", "fwddown"},
		{"fwd_conn_", "fwdconn"}, {"fwd_scale_", "fwdscale"}, {"fwd_pending_", "fwdpending"},
	} {
		if strings.HasPrefix(key, p.prefix) {
			return p.test
		}
	}
	return ""
}

func metricsOf(test string) []string {
	var out []string
	for _, m := range metrics {
		if testOf(m.key) == test {
			out = append(out, m.key)
		}
	}
	return out
}

func metricName(m metric, cfg *config) string {
	if m.key == "conn_rate" && cfg.clients != 4 {
		return fmt.Sprintf("connect+1 req+close, %d clients", cfg.clients)
	}
	if m.key == "scale_open_s" {
		return fmt.Sprintf("open %d idle connections", cfg.conns)
	}
	return m.name
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func formatSample(s sample) string {
	var parts []string
	for _, m := range metrics {
		if v, ok := s[m.key]; ok {
			parts = append(parts, fmt.Sprintf("%s=%.*f", m.key, m.prec, v))
		}
	}
	return strings.Join(parts, " ")
}

// printTable prints the one table: a row per metric, a column per target,
// the ustack/gvisor ratio and which way is better.
func printTable(w io.Writer, rep *report, targets []*target) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := []string{"metric", "unit"}
	cols := []string{}
	for _, name := range []string{"ustack", "gvisor"} {
		if slices.ContainsFunc(targets, func(t *target) bool { return t.name == name }) {
			cols = append(cols, name)
		}
	}
	hdr = append(hdr, cols...)
	hdr = append(hdr, "ustack/gvisor", "better")
	hasKernel := slices.ContainsFunc(targets, func(t *target) bool { return t.name == "kernel" })
	if hasKernel {
		hdr = append(hdr, "kernel (veth)")
	}
	fmt.Fprintf(w, "\nustack benchmark: median of %d run(s); throughput runs %v, others %v; %d CPUs, Linux %s, load %s at start\n\n",
		rep.Reps, rep.Stream, rep.Short, rep.Host.CPUs, rep.Host.Kernel, rep.Host.Load)
	fmt.Fprintln(tw, strings.Join(hdr, "\t")+"\t")
	prec := map[string]int{}
	for _, m := range metrics {
		prec[m.key] = m.prec
	}
	for _, r := range rep.Rows {
		line := []string{r.Name, r.Unit}
		for _, c := range cols {
			line = append(line, formatCell(r.Cells[c], prec[r.Metric]))
		}
		ratio := "-"
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *r.Ratio)
		}
		better := "higher"
		if r.Better == "lower" {
			better = "lower"
		}
		line = append(line, ratio, better)
		if hasKernel {
			line = append(line, formatCell(r.Cells["kernel"], prec[r.Metric]))
		}
		fmt.Fprintln(tw, strings.Join(line, "\t")+"\t")
	}
	tw.Flush()
	if len(rep.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range rep.Notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
	fmt.Fprintf(w, "\nkernel (veth): the kernel talking to itself over veth with its offloads (the ceiling); its CPU and memory rows count only the Go server process, not the kernel's own work and socket memory.\nbench took %s\n", rep.Elapsed)
}

func formatCell(c *cell, prec int) string {
	switch {
	case c == nil:
		return "-"
	case c.Median == nil && strings.HasPrefix(c.Error, "skipped"):
		return "skipped"
	case c.Median == nil:
		return "error"
	}
	v := *c.Median
	s := fmt.Sprintf("%.*f", prec, v)
	if math.Abs(v) >= 10000 {
		s = fmt.Sprintf("%.0f", v)
	}
	if c.Error != "" {
		s += "*" // some runs failed: see the notes
	}
	return s
}

// raiseNofile lifts this process's open-file limit to the hard limit: the
// scale test holds 10,000 client sockets, and the kernel ceiling's server
// (which inherits the limit) as many. syscall.Setrlimit, not the runtime's
// own raising, so that children inherit it.
func raiseNofile() {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	rl.Cur = rl.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
}

func host() hostInfo {
	h := hostInfo{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		h.Load = strings.Fields(string(b))[0]
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		h.Commit = strings.TrimSpace(string(out))
	}
	return h
}
