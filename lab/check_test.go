package lab

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"ustack/stack"
)

func TestSynSchedule(t *testing.T) {
	s := func(xs ...float64) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x*float64(time.Second)))
		}
		return out
	}
	// The numbers of behaviours.md (B14) and the lab's two experiments.
	for _, tc := range []struct {
		retries, linear int
		syns            []time.Duration
		timeout         time.Duration
	}{
		{6, 4, s(0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67), 131 * time.Second},
		{6, 0, s(0, 1, 3, 7, 15, 31, 63), 127 * time.Second},
		{3, 0, s(0, 1, 3, 7), 15 * time.Second},
		{2, 2, s(0, 1, 2, 3, 5), 9 * time.Second},
		{0, 0, s(0), time.Second},
	} {
		syns, timeout := synSchedule(tc.retries, tc.linear)
		if durations(syns) != durations(tc.syns) || timeout != tc.timeout {
			t.Errorf("synSchedule(%d, %d) = %s, %v; want %s, %v", tc.retries, tc.linear, durations(syns), timeout, durations(tc.syns), tc.timeout)
		}
	}
	// The RTO is capped at 120 s.
	syns, _ := synSchedule(10, 0)
	if d := syns[10] - syns[9]; d != 120*time.Second {
		t.Errorf("10th gap %v, want the 120 s cap", d)
	}
}

func TestVerdict(t *testing.T) {
	ok := Check{ID: "B01", Want: "RST|ACK", Got: "R. 0:0(0) ack 1", OK: true}
	bad := Check{ID: "B01", Want: "connect() fails at once", Got: "ETIMEDOUT", OK: false}
	for _, tc := range []struct {
		checks []Check
		err    error
		match  bool
		has    []string
	}{
		{[]Check{ok}, nil, true, []string{"  ✓ B01  RST|ACK\n           seen: R. 0:0(0) ack 1\n", "MATCH\n"}},
		{[]Check{ok, bad}, nil, false, []string{"  ✗ B01  connect() fails at once", "seen: ETIMEDOUT", "MISMATCH\n"}},
		{nil, nil, false, []string{"nothing was checked", "MISMATCH"}},
		{[]Check{ok}, errors.New("nc not found"), false, []string{"did not run to its end: nc not found", "MISMATCH"}},
	} {
		var b bytes.Buffer
		if got := writeVerdict(&b, tc.checks, tc.err); got != tc.match || matched(tc.checks, tc.err) != tc.match {
			t.Errorf("%v, %v: match %v, want %v", tc.checks, tc.err, got, tc.match)
		}
		for _, h := range tc.has {
			if !strings.Contains(b.String(), h) {
				t.Errorf("verdict lacks %q:\n%s", h, b.String())
			}
		}
	}
}

// testEnv is an Env with a timeline and a stack on an in-memory link, for
// running the checks on segments and transitions made up by the test.
func testEnv(t *testing.T) *Env {
	t.Helper()
	opts := stack.DefaultOptions()
	opts.TimeWait = 2 * time.Second
	st, err := stack.New(stack.NewMemLink(1500), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Env{ctx: context.Background(), tl: newTimeline(time.Now()), st: st, opts: opts}
}

// at appends an event with its time set.
func at(tl *Timeline, d time.Duration, ev Event) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	ev.T = d
	if ev.Kind == evSegment {
		tl.num.number(&ev.Seg)
		ev.Seg.T = d
	}
	ev.Tr.T = d
	tl.events = append(tl.events, ev)
}

func segAt(t *testing.T, tl *Timeline, d time.Duration, out bool, p pktSpec) {
	s, ok := parseSegment(pkt(t, p))
	if !ok {
		t.Fatal("bad packet")
	}
	s.Out = out
	at(tl, d, Event{Kind: evSegment, Seg: s})
}

func trAt(tl *Timeline, d time.Duration, local, peer, from, to string) {
	at(tl, d, Event{Kind: evTransition, Tr: Transition{Local: netip.MustParseAddrPort(local), Peer: netip.MustParseAddrPort(peer), From: from, To: to}})
}

func failed(checks []Check) []string {
	var out []string
	for _, c := range checks {
		if !c.OK {
			out = append(out, c.Want)
		}
	}
	return out
}

func TestCheckRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		seq, ack  uint32
		flags     uint8
		wantFails int
	}{
		{"right", 0, 1001, fRA, 0},
		{"wrong ack", 0, 1000, fRA, 1},
		{"no ACK flag", 0, 1001, fR, 1},
		{"nonzero seq", 5, 1001, fRA, 1},
	} {
		x := testEnv(t)
		segAt(t, x.tl, 0, false, pktSpec{src: kAP, dst: "10.0.0.2:9", flags: fS, seq: 1000, syn: true})
		segAt(t, x.tl, time.Millisecond, true, pktSpec{src: "10.0.0.2:9", dst: kAP, flags: tc.flags, seq: tc.seq, ack: tc.ack})
		syn := x.tl.Segments()[0]
		checkRefused(x, "B01", syn)
		if f := failed(x.Checks()); len(f) != tc.wantFails {
			t.Errorf("%s: failed %q, want %d failures", tc.name, f, tc.wantFails)
		}
	}
	// A SYN|ACK instead is the wrong answer on both counts.
	x := testEnv(t)
	segAt(t, x.tl, 0, false, pktSpec{src: kAP, dst: "10.0.0.2:9", flags: fS, seq: 1000, syn: true})
	segAt(t, x.tl, 0, true, pktSpec{src: "10.0.0.2:9", dst: kAP, flags: fSA, seq: 7, ack: 1001, syn: true})
	checkRefused(x, "B01", x.tl.Segments()[0])
	if f := failed(x.Checks()); len(f) != 2 {
		t.Errorf("SYN|ACK: failed %q, want both checks", f)
	}
}

func TestCheckSimOpen(t *testing.T) {
	u, k := "10.0.0.2:5000", "10.0.0.1:6000"
	run := func(ustackSynAckSeq uint32) []string {
		x := testEnv(t)
		segAt(t, x.tl, 0, true, pktSpec{src: u, dst: k, flags: fS, seq: 100, syn: true})
		segAt(t, x.tl, 1, false, pktSpec{src: k, dst: u, flags: fS, seq: 900, syn: true})
		segAt(t, x.tl, 2, true, pktSpec{src: u, dst: k, flags: fSA, seq: ustackSynAckSeq, ack: 901, syn: true})
		segAt(t, x.tl, 3, false, pktSpec{src: k, dst: u, flags: fSA, seq: 900, ack: 101, syn: true})
		checkSimOpen(x, "B15", segs(x.tl.Segments()), netip.MustParseAddrPort(u), netip.MustParseAddrPort(k))
		if n := len(x.Checks()); n != 2 {
			t.Fatalf("%d checks, want one per side", n)
		}
		return failed(x.Checks())
	}
	if f := run(100); len(f) != 0 {
		t.Errorf("a correct simultaneous open failed %q", f)
	}
	// A SYN|ACK with a new ISN is not a simultaneous open's.
	if f := run(555); len(f) != 1 || !strings.HasPrefix(f[0], "ustack") {
		t.Errorf("a new ISN in ustack's SYN|ACK: failed %q", f)
	}
}

func TestCheckReset(t *testing.T) {
	local, peer := netip.MustParseAddrPort(uAP), netip.MustParseAddrPort(kAP)
	run := func(last pktSpec, toState string) []string {
		x := testEnv(t)
		handshake(t, x.tl) // kernel ISN 1000 sent 5 bytes; ustack ISN 5000
		trAt(x.tl, 0, uAP, kAP, "SYN-RECV", "ESTAB")
		closedAt := time.Second
		segAt(t, x.tl, closedAt, true, last)
		trAt(x.tl, closedAt, uAP, kAP, "ESTAB", toState)
		checkReset(x, "B32", local, peer, closedAt)
		return failed(x.Checks())
	}
	if f := run(pktSpec{src: uAP, dst: kAP, flags: fRA, seq: 5001, ack: 1006}, "CLOSE"); len(f) != 0 {
		t.Errorf("a right abortive close failed %q", f)
	}
	if f := run(pktSpec{src: uAP, dst: kAP, flags: fFA, seq: 5001, ack: 1006}, "FIN-WAIT-1"); len(f) != 2 {
		t.Errorf("a FIN instead of RST: failed %q, want RST-not-FIN and gone-at-once", f)
	}
	if f := run(pktSpec{src: uAP, dst: kAP, flags: fRA, seq: 5001, ack: 1001}, "CLOSE"); len(f) != 1 {
		t.Errorf("a RST that does not ack the unread bytes: failed %q", f)
	}
}

