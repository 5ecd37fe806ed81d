#!/usr/bin/env bash
# bench/matrix.sh — the side-by-side table: pgbench select-only (-S) and
# TPC-B-like, -M simple and -M prepared, at 1, 8 and 32 clients, each run
# directly against PostgreSQL, through pgbouncer (session mode) and through
# sluice with the shipped example policy (examples/policies/no-destructive:
# developers connect and run SQL, no DROP, TRUNCATE, unqualified UPDATE or
# DELETE, server files), masking (bench/policy-matrix.yaml) and recording on,
# one after the other in the same round so drift hits all three alike.
# Then a 1 M-row scan: throughput direct and through sluice, and sluice's
# peak resident memory (VmHWM) over the run.
#
# Each cell also runs through bench/tcprelay, a Go relay that only copies
# bytes both ways (the floor for a proxy written in Go), to tell Go's I/O
# model from sluice's own work.
#
# Prints one line per cell with TPS, median and p99 latency (from pgbench's
# per-transaction log), the sluice/direct, sluice/pgbouncer and
# sluice/relay TPS ratios,
# the median and p99 latency sluice adds over direct, and the CPU each
# proxy process spent per transaction (user + system, from /proc): on a
# machine whose cores the client, the proxy and PostgreSQL share, that is
# what the proxy takes away from the other two.
#
#   bench/matrix.sh                        # 10 s per cell: about 6 minutes
#   DURATION=30 CLIENTS_LIST="8" WORKLOADS=select bench/matrix.sh
#   MODES=prepared PGBOUNCER=0 bench/matrix.sh
#
# Needs the machine's PostgreSQL on 127.0.0.1:5432 (trust auth for user
# postgres), pgbench, and pgbouncer for the peer column (apt-get install
# pgbouncer; without it that column is skipped). Loopback only; every run
# is bounded by DURATION.
set -euo pipefail

DURATION=${DURATION:-10}
CLIENTS_LIST=${CLIENTS_LIST:-"1 8 32"}
WORKLOADS=${WORKLOADS:-"select tpcb"}
MODES=${MODES:-"simple prepared"}
SCALE=${SCALE:-10}
SCAN=${SCAN:-1}
PGHOST=127.0.0.1
PGPORT=${PGPORT:-5432}
DB=sluice_matrix
GWPORT=${GWPORT:-16442}
ADMINPORT=${ADMINPORT:-19092}
BOUNCERPORT=${BOUNCERPORT:-16445}
RELAYPORT=${RELAYPORT:-16446}

here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  [ -n "${gwpid:-}" ] && kill "$gwpid" 2>/dev/null && wait "$gwpid" 2>/dev/null
  [ -n "${relaypid:-}" ] && kill "$relaypid" 2>/dev/null && wait "$relaypid" 2>/dev/null
  [ -f "$work/pgbouncer.pid" ] && kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "# building refserver"
(cd "$here" && go build -o "$work/refserver" ./cmd/refserver && go build -o "$work/tcprelay" ./bench/tcprelay)

echo "# preparing database $DB (pgbench -i -s $SCALE)"
psql -h $PGHOST -p "$PGPORT" -U postgres -d postgres -qAt -c "select 1 from pg_database where datname='$DB'" | grep -q 1 \
  || psql -h $PGHOST -p "$PGPORT" -U postgres -d postgres -qc "create database $DB"
pgbench -h $PGHOST -p "$PGPORT" -U postgres -i -q -s "$SCALE" "$DB" >/dev/null 2>&1
max_conn=$(psql -h $PGHOST -p "$PGPORT" -U postgres -d postgres -qAt -c "show max_connections")

token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SLUICE_BENCH_TOKEN=$token
cat > "$work/refserver.yaml" <<YAML
data_dir: $work/data
admin:
  listen: 127.0.0.1:$ADMINPORT
log:
  level: warn
identity:
  tokens:
    - subject: bench
      groups: [developers]
      env: SLUICE_BENCH_TOKEN
