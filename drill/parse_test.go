package drill

import (
	"errors"
	"strings"
	"testing"
	"time"

	"ustack/stack/header"
)

func mustParse(t *testing.T, src string) *Script {
	t.Helper()
	s, err := Parse("t.pkt", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

func TestParseScript(t *testing.T) {
	s := mustParse(t, `// a comment
--tolerance_usecs=10000
`+"`../common/defaults.sh`"+`
/* block
   comment */
    0 socket(..., SOCK_STREAM|SOCK_NONBLOCK, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_LINGER, {onoff=1, linger=0}, 8) = 0
   +0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
   +0 > S 0:0(0) <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 8>
 +.1~+.2 < S. 0:0(0) ack 1 win 5792 <mss 1460,nop,nop,sackOK,nop,wscale 2>
   +0...0.5 read(3, ..., 1000) = 1000
    * > . 1:1(0) ack 1 <...>
  1.5 < . 1:1(0) ack 1 win 257 <nop,nop,sack 1001:2001 3001:4001>
   +0 fcntl(3, F_GETFL) = 0x802 (flags O_RDWR|O_NONBLOCK)
   +0 `+"`sysctl -q net.ipv4.tcp_sack=0`"+`
`)
	if len(s.Options) != 1 || s.Options[0].Name != "tolerance_usecs" || s.Options[0].Value != "10000" {
		t.Errorf("options = %+v", s.Options)
	}
	if s.Init == nil || s.Init.Command != "../common/defaults.sh" {
		t.Errorf("init = %+v", s.Init)
	}
	if len(s.Events) != 10 {
		t.Fatalf("%d events, want 10", len(s.Events))
	}
	if len(s.Unsupported) != 0 {
		t.Errorf("unsupported = %v", s.Unsupported)
	}
	sock := s.Events[0].Syscall
	if sock.Name != "socket" || sock.Result != 3 || sock.Args[1].Int != 1|0x800 {
		t.Errorf("socket = %+v", sock)
	}
	if l := s.Events[1].Syscall.Args[3]; l.Kind != ExprStruct || l.Field("linger").Int != 0 || l.Field("onoff").Int != 1 {
		t.Errorf("linger = %v", l)
	}
	if c := s.Events[2].Syscall; c.Result != -1 || c.Errno != "EINPROGRESS" {
		t.Errorf("connect = %+v", c)
	}
	syn := s.Events[3].Packet
	if syn.Dir != Outbound || syn.Flags != header.SYN || len(syn.Options) != 5 || syn.Options[2].TSVal != 100 || syn.HasWin {
		t.Errorf("syn = %+v", syn)
	}
	sa := s.Events[4]
	if sa.Time.Kind != TimeRelative || sa.Time.Start != 100*time.Millisecond || sa.Time.End != 200*time.Millisecond {
		t.Errorf("range time = %+v", sa.Time)
	}
	if sa.Packet.Flags != header.SYN|header.ACK || sa.Packet.Ack != 1 || sa.Packet.Win != 5792 {
		t.Errorf("syn-ack = %+v", sa.Packet)
	}
	rd := s.Events[5].Time
	if !rd.Blocking || rd.Start != 0 || rd.Return != 500*time.Millisecond {
		t.Errorf("blocking time = %+v", rd)
	}
	if ev := s.Events[6]; ev.Time.Kind != TimeAny || !ev.Packet.AnyOptions {
		t.Errorf("any = %+v %+v", ev.Time, ev.Packet)
	}
	if ev := s.Events[7]; ev.Time.Kind != TimeAbsolute || ev.Time.Start != 1500*time.Millisecond ||
		len(ev.Packet.Options[2].Blocks) != 2 || ev.Packet.Options[2].Blocks[1] != [2]uint32{3001, 4001} {
		t.Errorf("sack = %+v", ev.Packet)
	}
	if f := s.Events[8].Syscall; f.Result != 0x802 || f.Errno != "" {
		t.Errorf("fcntl = %+v", f)
	}
	if sh := s.Events[9]; sh.Kind != EventShell || sh.Shell.Command != "sysctl -q net.ipv4.tcp_sack=0" {
		t.Errorf("shell = %+v", sh.Shell)
	}
}

func TestParseDivergence(t *testing.T) {
	s := mustParse(t, "// divergence: gvisor: first half\n// divergence: gvisor: second half\n0 close(3) = 0\n")
	if got := s.Divergences["gvisor"]; got != "first half second half" {
		t.Errorf("divergence = %q", got)
	}
}

func TestParseUnsupported(t *testing.T) {
	for _, tc := range []struct{ src, feature string }{
		{"0 > icmp unreachable port_unreachable [1:1461(1460)]\n", "icmp packet"},
		{"0 < icmp redirect [1:1461(1460)]\n", "icmp redirect packet"},
		{"0 > S 0:0(0) <mss 1460,FO abcd,nop,nop>\n", "TCP option FO"},
		{"0 sendmsg(3, {msg_name(...)=...}, 0) = 0\n", "syscall sendmsg()"},
		// Arguments over several lines, as the kernel's selftests write
		// recvmsg: skipped whole, and the script parses on.
		{"0 recvmsg(3, {msg_name(...)=...,\n\tmsg_iov(1)=[{..., 1000}],\n\tmsg_control=[{cmsg_data=9000}]}, 0) = 1000\n+0 close(3) = 0\n", "syscall recvmsg()"},
		{"0 setsockopt(3, SOL_TCP, TCP_ZEROCOPY_RECEIVE, [1], 4) = 0\n", "symbol TCP_ZEROCOPY_RECEIVE"},
		{"0 %{ assert tcpi_rtt > 0 }%\n", "python block %{ }%"},
		{"0 > [ect0] S. 0:0(0) ack 1\n", "IP header check [...] (ECN/TOS/TTL)"},
	} {
		s := mustParse(t, tc.src)
		if len(s.Unsupported) == 0 || s.Unsupported[0].Name != tc.feature {
			t.Errorf("%q: unsupported = %v, want %q", tc.src, s.Unsupported, tc.feature)
		}
		rep := RunScript(s, "ustack", Options{})
		if rep.Outcome != Skip || !strings.Contains(rep.Reason, tc.feature) {
			t.Errorf("%q: %s: %s, want SKIP naming %q", tc.src, rep.Outcome, rep.Reason, tc.feature)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"0 > S 0:5(0)\n", "t.pkt:1:7: expected end sequence number 0 (= 0 + 0), found 5"},
		{"0 < . 1:1(0) ack 1\n", "t.pkt:1:7: expected win N on an inbound packet (the window is required on < lines)"},
		{"0 close(3) = 0\n+0 > Q 0:0(0)\n", `t.pkt:2:6: expected TCP flags (S, S., ., P., F., R, ... or -), found "Q"`},
		{"0 socket(..., SOCK_STREAM, IPPROTO_TCP) = \n", "t.pkt:1:42: expected a result (an integer), found end of line"},
		{"0 read(3, ..., 10) = 10 EFOO\n", `t.pkt:1:25: expected an errno name (EAGAIN, EINPROGRESS, ...), found "EFOO"`},
		{"1 close(3) = 0\n", "t.pkt:1:1: the first event must be at time 0, found 1"},
		{"0 close(3 = 0\n", `t.pkt:1:11: expected , or ) in the argument list, found "="`},
		{"0 > S 0:0(0) <mss 1460,nop>\n", "t.pkt:1:14: TCP options take 5 bytes, not a multiple of 4 (pad with nop)"},
		{"0 > S 0:0(0) <mss 1460, wscale>\n", `t.pkt:1:31: expected a window scale shift, found ">"`},
		{"+0~0.1 close(3) = 0\n", `t.pkt:1:4: expected the range's end written like its start (both relative or both absolute), found "0"`},
		{"0 `sysctl -q\n", "t.pkt:1:3: expected ` to close this command, found end of file"},
		{"0 < . 1:1(0) ack 1 win 70000\n", "t.pkt:1:23: expected a window of at most 65535, found 70000"},
		{"0 < . 1:1(0) ack 1 win 100 urg 70000\n", "t.pkt:1:31: expected an urgent pointer of at most 65535, found 70000"},
		{"0 > S 0:0(0) <mss 70000>\n", "t.pkt:1:15: expected an MSS of at most 65535, found 70000"},
		{"0 > S 0:0(0) <wscale 300>\n", "t.pkt:1:15: expected a window scale of at most 255, found 300"},
		{"0 < . 1:1(0) ack 1 win  x\n", `t.pkt:1:25: expected a window, found "x"`},
		{"0 close(3) = 0 /* never closed\n", "t.pkt:1:16: expected */ to close this comment, found end of file"},
		{"0 close(3) = 0\n+0 %{ print(1)\n", "t.pkt:2:4: expected }% to close this python block, found end of file"},
		{"0 setsockopt(3, SOL_SOCKET, SO_LINGER, {onoff=1 linger=0}, 8) = 0\n", `t.pkt:1:49: expected , or } in the struct, found "linger"`},
		{"0 poll([{fd=3, events=POLLIN, revents=0} 1], 1, 0) = 0\n", `t.pkt:1:42: expected , or ] in the list, found "1"`},
		{"0 > S 0:0(0) <mss 1460 nop>\n", `t.pkt:1:24: expected , or > in the option list, found "nop"`},
		{"0 hello\n", `t.pkt:1:8: expected ( after the syscall name hello, found end of line`},
		{"0 1:1(0)\n", `t.pkt:1:3: expected a syscall, packet (< or >) or ` + "`command`" + `, found "1"`},
		{"0 > S. 0:0(0) ack 1 <...>\n+0 < S 0:0(0) win 1 <...>\n", "t.pkt:2:8: <...> (options not checked) is allowed on outbound packets only"},
		{"0 close(3) = 0\n`cleanup.sh`\n+0 close(4) = 0\n", "t.pkt:3:1: expected the end of the script after the cleanup command on line 2 (an untimed `command` must come last)"},
	} {
		_, err := Parse("t.pkt", []byte(tc.src))
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: err = %v, want a SyntaxError", tc.src, err)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.src, err, tc.want)
		}
	}
}

func TestShellCommands(t *testing.T) {
	act, err := parseShellCommand("../common/defaults.sh\nsysctl -q net.ipv4.tcp_sack=0 && ../common/set_sysctls.py /proc/sys/net/ipv4/tcp_timestamps=0")
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"net.ipv4.tcp_sack", "0"}, {"net.ipv4.tcp_timestamps", "0"}}
	if len(act.sysctls) != 2 || act.sysctls[0] != want[0] || act.sysctls[1] != want[1] {
		t.Errorf("sysctls = %v", act.sysctls)
	}
	if _, err := parseShellCommand("nstat -n"); err == nil {
		t.Error("nstat accepted")
	}
	// A quoted value keeps its blanks, as in sh.
	act, err = parseShellCommand(`sysctl -w net.ipv4.tcp_rmem="4096 87380 6291456" 'net.ipv4.tcp_wmem=4096 16384 4194304'`)
	if err != nil {
		t.Fatal(err)
	}
	want = [][2]string{{"net.ipv4.tcp_rmem", "4096 87380 6291456"}, {"net.ipv4.tcp_wmem", "4096 16384 4194304"}}
	if len(act.sysctls) != 2 || act.sysctls[0] != want[0] || act.sysctls[1] != want[1] {
		t.Errorf("quoted sysctls = %q", act.sysctls)
	}
	if _, err := parseShellCommand(`sysctl -w net.ipv4.tcp_rmem="4096`); err == nil {
		t.Error("an unterminated quote accepted")
	}
}

