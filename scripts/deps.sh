#!/usr/bin/env bash
# The tools that make demo, make test, make bench and .ci/run use, with the
# Debian package of each: the one list of them. Each of those runs this
# script first with its set; it installs whatever is missing.
#
#   scripts/deps.sh [SET...]             install what SET needs, if missing
#   scripts/deps.sh --check [SET...]     only say what is missing (exit 1 if anything)
#   scripts/deps.sh --packages [SET...]  print the Debian packages of SET, one line
#   scripts/deps.sh --list [SET...]      print the table: tool, packages, sets
#
# SET is demo, test, bench or all (the default; what .ci/run installs).
# When everything is there it prints nothing and exits 0 at once. When
# something is missing: as root with apt-get, it installs just the missing
# packages (apt-get update first, once, if the package lists need it);
# otherwise it says which tools are missing and the command that installs
# them, and exits 1, so that nothing half-runs. USTACK_SKIP_DEPS=1 makes it
# only warn (the tests then skip what needs a missing tool).
set -euo pipefail

# tool (a command on PATH, or an absolute path that must exist)
#     Debian packages (comma-separated)    sets that need it
TABLE='
ip          iproute2            demo test bench
ss          iproute2            test
tc          iproute2            test
nc          netcat-openbsd      demo test
curl        curl                demo test
ping        iputils-ping        demo test
dig         dnsutils            test
python3     python3             demo
awk         mawk                demo
nft         nftables            test
tcpdump     tcpdump             test
tshark      tshark              test
chromium    chromium            test
setpriv     util-linux          test
gcc         gcc,libc6-dev       test
wrk         wrk                 bench
iperf3      iperf3              bench
socat       socat               bench
git         git                 bench
make        make                all
ps          procps              all
capsh       libcap2-bin         all
/etc/ssl/certs/ca-certificates.crt ca-certificates all
'
# Why: ip (iproute2) makes every namespace, ss and tc look inside them; nc,
# curl and ping are the kernel clients of the demo, the lab and the tests
# (dig the DNS client of the tests);
# python3 checks the demo's download; nft drops packets in the tests;
# tcpdump and tshark read --pcap files and the wire; chromium is the
# browser test; setpriv runs a client without root's capabilities; gcc
# and libc6-dev: go test -race needs cgo; wrk, iperf3 and socat are the
# benchmark's load generators, git names the commit in its results; make,
# procps, capsh and the CA certificates (Go downloads its modules over
# HTTPS) are what a CI machine is expected to have.

