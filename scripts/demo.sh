#!/usr/bin/env bash
# make demo: run ustack on tun0 in a throwaway network namespace and point
# the kernel's own clients (curl, nc, ping) at it. Nothing outside the
# namespace is touched; the namespace is deleted on exit, even on failure.
#
#   scripts/demo.sh [PATH-TO-USTACK]     (default bin/ustack; needs root)
set -euo pipefail

USTACK=$(realpath "${1:-bin/ustack}")
ADDR=10.0.0.2
ADDR6=fd00::2
NS=ustack-demo-$$
WORK=$(mktemp -d /tmp/ustack-demo.XXXXXX)
CTL=$WORK/ctl.sock
PID=

if [[ $EUID -ne 0 ]]; then
	echo "make demo needs root: it creates a network namespace and a TUN device in it (try: sudo make demo)" >&2
	exit 1
fi
# make demo has run scripts/deps.sh demo, which installs these.
for tool in ip curl nc ping; do
	command -v "$tool" >/dev/null || { echo "the demo needs $tool, which is not installed (scripts/deps.sh demo installs it)" >&2; exit 1; }
done
[[ -x $USTACK ]] || { echo "no ustack binary at $USTACK (run make build)" >&2; exit 1; }

cleanup() {
	set +e
	if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
		kill -TERM "$PID"
		for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$PID" 2>/dev/null
	fi
	ip netns del "$NS" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# inns CMD...: run a command inside the demo's namespace, with a time limit.
inns() { timeout 20 ip netns exec "$NS" "$@"; }
heading() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; }

heading "A network namespace of our own: $NS"
ip netns add "$NS"
inns ip link set lo up
echo "Everything below happens inside it; it is deleted at the end."

heading "Start the daemon: ustack run (tun0, kernel side 10.0.0.1/24, ustack at $ADDR)"
show "ustack run --serve http:80 --serve echo:7 --serve noaccept:8082"
ip netns exec "$NS" "$USTACK" run --ctl "$CTL" \
	--serve http:80 --serve echo:7 --serve noaccept:8082 2>"$WORK/daemon.log" &
PID=$!
for _ in $(seq 100); do
	"$USTACK" ss --ctl "$CTL" >/dev/null 2>&1 && break
	kill -0 "$PID" 2>/dev/null || { cat "$WORK/daemon.log"; echo "ustack run failed to start" >&2; exit 1; }
	sleep 0.1
done
sed 's/^/  /' "$WORK/daemon.log"
show "ip addr show tun0"
inns ip -brief addr show tun0 | sed 's/^/  /'

heading "curl the status page (the HTML table, as text)"
show "curl -s http://$ADDR/"
inns curl -sS --max-time 10 "http://$ADDR/" |
	sed -n '/id="connections"/,/<\/table>/p' | sed -e 's/<\/t[dh]>/\t/g' -e 's/<[^>]*>//g' -e '/^\s*$/d' |
	awk -F'\t' '{ printf "  %-7s %6s %6s  %-14s %-16s %s\n", $1, $2, $3, $4, $5, $6 }'
echo "  (curl's own connection is the ESTAB line: the page was made while it was open)"

heading "Download 20 MB from /bytes and check them"
show "curl -s http://$ADDR/bytes?n=20000000 | sha256sum"
got=$(inns curl -sS --max-time 60 "http://$ADDR/bytes?n=20000000" | sha256sum | cut -d' ' -f1)
# The expected hash of the pattern, when python3 is around to compute it.
want=$(python3 -c '
import hashlib
p = bytes(i % 251 for i in range(251 * 4000))
h, n = hashlib.sha256(), 20000000
while n > 0:
    h.update(p[:n]); n -= len(p)
print(h.hexdigest())' 2>/dev/null || true)
echo "  $got"
if [[ -n $want ]]; then
	[[ $got == "$want" ]] && echo "  matches the pattern (byte i = i % 251)" || { echo "  MISMATCH: want $want"; exit 1; }
fi
inns curl -sS --max-time 60 -o /dev/null -w '  %{size_download} bytes in %{time_total} s\n' "http://$ADDR/bytes?n=20000000"

heading "nc to the echo service (port 7)"
show "echo 'hello, ustack' | nc -N $ADDR 7"
echo 'hello, ustack' | inns nc -N -w 5 "$ADDR" 7 | sed 's/^/  /'

heading "ping"
show "ping -c 3 $ADDR"
inns ping -c 3 -W 2 "$ADDR" | sed 's/^/  /'

heading "The same over IPv6 (fd00::2)"
show "curl -6 -s 'http://[fd00::2]/bytes?n=1000000' | wc -c"
inns curl -6 -sS --max-time 20 "http://[$ADDR6]/bytes?n=1000000" | wc -c | sed 's/^/  /'
show "echo 'hello over IPv6' | nc -6 -N fd00::2 7"
echo 'hello over IPv6' | inns nc -6 -N -w 5 "$ADDR6" 7 | sed 's/^/  /'
show "ping -6 -c 2 fd00::2"
inns ping -6 -c 2 -W 2 "$ADDR6" | sed 's/^/  /'

heading "ustack ss: a connection nobody accepted, its data waiting in Recv-Q (noaccept:8082)"
show "(printf 'waiting in the accept queue'; sleep 2) | nc $ADDR 8082 &"
(printf 'waiting in the accept queue'; sleep 2) | inns nc -w 5 "$ADDR" 8082 >/dev/null &
NCPID=$!
for _ in $(seq 50); do
	"$USTACK" ss --ctl "$CTL" | grep -q ':8082 .*10.0.0.1' && break
	sleep 0.1
done
sleep 0.2
show "ustack ss"
"$USTACK" ss --ctl "$CTL" | sed 's/^/  /'
kill "$NCPID" 2>/dev/null || true
wait "$NCPID" 2>/dev/null || true

heading "A few counters (ustack ss --stats has them all)"
"$USTACK" ss --ctl "$CTL" --stats | grep -E '^(ip\.in|ip\.out|ip6\.in|ip6\.out|icmp\.echo_replies|icmp6\.echo_replies|ip6\.drop\.multicast|tcp\.passive_opens|tcp\.resets_sent|tcp\.retrans_segs|tcp\.drop\.checksum) ' | sed 's/^/  /'

heading "Stop the daemon (SIGTERM): it closes its connections and removes tun0"
kill -TERM "$PID"
wait "$PID" && status=0 || status=$?
PID=
tail -n 1 "$WORK/daemon.log" | sed 's/^/  /'
echo "  exit status $status"
if inns ip link show tun0 >/dev/null 2>&1; then echo "  tun0 is still there!"; exit 1; fi
echo "  tun0 is gone. Deleting the namespace."
[[ $status -eq 0 ]]
