// Package wgpair joins two tunnel devices with WireGuard in one process:
// two wireguard-go devices over its conn/bindtest channel binds, as
// wireguard-go's own tests join them. The netstack tests and the bench
// put a netstack on each side.
package wgpair

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn/bindtest"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// Join runs a wireguard-go device over each of a and b, each the other's
// only peer, allowed every address. close stops both devices (and so
// closes a and b).
func Join(a, b tun.Device) (close func(), err error) {
	var priv [2][32]byte
	var pub [2][]byte
	for i := range priv {
		rand.Read(priv[i][:])
		if pub[i], err = curve25519.X25519(priv[i][:], curve25519.Basepoint); err != nil {
			return nil, err
		}
	}
	binds := bindtest.NewChannelBinds()
	var devs []*device.Device
	close = func() {
		for _, d := range devs {
			d.Close()
		}
	}
	for i, tdev := range []tun.Device{a, b} {
		dev := device.NewDevice(tdev, binds[i], device.NewLogger(device.LogLevelError, fmt.Sprintf("wg%d: ", i)))
		devs = append(devs, dev)
		// The peer's endpoint is this bind's target, where bindtest
		// delivers to the other bind.
		cfg := fmt.Sprintf("private_key=%s\nlisten_port=0\nreplace_peers=true\npublic_key=%s\nallowed_ip=0.0.0.0/0\nallowed_ip=::/0\nendpoint=127.0.0.1:%d\n",
			hex.EncodeToString(priv[i][:]), hex.EncodeToString(pub[1-i]), i+1)
		if err := dev.IpcSet(cfg); err != nil {
			close()
			return nil, fmt.Errorf("wgpair: configuring device %d: %w", i, err)
		}
		if err := dev.Up(); err != nil {
			close()
			return nil, fmt.Errorf("wgpair: bringing up device %d: %w", i, err)
		}
	}
	return close, nil
}
