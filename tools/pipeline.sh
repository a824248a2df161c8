#!/usr/bin/env bash
# tools/pipeline.sh: where the CPU of a whole run goes, per process.
#
#   tools/pipeline.sh logdist|haproxy [rate] [logdist flags...]
#
# Starts four fresh bin/analyzerd (or $ANALYZERD) at 0.4/0.3/0.2/0.1 and
# either logdist (bin/logdist, or $LOGDIST) or HAProxy (configured as make
# bench runs it: benchcmp --haproxy-config) on 127.0.0.1 (ports
# 27400-27514), then bin/logbench with 10 connections for 8 s, as fast as
# the window allows or at a fixed rate (packets/s) when one is given. Over
# the 4 s in the middle of the run it prints, per process group (the
# analyzers, logbench, the proxy):
#
#   CPU µs per packet   utime+stime from /proc/<pid>/stat / packets acked
#   per 1000 packets    system calls by name and context switches, from
#                       perf stat (skipped when perf is missing)
#
# On a host where everything shares the CPUs the throughput is the
# inverse of the sum of the three CPU figures; this shows which process
# a change moved. Every process it starts is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

proxy=${1:?usage: tools/pipeline.sh logdist|haproxy [rate] [logdist flags...]}
rate=${2:-0}
shift $(($# >= 2 ? 2 : 1))
pids=()
tmp=$(mktemp -d)
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

apids=()
for i in 1 2 3 4; do
	${ANALYZERD:-bin/analyzerd} --name "a$i" --listen "127.0.0.1:2750$i" --admin "127.0.0.1:2751$i" --log-level warn 2>/dev/null &
	pids+=($!)
	apids+=($!)
done
case $proxy in
logdist)
	${LOGDIST:-bin/logdist} --listen 127.0.0.1:27400 --admin 127.0.0.1:27480 --syslog-udp "" --log-level warn \
		--analyzer name=a1,addr=127.0.0.1:27501,weight=0.4 --analyzer name=a2,addr=127.0.0.1:27502,weight=0.3 \
		--analyzer name=a3,addr=127.0.0.1:27503,weight=0.2 --analyzer name=a4,addr=127.0.0.1:27504,weight=0.1 "$@" 2>/dev/null &
	;;
haproxy)
	go run ./tools/benchcmp --haproxy-config 127.0.0.1:27400,127.0.0.1:27501,127.0.0.1:27502,127.0.0.1:27503,127.0.0.1:27504 >"$tmp/haproxy.cfg"
	haproxy -db -f "$tmp/haproxy.cfg" 2>/dev/null &
	;;
*)
	echo "unknown proxy $proxy: logdist or haproxy" >&2
	exit 2
	;;
esac
ppid=$!
pids+=("$ppid")
for _ in $(seq 100); do # ready when every analyzer has a connection (logdist) or the port answers (haproxy)
	if [ "$proxy" = haproxy ] && (exec 3<>/dev/tcp/127.0.0.1/27400) 2>/dev/null; then break; fi
	if [ "$proxy" = logdist ] && [ "$(curl -sf 127.0.0.1:27480/api/v1/analyzers 2>/dev/null | grep -o '"healthy": *true' | wc -l)" = 4 ]; then break; fi
	sleep 0.1
done

bin/logbench --target 127.0.0.1:27400 --conns 10 --rate "$rate" --duration 8s -q --json >"$tmp/out.json" &
lb=$!
pids+=("$lb")
sleep 2
cpu() { for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk '{s += $1} END {print s}'; }
a0=$(cpu "${apids[@]}") l0=$(cpu "$lb") p0=$(cpu "$ppid")
ev='syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_futex,syscalls:sys_enter_nanosleep,cs'
if command -v perf >/dev/null && perf stat -e cs -- true >/dev/null 2>&1; then
	perf stat -x, -e "$ev" -p "$(
		IFS=,
		echo "${apids[*]}"
	)" -- sleep 4 2>"$tmp/analyzers.txt" &
	w1=$!
	perf stat -x, -e "$ev" -p "$lb" -- sleep 4 2>"$tmp/logbench.txt" &
	w2=$!
	perf stat -x, -e "$ev" -p "$ppid" -- sleep 4 2>"$tmp/proxy.txt" &
	w3=$!
	wait $w1 $w2 $w3
else
	sleep 4
fi
a1=$(cpu "${apids[@]}") l1=$(cpu "$lb") p1=$(cpu "$ppid")
wait "$lb"
python3 - "$proxy" "$rate" "$tmp" "$(getconf CLK_TCK)" "$a0" "$a1" "$l0" "$l1" "$p0" "$p1" <<'PY'
import json, os, sys
proxy, rate, tmp, tck = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
a0, a1, l0, l1, p0, p1 = map(float, sys.argv[5:11])
o = json.load(open(os.path.join(tmp, "out.json")))
pps = o["packets_per_sec"]
n = pps * 4  # packets in the 4 s measured
lat = o["latency_ms"]
print("# tools/pipeline.sh %s rate=%s: %.0f packets/s, p50 %.2f ms, p99 %.2f ms" % (proxy, rate if rate != "0" else "max", pps, lat["p50"], lat["p99"]))
for name, c0, c1 in (("analyzers", a0, a1), ("logbench", l0, l1), (proxy, p0, p1)):
    line = "%-9s CPU %5.2f µs/packet" % (name, (c1 - c0) / tck / n * 1e6)
    f = os.path.join(tmp, ("proxy" if name == proxy else name) + ".txt")
    if os.path.exists(f):
        counts = []
        for l in open(f):
            p = l.strip().split(",")
            if len(p) > 2 and p[0].isdigit() and float(p[0]) / n * 1000 >= 0.5:
                counts.append("%s=%.0f" % (p[2].replace("syscalls:sys_enter_", ""), float(p[0]) / n * 1000))
        line += "   per 1000 packets: " + " ".join(counts)
    print(line)
PY
