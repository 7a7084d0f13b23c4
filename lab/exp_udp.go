package lab

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

var udpClosedPort = &Experiment{
	Name:  "udp-closed-port",
	IDs:   []string{"B70"},
	IPv6:  true,
	Title: "A UDP datagram to a port nobody has is answered with ICMP port unreachable",
	Explain: `The kernel makes a UDP socket, connects it to 10.0.0.2:9 (which only sets
the peer: UDP sends nothing on connect) and sends one datagram. No ustack
socket has port 9, so ustack answers for the port (RFC 1122 4.1.3.1, Linux
__udp4_lib_rcv): an ICMP destination unreachable, code port unreachable
(ICMPv6 type 1 code 4 over IPv6), quoting the datagram's headers so the
sender can tell which socket it is about. The kernel matches the quote to
its connected socket and keeps the error for it (Linux __udp4_lib_err):
the socket's next recv() fails with ECONNREFUSED, though the send itself
had succeeded. An unconnected socket would never hear of it (without
IP_RECVERR).

Watch for: the kernel's "udp 6", ustack's "port unreachable" quoting the
same ports right after it, and the recv() that fails.`,
	Run: func(x *Env) error {
		dst := netip.AddrPortFrom(x.U, 9)
		var c *net.UDPConn
		err := x.ns.Do(func() error {
			var err error
			c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
			return err
		})
		if err != nil {
			x.Kernel("connect(%s) = %s", dst, errName(err))
			return err
		}
		x.Defer(func() { c.Close() })
		local := addrPortOf(c.LocalAddr())
		x.Kernel("socket(SOCK_DGRAM), connect(%s) = 0 from %s", dst, local)

		start := x.tl.Now()
		n, err := c.Write([]byte("hello\n"))
		x.tl.NoteAt(start, "kernel", "send(\"hello\\n\") = %s", sendResult(n, err))

		var errs []Datagram
		x.WaitFor(2*time.Second, func() bool {
			errs = nil
			for _, d := range x.tl.Datagrams() {
				if d.Out && d.ICMP {
					errs = append(errs, d)
				}
			}
			return len(errs) > 0
		})
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64)
		_, rerr := c.Read(buf)
		x.Kernel("recv() = %s", errName(rerr))

		var sent []Datagram
		for _, d := range x.tl.Datagrams() {
			if !d.Out && !d.ICMP && d.Dst == dst {
				sent = append(sent, d)
			}
		}
		x.Expect("B70", len(sent) == 1 && sent[0].Src == local && sent[0].Len == 6,
			"the kernel's datagram reaches ustack: udp 6 to port 9", fmt.Sprintf("%d datagram(s) to port 9", len(sent)))
		got := "no ICMP error"
		ok := false
		if len(errs) > 0 {
			e := errs[0]
			got = FormatDatagram(e)
			ok = e.Unreachable() && e.From == x.U && e.To == x.K && e.Src == local && e.Dst == dst && e.Len == 6
		}
		x.Expect("B70", ok && len(errs) == 1,
			"ustack answers with one ICMP port unreachable from its address, quoting the datagram (its ports and length)", got)
		x.Expect("B70", isErrno(rerr, syscall.ECONNREFUSED),
			"the kernel's connected socket reads the error: recv() = ECONNREFUSED", "recv() = "+errName(rerr))
		return nil
	},
}

// sendResult is a send's outcome as strace writes it: the count or the errno.
func sendResult(n int, err error) string {
	if err != nil {
		return errName(err)
	}
	return fmt.Sprint(n)
}
