package main

import (
	"encoding/json"
	"html/template"
	"io"
	"net/http"
	"strconv"
	"time"

	"ustack/stack"
)

// stackView is what the status page and the control socket read from the
// stack. *stack.Stack implements it; tests use a fake.
type stackView interface {
	Sockets() []stack.SocketInfo
	Counters() []stack.Counter
}

// maxBytesN bounds /bytes?n=N (2 GiB).
const maxBytesN = 1 << 31

// bytesPeriod is the period of /bytes's pattern: byte i of the body is
// i % 251. A prime period means a dropped, repeated or reordered chunk of any
// power-of-two size shows up as a mismatch.
const bytesPeriod = 251

// bytesChunk is a run of the /bytes pattern whose length is a multiple of
// the period, so writing it repeatedly continues the pattern.
var bytesChunk = func() []byte {
	b := make([]byte, bytesPeriod*256)
	for i := range b {
		b[i] = byte(i % bytesPeriod)
	}
	return b
}()

// newHTTPHandler serves the http service:
//
//	/             live HTML status page (sockets and counters, refreshes every 2 s)
//	/status.json  the same data as JSON: {"sockets":[...],"counters":[...]}
//	/bytes?n=N    N bytes, byte i = i % 251, with Content-Length
//	/echo         POST: the request body, back
func newHTTPHandler(view stackView) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := statusPage.Execute(w, newStatusData(view)); err != nil {
			// The header is out; all we can do is stop.
			return
		}
	})
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(statusJSON{Sockets: orEmpty(view.Sockets()), Counters: orEmpty(view.Counters())})
	})
	mux.HandleFunc("GET /bytes", serveBytes)
	mux.HandleFunc("POST /echo", serveEcho)
	return mux
}

// statusJSON is /status.json's body; the control socket's replies use the
// same field names.
type statusJSON struct {
	Sockets  []stack.SocketInfo `json:"sockets"`
	Counters []stack.Counter    `json:"counters"`
}

// orEmpty makes nil slices encode as [] rather than null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func serveBytes(w http.ResponseWriter, r *http.Request) {
	s := r.URL.Query().Get("n")
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > maxBytesN {
		http.Error(w, "want /bytes?n=N with 0 <= N <= 2147483648", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	for n > 0 {
		chunk := bytesChunk[:min(n, int64(len(bytesChunk)))]
		k, err := w.Write(chunk)
		if err != nil {
			return
		}
		n -= int64(k)
	}
}

// serveEcho streams the request body back. Full duplex, because a client
// may send a body larger than the buffers before reading anything.
func serveEcho(w http.ResponseWriter, r *http.Request) {
	http.NewResponseController(w).EnableFullDuplex()
	w.Header().Set("Content-Type", "application/octet-stream")
	if r.ContentLength >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	w.WriteHeader(http.StatusOK)
	io.Copy(w, r.Body)
}

// socketRow is one line of the status page's connection table.
type socketRow struct {
	State, Local, Peer, Timer string
	RecvQ, SendQ              int
}

type statusData struct {
	Now      string
	Sockets  []socketRow
	Counters []stack.Counter
}

func newStatusData(view stackView) statusData {
	d := statusData{Now: time.Now().Format(time.DateTime), Counters: view.Counters()}
	for _, s := range view.Sockets() {
		d.Sockets = append(d.Sockets, socketRow{
			State: s.State, RecvQ: s.RecvQ, SendQ: s.SendQ,
			Local: formatAddrPort(s.Local), Peer: formatAddrPort(s.Peer),
			Timer: formatTimer(s),
		})
	}
	return d
}

var statusPage = template.Must(template.New("status").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="2">
<title>ustack</title>
<style>
body { font-family: sans-serif; margin: 2em; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; font-family: monospace; }
th { background: #eee; }
td.num { text-align: right; }
</style>
</head>
<body>
<h1>ustack</h1>
<p>{{len .Sockets}} sockets at {{.Now}}. This page refreshes every 2 seconds; <a href="/status.json">status.json</a> has the same data.</p>
<h2>Connections</h2>
<table id="connections">
<tr><th>State</th><th>Recv-Q</th><th>Send-Q</th><th>Local</th><th>Peer</th><th>Timer</th></tr>
{{range .Sockets}}<tr><td>{{.State}}</td><td class="num">{{.RecvQ}}</td><td class="num">{{.SendQ}}</td><td>{{.Local}}</td><td>{{.Peer}}</td><td>{{.Timer}}</td></tr>
{{end}}</table>
<h2>Counters</h2>
<table id="counters">
<tr><th>Counter</th><th>Value</th></tr>
{{range .Counters}}<tr><td>{{.Name}}</td><td class="num">{{.Value}}</td></tr>
{{end}}</table>
</body>
</html>
`))
