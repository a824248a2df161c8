#!/bin/bash
# perfproxy.sh BINDIR OUTPREFIX — where logdist's CPU goes when it is the
# bottleneck: the topology of make bench-proxy (logdist --loops 1 alone on
# CPU 1; logbench, 10 connections, and four framesink listeners on CPU 0),
# 14 s of load, and in its middle 4 s of perf stat (system calls by kind,
# context switches) and 4 s of perf record -g (user and kernel stacks).
# Writes OUTPREFIX.stat, OUTPREFIX.perf and OUTPREFIX.bench.json; then:
#   perf report -i OUTPREFIX.perf --no-children --sort sym --stdio -g none
# Needs perf (Debian: linux-perf) and taskset; ports 7710-7716 free.
# LDENV (e.g. GOMAXPROCS=2) is put in logdist's environment.
set -euo pipefail
B=${1:?usage: perfproxy.sh BINDIR OUTPREFIX}; O=${2:?usage: perfproxy.sh BINDIR OUTPREFIX}
cleanup() { kill $LD $FS 2>/dev/null || true; wait 2>/dev/null || true; }
taskset -c 0 "$B/framesink" --listen 127.0.0.1:7711 --listen 127.0.0.1:7712 --listen 127.0.0.1:7713 --listen 127.0.0.1:7714 --admin 127.0.0.1:7715 2>"$O.framesink.log" & FS=$!
trap cleanup EXIT
sleep 0.3
env ${LDENV:-} taskset -c 1 "$B/logdist" --listen 127.0.0.1:7710 --admin 127.0.0.1:7716 --syslog-udp "" --loops 1 --log-level warn \
  --analyzer name=a1,addr=127.0.0.1:7711,weight=0.4 --analyzer name=a2,addr=127.0.0.1:7712,weight=0.3 \
  --analyzer name=a3,addr=127.0.0.1:7713,weight=0.2 --analyzer name=a4,addr=127.0.0.1:7714,weight=0.1 2>"$O.logdist.log" & LD=$!
sleep 1.5
taskset -c 0 "$B/logbench" --target 127.0.0.1:7710 --conns 10 --window 256 --duration 14s -q --json > "$O.bench.json" & LB=$!
sleep 5
read -r u0 s0 < <(awk '{print $14, $15}' /proc/$LD/stat)
perf stat -e raw_syscalls:sys_enter,context-switches,syscalls:sys_enter_nanosleep,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_read,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_futex \
  -p $LD -o "$O.stat" -- sleep 4 >/dev/null 2>&1
perf record -F 2000 -g -o "$O.perf" -p $LD -- sleep 4 >/dev/null 2>&1
read -r u1 s1 < <(awk '{print $14, $15}' /proc/$LD/stat)
wait $LB
echo "logdist CPU over the 8 s measured: user $((u1-u0)) ticks, system $((s1-s0)) ticks (100 per s)"
grep -v "^#" "$O.stat" | grep .
python3 -c "import json;r=json.load(open('$O.bench.json'));print('packets/s %.0f, acked %d, errors %d, bytes/packet %.0f' % (r['packets_per_sec'],r['packets_acked'],r['errors'],r['packet_bytes']))"