targets:
  - name: bench
    protocol: postgres
    listen: 127.0.0.1:$GWPORT
    address: $PGHOST:$PGPORT
    database: $DB
    sslmode: disable
    tls:
      disable: true
    allow_plaintext_loopback: true
    credential:
      username: postgres
policy:
  files:
    - $here/examples/policies/no-destructive.yaml
    - $here/bench/policy-matrix.yaml
recording:
  dir: $work/data/recordings
  fsync: interval
  fsync_interval: 1s
YAML
"$work/refserver" serve --config "$work/refserver.yaml" >"$work/refserver.log" 2>&1 &
gwpid=$!
for _ in $(seq 1 100); do
  PGPASSWORD=$token PGCONNECT_TIMEOUT=2 psql "host=127.0.0.1 port=$GWPORT dbname=$DB user=bench sslmode=disable" -qAtc "select 1" >/dev/null 2>&1 && break
  sleep 0.1
done
PGPASSWORD=$token PGCONNECT_TIMEOUT=2 psql "host=127.0.0.1 port=$GWPORT dbname=$DB user=bench sslmode=disable" -qAtc "select 1" >/dev/null \
  || { echo "sluice did not come up:"; cat "$work/refserver.log"; exit 1; }

"$work/tcprelay" -listen "127.0.0.1:$RELAYPORT" -backend "$PGHOST:$PGPORT" >"$work/tcprelay.log" 2>&1 &
relaypid=$!

# shellcheck source=bench/pgbouncer.sh
. "$here/bench/pgbouncer.sh"
start_pgbouncer 60
[ -n "$bouncer" ] || echo "# pgbouncer not installed (or PGBOUNCER=0): the pgbouncer column is skipped"

# cpu PID prints the process's user + system CPU time in clock ticks.
tck=$(getconf CLK_TCK)
cpu() { if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then awk '{ print $14 + $15 }' "/proc/$1/stat"; else echo 0; fi; }

# bench runs pgbench and prints "tps p50_ms p99_ms cpu_us_per_txn" from its
# log, the last being the CPU the proxy process $8 spent per transaction
# (0 without one).
bench() { # $1 = port, $2 = user, $3 = password, $4 = workload, $5 = mode, $6 = clients, $7 = tag, $8 = proxy pid
  local flags=() threads=$(( $6 < 2 ? 1 : 2 ))
  [ "$4" = select ] && flags+=(-S)
  rm -f "$work/$7".*
  local out c0 c1
  c0=$(cpu "${8:-}")
  out=$(cd "$work" && PGPASSWORD=$3 PGSSLMODE=disable timeout $((DURATION + 60)) pgbench -h 127.0.0.1 -p "$1" -U "$2" -n "${flags[@]}" \
    -M "$5" -c "$6" -j "$threads" -T "$DURATION" -l --log-prefix="$7" "$DB" 2>&1) || true
  c1=$(cpu "${8:-}")
  local tps n
  tps=$(awk '/^tps = / { print $3; exit }' <<<"$out")
  n=$(awk -F': ' '/^number of transactions actually processed/ { print $2; exit }' <<<"$out")
  [ -n "$tps" ] || { echo "FAIL: pgbench $7: $out" >&2; echo "0 0 0 0"; return; }
  cat "$work/$7".* | awk '{ print $3 }' | sort -n | awk -v tps="$tps" -v c="$((c1 - c0))" -v t="$tck" -v n="${n:-0}" '
    { v[NR] = $1 }
    END {
      i = int(NR * 0.5); if (i < 1) i = 1
      j = int(NR * 0.99); if (j < 1) j = 1
      printf "%s %.3f %.3f %.1f\n", tps, v[i] / 1000, v[j] / 1000, (n > 0 ? c / t * 1e6 / n : 0)
    }'
  rm -f "$work/$7".*
}

