package stack_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"ustack/stack"
)

// A stack over an in-memory link serves HTTP with net/http and fetches it
// through its own loopback path; over a TUN device (package tun) the same
// code serves real kernel clients.
func Example() {
	st, err := stack.New(stack.NewMemLink(1500), stack.DefaultOptions()) // 10.0.0.2
	if err != nil {
		panic(err)
	}
	defer st.Close()
	st.Start()

	ln, err := st.Listen("tcp", ":80")
	if err != nil {
		panic(err)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", r.Host)
	}))

	client := &http.Client{Transport: &http.Transport{DialContext: st.DialContext}}
	resp, err := client.Get("http://10.0.0.2/")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(string(body))
	// Output: hello from 10.0.0.2
}

// Per-connection TCP options are set as on a *net.TCPConn.
func ExampleConn_SetKeepAliveConfig() {
	st, _ := stack.New(stack.NewMemLink(1500), stack.DefaultOptions())
	defer st.Close()
	st.Start()
	ln, _ := st.Listen("tcp", ":7")
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(c, c)
			c.Close()
		}
	}()
	nc, err := st.Dial("tcp", "10.0.0.2:7")
	if err != nil {
		panic(err)
	}
	c := nc.(*stack.Conn)
	// Probe after 30 s of silence, every 10 s, and give up after 3; and
	// fail a write that stays unacknowledged for 20 s.
	fmt.Println(c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3}))
	fmt.Println(c.SetUserTimeout(20 * time.Second))
	c.Close()
	// Output:
	// <nil>
	// <nil>
}
