#!/usr/bin/env bash
# Server CPU per request on the hot path, without and with a keys file: the hot workload of
# ../shared/peers/compare.sh (RESERVE 1 of one hot product, wrk, 2 threads, 64 connections,
# this directory's wrk-reserve.lua), with the server's user+system CPU read from /proc before
# and after the wrk run. CPU per request does not count time spent waiting for the disk, so it
# moves much less than throughput when other work shares the machine and the disk. Runs
# alternate (off/on, then on/off), each under flock /tmp/bench.lock. Run from the project root:
#   bench/peers/authcpu.sh [pairs]          # default 5; DUR=10 seconds per run
set -u
here=$(cd "$(dirname "$0")" && pwd)
pairs=${1:-5}; DUR=${DUR:-10}
command -v wrk >/dev/null || { echo "needs wrk"; exit 2; }
tmp=$(mktemp -d); srv=""
trap '[ -n "$srv" ] && kill -TERM $srv 2>/dev/null; rm -rf "$tmp"' EXIT
go build -o "$tmp/inventoryd" ./cmd/inventoryd || exit 2
secret=$("$tmp/inventoryd" add-key --keys-file "$tmp/keys.json" --name bench-load --role writer 2>/dev/null) || exit 2
tck=$(getconf CLK_TCK)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu() { awk '{print $14 + $15}' /proc/$1/stat; }

one() { # $1 = off | on; prints "req/s cpu_us_per_request"
  local flags="" auth=() tok=""
  if [ "$1" = on ]; then flags="--keys-file $tmp/keys.json"; auth=(-H "Authorization: Bearer $secret"); tok=$secret; fi
  trap '[ -n "$srv" ] && kill -TERM $srv 2>/dev/null' EXIT
  local P; P=$(port); local base=http://127.0.0.1:$P
  rm -rf "$tmp/data"
  "$tmp/inventoryd" --addr 127.0.0.1:$P --data-dir "$tmp/data" $flags >"$tmp/server.log" 2>&1 & srv=$!
  for _ in $(seq 1 200); do curl -fs $base/readyz >/dev/null 2>&1 && break; sleep 0.05; done
  curl -fs -X POST $base/v1/products/hot/transactions -H 'Content-Type: application/json' "${auth[@]}" \
    -H 'Idempotency-Key: stock-1' -d '{"type":"ADD","quantity":1000000000}' >/dev/null || { echo "seed failed" >&2; exit 2; }
  local c0; c0=$(cpu $srv)
  INVENTORY_TOKEN=$tok wrk -t2 -c64 -d${DUR}s -s "$here/wrk-reserve.lua" $base >"$tmp/wrk.txt" 2>&1
  local c1; c1=$(cpu $srv)
  kill -TERM $srv; wait $srv 2>/dev/null; srv=""
  local rps created non
  rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.txt")
  read -r created non < <(awk '/^CREATED/ {print $2, $4}' "$tmp/wrk.txt")
  awk -v r="$rps" -v a="$c0" -v b="$c1" -v t="$tck" -v n="$created" -v x="$non" -v m="$1" -v d="$(date -u +%H:%M:%S)" \
    'BEGIN { printf "%s keys=%s %.0f req/s, %d created, %d other, server CPU %.1f us/request\n", d, m, r, n, x, (b-a)/t/n*1e6 > "/dev/stderr"; printf "%s %.3f\n", r, (b-a)/t/n*1e6 }'
}
export -f one cpu port
export tmp here DUR secret tck
offs=(); ons=(); offc=(); onc=()
run() { flock /tmp/bench.lock bash -c "one $1"; }
for i in $(seq 1 "$pairs"); do
  if [ $((i % 2)) = 1 ]; then order="off on"; else order="on off"; fi
  for m in $order; do
    read -r r c < <(run $m)
    if [ $m = off ]; then offs+=("$r"); offc+=("$c"); else ons+=("$r"); onc+=("$c"); fi
  done
done
python3 - "${offs[*]}" "${ons[*]}" "${offc[*]}" "${onc[*]}" <<'PY'
import statistics as st, sys
f = lambda s: [float(x) for x in s.split()]
off, on, offc, onc = map(f, sys.argv[1:5])
print("req/s        without keys: median %.0f, with keys: median %.0f, ratio %.3f" % (st.median(off), st.median(on), st.median(on) / st.median(off)))
print("CPU us/req   without keys: %s median %.2f" % (" ".join("%.2f" % x for x in offc), st.median(offc)))
print("CPU us/req   with keys:    %s median %.2f" % (" ".join("%.2f" % x for x in onc), st.median(onc)))
print("CPU per request, with/without: ratio of medians %.3f; per pair %s, median %.3f" % (
    st.median(onc) / st.median(offc), " ".join("%.3f" % (b / a) for a, b in zip(offc, onc)), st.median([b / a for a, b in zip(offc, onc)])))
PY
