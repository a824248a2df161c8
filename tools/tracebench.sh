#!/usr/bin/env bash
# Tracing's cost on logdist's forward path, A/B/C interleaved (docs/PERFORMANCE.md):
#   off:  no --otlp-endpoint
#   0:    --otlp-endpoint set, --trace-sample 0 (no packet traced)
#   1%:   --otlp-endpoint set, --trace-sample 0.01 (1% of packets get spans)
# For each: logbench's throughput over ROUND seconds, and logdist's CPU per
# packet (user+system from /proc, over the run). Usage: tools/tracebench.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}; secs=${2:-5}
make -s build >/dev/null; go build -o bin/ ./tools/otlpsink
base=17600
bin/otlpsink --listen 127.0.0.1:$((base+18)) 2>/dev/null & sink=$!
bin/analyzerd --listen 127.0.0.1:$((base+1)) 2>/dev/null & a1=$!
bin/analyzerd --listen 127.0.0.1:$((base+2)) 2>/dev/null & a2=$!
trap 'kill $sink $a1 $a2 2>/dev/null; kill ${ld:-} 2>/dev/null || true' EXIT
sleep 0.5
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
printf "%-5s %-6s %12s %14s\n" round mode packets/s cpu_us/packet
for r in $(seq 1 "$rounds"); do
  for mode in off 0 0.01; do
    args=(--listen 127.0.0.1:$base --admin 127.0.0.1:$((base+80)) --loops 1 --log-level warn
      --analyzer name=a1,addr=127.0.0.1:$((base+1)),weight=0.6 --analyzer name=a2,addr=127.0.0.1:$((base+2)),weight=0.4)
    [ "$mode" != off ] && args+=(--otlp-endpoint http://127.0.0.1:$((base+18)) --trace-sample "$mode")
    bin/logdist "${args[@]}" 2>/dev/null & ld=$!
    for _ in $(seq 50); do curl -sf 127.0.0.1:$((base+80))/readyz >/dev/null && break; sleep 0.1; done
    c0=$(cpu $ld)
    out=$(bin/logbench --target 127.0.0.1:$base --duration ${secs}s --conns 4 --json)
    c1=$(cpu $ld)
    kill $ld; wait $ld 2>/dev/null || true
    acked=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["packets_acked"])')
    pps=$(echo "$out" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["packets_per_sec"]))')
    tck=$(getconf CLK_TCK)
    printf "%-5s %-6s %12s %14.2f\n" "$r" "$mode" "$pps" "$(echo "($c1-$c0)/$tck*1000000/$acked" | bc -l)"
  done
done
echo "spans exported: $(curl -s 127.0.0.1:$((base+18))/count)"
