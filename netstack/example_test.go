package netstack_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"

	"ustack/internal/wgpair"
	"ustack/netstack"
)

// wireguard-go's netstack example, both ends on ustack: each side is a
// CreateNetTUN device under a wireguard-go device, the two joined over
// WireGuard (here in memory; conn.NewDefaultBind and a peer's endpoint in
// a real program). Only the import differs from wireguard-go's own.
func ExampleCreateNetTUN() {
	srvDev, srvNet, err := netstack.CreateNetTUN([]netip.Addr{netip.MustParseAddr("192.168.4.29")}, nil, 1420)
	if err != nil {
		panic(err)
	}
	cliDev, cliNet, err := netstack.CreateNetTUN([]netip.Addr{netip.MustParseAddr("192.168.4.28")}, nil, 1420)
	if err != nil {
		panic(err)
	}
	stop, err := wgpair.Join(srvDev, cliDev)
	if err != nil {
		panic(err)
	}
	defer stop()

	ln, err := srvNet.ListenTCP(&net.TCPAddr{Port: 80})
	if err != nil {
		panic(err)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "Hello from userspace TCP!")
	}))

	client := http.Client{Transport: &http.Transport{DialContext: cliNet.DialContext}}
	resp, err := client.Get("http://192.168.4.29/")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))
	// Output: Hello from userspace TCP!
}
