#!/usr/bin/env bash
# bench/http.sh — wrk against an HTTP backend directly and through the
# gateway, measured in the same run, alternating rounds so drift on a
# shared machine hits both sides alike. The gateway runs with the CEL
# policy bench/policy-http.yaml (five rules), masking of the backend's
# 2 KiB JSON answer (emails and card numbers by content, ssn by key) and
# recording on (the file sink, fsync every second). A second gateway with
# recording on but an allow-all decider and no masking is measured
# alongside, to tell the proxy's own cost from policy and masking, and so
# is the peer: the standard library's reverse proxy (httputil) with
# nothing of sluice, the floor for any proxy built on net/http. Prints
# per-round requests/s and median latency under load (CONNS connections),
# the requests/s ratios against the direct connection and against the
# bare proxy, the CPU each proxy spends per request (from /proc, user +
# system), and the latency the gateway adds at the median with a single
# connection (LAT_DURATION seconds each, no queueing).
#
#   bench/http.sh                            # 16 connections, 2 threads, 10 s, 3 rounds
#   DURATION=20 ROUNDS=2 CONNS=64 bench/http.sh
#   TLS=1 bench/http.sh                      # client-facing TLS on the gateways
#
# The gateway is bench/httpgw, built here: it composes the gateway from the
# library, as an embedding program would (the same plugin the reference
# server wires for `protocol: http` targets), and also serves the backend. Needs wrk (apt-get install wrk) and curl. Only
# loopback addresses are used; every run is bounded by DURATION.
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-16}
THREADS=${THREADS:-2}
BEPORT=${BEPORT:-18080}
GWPORT=${GWPORT:-18443}
PLAINPORT=${PLAINPORT:-18444}
BAREPORT=${BAREPORT:-18445}
LAT_DURATION=${LAT_DURATION:-5}
TLS=${TLS:-0}

command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk"; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  [ -n "${gwpid:-}" ] && kill "$gwpid" 2>/dev/null && wait "$gwpid" 2>/dev/null
  [ -n "${plainpid:-}" ] && kill "$plainpid" 2>/dev/null && wait "$plainpid" 2>/dev/null
  [ -n "${bepid:-}" ] && kill "$bepid" 2>/dev/null && wait "$bepid" 2>/dev/null
  [ -n "${barepid:-}" ] && kill "$barepid" 2>/dev/null && wait "$barepid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "# building bench/httpgw"
(cd "$here" && go build -o "$work/httpgw" ./bench/httpgw)

token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SLUICE_BENCH_TOKEN=$token
BENCH_BACKEND_KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export BENCH_BACKEND_KEY

"$work/httpgw" backend -listen "127.0.0.1:$BEPORT" >"$work/backend.log" 2>&1 &
bepid=$!
tlsflag=""
scheme=http
curlflags=()
if [ "$TLS" = 1 ]; then
  tlsflag="-tls"; scheme=https; curlflags=(--cacert "$work/data/tls/cert.pem")
fi
"$work/httpgw" gateway -listen "127.0.0.1:$GWPORT" -backend "127.0.0.1:$BEPORT" \
  -policy "$here/bench/policy-http.yaml" -data "$work/data" $tlsflag >"$work/gateway.log" 2>&1 &
gwpid=$!
"$work/httpgw" gateway -listen "127.0.0.1:$PLAINPORT" -backend "127.0.0.1:$BEPORT" \
  -data "$work/data-plain" $tlsflag >"$work/gateway-plain.log" 2>&1 &
plainpid=$!
"$work/httpgw" bare -listen "127.0.0.1:$BAREPORT" -backend "127.0.0.1:$BEPORT" >"$work/bare.log" 2>&1 &
barepid=$!

direct="http://127.0.0.1:$BEPORT/api/users"
through="$scheme://127.0.0.1:$GWPORT/api/users"
plain="$scheme://127.0.0.1:$PLAINPORT/api/users"
bareurl="http://127.0.0.1:$BAREPORT/api/users"
plaincurl=()
[ "$TLS" = 1 ] && plaincurl=(--cacert "$work/data-plain/tls/cert.pem")
for _ in $(seq 1 100); do  # bounded: 100 tries of 0.1 s
  if curl -sf -o /dev/null "$direct" && curl -sf -o /dev/null "${curlflags[@]}" -H "Authorization: Bearer $token" "$through" \
    && curl -sf -o /dev/null "${plaincurl[@]}" -H "Authorization: Bearer $token" "$plain" && curl -sf -o /dev/null "$bareurl"; then
    break
  fi
  sleep 0.1