func TestCheckSimClose(t *testing.T) {
	u, k := uAP, kAP
	x := testEnv(t)
	handshake(t, x.tl)
	trAt(x.tl, 0, u, k, "SYN-RECV", "ESTAB")
	trAt(x.tl, time.Second, u, k, "ESTAB", "FIN-WAIT-1")
	segAt(t, x.tl, time.Second, true, pktSpec{src: u, dst: k, flags: fFA, seq: 5001, ack: 1006})
	segAt(t, x.tl, 1250*time.Millisecond, false, pktSpec{src: k, dst: u, flags: fFA, seq: 1006, ack: 5001})
	trAt(x.tl, 1250*time.Millisecond, u, k, "FIN-WAIT-1", "CLOSING")
	segAt(t, x.tl, 1250*time.Millisecond, true, pktSpec{src: u, dst: k, flags: fA, seq: 5002, ack: 1007})
	segAt(t, x.tl, 1500*time.Millisecond, false, pktSpec{src: k, dst: u, flags: fA, seq: 1007, ack: 5002})
	trAt(x.tl, 1500*time.Millisecond, u, k, "CLOSING", "TIME-WAIT")
	trAt(x.tl, 3500*time.Millisecond, u, k, "TIME-WAIT", "CLOSE")
	checkSimClose(x, netip.MustParseAddrPort(u), netip.MustParseAddrPort(k))
	if f := failed(x.Checks()); len(f) != 0 || len(x.Checks()) != 4 {
		t.Errorf("%d checks, failed %q", len(x.Checks()), f)
	}
}

func TestTransPath(t *testing.T) {
	mk := func(pairs ...string) trans {
		var ts trans
		for i := 0; i+1 < len(pairs); i += 2 {
			ts = append(ts, Transition{From: pairs[i], To: pairs[i+1]})
		}
		return ts
	}
	ts := mk("CLOSE", "SYN-SENT", "SYN-SENT", "SYN-RECV", "SYN-RECV", "ESTAB")
	if p := ts.path(); p != "CLOSE -> SYN-SENT -> SYN-RECV -> ESTAB" {
		t.Errorf("path %q", p)
	}
	if !ts.hasPath("SYN-SENT", "SYN-RECV", "ESTAB") || ts.hasPath("SYN-SENT", "ESTAB") || !ts.hasPath("CLOSE", "SYN-SENT") {
		t.Error("hasPath")
	}
	if p := mk("ESTAB", "CLOSE-WAIT", "LAST-ACK", "CLOSE").path(); p != "ESTAB -> CLOSE-WAIT -> ?LAST-ACK -> CLOSE" {
		t.Errorf("a gap shows: %q", p)
	}
	// A passive open starts in LISTEN, as the timeline shows it.
	passive := mk("CLOSE", "SYN-RECV", "SYN-RECV", "ESTAB")
	if p := passive.path(); p != "LISTEN -> SYN-RECV -> ESTAB" || !passive.hasPath("LISTEN", "SYN-RECV", "ESTAB") {
		t.Errorf("passive open: path %q", p)
	}
	if p := (trans{}).path(); p != "(no transitions)" {
		t.Errorf("empty %q", p)
	}
}

// Every behaviour id the lab must demonstrate has an experiment; names are
// unique and every experiment explains itself.
func TestExperimentsCoverIDs(t *testing.T) {
	seen := map[string]bool{}
	names := map[string]bool{}
	for _, e := range Experiments() {
		if names[e.Name] {
			t.Errorf("experiment %q twice", e.Name)
		}
		names[e.Name] = true
		if e.Title == "" || len(e.Explain) < 200 || e.Run == nil || len(e.IDs) == 0 {
			t.Errorf("experiment %q incomplete", e.Name)
		}
		if !strings.Contains(e.Explain, "Watch for") {
			t.Errorf("experiment %q does not say what to watch for", e.Name)
		}
		for _, id := range e.IDs {
			seen[id] = true
		}
		if got, ok := Lookup(e.Name); !ok || got != e {
			t.Errorf("Lookup(%q)", e.Name)
		}
	}
	for _, id := range []string{"B01", "B02", "B11", "B14", "B15", "B16", "B17", "B31", "B32", "B33", "B34", "B35", "B36", "B70"} {
		if !seen[id] {
			t.Errorf("no experiment for %s", id)
		}
	}
	if _, ok := Lookup("no-such"); ok {
		t.Error("Lookup of an unknown name")
	}
}
