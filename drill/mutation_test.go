package drill

import (
	"strings"
	"testing"
	"time"
)

// mutationBase passes on every stack; each mutation below changes one line
// so that it must not.
const mutationBase = "`../common/defaults.sh`\n" + `
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop,nop,wscale 7>
   +0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8>
 +.01 < . 1:1(0) ack 1 win 514
   +0 accept(3, ..., ...) = 4
   +0 write(4, ..., 1000) = 1000
   +0 > P. 1:1001(1000) ack 1
 +.01 < . 1:1(0) ack 1001 win 514
 +.01 < P. 1:101(100) ack 1001 win 514
   +0 > . 1001:1001(0) ack 101
   +0 read(4, ..., 1000) = 100
   +0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0
   +0 read(4, ..., 1000) = -1 EAGAIN (Resource temporarily unavailable)
   +0 write(4, ..., 10) = 10
   +0 > P. 1001:1011(10) ack 101
`

// TestMutationsFail guards against false passes: the base script passes,
// and every one-line change of what the stack must send or return makes it
// FAIL, on ustack and on gVisor.
func TestMutationsFail(t *testing.T) {
	mutations := []struct{ name, from, to string }{
		{"flags", "> S. 0:0(0) ack 1 <mss", "> S 0:0(0) ack 1 <mss"},
		{"seq", "> P. 1:1001(1000) ack 1", "> P. 2:1002(1000) ack 1"},
		{"ack", "> . 1001:1001(0) ack 101", "> . 1001:1001(0) ack 100"},
		{"window", "> . 1001:1001(0) ack 101", "> . 1001:1001(0) ack 101 win 7"},
		{"option order", "<mss 1460,nop,nop,sackOK,nop,wscale 8>", "<mss 1460,sackOK,nop,nop,nop,wscale 8>"},
		{"option value", "<mss 1460,nop,nop,sackOK,nop,wscale 8>", "<mss 1460,nop,nop,sackOK,nop,wscale 7>"},
		{"options missing", " ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8>", " ack 1"},
		{"an extra option", "> P. 1001:1011(10) ack 101", "> P. 1001:1011(10) ack 101 <nop,nop,sack 1:2>"},
		{"a stray ACK before data", "   +0 > . 1001:1001(0) ack 101\n", ""},
		{"PSH missing", "> P. 1001:1011(10) ack 101", "> . 1001:1011(10) ack 101"},
		{"payload short", "> P. 1001:1011(10) ack 101", "> P. 1001:1010(9) ack 101"},
		{"payload long", "> P. 1001:1011(10) ack 101", "> P. 1001:1021(20) ack 101"},
		{"late", "   +0 > P. 1:1001(1000) ack 1", " +.05 > P. 1:1001(1000) ack 1"},
		{"early", "   +0 > . 1001:1001(0) ack 101", " +.03 > . 1001:1001(0) ack 101"},
		{"errno", "= -1 EAGAIN (Resource temporarily unavailable)", "= -1 ECONNRESET"},
		{"no errno", "= -1 EAGAIN (Resource temporarily unavailable)", "= 0"},
		{"read count", "read(4, ..., 1000) = 100", "read(4, ..., 1000) = 99"},
		{"write count", "write(4, ..., 10) = 10", "write(4, ..., 10) = 9"},
		{"accept fails", "accept(3, ..., ...) = 4", "accept(3, ..., ...) = -1 EAGAIN"},
		{"a blocking call that does not block", "   +0 read(4, ..., 1000) = 100", "   +0...0.1 read(4, ..., 1000) = 100"},
	}
	run := func(t *testing.T, src, stack string) Report {
		s, err := Parse("mutation.pkt", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return RunScript(s, stack, Options{Timeout: 30 * time.Second})
	}
	for _, stack := range []string{"ustack", "gvisor"} {
		if rep := run(t, mutationBase, stack); rep.Outcome != Pass {
			t.Fatalf("%s: the base script: %s %s\n%s", stack, rep.Outcome, rep.Reason, rep.Detail)
		}
		for _, m := range mutations {
			if !strings.Contains(mutationBase, m.from) {
				t.Fatalf("mutation %q: %q is not in the base script", m.name, m.from)
			}
			src := strings.Replace(mutationBase, m.from, m.to, 1)
			if rep := run(t, src, stack); rep.Outcome != Fail {
				t.Errorf("%s: mutation %q: %s, want FAIL", stack, m.name, rep.Outcome)
			}
		}
	}
}

// A divergence note covers a failure at the event right below it only: a
// failure anywhere else is still a FAIL. Notes for ustack or Linux are
// refused (ustack follows Linux; Linux is the reference).
func TestDivergenceOnlyAtItsEvent(t *testing.T) {
	broken := strings.Replace(mutationBase, "wscale 8>", "wscale 7>", 1) // the SYN|ACK line fails
	note := "// divergence: gvisor: a note for the test\n"
	at := func(line string) string { return strings.Replace(broken, line, note+line, 1) }
	for _, c := range []struct {
		name, src string
		want      Outcome
	}{
		{"note above the failing line", at("   +0 > S. 0:0(0)"), Diverged},
		{"note above another line", at("   +0 > P. 1001:1011(10)"), Fail},
	} {
		s, err := Parse("note.pkt", []byte(c.src))
		if err != nil {
			t.Fatal(err)
		}
		if rep := RunScript(s, "gvisor", Options{Timeout: 30 * time.Second}); rep.Outcome != c.want {
			t.Errorf("%s: %s (%s), want %s", c.name, rep.Outcome, rep.Reason, c.want)
		}
	}
	for _, stack := range []string{"ustack", "linux"} {
		if _, err := Parse("note.pkt", []byte("// divergence: "+stack+": no\n"+mutationBase)); err == nil {
			t.Errorf("a divergence note for %s was accepted", stack)
		}
	}
}
