#!/usr/bin/env bash
# ab-analyzer.sh: CPU per packet of one analyzerd (and of logbench) under
# logbench, for A/B comparisons of analyzerd builds (docs/PERFORMANCE.md,
# "Analyzer side").
#
#   bench/ab-analyzer.sh LABEL ANALYZERD LOGBENCH [SECONDS [LOGBENCH FLAGS...]]
#
# analyzerd runs pinned to core 1, logbench to core 0 (taskset). At every
# progress line of logbench (one a second) it reads utime and stime of both
# processes from /proc/PID/stat; the figures are over the steady part of
# the run, from the 2nd progress line to the one SECONDS-1 s in (start-up,
# pool building and the drain left out), divided by the packets logbench
# counted acknowledged in between. It prints one line:
#
#   LABEL pkts/s A_user_us A_sys_us A_total_us L_user_us L_sys_us L_total_us duplicates
#
# where A is analyzerd and L logbench, in µs of CPU per packet, and
# duplicates is what analyzerd's /stats counted over the whole run.
# AB_ANALYZERD_FLAGS adds flags to analyzerd (--concurrency 8, say). Run it
# under `flock -x /tmp/logdist-bench.lock`.
set -euo pipefail
label=$1 analyzerd=$2 logbench=$3 secs=${4:-8}
shift $(( $# < 4 ? $# : 4 ))
port=${AB_PORT:-27601} admin=${AB_ADMIN:-27611}
hz=$(getconf CLK_TCK)

taskset -c 1 "$analyzerd" --name ab --listen 127.0.0.1:$port --admin 127.0.0.1:$admin --log-level warn ${AB_ANALYZERD_FLAGS:-} 2>/tmp/ab-analyzerd.$$.log &
apid=$!
trap 'kill $apid 2>/dev/null; wait $apid 2>/dev/null; rm -f /tmp/ab-analyzerd.$$.log' EXIT
for _ in $(seq 100); do
	grep -q "analyzerd ready" /tmp/ab-analyzerd.$$.log 2>/dev/null && break
	sleep 0.05
done

cpu() { # utime stime of pid $1, in ticks
	awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$1/stat"
}

samples=$(mktemp)
coproc LB { exec taskset -c 0 "$logbench" --target 127.0.0.1:$port --duration "${secs}s" --conns 10 --window 256 "$@" 2>&1 >/dev/null; }
lpid=$LB_PID
exec {lbout}<&"${LB[0]}" # bash unsets LB when logbench exits
n=0
while IFS= read -r line <&$lbout; do
	case $line in
	"logbench "*pkt/s*acked*)
		n=$((n + 1))
		acked=$(sed -E 's/.* acked +([0-9]+) .*/\1/' <<<"$line")
		echo "$n $acked $(cpu $apid) $(cpu $lpid 2>/dev/null || echo 0 0) $(date +%s.%N)" >>"$samples"
		;;
	esac
done
wait $lpid || true
dups=$(curl -s http://127.0.0.1:$admin/stats | sed -E 's/.*"duplicates":([0-9]+).*/\1/')
awk -v lo=2 -v hi=$((secs - 1)) -v hz="$hz" -v label="$label" -v dups="$dups" '
	$1 == lo { a0 = $2; au0 = $3; as0 = $4; lu0 = $5; ls0 = $6; t0 = $7 }
	$1 == hi { a1 = $2; au1 = $3; as1 = $4; lu1 = $5; ls1 = $6; t1 = $7 }
	END {
		p = a1 - a0
		if (p <= 0) { print label, "no packets between progress lines", lo, "and", hi; exit 1 }
		us = 1e6 / hz / p
		printf "%s %.0f %.2f %.2f %.2f %.2f %.2f %.2f %s\n", label, p / (t1 - t0),
			(au1 - au0) * us, (as1 - as0) * us, (au1 - au0 + as1 - as0) * us,
			(lu1 - lu0) * us, (ls1 - ls0) * us, (lu1 - lu0 + ls1 - ls0) * us, dups
	}' "$samples"
rm -f "$samples"
