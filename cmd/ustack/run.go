package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"ustack/impair"
	"ustack/pcap"
	"ustack/stack"
	"ustack/tun"
)

// cmdRun is "ustack run": every flag is validated before anything on the
// system changes, so a typo never leaves a half-configured TUN device behind.
func cmdRun(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseRunFlags(args, stderr)
	switch {
	case err == flag.ErrHelp:
		return 0
	case err == errUsage:
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "ustack run: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lg := log.New(stderr, "", 0)
	if err := runDaemon(ctx, stop, cfg, lg); err != nil {
		fmt.Fprintf(stderr, "ustack run: %v\n", err)
		return 1
	}
	return 0
}

// pcapFlushEvery is how often the capture file is flushed, so that a
// tcpdump -r (or Wireshark reload) on a live capture sees recent packets.
const pcapFlushEvery = time.Second

// daemon is what runDaemon has set up, torn down by close in the order
// interface.md promises: connections first, then the device, and the
// control socket last.
type daemon struct {
	lg       *log.Logger
	pcap     *pcap.Writer
	pcapStop chan struct{}
	dev      *tun.Device
	impair   *impair.Link
	st       *stack.Stack // nil with --engine gvisor
	eng      engine       // st, or gVisor's netstack
	services []io.Closer
	ctl      *ctlServer
}

// runDaemon brings the daemon up, waits for ctx (SIGINT/SIGTERM), and tears
// it down. stop restores the default signal handling, so that a second ^C
// during a slow shutdown kills the process.
func runDaemon(ctx context.Context, stop func(), cfg *runConfig, lg *log.Logger) error {
	if cfg.Procs > 0 {
		runtime.GOMAXPROCS(cfg.Procs)
	}
	if cfg.CPUProfile != "" {
		stopProfile, err := startCPUProfile(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	d := &daemon{lg: lg}
	if err := d.start(cfg); err != nil {
		d.close()
		return err
	}
	<-ctx.Done()
	stop()
	lg.Printf("ustack run: shutting down")
	d.close()
	return nil
}

func (d *daemon) start(cfg *runConfig) error {
	// Refuse early, before creating anything, if a daemon already owns the
	// control socket (most likely it owns the TUN device too).
	if err := checkCtlFree(cfg.Ctl); err != nil {
		return err
	}
	opts := cfg.stackOptions()
	if cfg.Trace {
		opts.Trace = slog.New(slog.NewTextHandler(d.lg.Writer(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}

	dev, err := tun.Open(tun.Config{Name: cfg.Tun, Addr: cfg.TunAddr, MTU: cfg.MTU, Offload: cfg.Offload})
	if err != nil {
		return err
	}
	d.dev = dev
	// After the device, so that a daemon that cannot start (no
	// CAP_NET_ADMIN, device busy) leaves no empty capture behind.
	if cfg.Pcap != "" {
		if err := d.openPcap(cfg.Pcap, &opts); err != nil {
			return err
		}
	}
	var link stack.Link = dev
	if cfg.Impair != nil {
		d.impair = impair.New(dev, *cfg.Impair)
		link = d.impair
	}
	if err := d.startEngine(cfg, link, opts); err != nil {
		return err
	}
	offload := "off"
	if dev.Offload() {
		offload = "TSO4 and checksum"
	}
	d.lg.Printf("ustack run: %s up: kernel %s, %s %s, mtu %d, offload %s", dev.Name(), cfg.TunAddr, cfg.Engine, cfg.Addr, dev.MTU(), offload)
	if cfg.Impair != nil {
		d.lg.Printf("ustack run: impairing %s both ways: %s", dev.Name(), cfg.Impair)
	}
	if cfg.Pcap != "" {
		d.lg.Printf("ustack run: capturing to %s", cfg.Pcap)
	}

	env := &serviceEnv{eng: d.eng, view: d.eng, log: d.lg}
	if d.services, err = startServices(env, cfg.Addr, cfg.Serves); err != nil {
		return err
	}
	ops := ctlOps(d.eng)
	if d.st != nil {
		ops["nc"] = ncOp(d.st)
	} else {
		ops["nc"] = func(*ctlSession) (any, error) {
			return nil, fmt.Errorf("nc is not available with --engine %s", cfg.Engine)
		}
	}
	if d.ctl, err = listenCtl(cfg.Ctl, ops, d.lg); err != nil {
		return err
	}
	d.lg.Printf("ustack run: control socket %s", cfg.Ctl)
	return nil
}

// openPcap creates the capture file and hooks it to every packet the stack
// sees, in and out.
func (d *daemon) openPcap(path string, opts *stack.Options) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w, err := pcap.NewWriter(f, 0)
	if err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	d.pcap = w
	var once sync.Once
	opts.Packet = func(out bool, pkt []byte) {
		if err := w.WritePacket(time.Now(), pkt); err != nil && err != pcap.ErrClosed {
			once.Do(func() { d.lg.Printf("ustack run: pcap %s: %v (capture stopped)", path, err) })
		}
	}
	d.pcapStop = make(chan struct{})
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
	}(d.pcapStop)
	return nil
}

// close undoes whatever start did, in order: services (their listeners and
// connections), the stack (which resets what is left), the link, the
// capture (after the stack, so it holds the final resets), and the control
// socket.
func (d *daemon) close() {
	closeServices(d.services)
	if d.eng != nil {
		d.eng.Close()
	}
	if d.impair != nil {
		d.impair.Close()
		out, in := d.impair.Stats()
		d.lg.Printf("ustack run: impairment out: %v", out)
		d.lg.Printf("ustack run: impairment in: %v", in)
	}
	if d.dev != nil {
		if err := d.dev.Close(); err != nil {
			d.lg.Printf("ustack run: %v", err)
		}
	}
	if d.pcap != nil {
		close(d.pcapStop)
		if err := d.pcap.Close(); err != nil {
			d.lg.Printf("ustack run: pcap: %v", err)
		}
	}
	if d.ctl != nil {
		d.ctl.Close()
	}
}
