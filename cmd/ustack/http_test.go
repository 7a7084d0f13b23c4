package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"ustack/stack"
)

func TestStatusPage(t *testing.T) {
	view := &fakeView{
		socks: []stack.SocketInfo{
			{State: "ESTAB", RecvQ: 17, SendQ: 3, Local: netip.MustParseAddrPort("10.0.0.2:80"), Peer: netip.MustParseAddrPort("10.0.0.1:43210"), Timer: "on", TimerLeft: 1200e6},
			{State: "<script>", Local: netip.MustParseAddrPort("10.0.0.2:7")},
		},
		counters: []stack.Counter{{Name: "TCPInSegs", Value: 99}},
	}
	srv := httptest.NewServer(newHTTPHandler(view))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		"<title>ustack</title>",
		`<meta http-equiv="refresh" content="2">`,
		`<table id="connections">`,
		`<table id="counters">`,
		`<tr><td>ESTAB</td><td class="num">17</td><td class="num">3</td><td>10.0.0.2:80</td><td>10.0.0.1:43210</td><td>on (1.2sec)</td></tr>`,
		`<tr><td>TCPInSegs</td><td class="num">99</td></tr>`,
		`&lt;script&gt;`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(page, "<script>") {
		t.Error("socket state not escaped")
	}
	// Unknown paths are 404, not the status page.
	resp, _ = http.Get(srv.URL + "/nope")
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("/nope: %d", resp.StatusCode)
	}
}

func TestStatusJSON(t *testing.T) {
	view := &fakeView{socks: sampleSockets[:2], counters: sampleCounters}
	srv := httptest.NewServer(newHTTPHandler(view))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got statusJSON
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got.Sockets) != 2 || got.Sockets[0].State != "LISTEN" || got.Sockets[0].Local != sampleSockets[0].Local || len(got.Counters) != 2 {
		t.Errorf("got %+v", got)
	}
}

func TestBytes(t *testing.T) {
	srv := httptest.NewServer(newHTTPHandler(&fakeView{}))
	defer srv.Close()
	for _, n := range []int{0, 1, 250, 251, 252, bytesPeriod*256 + 7, 200000} {
		resp, err := http.Get(srv.URL + "/bytes?n=" + strconv.Itoa(n))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != int64(n) || len(body) != n {
			t.Fatalf("n=%d: status %d, Content-Length %d, %d bytes", n, resp.StatusCode, resp.ContentLength, len(body))
		}
		for i, b := range body {
			if b != byte(i%251) {
				t.Fatalf("n=%d: byte %d is %d, want %d", n, i, b, i%251)
			}
		}
	}
	for _, q := range []string{"", "?n=", "?n=-1", "?n=x", "?n=2147483649"} {
		resp, err := http.Get(srv.URL + "/bytes" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("/bytes%s: status %d, want 400", q, resp.StatusCode)
		}
	}
	resp, err := http.Head(srv.URL + "/bytes?n=2147483648")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 1<<31 {
		t.Errorf("HEAD n=2^31: %d, length %d", resp.StatusCode, resp.ContentLength)
	}
}

func TestEcho(t *testing.T) {
	srv := httptest.NewServer(newHTTPHandler(&fakeView{}))
	defer srv.Close()
	body := strings.Repeat("ustack echo ", 100000)
	resp, err := http.Post(srv.URL+"/echo", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != body {
		t.Errorf("status %d, %d bytes back of %d", resp.StatusCode, len(got), len(body))
	}
	resp, _ = http.Get(srv.URL + "/echo")
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("GET /echo: %d, want 405", resp.StatusCode)
	}
}
