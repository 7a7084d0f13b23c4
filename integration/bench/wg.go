package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	gvnetstack "golang.zx2c4.com/wireguard/tun/netstack"

	"ustack/internal/wgpair"
	"ustack/netstack"
)

// The wireguard-go pair: in this process, an embedded stack (ustack's
// netstack for the ustack column, wireguard-go's own gVisor netstack
// for the gvisor column) joined by WireGuard over channel binds to a peer
// that is always wireguard-go's gVisor netstack, one TCP stream each way
// for cfg.stream. Encryption costs the same in both columns; the
// difference is the embedded stack.

var (
	wgLocal = netip.MustParseAddr("10.9.0.1")
	wgPeer  = netip.MustParseAddr("10.9.0.2")
)

// wgNet is what the pair's measurement uses of either netstack's Net.
type wgNet interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

func runWG(ctx context.Context, cfg *config, t *target, _ *server) (sample, []string, error) {
	const mtu = 1420
	var localDev tun.Device
	var local wgNet
	var err error
	switch t.name {
	case "ustack":
		localDev, local, err = netstack.CreateNetTUN([]netip.Addr{wgLocal}, nil, mtu)
	case "gvisor":
		localDev, local, err = gvnetstack.CreateNetTUN([]netip.Addr{wgLocal}, nil, mtu)
	default:
		return nil, nil, errSkip{"the wireguard-go pair embeds a netstack; the kernel has none to embed"}
	}
	if err != nil {
		return nil, nil, err
	}
	peerDev, peer, err := gvnetstack.CreateNetTUN([]netip.Addr{wgPeer}, nil, mtu)
	if err != nil {
		localDev.Close()
		return nil, nil, err
	}
	stop, err := wgpair.Join(localDev, peerDev)
	if err != nil {
		return nil, nil, err
	}
	defer stop()
	ln, err := peer.ListenTCP(&net.TCPAddr{Port: 9000})
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	smp := sample{}
	for _, dir := range []string{"up", "down"} {
		gbps, err := wgStream(ctx, cfg, local, ln, dir == "up")
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", dir, err)
		}
		smp["wg_"+dir+"_gbps"] = gbps
	}
	return smp, nil, nil
}

// wgStream times one stream from the local stack to the peer (up) or
// back (down) for cfg.stream; the receiver counts, so every byte counted
// arrived.
func wgStream(ctx context.Context, cfg *config, local wgNet, ln net.Listener, up bool) (float64, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := local.DialContext(dctx, "tcp", netip.AddrPortFrom(wgPeer, 9000).String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	a, err := ln.Accept()
	if err != nil {
		return 0, err
	}
	defer a.Close()
	sender, receiver := c, a
	if !up {
		sender, receiver = a, c
	}
	end := time.Now().Add(cfg.stream)
	go func() {
		buf := make([]byte, streamBuf)
		for time.Now().Before(end) && ctx.Err() == nil {
			if _, err := sender.Write(buf); err != nil {
				return
			}
		}
		if cw, ok := sender.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			sender.Close()
		}
	}()
	receiver.SetReadDeadline(end.Add(30 * time.Second))
	start := time.Now()
	n, err := io.CopyBuffer(io.Discard, receiver, make([]byte, streamBuf))
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("after %d bytes: %w", n, err)
	}
	return float64(n) * 8 / time.Since(start).Seconds() / 1e9, nil
}
