#!/usr/bin/env bash
# tools/tlsab.sh: builds of logdist and analyzerd side by side, A B A B,
# with TLS on both hops (or on the agent hop, or in plaintext).
#
#   tools/tlsab.sh tls2|tls1|plain ROUNDS DIR_A DIR_B [DIR_C ...]
#
# Each DIR holds a logdist and an analyzerd (e.g. one built from main, one
# from a branch). For each round and each DIR it starts four DIR/analyzerd
# (0.4/0.3/0.2/0.1; with tls2 serving TLS) and DIR/logdist on 127.0.0.1
# (ports 28400-28514; with tls2 and tls1 taking agents over TLS only,
# `--listen "" --tls-listen`), then runs bin/logbench (10 connections,
# window 256, as fast as the window allows for DUR, default 8s; over TLS
# but for plain) and prints packets/s, logdist's CPU µs per acknowledged
# packet and the analyzers' (utime+stime from /proc/<pid>/stat), and
# logbench's p99. Certificates: ECDSA P-256 from a CA made with openssl in
# a temporary directory. Every process it starts is stopped before the
# next run.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:?usage: tools/tlsab.sh tls2|tls1|plain ROUNDS DIR_A [DIR_B ...]}
rounds=${2:?rounds}
shift 2
[ $# -ge 1 ] || { echo "usage: tools/tlsab.sh tls2|tls1|plain ROUNDS DIR_A [DIR_B ...]" >&2; exit 2; }
case $mode in tls2 | tls1 | plain) ;; *) echo "mode: tls2, tls1 or plain" >&2; exit 2 ;; esac
dur=${DUR:-8s}
tck=$(getconf CLK_TCK)
lb=$PWD/bin/logbench
tmp=$(mktemp -d)
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}
trap 'cleanup; rm -rf "$tmp"' EXIT

# A CA and a certificate for localhost and 127.0.0.1.
openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca.key" 2>/dev/null
openssl req -x509 -new -key "$tmp/ca.key" -subj /CN=tlsab-ca -days 2 -out "$tmp/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/srv.key" 2>/dev/null
openssl req -new -key "$tmp/srv.key" -subj /CN=localhost -out "$tmp/srv.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tmp/ext.cnf"
openssl x509 -req -in "$tmp/srv.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial -days 2 \
	-extfile "$tmp/ext.cnf" -out "$tmp/srv.pem" 2>/dev/null

cpu() { # cpu PID...: clock ticks of user and system time, summed
	local s=0
	for p in "$@"; do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
	echo "$s"
}

echo "# tools/tlsab.sh $mode rounds=$rounds duration=$dur $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq "$rounds"); do
	for d in "$@"; do
		atls=() up="" ltls=(--listen 127.0.0.1:28400) lbtls=() apids=()
		if [ "$mode" = tls2 ]; then
			atls=(--tls-cert "$tmp/srv.pem" --tls-key "$tmp/srv.key")
			up=",tls=true,server-name=localhost"
		fi
		if [ "$mode" != plain ]; then
			ltls=(--listen "" --tls-listen 127.0.0.1:28400 --tls-cert "$tmp/srv.pem" --tls-key "$tmp/srv.key" --upstream-tls-ca "$tmp/ca.pem")
			lbtls=(--tls-ca "$tmp/ca.pem" --tls-server-name localhost)
		fi
		for i in 1 2 3 4; do
			"$d/analyzerd" --name "a$i" --listen "127.0.0.1:2850$i" --admin "127.0.0.1:2851$i" --log-level warn "${atls[@]}" 2>/dev/null &
			pids+=($!)
			apids+=($!)
		done
		"$d/logdist" "${ltls[@]}" --admin 127.0.0.1:28480 --syslog-udp "" --log-level warn \
			--analyzer "name=a1,addr=127.0.0.1:28501,weight=0.4$up" --analyzer "name=a2,addr=127.0.0.1:28502,weight=0.3$up" \
			--analyzer "name=a3,addr=127.0.0.1:28503,weight=0.2$up" --analyzer "name=a4,addr=127.0.0.1:28504,weight=0.1$up" 2>"$tmp/logdist.err" &
		ld=$!
		pids+=("$ld")
		up4=0
		for _ in $(seq 100); do # ready when every analyzer is connected
			if [ "$(curl -sf 127.0.0.1:28480/api/v1/analyzers 2>/dev/null | grep -o '"healthy": *true' | wc -l)" = 4 ]; then
				up4=1
				break
			fi
			sleep 0.1
		done
		[ $up4 = 1 ] || { echo "logdist did not come up: $d" >&2; cat "$tmp/logdist.err" >&2; exit 1; }
		c0=$(cpu "$ld")
		a0=$(cpu "${apids[@]}")
		out=$("$lb" --target 127.0.0.1:28400 --conns 10 --window 256 --duration "$dur" "${lbtls[@]}" --json -q 2>/dev/null || true)
		c1=$(cpu "$ld")
		a1=$(cpu "${apids[@]}")
		python3 - "$d" "$out" "$c0" "$c1" "$a0" "$a1" "$tck" <<'PY'
import json, sys
d, out = sys.argv[1], json.loads(sys.argv[2])
c0, c1, a0, a1, tck = map(float, sys.argv[3:])
n = out["packets_acked"]
print("%-24s packets/s=%7.0f logdist_cpu_us/pkt=%.2f analyzers_cpu_us/pkt=%.2f p99_ms=%.1f" % (
    d, out["packets_per_sec"], (c1 - c0) / tck / n * 1e6, (a1 - a0) / tck / n * 1e6, out["latency_ms"]["p99"]))
PY
		cleanup
	done
done
