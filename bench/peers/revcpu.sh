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
  serve "$tmp/inv-$1"
  if [ "$mode" = hot ]; then
    curl -fs -X POST $base/v1/products/hot/transactions -H 'Content-Type: application/json' \
      -H 'Idempotency-Key: stock-1' -d '{"type":"ADD","quantity":1000000000}' >/dev/null || { echo "seed failed" >&2; exit 2; }
    measure $1 wrk -t2 -c64 -d${DUR}s -s "$shared/wrk-reserve.lua" $base
  else
    python3 - $base <<'PY' || { echo "seed failed" >&2; exit 2; }
import json, sys, urllib.request
ops = [{"product_id": "p%d" % i, "type": "ADD", "quantity": 10**9, "idempotency_key": "stock-%d" % i} for i in range(1000)]
r = urllib.request.Request(sys.argv[1] + "/v1/batch", data=json.dumps({"atomic": False, "ops": ops}).encode(),
                           headers={"Content-Type": "application/json"}, method="POST")
assert urllib.request.urlopen(r, timeout=60).status == 200
PY
    measure $1 env CART_LINES=$lines CART_CATALOG=1000 wrk -t2 -c32 -d${DUR}s -s "$shared/wrk-cart.lua" $base
  fi
}
export -f one
export tmp shared DUR mode lines
alternate rev this "$pairs"
summary "$rev" this