done
curl -sf -o /dev/null "${curlflags[@]}" -H "Authorization: Bearer $token" "$through" \
  || { echo "the gateway did not come up:"; cat "$work/gateway.log"; exit 1; }
curl -sf -o /dev/null "${plaincurl[@]}" -H "Authorization: Bearer $token" "$plain" \
  || { echo "the allow-all gateway did not come up:"; cat "$work/gateway-plain.log"; exit 1; }

# Check the gateway masks what the backend sends, once, before measuring.
raw=$(curl -sf "$direct")
masked=$(curl -sf "${curlflags[@]}" -H "Authorization: Bearer $token" "$through")
grep -q 'user0@example.com' <<<"$raw" || { echo "FAIL: the backend's body has no email"; exit 1; }
if grep -q '@example.com\|4111 1111\|078-05-1120' <<<"$masked"; then
  echo "FAIL: the gateway's answer is not masked:"; echo "$masked"; exit 1
fi
echo "# backend body $(printf %s "$raw" | wc -c) bytes; through the gateway $(printf %s "$masked" | wc -c) bytes, masked: $(grep -o '\[REDACTED\]' <<<"$masked" | wc -l) values"

# wrk prints "Requests/sec: N" and, with --latency, "50%  1.23ms".
run() { # $1 = url, then extra wrk args
  local url=$1; shift
  wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" --latency "$@" "$url" 2>&1
}
rps() { awk '/^Requests\/sec:/ { print $2 }'; }
p50() { # in microseconds
  awk '$1 == "50%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
    if (u == "us") m = 1; else if (u == "ms") m = 1000; else if (u == "s") m = 1000000; else m = 60000000;
    printf "%.0f", v * m }'
}

check() { # $1 = round, then outputs
  local r=$1; shift
  for out in "$@"; do
    if grep -q 'Non-2xx' <<<"$out" || ! awk -v v="$(rps <<<"$out")" 'BEGIN { exit !(v > 0) }'; then
      echo "FAIL: round $r: errors or no requests"; echo "$out"; exit 1
    fi
    # Timeouts (wrk's 2 s) happen when the machine is overloaded: say so.
    grep 'Socket errors' <<<"$out" | sed "s/^ */# round $r: wrk: /" || true
  done
}
add() { awk -v a="$1" -v b="$2" 'BEGIN { print a + b }'; }