bouncerpid=""
[ -n "$bouncer" ] && bouncerpid=$(cat "$work/pgbouncer.pid" 2>/dev/null || true)
printf '%-8s %-9s %3s | %-26s | %-26s | %-26s | %-26s | %-8s %-8s %-8s | %-15s | %s\n' workload mode c \
  "direct tps p50 p99 (ms)" "pgbouncer tps p50 p99" "go relay tps p50 p99" "sluice tps p50 p99" \
  "s/direct" "s/bouncr" "s/relay" "s adds p50/p99" "proxy CPU us/txn bouncer/relay/sluice"
for w in $WORKLOADS; do
  for m in $MODES; do
    for c in $CLIENTS_LIST; do
      if [ "$c" -ge "$max_conn" ]; then echo "# skipping $c clients: max_connections is $max_conn"; continue; fi
      read -r dt dp50 dp99 _ < <(bench "$PGPORT" postgres "" "$w" "$m" "$c" direct)
      bt=0 bp50=0 bp99=0 bc=0
      [ -n "$bouncer" ] && read -r bt bp50 bp99 bc < <(bench "$BOUNCERPORT" postgres "" "$w" "$m" "$c" bouncer "$bouncerpid")
      read -r rt rp50 rp99 rc < <(bench "$RELAYPORT" postgres "" "$w" "$m" "$c" relay "$relaypid")
      read -r st sp50 sp99 sc < <(bench "$GWPORT" bench "$token" "$w" "$m" "$c" sluice "$gwpid")
      awk -v w="$w" -v m="$m" -v c="$c" -v dt="$dt" -v dp50="$dp50" -v dp99="$dp99" -v bt="$bt" -v bp50="$bp50" -v bp99="$bp99" \
          -v rt="$rt" -v rp50="$rp50" -v rp99="$rp99" -v st="$st" -v sp50="$sp50" -v sp99="$sp99" -v bc="$bc" -v rc="$rc" -v sc="$sc" 'BEGIN {
        rb = bt > 0 ? sprintf("%.3f", st / bt) : "-"
        printf "%-8s %-9s %3s | %7.0f %8.3f %8.3f | %7.0f %8.3f %8.3f | %7.0f %8.3f %8.3f | %7.0f %8.3f %8.3f | %-8.3f %-8s %-8.3f | %6.3f / %6.3f | %.1f / %.1f / %.1f\n",
          w, m, c, dt, dp50, dp99, bt, bp50, bp99, rt, rp50, rp99, st, sp50, sp99, (dt > 0 ? st / dt : 0), rb, (rt > 0 ? st / rt : 0),
          sp50 - dp50, sp99 - dp99, bc, rc, sc }'
    done
  done
done

if [ "$SCAN" = 1 ]; then
  # The 1 M-row scan: every row of pgbench_accounts (100,000 x SCALE rows),
  # three times, directly and through sluice (masked by policy-matrix).
  rows=$((100000 * SCALE))
  echo "SELECT aid, bid, abalance, filler FROM pgbench_accounts;" > "$work/scan.sql"
  scan() { # $1 = port, $2 = user, $3 = password -> seconds for 3 scans
    local s e
    s=$(date +%s.%N)
    (cd "$work" && PGPASSWORD=$3 PGSSLMODE=disable timeout 600 pgbench -h 127.0.0.1 -p "$1" -U "$2" -n -f scan.sql -c 1 -t 3 "$DB" >/dev/null 2>&1)
    e=$(date +%s.%N)
    awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f", e - s }'
  }
  ds=$(scan "$PGPORT" postgres "")
  ss=$(scan "$GWPORT" bench "$token")
  hwm=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$gwpid/status")
  awk -v r="$rows" -v d="$ds" -v s="$ss" -v h="$hwm" 'BEGIN {
    printf "scan %d rows x3: direct %.0f rows/s, sluice %.0f rows/s, sluice/direct %.3f, sluice peak RSS (VmHWM, whole run) %s MiB\n",
      r, 3 * r / d, 3 * r / s, d / s, h }'
fi
