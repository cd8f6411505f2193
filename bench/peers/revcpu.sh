#!/usr/bin/env bash
# Throughput and server CPU per request of this checkout against another revision, side by
# side: the hot workload of ../shared/peers/compare.sh (RESERVE 1 of one hot product, wrk,
# 2 threads, 64 connections) or its carts (atomic batches of N of 1,000 products, 32
# connections), with the server's user+system CPU read from /proc before and after each wrk
# run. Runs alternate (rev, this; then this, rev), each under flock /tmp/bench.lock, so the
# machine's swings fall on both. From anywhere in the project:
#   bench/peers/revcpu.sh REV [pairs] [hot | cart N]     # default 5 pairs, hot; DUR=8 seconds per run
set -u
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.." || exit 2
rev=${1:?usage: revcpu.sh REV [pairs] [hot | cart N]}; pairs=${2:-5}; mode=${3:-hot}; lines=${4:-3}; DUR=${DUR:-8}
shared=$here/../../../shared/peers
command -v wrk >/dev/null || { echo "needs wrk"; exit 2; }
[ -f "$shared/wrk-cart.lua" ] || { echo "needs ../shared/peers next to the project"; exit 2; }
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/rev" 2>/dev/null; rm -rf "$tmp"' EXIT
git worktree add --detach "$tmp/rev" "$rev" >/dev/null 2>&1 || { echo "cannot check out $rev"; exit 2; }
(cd "$tmp/rev" && go build -o "$tmp/inv-rev" ./cmd/inventoryd) || exit 2
go build -o "$tmp/inv-this" ./cmd/inventoryd || exit 2
. "$here/cpulib.sh"

one() { # $1 = rev | this; prints "req/s cpu_us_per_request"
  trap '[ -n "$srv" ] && kill -TERM $srv 2>/dev/null' EXIT
  local P; P=$(port); local base=http://127.0.0.1:$P
  rm -rf "$tmp/data"
  "$tmp/inv-$1" --addr 127.0.0.1:$P --data-dir "$tmp/data" >"$tmp/server.log" 2>&1 & srv=$!
  for _ in $(seq 1 200); do curl -fs $base/readyz >/dev/null 2>&1 && break; sleep 0.05; done
  if [ "$mode" = hot ]; then
    curl -fs -X POST $base/v1/products/hot/transactions -H 'Content-Type: application/json' \
      -H 'Idempotency-Key: stock-1' -d '{"type":"ADD","quantity":1000000000}' >/dev/null || { echo "seed failed" >&2; exit 2; }
  else
    python3 - $base <<'PY' || { echo "seed failed" >&2; exit 2; }
import json, sys, urllib.request
ops = [{"product_id": "p%d" % i, "type": "ADD", "quantity": 10**9, "idempotency_key": "stock-%d" % i} for i in range(1000)]
r = urllib.request.Request(sys.argv[1] + "/v1/batch", data=json.dumps({"atomic": False, "ops": ops}).encode(),
                           headers={"Content-Type": "application/json"}, method="POST")
assert urllib.request.urlopen(r, timeout=60).status == 200
PY
  fi
  local c0; c0=$(cpu $srv)
  if [ "$mode" = hot ]; then
    wrk -t2 -c64 -d${DUR}s -s "$shared/wrk-reserve.lua" $base >"$tmp/wrk.txt" 2>&1
  else
    CART_LINES=$lines CART_CATALOG=1000 wrk -t2 -c32 -d${DUR}s -s "$shared/wrk-cart.lua" $base >"$tmp/wrk.txt" 2>&1
  fi
  local c1; c1=$(cpu $srv)
  kill -TERM $srv; wait $srv 2>/dev/null; srv=""
  report $1 $c0 $c1
}
export -f one
export tmp shared DUR mode lines
alternate rev this "$pairs"
summary "$rev" this
