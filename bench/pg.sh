#!/usr/bin/env bash
# bench/pg.sh — pgbench through the gateway against a direct connection,
# measured in the same run, alternating rounds so drift on a shared machine
# hits both sides alike. Prints per-round TPS and the gateway/direct ratio.
#
#   bench/pg.sh                      # select-only, 8 clients, 20 s, simple and prepared
#   DURATION=10 ROUNDS=3 MODES="simple" CLIENTS=8 bench/pg.sh
#   POLICY=bench/policy-20.yaml bench/pg.sh  # with a 20-rule CEL policy loaded
#
# Needs the machine's PostgreSQL on 127.0.0.1:5432 (trust auth for user
# postgres) and pgbench. Only loopback addresses are used; every run is
# bounded by DURATION.
set -euo pipefail

DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-2}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
SCALE=${SCALE:-10}
MODES=${MODES:-"simple prepared"}
PGHOST=127.0.0.1
PGPORT=${PGPORT:-5432}
DB=sluice_bench
GWPORT=${GWPORT:-16432}
ADMINPORT=${ADMINPORT:-19090}

here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
cleanup() {
  [ -n "${gwpid:-}" ] && kill "$gwpid" 2>/dev/null && wait "$gwpid" 2>/dev/null
  [ -f "$work/pgbouncer.pid" ] && kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "# building refserver"
(cd "$here" && go build -o "$work/refserver" ./cmd/refserver)

echo "# preparing database $DB (pgbench -i -s $SCALE)"
psql -h $PGHOST -p $PGPORT -U postgres -d postgres -qAt -c "select 1 from pg_database where datname='$DB'" | grep -q 1 \
  || psql -h $PGHOST -p $PGPORT -U postgres -d postgres -qc "create database $DB"
pgbench -h $PGHOST -p $PGPORT -U postgres -i -q -s "$SCALE" "$DB" >/dev/null 2>&1

token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SLUICE_BENCH_TOKEN=$token
policy_block="policy:
  default: allow"
if [ -n "${POLICY:-}" ]; then
  policy_block="policy:
  files: [$(cd "$(dirname "$POLICY")" && pwd)/$(basename "$POLICY")]"
fi
cat > "$work/refserver.yaml" <<YAML
data_dir: $work/data
admin:
  listen: 127.0.0.1:$ADMINPORT
log:
  level: warn
identity:
  tokens:
    - subject: bench
      groups: [bench]
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
$policy_block
recording:
  dir: $work/data/recordings
  fsync: interval
  fsync_interval: 1s
YAML

"$work/refserver" serve --config "$work/refserver.yaml" >"$work/refserver.log" 2>&1 &
gwpid=$!
for _ in $(seq 1 100); do
  if PGPASSWORD=$token psql "host=127.0.0.1 port=$GWPORT dbname=$DB user=bench sslmode=disable" -qAtc "select 1" >/dev/null 2>&1; then
    break
  fi
  sleep 0.1
done
PGPASSWORD=$token psql "host=127.0.0.1 port=$GWPORT dbname=$DB user=bench sslmode=disable" -qAtc "select 1" >/dev/null \
  || { echo "gateway did not come up:"; cat "$work/refserver.log"; exit 1; }

# pgbouncer, when installed, is measured alongside as a peer: a proxy in
# the same data path that does no checking, masking or recording.
BOUNCERPORT=${BOUNCERPORT:-16435}
bouncer=""
if command -v pgbouncer >/dev/null && [ "${PGBOUNCER:-1}" = 1 ]; then
  chmod 755 "$work"
  cat > "$work/pgbouncer.ini" <<INI
[databases]
$DB = host=$PGHOST port=$PGPORT dbname=$DB user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCERPORT
auth_type = any
pool_mode = session
max_client_conn = 200
default_pool_size = 50
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
unix_socket_dir =
INI
  if [ "$(id -u)" = 0 ]; then
    touch "$work/pgbouncer.log"; chown postgres "$work/pgbouncer.ini" "$work/pgbouncer.log" "$work"
    runuser -u postgres -- pgbouncer -d "$work/pgbouncer.ini" && bouncer=1
  else
    pgbouncer -d "$work/pgbouncer.ini" && bouncer=1
  fi
  sleep 0.5
fi

run() { # $1 = port, $2 = mode, $3 = password
  PGPASSWORD=$3 PGSSLMODE=disable pgbench -h 127.0.0.1 -p "$1" -U "${4:-postgres}" -S -n -M "$2" \
    -c "$CLIENTS" -j "$THREADS" -T "$DURATION" "$DB" 2>&1 \
    | awk '/^tps = / { print $3; exit }'
}

echo "# pgbench -S -c $CLIENTS -j $THREADS -T $DURATION, $ROUNDS alternating rounds per mode"
status=0
for mode in $MODES; do
  dsum=0; gsum=0; bsum=0
  for r in $(seq 1 "$ROUNDS"); do
    d=$(run "$PGPORT" "$mode" "")
    g=$(run "$GWPORT" "$mode" "$token" bench)
    b=0
    [ -n "$bouncer" ] && b=$(run "$BOUNCERPORT" "$mode" "")
    echo "mode=$mode round=$r direct_tps=$d gateway_tps=$g${bouncer:+ pgbouncer_tps=$b}"
    dsum=$(awk -v a="$dsum" -v b="$d" 'BEGIN { print a + b }')
    gsum=$(awk -v a="$gsum" -v b="$g" 'BEGIN { print a + b }')
    bsum=$(awk -v a="$bsum" -v b="$b" 'BEGIN { print a + b }')
  done
  ratio=$(awk -v g="$gsum" -v d="$dsum" 'BEGIN { printf "%.3f", g / d }')
  echo "mode=$mode gateway/direct TPS ratio: $ratio"
  if [ -n "$bouncer" ]; then
    awk -v g="$bsum" -v d="$dsum" -v m="$mode" 'BEGIN { printf "mode=%s pgbouncer/direct TPS ratio: %.3f\n", m, g / d }'
    awk -v g="$gsum" -v d="$bsum" -v m="$mode" 'BEGIN { printf "mode=%s gateway/pgbouncer TPS ratio: %.3f\n", m, g / d }'
  fi
done
recs=$(ls "$work/data/recordings" | wc -l)
echo "# recordings written: $recs"
exit $status
