#!/usr/bin/env bash
# What access control costs on the hot path: ../shared/peers/compare.sh hot (RESERVE 1 of one
# hot product, 64 connections, then Redis doing the same), run alternately without and with a
# keys file. compare.sh cannot send a header, so it runs, unchanged, from a copy of the peers
# directory in which wrk-reserve.lua is this directory's: the same script, plus
# "Authorization: Bearer $INVENTORY_TOKEN" when that is set. Its one curl (the initial ADD)
# gets the header from a .curlrc under CURL_HOME. The shared directory is not touched.
# Each run holds /tmp/bench.lock. Run from the project root:
#   bench/peers/authcost.sh [pairs]        # default 5 pairs; PEERS=../shared/peers DUR=10
set -u
here=$(cd "$(dirname "$0")" && pwd)
peers=${PEERS:-../shared/peers}
pairs=${1:-5}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp "$peers/compare.sh" "$peers"/redis-*.lua "$peers"/wrk-cart.lua "$tmp/" || exit 2
cp "$here/wrk-reserve.lua" "$tmp/"
go build -o "$tmp/inventoryd" ./cmd/inventoryd || exit 2
secret=$("$tmp/inventoryd" add-key --keys-file "$tmp/keys.json" --name bench-load --role writer 2>/dev/null) || exit 2
mkdir "$tmp/curl"
printf 'header = "Authorization: Bearer %s"\n' "$secret" >"$tmp/curl/.curlrc"

one() { # one run: $1 = off | on; prints the service's req/s
  local out
  if [ "$1" = on ]; then
    out=$(INVENTORY_TOKEN=$secret CURL_HOME=$tmp/curl INVENTORYD_FLAGS="${INVENTORYD_FLAGS:-} --keys-file $tmp/keys.json" \
      flock /tmp/bench.lock bash "$tmp/compare.sh" hot)
  else
    out=$(flock /tmp/bench.lock bash "$tmp/compare.sh" hot)
  fi
  echo "$(date -u +%H:%M:%S) keys=$1 $(echo "$out" | tr '\n' ' ')" >&2
  echo "$out" | awk '/^service:/ {print $2}'
}
offs=(); ons=()
for i in $(seq 1 "$pairs"); do
  if [ $((i % 2)) = 1 ]; then offs+=("$(one off)"); ons+=("$(one on)")
  else ons+=("$(one on)"); offs+=("$(one off)"); fi
done
python3 - "${offs[*]}" "${ons[*]}" <<'PY'
import statistics, sys
off = [float(x) for x in sys.argv[1].split()]
on = [float(x) for x in sys.argv[2].split()]
pairs = [b / a for a, b in zip(off, on)]
print("without keys req/s:", " ".join("%.0f" % x for x in off), "median %.0f" % statistics.median(off))
print("with keys    req/s:", " ".join("%.0f" % x for x in on), "median %.0f" % statistics.median(on))
print("with/without, per pair:", " ".join("%.3f" % x for x in pairs), "median %.3f" % statistics.median(pairs))
print("ratio of medians: %.3f" % (statistics.median(on) / statistics.median(off)))
PY
