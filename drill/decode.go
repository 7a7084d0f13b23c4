package drill

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// decode turns a syscall line into an Op with live handles, checking the
// argument forms packetdrill accepts (packetdrill.md §4).
func (in *interp) decode(ev *Event) (*Op, error) {
	sc := ev.Syscall
	bad := func(format string, args ...any) (*Op, error) {
		return nil, in.fail(ev.Pos, "%s: %s", sc.Name, fmt.Sprintf(format, args...))
	}
	nargs := map[string]int{
		"socket": 3, "bind": 3, "listen": 2, "accept": 3, "connect": 3,
		"read": 3, "write": 3, "send": 4, "recv": 4, "close": 1, "shutdown": 2,
		"setsockopt": 5, "getsockopt": 5, "ioctl": 3, "poll": 3,
		"sendto": 6, "recvfrom": 6,
	}
	if n, ok := nargs[sc.Name]; ok && len(sc.Args) != n {
		return bad("expected %d arguments, found %d", n, len(sc.Args))
	}
	if sc.Name == "fcntl" && len(sc.Args) != 2 && len(sc.Args) != 3 {
		return bad("expected 2 or 3 arguments, found %d", len(sc.Args))
	}
	op := &Op{Name: sc.Name, FD: -1}
	intArg := func(i int) (int, bool) {
		a := sc.Args[i]
		return int(a.Int), a.Kind == ExprInt
	}
	ellipsis := func(i int) bool { return sc.Args[i].Kind == ExprEllipsis }
	// bracketed returns N from [N].
	bracketed := func(i int) (int, bool) {
		a := sc.Args[i]
		if a.Kind != ExprList || len(a.List) != 1 || a.List[0].Kind != ExprInt {
			return 0, false
		}
		return int(a.List[0].Int), true
	}

	if sc.Name != "socket" && sc.Name != "poll" {
		fd, ok := intArg(0)
		if !ok {
			return bad("expected an fd as the first argument, found %s", sc.Args[0])
		}
		so := in.fds[fd]
		if so == nil {
			return bad("no open socket with script fd %d", fd)
		}
		op.FD = so.handle
	}
	switch sc.Name {
	case "socket":
		if !ellipsis(0) {
			if d, ok := intArg(0); !ok || d != in.cfg.Domain() {
				return nil, unsupported("socket domain %s in an %s run", sc.Args[0], in.cfg.IPVersion)
			}
		}
		typ, ok1 := intArg(1)
		proto, ok2 := intArg(2)
		if !ok1 || !ok2 {
			return bad("expected type and protocol integers")
		}
		switch base := typ &^ (unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC); {
		case base == unix.SOCK_STREAM && (proto == unix.IPPROTO_TCP || proto == 0):
		case base == unix.SOCK_DGRAM && (proto == unix.IPPROTO_UDP || proto == 0):
			op.Dgram = true
		default:
			return nil, unsupported("socket type %s protocol %s (TCP and UDP only)", sc.Args[1], sc.Args[2])
		}
		op.Nonblock = typ&unix.SOCK_NONBLOCK != 0
	case "bind", "connect", "accept":
		if !ellipsis(1) || !ellipsis(2) {
			return nil, unsupported("%s with explicit address arguments", sc.Name)
		}
	case "listen":
		n, ok := intArg(1)
		if !ok {
			return bad("expected a backlog integer")
		}
		op.Backlog = n
	case "sendto", "recvfrom":
		// sendto's address is connect_ip:connect_port; recvfrom's
		// out-parameters are ignored (run_system_call.c).
		if !ellipsis(1) || !ellipsis(4) || !ellipsis(5) {
			return nil, unsupported("%s with a buffer or address other than ...", sc.Name)
		}
		n, ok := intArg(2)
		f, ok2 := intArg(3)
		if !ok || n < 0 || !ok2 {
			return bad("expected a byte count and flags")
		}
		op.Count, op.Flags = n, f
	case "read", "write", "send", "recv":
		if !ellipsis(1) {
			return nil, unsupported("%s with a buffer other than ...", sc.Name)
		}
		n, ok := intArg(2)
		if !ok || n < 0 {
			return bad("expected a byte count")
		}
		op.Count = n
		if len(sc.Args) == 4 {
			f, ok := intArg(3)
			if !ok {
				return bad("expected flags")
			}
			op.Flags = f
		}
	case "close":
	case "shutdown":
		n, ok := intArg(1)
		if !ok {
			return bad("expected SHUT_RD, SHUT_WR or SHUT_RDWR")
		}
		op.How = n
	case "setsockopt", "getsockopt":
		lv, ok1 := intArg(1)
		name, ok2 := intArg(2)
		if !ok1 || !ok2 {
			return bad("expected level and option name")
		}
		op.Level, op.OptName = lv, name
		if sc.Name == "getsockopt" {
			if want := sc.Args[3]; want.Kind == ExprStruct {
				if lv != unix.SOL_SOCKET || name != unix.SO_LINGER {
					return nil, unsupported("getsockopt of a struct (%s)", sc.Args[2])
				}
				if want.Field("onoff") == nil || want.Field("linger") == nil {
					return bad("expected {onoff=N, linger=N}")
				}
				break
			}
			if _, ok := bracketed(3); !ok && !ellipsis(3) {
				return bad("expected [value] as the fourth argument, found %s", sc.Args[3])
			}
			break
		}
		val := sc.Args[3]
		switch {
		case val.Kind == ExprStruct && lv == unix.SOL_SOCKET && name == unix.SO_LINGER:
			on, l := val.Field("onoff"), val.Field("linger")
			if on == nil || l == nil {
				return bad("expected {onoff=N, linger=N}")
			}
			op.Linger = &[2]int{int(on.Int), int(l.Int)}
		case val.Kind == ExprList:
			v, ok := bracketed(3)
			if !ok {
				return bad("expected [value], found %s", val)
			}
			op.IntVal = v
		case val.Kind == ExprInt:
			op.IntVal = int(val.Int)
		default:
			return nil, unsupported("setsockopt value %s", val)
		}
	case "fcntl":
		cmd, ok := intArg(1)
		if !ok {
			return bad("expected a command")
		}
		op.Cmd = cmd
		switch cmd {
		case unix.F_GETFL:
		case unix.F_SETFL:
			if len(sc.Args) != 3 {
				return bad("F_SETFL needs flags")
			}
			v, _ := intArg(2)
			op.IntVal = v
		default:
			return nil, unsupported("fcntl command %s", sc.Args[1])
		}
	case "ioctl":
		req, ok := intArg(1)
		if !ok || req != unix.SIOCINQ {
			return nil, unsupported("ioctl request %s", sc.Args[1])
		}
		op.Cmd = req
		if _, ok := bracketed(2); !ok && !ellipsis(2) {
			return bad("expected [value] as the third argument")
		}
	case "poll":
		list := sc.Args[0]
		if list.Kind != ExprList {
			return bad("expected [{fd=N, events=E, revents=R}, ...]")
		}
		for _, e := range list.List {
			fd, events := e.Field("fd"), e.Field("events")
			if e.Kind != ExprStruct || fd == nil || events == nil {
				return bad("expected {fd=N, events=E, revents=R}, found %s", e)
			}
			so := in.fds[int(fd.Int)]
			if so == nil {
				return bad("no open socket with script fd %d", fd.Int)
			}
			op.Poll = append(op.Poll, PollFD{FD: so.handle, Events: int16(events.Int)})
		}
		if n, ok := intArg(1); !ok || n != len(op.Poll) {
			return bad("nfds %s does not match the %d entries", sc.Args[1], len(op.Poll))
		}
		t, ok := intArg(2)
		if !ok {
			return bad("expected a timeout in milliseconds")
		}
		op.Timeout = t
	}
	return op, nil
}
