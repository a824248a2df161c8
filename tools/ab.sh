#!/usr/bin/env bash
# tools/ab.sh: two logdist binaries (or two flag sets) side by side, A B A B.
#
#   tools/ab.sh throughput 'A-command' 'B-command' [rounds]
#   tools/ab.sh latency    'A-command' 'B-command' [rounds] [rate]
#
# A and B are logdist command lines without the listen/admin/analyzer
# flags, e.g. '/tmp/old/logdist' 'bin/logdist --loops 1'. For each round
# and each of A and B it starts four fresh bin/analyzerd at 0.4/0.3/0.2/0.1
# and that logdist on 127.0.0.1 (ports 27400-27514), then runs bin/logbench:
#
#   throughput: 10 connections as fast as the window allows for 8 s; prints
#               packets/s, logbench's p99 and logdist's CPU µs per acked
#               packet (utime and stime from /proc/<pid>/stat);
#   latency:    10 connections at a fixed rate (default 86,000 packets/s)
#               for 5 s, through logdist and, as a baseline, straight to
#               one analyzerd; prints logbench's p50/p90/p99/max.
#
# LBFLAGS adds logbench flags (e.g. LBFLAGS=--sack=false). Every process
# it starts is stopped before the next round.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:?usage: tools/ab.sh throughput|latency A-command B-command [rounds] [rate]}
a=${2:?A command}
b=${3:?B command}
rounds=${4:-3}
rate=${5:-86000}
tck=$(getconf CLK_TCK)
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	pids=()
}
trap cleanup EXIT

start() { # start <logdist command>: analyzers, then logdist; sets ldpid
	for i in 1 2 3 4; do
		bin/analyzerd --name "a$i" --listen "127.0.0.1:2750$i" --admin "127.0.0.1:2751$i" --log-level warn 2>/dev/null &
		pids+=($!)
	done
	# shellcheck disable=SC2086 # the command is meant to split
	$1 --listen 127.0.0.1:27400 --admin 127.0.0.1:27480 --syslog-udp "" --log-level warn \
		--analyzer name=a1,addr=127.0.0.1:27501,weight=0.4 --analyzer name=a2,addr=127.0.0.1:27502,weight=0.3 \
		--analyzer name=a3,addr=127.0.0.1:27503,weight=0.2 --analyzer name=a4,addr=127.0.0.1:27504,weight=0.1 2>/dev/null &
	ldpid=$!
	pids+=("$ldpid")
	for _ in $(seq 100); do # ready when the admin API answers and every analyzer is connected
		if [ "$(curl -sf 127.0.0.1:27480/api/v1/analyzers 2>/dev/null | grep -o '"healthy": *true' | wc -l)" = 4 ]; then
			return
		fi
		sleep 0.1
	done
	echo "logdist did not come up: $1" >&2
	exit 1
}

cpu() { awk '{print $14, $15}' "/proc/$1/stat"; }

report() { # report <label> <json> [<cpu before> <cpu after>]
	python3 - "$@" <<'PY'
import json, sys
label, out = sys.argv[1], json.loads(sys.argv[2])
l, n = out["latency_ms"], out["packets_acked"]
line = "%-4s packets/s=%.0f acked=%d p50=%.2f p90=%.2f p99=%.2f max=%.2f" % (
    label, out["packets_per_sec"], n, l["p50"], l["p90"], l["p99"], l["max"])
if len(sys.argv) > 4:
    tck = float(sys.argv[5])
    u0, s0 = map(float, sys.argv[3].split()); u1, s1 = map(float, sys.argv[4].split())
    us, sy = (u1 - u0) / tck / n * 1e6, (s1 - s0) / tck / n * 1e6
    line += " logdist_cpu_us/pkt=%.2f (user %.2f sys %.2f)" % (us + sy, us, sy)
print(line)
PY
}

echo "# tools/ab.sh $mode rounds=$rounds $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# A: $a"
echo "# B: $b"
for r in $(seq "$rounds"); do
	for side in A B; do
		cmd=$a
		[ "$side" = B ] && cmd=$b
		start "$cmd"
		case $mode in
		throughput)
			c0=$(cpu "$ldpid")
			# shellcheck disable=SC2086
			out=$(bin/logbench --target 127.0.0.1:27400 --conns 10 --duration 8s -q --json ${LBFLAGS:-})
			c1=$(cpu "$ldpid")
			report "$side" "$out" "$c0" "$c1" "$tck"
			;;
		latency)
			# shellcheck disable=SC2086
			out=$(bin/logbench --target 127.0.0.1:27400 --conns 10 --rate "$rate" --duration 5s -q --json ${LBFLAGS:-})
			report "$side" "$out"
			if [ "$side" = B ]; then
				# shellcheck disable=SC2086
				out=$(bin/logbench --target 127.0.0.1:27501 --conns 10 --rate "$rate" --duration 5s -q --json ${LBFLAGS:-})
				report direct "$out"
			fi
			;;
		*)
			echo "unknown mode $mode: throughput or latency" >&2
			exit 2
			;;
		esac
		cleanup
	done
done