prog=scripts/deps.sh
mode=install
case ${1:-} in
--check) mode=check; shift ;;
--packages) mode=packages; shift ;;
--list) mode=list; shift ;;
-h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
-*) echo "$prog: unknown option $1 (--check, --packages, --list)" >&2; exit 2 ;;
esac
sets=("$@")
[[ ${#sets[@]} -gt 0 ]] || sets=(all)
for s in "${sets[@]}"; do
	case $s in
	demo | test | bench | all) ;;
	*) echo "$prog: unknown set $s (want demo, test, bench or all)" >&2; exit 2 ;;
	esac
done

# wanted ROW-SETS: does a row with these sets belong to the sets asked for?
wanted() {
	local s
	for s in "${sets[@]}"; do
		[[ $s == all || " $1 " == *" $s "* ]] && return 0
	done
	return 1
}

# The rows asked for, as parallel arrays.
tools=() pkgs=()
while read -r tool pkg rowsets; do
	[[ -n $tool ]] || continue
	wanted "$rowsets" || continue
	tools+=("$tool") pkgs+=("${pkg//,/ }")
	[[ $mode == list ]] && printf '%-36s %-20s %s\n' "$tool" "$pkg" "$rowsets"
done <<<"$TABLE"
[[ $mode == list ]] && exit 0

# dedup WORDS...: the words, each once, in their first order.
dedup() {
	local seen=" " w out=()
	for w in "$@"; do
		[[ $seen == *" $w "* ]] && continue
		seen+="$w " out+=("$w")
	done
	echo "${out[*]}"
}

if [[ $mode == packages ]]; then
	# shellcheck disable=SC2086 # word splitting is the point
	dedup ${pkgs[*]}
	exit 0
fi

# Tools in sbin directories count even when PATH (a user's) lacks them.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
have() {
	if [[ $1 == /* ]]; then [[ -e $1 ]]; else command -v "$1" >/dev/null 2>&1; fi
}

missing_tools=() missing_pkgs=()
for i in "${!tools[@]}"; do
	have "${tools[$i]}" && continue
	missing_tools+=("${tools[$i]}")
	# shellcheck disable=SC2206
	missing_pkgs+=(${pkgs[$i]})
done
[[ ${#missing_tools[@]} -eq 0 ]] && exit 0

what() {
	case ${sets[*]} in
	demo) echo "make demo" ;;
	test) echo "make test" ;;
	bench) echo "make bench" ;;
	all) echo "ustack's demo, tests and benchmark" ;;
	*) echo "scripts/deps.sh ${sets[*]}" ;;
	esac
}
packages=$(dedup "${missing_pkgs[@]}")
install_cmd="apt-get update && apt-get install -y --no-install-recommends $packages"

if [[ $mode == check || -n ${USTACK_SKIP_DEPS:-} ]] || ! command -v apt-get >/dev/null || [[ $EUID -ne 0 ]]; then
	echo "$prog: not installed, and needed by $(what): ${missing_tools[*]}" >&2
	if ! command -v apt-get >/dev/null; then
		echo "$prog: there is no apt-get here; install the packages that provide them (Debian's names: $packages)" >&2
	elif [[ $EUID -ne 0 ]]; then
		as_root="su root -c"
		command -v sudo >/dev/null && as_root="sudo sh -c"
		echo "$prog: install them (as root) with:" >&2
		echo "    $as_root '$install_cmd'" >&2
	else
		echo "$prog: install them with:" >&2
		echo "    $install_cmd" >&2
	fi
	if [[ -n ${USTACK_SKIP_DEPS:-} && $mode != check ]]; then
		echo "$prog: USTACK_SKIP_DEPS is set: going on without them" >&2
		exit 0
	fi
	exit 1
fi

# Root with apt-get: install just what is missing, quietly, the output kept
# in a log that is shown if anything fails.
echo "$prog: installing for $(what): $packages (for ${missing_tools[*]})" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/ustack-deps.XXXXXX.log)
apt=(apt-get -y -q -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
fail() {
	tail -n 30 "$log" >&2
	echo "$prog: $1 failed (the whole output is in $log)" >&2
	echo "$prog: to install by hand: $install_cmd" >&2
	exit 1
}
# iperf3 asks whether to start a daemon: no (also its default).
[[ " $packages " == *" iperf3 "* ]] && command -v debconf-set-selections >/dev/null &&
	echo 'iperf3 iperf3/start_daemon boolean false' | debconf-set-selections
# apt-get update, once, and only when a package has no candidate in the
# lists there are (a fresh machine has none) or the install fails (stale
# lists point at files the mirror no longer has).
updated=
update() {
	[[ -n $updated ]] && return 0
	updated=1
	"${apt[@]}" update >>"$log" 2>&1 || fail "apt-get update"
}
for p in $packages; do
	if ! apt-cache show --no-all-versions "$p" >/dev/null 2>&1; then
		update
		break
	fi
done
# shellcheck disable=SC2086
if ! "${apt[@]}" install --no-install-recommends $packages >>"$log" 2>&1; then
	[[ -n $updated ]] && fail "apt-get install"
	update
	# shellcheck disable=SC2086
	"${apt[@]}" install --no-install-recommends $packages >>"$log" 2>&1 || fail "apt-get install"
fi
# No iperf3 server left behind, should the package have started one.
if [[ " $packages " == *" iperf3 "* ]] && command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
	systemctl disable --now iperf3.service >>"$log" 2>&1 || true
fi

still=()
for t in "${missing_tools[@]}"; do have "$t" || still+=("$t"); done
if [[ ${#still[@]} -gt 0 ]]; then
	fail "installing $packages left ${still[*]} missing:"
fi
rm -f "$log"
echo "$prog: installed $packages" >&2