[ "$TLS" = 1 ] && echo "# note: the bare proxy serves plaintext; with TLS=1 only the gateways pay for client TLS"
echo "# wrk -t $THREADS -c $CONNS -d ${DURATION}s, $ROUNDS alternating rounds (full gateway: policy, masking, recording; plain gateway: allow-all, recording; bare: httputil reverse proxy; client TLS: $TLS)"
# cpu PID prints the process's user + system CPU time in clock ticks.
tck=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
reqs() { awk '$2 == "requests" && $3 == "in" { print $1 }'; }
# measure PID URL [wrk args]: runs wrk and prints its output, then a line
# "cpu_us_per_req N" for PID (the backend for the direct run).
measure() {
  local pid=$1 url=$2; shift 2
  local c0 out c1
  c0=$(cpu "$pid"); out=$(run "$url" "$@"); c1=$(cpu "$pid")
  printf '%s\n' "$out"
  awk -v c="$((c1 - c0))" -v t="$tck" -v n="$(reqs <<<"$out")" 'BEGIN { if (n > 0) printf "cpu_us_per_req %.1f\n", c / t * 1e6 / n }'
}
cpr() { awk '$1 == "cpu_us_per_req" { print $2 }'; }
dsum=0; gsum=0; psum=0; bsum=0; dlat=0; glat=0; blat=0; dcpu=0; gcpu=0; pcpu=0; bcpu=0
for r in $(seq 1 "$ROUNDS"); do
  dout=$(measure "$bepid" "$direct")
  gout=$(measure "$gwpid" "$through" -H "Authorization: Bearer $token")
  pout=$(measure "$plainpid" "$plain" -H "Authorization: Bearer $token")
  bout=$(measure "$barepid" "$bareurl")
  check "$r" "$dout" "$gout" "$pout" "$bout"
  d=$(rps <<<"$dout"); g=$(rps <<<"$gout"); p=$(rps <<<"$pout"); b=$(rps <<<"$bout")
  dl=$(p50 <<<"$dout"); gl=$(p50 <<<"$gout"); bl=$(p50 <<<"$bout")
  echo "round=$r direct_rps=$d gateway_rps=$g plain_gateway_rps=$p bare_proxy_rps=$b direct_p50=${dl}us gateway_p50=${gl}us bare_p50=${bl}us" \
    "cpu_us_per_req: backend=$(cpr <<<"$dout") gateway=$(cpr <<<"$gout") plain_gateway=$(cpr <<<"$pout") bare_proxy=$(cpr <<<"$bout")"
  dsum=$(add "$dsum" "$d"); gsum=$(add "$gsum" "$g"); psum=$(add "$psum" "$p"); bsum=$(add "$bsum" "$b")
  dlat=$(add "$dlat" "$dl"); glat=$(add "$glat" "$gl"); blat=$(add "$blat" "$bl")
  dcpu=$(add "$dcpu" "$(cpr <<<"$dout")"); gcpu=$(add "$gcpu" "$(cpr <<<"$gout")")
  pcpu=$(add "$pcpu" "$(cpr <<<"$pout")"); bcpu=$(add "$bcpu" "$(cpr <<<"$bout")")
done
# One connection, one thread: the latency the gateway adds to a request
# when nothing queues.
dout=$(wrk -t 1 -c 1 -d "${LAT_DURATION}s" --latency "$direct" 2>&1)
gout=$(wrk -t 1 -c 1 -d "${LAT_DURATION}s" --latency -H "Authorization: Bearer $token" "$through" 2>&1)
bout=$(wrk -t 1 -c 1 -d "${LAT_DURATION}s" --latency "$bareurl" 2>&1)
check latency "$dout" "$gout" "$bout"
d1=$(p50 <<<"$dout"); g1=$(p50 <<<"$gout"); b1=$(p50 <<<"$bout")
awk -v d="$dsum" -v g="$gsum" -v p="$psum" -v b="$bsum" -v dl="$dlat" -v gl="$glat" -v bl="$blat" -v k="$ROUNDS" -v d1="$d1" -v g1="$g1" -v b1="$b1" -v c="$CONNS" \
  -v dc="$dcpu" -v gc="$gcpu" -v pc="$pcpu" -v bc="$bcpu" 'BEGIN {
  printf "mean direct_rps=%.0f gateway_rps=%.0f plain_gateway_rps=%.0f bare_proxy_rps=%.0f\n", d / k, g / k, p / k, b / k
  printf "gateway/direct requests/s ratio: %.3f (plain gateway/direct: %.3f; bare proxy/direct: %.3f)\n", g / d, p / d, b / d
  printf "gateway/bare proxy requests/s ratio: %.3f (plain gateway/bare proxy: %.3f)\n", g / b, p / b
  printf "CPU per request: backend %.0f us; bare proxy %.0f us; plain gateway %.0f us; gateway %.0f us\n", dc / k, bc / k, pc / k, gc / k
  printf "median latency at %d connections: direct %.0f us, bare proxy %.0f us, gateway %.0f us\n", c, dl / k, bl / k, gl / k
  printf "added median latency (1 connection): gateway %.0f us, bare proxy %.0f us (direct p50 %.0f us, gateway %.0f us, bare %.0f us)\n", g1 - d1, b1 - d1, d1, g1, b1 }'
recs=$(find "$work/data/recordings" -mindepth 1 -maxdepth 1 -name '*.jsonl' | wc -l)
# Each result holds the body as the client received it.
grep -rqF '[REDACTED]' "$work/data/recordings" || { echo "FAIL: the recordings hold no masked body"; exit 1; }
if grep -rqF 'user0@example.com' "$work/data/recordings"; then echo "FAIL: an unmasked body was recorded"; exit 1; fi
echo "# recordings written: $recs (sessions; each holds every request with its masked body)"
