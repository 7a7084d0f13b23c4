package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"ustack/impair"
	"ustack/relay"
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

// daemon is what runDaemon has set up, torn down by close in the order
// interface.md promises: connections first, then the device, and the
// control socket last.
type daemon struct {
	lg       *log.Logger
	pcap     *capture
	dev      *tun.Device
	impair   *impair.Link
	st       *stack.Stack // nil with --engine gvisor
	eng      engine       // st, or gVisor's netstack
	services []io.Closer
	relay    *relay.Relay // --forward
	ctl      *ctlServer
}

// runDaemon brings the daemon up, waits for ctx (SIGINT/SIGTERM), and tears
// it down. stop restores the default signal handling, so that a second ^C
// during a slow shutdown kills the process.
func runDaemon(ctx context.Context, stop func(), cfg *runConfig, lg *log.Logger) error {
	if cfg.Procs > 0 {
		runtime.GOMAXPROCS(cfg.Procs)
	}
	d := &daemon{lg: lg}
	if err := d.start(cfg); err != nil {
		d.close()
		return err
	}
	// Like the capture, the profile is created once the daemon is up, so
	// that a failed start leaves an earlier one alone.
	if cfg.CPUProfile != "" {
		stopProfile, err := startCPUProfile(cfg.CPUProfile)
		if err != nil {
			d.close()
			return err
		}
		defer stopProfile()
	}
	<-ctx.Done()
	stop()
	lg.Printf("ustack run: shutting down")
	d.close()
	return nil
}

// start brings everything up in an order where what can fail fails before
// anything is lost: the checks that only look come first, then what close
// removes again (the capture's temporary file, the TUN device), and the
// capture replaces an earlier file only once nothing else can fail, just
// before the control socket answers.
func (d *daemon) start(cfg *runConfig) error {
	// Refuse early, before creating anything, if a daemon already owns the
	// control socket (most likely it owns the TUN device too) or if the
	// path is not a socket to replace.
	if err := checkCtlPath(cfg.Ctl); err != nil {
		return err
	}
	opts := cfg.stackOptions()
	if cfg.Pcap != "" {
		c, err := startCapture(cfg.Pcap, d.lg)
		if err != nil {
			return err
		}
		d.pcap = c
		opts.Packet = c.packet
	}
	if cfg.Trace {
		opts.Trace = slog.New(slog.NewTextHandler(d.lg.Writer(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}

	dev, err := tun.Open(tun.Config{Name: cfg.Tun, Addr: cfg.TunAddr, Addr6: cfg.TunAddr6, MTU: cfg.MTU, Offload: cfg.Offload})
	if err != nil {
		return err
	}
	d.dev = dev
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
		offload = "TSO4, TSO6 and checksum"
	}
	d.lg.Printf("ustack run: %s up: kernel %s, %s %s, mtu %d, offload %s", dev.Name(), cfg.TunAddr, cfg.Engine, cfg.Addr, dev.MTU(), offload)
	if cfg.Impair != nil {
		d.lg.Printf("ustack run: impairing %s both ways: %s", dev.Name(), cfg.Impair)
	}

	env := &serviceEnv{eng: d.eng, view: d.eng, log: d.lg}
	addrs := []netip.Addr{cfg.Addr}
	if cfg.Addr6.IsValid() {
		addrs = append(addrs, cfg.Addr6)
		d.lg.Printf("ustack run: IPv6: kernel %s, %s %s", cfg.TunAddr6, cfg.Engine, cfg.Addr6)
	}
	env.addrs = addrs
	if d.services, err = startServices(env, addrs, cfg.Serves); err != nil {
		return err
	}
	if cfg.Forward != "" {
		if err := d.startRelay(cfg); err != nil {
			return err
		}
	}
	ops := ctlOps(d.eng)
	if d.st != nil {
		ops["nc"] = ncOp(d.st)
	} else {
		ops["nc"] = func(*ctlSession) (any, error) {
			return nil, fmt.Errorf("nc is not available with --engine %s", cfg.Engine)
		}
	}
	if d.ctl, err = bindCtl(cfg.Ctl, d.lg); err != nil {
		return err
	}
	// Nothing else can fail now.
	if d.pcap != nil {
		if err := d.pcap.commit(); err != nil {
			return err
		}
		d.lg.Printf("ustack run: capturing to %s", cfg.Pcap)
	}
	d.ctl.serve(ops)
	d.lg.Printf("ustack run: control socket %s", cfg.Ctl)
	return nil
}

// close undoes whatever start did, in order: services (their listeners and
// connections), the stack (which resets what is left), the link, the
// capture (after the stack, so it holds the final resets), and the control
// socket.
func (d *daemon) close() {
	if d.relay != nil {
		d.relay.Close()
	}
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
		if err := d.pcap.close(); err != nil {
			d.lg.Printf("ustack run: pcap: %v", err)
		}
	}
	if d.ctl != nil {
		d.ctl.Close()
	}
}

// startRelay makes the stack take every address and relays what comes for
// them (--forward): through the host's sockets, kept off the TUN device by
// --forward-dev (by default the default route's device) or
// --forward-mark, or through a SOCKS5 proxy.
func (d *daemon) startRelay(cfg *runConfig) error {
	var up relay.Upstream
	what := "SOCKS5 proxy " + cfg.ForwardSOCKS
	if cfg.ForwardSOCKS != "" {
		up = relay.SOCKS5{Addr: cfg.ForwardSOCKS}
	} else {
		dev := cfg.ForwardDev
		if dev == "" && cfg.ForwardMark == 0 {
			var err error
			if dev, err = relay.DefaultRouteDevice(cfg.Tun); err != nil {
				return fmt.Errorf("--forward direct: %w", err)
			}
		}
		direct, err := relay.NewDirect(dev, cfg.ForwardMark)
		if err != nil {
			return fmt.Errorf("--forward: %w", err)
		}
		up = direct
		what = "the host's sockets"
		if dev != "" {
			what += " on " + dev
		}
		if cfg.ForwardMark != 0 {
			what += fmt.Sprintf(" (mark %#x)", cfg.ForwardMark)
		}
	}
	var fwd relay.Stack
	switch eng := d.eng.(type) {
	case ustackEngine:
		fwd = relay.Ustack(eng.Stack)
	case relay.Stack:
		fwd = eng // gVisor's netstack, with its forwarders
	default:
		return fmt.Errorf("--forward: --engine %s cannot forward", cfg.Engine)
	}
	d.relay = relay.Start(fwd, up, relay.Options{Log: d.lg, LocalPing: cfg.ForwardLocalPing})
	d.lg.Printf("ustack run: forwarding every other address's TCP and UDP through %s", what)
	return nil
}
