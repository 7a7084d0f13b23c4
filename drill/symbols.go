package drill

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// symbols are the Linux macro names scripts use as syscall arguments, with
// their values on Linux (the values are what the Linux backend passes to the
// kernel; the userspace backends decode them back).
var symbols = map[string]int64{
	"AF_INET":       unix.AF_INET,
	"AF_INET6":      unix.AF_INET6,
	"AF_UNSPEC":     unix.AF_UNSPEC,
	"PF_INET":       unix.AF_INET,
	"SOCK_STREAM":   unix.SOCK_STREAM,
	"SOCK_DGRAM":    unix.SOCK_DGRAM,
	"SOCK_NONBLOCK": unix.SOCK_NONBLOCK,
	"SOCK_CLOEXEC":  unix.SOCK_CLOEXEC,
	"IPPROTO_IP":    unix.IPPROTO_IP,
	"IPPROTO_TCP":   unix.IPPROTO_TCP,
	"IPPROTO_UDP":   unix.IPPROTO_UDP,
	"SOL_SOCKET":    unix.SOL_SOCKET,
	"SOL_TCP":       unix.SOL_TCP,
	"SOL_IP":        unix.SOL_IP,
	"SOL_IPV6":      unix.SOL_IPV6,
	"IP_RECVERR":    unix.IP_RECVERR,
	"IPV6_RECVERR":  unix.IPV6_RECVERR,

	"SO_REUSEADDR":       unix.SO_REUSEADDR,
	"SO_REUSEPORT":       unix.SO_REUSEPORT,
	"SO_ERROR":           unix.SO_ERROR,
	"SO_SNDBUF":          unix.SO_SNDBUF,
	"SO_RCVBUF":          unix.SO_RCVBUF,
	"SO_KEEPALIVE":       unix.SO_KEEPALIVE,
	"SO_LINGER":          unix.SO_LINGER,
	"SO_RCVLOWAT":        unix.SO_RCVLOWAT,
	"SO_SNDLOWAT":        unix.SO_SNDLOWAT,
	"SO_RCVTIMEO":        unix.SO_RCVTIMEO,
	"SO_SNDTIMEO":        unix.SO_SNDTIMEO,
	"SO_TIMESTAMP":       unix.SO_TIMESTAMP,
	"SO_ZEROCOPY":        unix.SO_ZEROCOPY,
	"SO_MAX_PACING_RATE": unix.SO_MAX_PACING_RATE,

	"TCP_NODELAY":          unix.TCP_NODELAY,
	"TCP_MAXSEG":           unix.TCP_MAXSEG,
	"TCP_CORK":             unix.TCP_CORK,
	"TCP_KEEPIDLE":         unix.TCP_KEEPIDLE,
	"TCP_KEEPINTVL":        unix.TCP_KEEPINTVL,
	"TCP_KEEPCNT":          unix.TCP_KEEPCNT,
	"TCP_SYNCNT":           unix.TCP_SYNCNT,
	"TCP_LINGER2":          unix.TCP_LINGER2,
	"TCP_DEFER_ACCEPT":     unix.TCP_DEFER_ACCEPT,
	"TCP_WINDOW_CLAMP":     unix.TCP_WINDOW_CLAMP,
	"TCP_INFO":             unix.TCP_INFO,
	"TCP_QUICKACK":         unix.TCP_QUICKACK,
	"TCP_CONGESTION":       unix.TCP_CONGESTION,
	"TCP_USER_TIMEOUT":     unix.TCP_USER_TIMEOUT,
	"TCP_FASTOPEN":         unix.TCP_FASTOPEN,
	"TCP_FASTOPEN_CONNECT": unix.TCP_FASTOPEN_CONNECT,
	"TCP_NOTSENT_LOWAT":    unix.TCP_NOTSENT_LOWAT,
	"TCP_INQ":              unix.TCP_INQ,

	"IP_BIND_ADDRESS_NO_PORT": unix.IP_BIND_ADDRESS_NO_PORT,
	"IP_LOCAL_PORT_RANGE":     unix.IP_LOCAL_PORT_RANGE,
	"IP_TOS":                  unix.IP_TOS,

	"F_GETFL":    unix.F_GETFL,
	"F_SETFL":    unix.F_SETFL,
	"O_RDONLY":   unix.O_RDONLY,
	"O_WRONLY":   unix.O_WRONLY,
	"O_RDWR":     unix.O_RDWR,
	"O_NONBLOCK": unix.O_NONBLOCK,

	"SHUT_RD":   unix.SHUT_RD,
	"SHUT_WR":   unix.SHUT_WR,
	"SHUT_RDWR": unix.SHUT_RDWR,

	"SIOCINQ":  unix.SIOCINQ,
	"FIONREAD": unix.SIOCINQ,
	"SIOCOUTQ": unix.SIOCOUTQ,

	"POLLIN":     unix.POLLIN,
	"POLLPRI":    unix.POLLPRI,
	"POLLOUT":    unix.POLLOUT,
	"POLLERR":    unix.POLLERR,
	"POLLHUP":    unix.POLLHUP,
	"POLLNVAL":   unix.POLLNVAL,
	"POLLRDNORM": 0x40,
	"POLLWRNORM": 0x100,
	"POLLRDHUP":  unix.POLLRDHUP,

	"MSG_OOB":      unix.MSG_OOB,
	"MSG_PEEK":     unix.MSG_PEEK,
	"MSG_DONTWAIT": unix.MSG_DONTWAIT,
	"MSG_WAITALL":  unix.MSG_WAITALL,
	"MSG_NOSIGNAL": unix.MSG_NOSIGNAL,
	"MSG_MORE":     unix.MSG_MORE,
	"MSG_EOR":      unix.MSG_EOR,
	"MSG_TRUNC":    unix.MSG_TRUNC,
	"MSG_FASTOPEN": unix.MSG_FASTOPEN,
	"MSG_ZEROCOPY": unix.MSG_ZEROCOPY,
	"MSG_ERRQUEUE": unix.MSG_ERRQUEUE,
}

// errnos maps errno names (EINPROGRESS ...) to numbers.
var errnos = func() map[string]syscall.Errno {
	m := map[string]syscall.Errno{}
	for e := syscall.Errno(1); e < 134; e++ {
		if name := unix.ErrnoName(e); name != "" {
			m[name] = e
		}
	}
	m["EWOULDBLOCK"] = unix.EWOULDBLOCK
	m["EDEADLOCK"] = unix.EDEADLOCK
	m["ENOTSUP"] = unix.ENOTSUP
	return m
}()

// errnoName names an errno the way scripts write it.
func errnoName(e syscall.Errno) string {
	if e == 0 {
		return "0"
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return e.Error()
}
