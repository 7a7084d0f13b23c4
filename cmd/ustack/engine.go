package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime/pprof"

	"ustack/engine/gvisor"
	"ustack/stack"
)

// engine is what the services, the status page and the control socket need
// from a TCP/IP stack. ustack's *stack.Stack is one (through ustackEngine);
// gVisor's netstack is the other (--engine gvisor), so the two can be
// compared on the same services and the same TUN plumbing.
type engine interface {
	// ListenTCP listens on addr with the given backlog.
	ListenTCP(addr netip.AddrPort, backlog int) (net.Listener, error)
	// Bind reserves addr without listening (SYNs to it get RST).
	Bind(addr netip.AddrPort) (io.Closer, error)
	Sockets() []stack.SocketInfo
	Counters() []stack.Counter
	// Close resets what is left and closes the link.
	Close() error
}

// ustackEngine adapts *stack.Stack, whose ListenTCP and Bind return
// concrete types, to engine.
type ustackEngine struct{ *stack.Stack }

func (e ustackEngine) ListenTCP(addr netip.AddrPort, backlog int) (net.Listener, error) {
	ln, err := e.Stack.ListenTCP(addr, backlog)
	if err != nil {
		return nil, err
	}
	return ln, nil
}

func (e ustackEngine) Bind(addr netip.AddrPort) (io.Closer, error) {
	b, err := e.Stack.Bind(addr)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// ListenUDP binds a UDP socket (the udp services).
func (e ustackEngine) ListenUDP(addr netip.AddrPort) (net.PacketConn, error) {
	c, err := e.Stack.ListenUDP(addr)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// udpEngine is an engine that carries UDP.
type udpEngine interface {
	ListenUDP(addr netip.AddrPort) (net.PacketConn, error)
}

var (
	_ engine    = ustackEngine{}
	_ engine    = (*gvisor.Stack)(nil)
	_ udpEngine = (*gvisor.Stack)(nil)
	_ udpEngine = ustackEngine{}
)

// startEngine creates the engine cfg.Engine names on link and starts it.
// opts are ustack's options; gVisor takes the address, the packet hook
// (--pcap) and the timers it has knobs for from them.
func (d *daemon) startEngine(cfg *runConfig, link stack.Link, opts stack.Options) error {
	switch cfg.Engine {
	case "gvisor":
		g, err := gvisor.New(link, gvisor.Options{
			Addr: opts.Addr, Addr6: opts.Addr6, Packet: opts.Packet,
			FinTimeout: opts.FinTimeout, TimeWait: opts.TimeWait, SynRetries: opts.SynRetries,
			Promiscuous: opts.Promiscuous,
		})
		if err != nil {
			return fmt.Errorf("creating the gVisor stack: %w", err)
		}
		d.eng = g
		return nil
	}
	st, err := stack.New(link, opts)
	if err != nil {
		return fmt.Errorf("creating the stack: %w", err)
	}
	d.st = st
	d.eng = ustackEngine{st}
	if err := st.Start(); err != nil {
		return fmt.Errorf("starting the stack: %w", err)
	}
	return nil
}

// startCPUProfile writes a CPU profile of the whole daemon to path until the
// returned function is called (--cpuprofile, for go tool pprof).
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
