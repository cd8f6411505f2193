# Shared by authcpu.sh and revcpu.sh (sourced, not run): two configurations of the service
# under the same wrk load, alternating, each run under flock /tmp/bench.lock, with the
# server's user+system CPU read from /proc before and after the wrk run. The sourcing script
# sets $tmp (a scratch directory) and defines one(): one run of the configuration named by
# $1, which calls serve to start the server, seeds it, and calls measure with the wrk
# command. It exports one() with whatever one() uses, then calls alternate A B pairs and
# summary A B.
tck=$(getconf CLK_TCK)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu() { awk '{print $14 + $15}' /proc/$1/stat; }

# report NAME C0 C1: the run's line on stderr; "req/s cpu_us_per_request" on stdout.
report() {
  local rps created non
  rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.txt")
  read -r created non < <(awk '/^CREATED/ {print $2, $4}' "$tmp/wrk.txt")
  if [ -z "$rps" ] || [ "${created:-0}" -eq 0 ]; then
    echo "$1: wrk got no answers:" >&2
    tail -n 3 "$tmp/wrk.txt" "$tmp/server.log" >&2
    return 1
  fi
  awk -v r="$rps" -v a="$2" -v b="$3" -v t="$tck" -v n="$created" -v x="$non" -v m="$1" -v d="$(date -u +%H:%M:%S)" \
    'BEGIN { printf "%s %s %.0f req/s, %d created, %d other, server CPU %.1f us/request\n", d, m, r, n, x, (b-a)/t/n*1e6 > "/dev/stderr"; printf "%s %.3f\n", r, (b-a)/t/n*1e6 }'
}
# serve BIN [FLAGS...]: starts BIN on a free loopback port with a fresh data directory in
# $tmp and waits until it is ready; sets srv (its pid) and base (its URL), and a trap that
# stops it should the run end early.
serve() {
  local P; P=$(port); base=http://127.0.0.1:$P
  rm -rf "$tmp/data"
  "$1" --addr 127.0.0.1:$P --data-dir "$tmp/data" "${@:2}" >"$tmp/server.log" 2>&1 & srv=$!
  trap '[ -n "$srv" ] && kill -TERM $srv 2>/dev/null' EXIT
  for _ in $(seq 1 200); do curl -fs $base/readyz >/dev/null 2>&1 && break; sleep 0.05; done
}

# measure NAME CMD...: runs CMD (the load, writing $tmp/wrk.txt) between two readings of the
# server's CPU, stops the server and reports the run as NAME.
measure() {
  local name=$1 c0 c1; shift
  c0=$(cpu $srv)
  "$@" >"$tmp/wrk.txt" 2>&1
  c1=$(cpu $srv)
  kill -TERM $srv; wait $srv 2>/dev/null; srv=""
  report "$name" $c0 $c1
}
export -f port cpu report serve measure
export tck

# alternate A B PAIRS: runs one A and one B PAIRS times (A first, then B first, and so on),
# collecting req/s and CPU per request in rps_A, rps_B, cpu_A, cpu_B. A failed run stops
# the script, so that no pair is made of runs from different rounds.
alternate() {
  rps_A=(); rps_B=(); cpu_A=(); cpu_B=()
  local i m r c order
  for i in $(seq 1 "$3"); do
    if [ $((i % 2)) = 1 ]; then order="$1 $2"; else order="$2 $1"; fi
    for m in $order; do
      read -r r c < <(flock /tmp/bench.lock bash -c "one $m")
      [ -n "${c:-}" ] || { echo "run $m failed: stopping" >&2; exit 2; }
      if [ "$m" = "$1" ]; then rps_A+=("$r"); cpu_A+=("$c"); else rps_B+=("$r"); cpu_B+=("$c"); fi
    done
  done
}

# summary A B: medians of the runs alternate collected, and B's CPU per request over A's.
summary() {
  python3 - "$1" "$2" "${rps_A[*]}" "${rps_B[*]}" "${cpu_A[*]}" "${cpu_B[*]}" <<'PY'
import statistics as st, sys
a, b = sys.argv[1:3]
f = lambda s: [float(x) for x in s.split()]
ra, rb, ca, cb = map(f, sys.argv[3:7])
print("req/s        %s: median %.0f, %s: median %.0f, ratio %.3f" % (a, st.median(ra), b, st.median(rb), st.median(rb) / st.median(ra)))
print("CPU us/req   %s: %s median %.2f" % (a, " ".join("%.2f" % x for x in ca), st.median(ca)))
print("CPU us/req   %s: %s median %.2f" % (b, " ".join("%.2f" % x for x in cb), st.median(cb)))
print("CPU per request, %s/%s: ratio of medians %.3f; per pair %s, median %.3f" % (
    b, a, st.median(cb) / st.median(ca), " ".join("%.3f" % (y / x) for x, y in zip(ca, cb)), st.median([y / x for x, y in zip(ca, cb)])))
PY
}
