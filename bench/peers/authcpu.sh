#!/usr/bin/env bash
# Server CPU per request on the hot path, without and with a keys file: the hot workload of
# ../shared/peers/compare.sh (RESERVE 1 of one hot product, wrk, 2 threads, 64 connections,
# this directory's wrk-reserve.lua), with the server's user+system CPU read from /proc before
# and after the wrk run. CPU per request does not count time spent waiting for the disk, so it
# moves much less than throughput when other work shares the machine and the disk. Runs
# alternate (off/on, then on/off), each under flock /tmp/bench.lock. From anywhere in the project:
#   bench/peers/authcpu.sh [pairs]          # default 5; DUR=10 seconds per run
set -u
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.." || exit 2
pairs=${1:-5}; DUR=${DUR:-10}
command -v wrk >/dev/null || { echo "needs wrk"; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/inventoryd" ./cmd/inventoryd || exit 2
secret=$("$tmp/inventoryd" add-key --keys-file "$tmp/keys.json" --name bench-load --role writer 2>/dev/null) || exit 2
. "$here/cpulib.sh"

one() { # $1 = off | on; prints "req/s cpu_us_per_request"
  local flags=() auth=() tok=""
  if [ "$1" = on ]; then flags=(--keys-file "$tmp/keys.json"); auth=(-H "Authorization: Bearer $secret"); tok=$secret; fi
  serve "$tmp/inventoryd" "${flags[@]}"
  curl -fs -X POST $base/v1/products/hot/transactions -H 'Content-Type: application/json' "${auth[@]}" \
    -H 'Idempotency-Key: stock-1' -d '{"type":"ADD","quantity":1000000000}' >/dev/null || { echo "seed failed" >&2; exit 2; }
  measure "keys=$1" env INVENTORY_TOKEN="$tok" wrk -t2 -c64 -d${DUR}s -s "$here/wrk-reserve.lua" $base
}
export -f one
export tmp here DUR secret
alternate off on "$pairs"
summary off on
