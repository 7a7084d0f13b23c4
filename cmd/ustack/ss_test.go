package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"ustack/stack"
)

var sampleSockets = []stack.SocketInfo{
	{State: "LISTEN", RecvQ: 0, SendQ: 4096, Local: netip.MustParseAddrPort("10.0.0.2:80")},
	{State: "UNCONN", Local: netip.MustParseAddrPort("10.0.0.2:81")},
	{State: "ESTAB", RecvQ: 5, SendQ: 1448, Local: netip.MustParseAddrPort("10.0.0.2:7"), Peer: netip.MustParseAddrPort("10.0.0.1:41234"),
		Timer: "on", TimerLeft: 1234 * time.Millisecond},
	{State: "TIME-WAIT", Local: netip.MustParseAddrPort("10.0.0.2:80"), Peer: netip.MustParseAddrPort("10.0.0.1:41000"),
		Timer: "timewait", TimerLeft: 52*time.Second + 300*time.Millisecond},
	{State: "SYN-SENT", SendQ: 1, Local: netip.MustParseAddrPort("10.0.0.2:33000"), Peer: netip.MustParseAddrPort("10.0.0.9:80"),
		Timer: "on", TimerLeft: 3 * time.Second, Retransmits: 2},
}

func TestWriteSockets(t *testing.T) {
	var b bytes.Buffer
	writeSockets(&b, sampleSockets)
	want := `State      Recv-Q Send-Q Local Address:Port  Peer Address:Port  Timer
LISTEN     0      4096   10.0.0.2:80         *:*
UNCONN     0      0      10.0.0.2:81         *:*
ESTAB      5      1448   10.0.0.2:7          10.0.0.1:41234     on (1.2sec)
TIME-WAIT  0      0      10.0.0.2:80         10.0.0.1:41000     timewait (52sec)
SYN-SENT   0      1      10.0.0.2:33000      10.0.0.9:80        on (3.0sec, 2 retrans)
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWriteSocketsEmpty(t *testing.T) {
	var b bytes.Buffer
	writeSockets(&b, nil)
	if b.String() != "State      Recv-Q Send-Q Local Address:Port  Peer Address:Port  Timer\n" {
		t.Errorf("got %q", b.String())
	}
}

// A long address widens its column instead of breaking the alignment.
func TestWriteSocketsWide(t *testing.T) {
	var b bytes.Buffer
	writeSockets(&b, []stack.SocketInfo{{State: "ESTAB",
		Local: netip.MustParseAddrPort("10.0.0.2:65535"), Peer: netip.MustParseAddrPort("255.255.255.255:65535")}})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if i, j := strings.Index(lines[0], "Timer"), len("ESTAB      0      0      10.0.0.2:65535      255.255.255.255:65535 "); i != j {
		t.Errorf("Timer column at %d, want %d:\n%s", i, j, b.String())
	}
}

func TestFormatTimerLeft(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0ms"},
		{0, "0ms"},
		{200 * time.Millisecond, "200ms"},
		{1234 * time.Millisecond, "1.2sec"},
		{9999 * time.Millisecond, "9.9sec"},
		{10 * time.Second, "10sec"},
		{59*time.Second + 900*time.Millisecond, "59sec"},
		{60 * time.Second, "1min"},
		{114 * time.Second, "1min54sec"},
		{7200 * time.Second, "120min"},
	} {
		if got := formatTimerLeft(tc.d); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.d, got, tc.want)
		}
	}
	if got := formatTimer(stack.SocketInfo{}); got != "" {
		t.Errorf("no timer: %q", got)
	}
}

func TestWriteCounters(t *testing.T) {
	var b bytes.Buffer
	writeCounters(&b, []stack.Counter{{Name: "TCPInSegs", Value: 12}, {Name: "IPInHdrErrors", Value: 0}, {Name: "Resets", Value: 3}})
	want := "TCPInSegs     12\nIPInHdrErrors 0\nResets        3\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestFormatAddrPort(t *testing.T) {
	for _, tc := range []struct {
		ap   netip.AddrPort
		want string
	}{
		{netip.AddrPort{}, "*:*"},
		{netip.MustParseAddrPort("0.0.0.0:80"), "*:80"},
		{netip.MustParseAddrPort("10.0.0.2:0"), "10.0.0.2:*"},
		{netip.MustParseAddrPort("10.0.0.2:7"), "10.0.0.2:7"},
	} {
		if got := formatAddrPort(tc.ap); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.ap, got, tc.want)
		}
	}
}