// An untimed command after the last event is packetdrill's cleanup command:
// recorded, not run, and the script's events are all there.
func TestParseCleanupCommand(t *testing.T) {
	s := mustParse(t, "`./defaults.sh`\n0 close(3) = 0\n+0 close(4) = 0\n\n`/tmp/sysctl_restore_${PPID}.sh`\n")
	if s.Init == nil || s.Cleanup == nil || s.Cleanup.Command != "/tmp/sysctl_restore_${PPID}.sh" || len(s.Events) != 2 {
		t.Fatalf("init %v, cleanup %v, %d events", s.Init, s.Cleanup, len(s.Events))
	}
}

// An inbound ICMP error line: type, code, next-hop MTU and the quoted
// segment; a length that does not match the range is an error.
func TestParseICMP(t *testing.T) {
	s := mustParse(t, "0 < icmp unreachable frag_needed mtu 1200 [1:1461(1460)]\n")
	ic := s.Events[0].Packet.ICMP
	if ic == nil || ic.Type != "unreachable" || ic.Code != "frag_needed" || ic.MTU != 1200 || ic.Seq != 1 {
		t.Fatalf("parsed %+v", ic)
	}
	if _, err := Parse("t.pkt", []byte("0 < icmp unreachable frag_needed [1:1461(1000)]\n")); err == nil {
		t.Fatal("a quoted segment with a wrong length parsed")
	}
	if _, err := Parse("t.pkt", []byte("0 < icmp unreachable nonsense [1:1461(1460)]\n")); err == nil {
		t.Fatal("an unknown unreachable code parsed")
	}
}

// UDP lines: a datagram with its length and optional ports, and an ICMP
// error quoting one of ours.
func TestParseUDP(t *testing.T) {
	s := mustParse(t, "0 < udp (100)\n+0 > udp 2000>8080 (7)\n+0 < icmp unreachable port_unreachable [udp (100)]\n")
	if u := s.Events[0].Packet.UDP; u == nil || u.Len != 100 || u.SrcPort != 0 {
		t.Errorf("udp (100): %+v", u)
	}
	if u := s.Events[1].Packet.UDP; u == nil || u.Len != 7 || u.SrcPort != 2000 || u.DstPort != 8080 || s.Events[1].Packet.Dir != Outbound {
		t.Errorf("udp 2000>8080 (7): %+v", u)
	}
	if ic := s.Events[2].Packet.ICMP; ic == nil || !ic.UDP || ic.UDPLen != 100 || ic.Code != "port_unreachable" {
		t.Errorf("icmp quoting udp: %+v", ic)
	}
	if _, err := Parse("t.pkt", []byte("0 < udp (70000)\n")); err == nil {
		t.Error("a 70000-byte UDP payload parsed")
	}
}
