#!/usr/bin/env bash
# bench/pg.sh — pgbench through the gateway against a direct connection,
# measured in the same run, alternating rounds so drift on a shared machine
# hits both sides alike. Prints per-round TPS and the gateway/direct ratio.
#
#   bench/pg.sh                      # select-only, 8 clients, 20 s, simple and prepared
#   DURATION=10 ROUNDS=3 MODES="simple" CLIENTS=8 bench/pg.sh
#   POLICY=bench/policy-20.yaml bench/pg.sh  # with a 20-rule CEL policy loaded
#   MODES=rows10k bench/pg.sh        # 10,000-row SELECTs, unmasked and masked
#
# MODES=rows10k (opt-in; may be combined: MODES="simple rows10k") runs a
# custom pgbench script whose transaction is one SELECT of 10,000 rows of
# pgbench_accounts (aid, bid, abalance, filler) at a random offset, measured
# directly, through a gateway without masking (the same refserver the other
# modes use: default allow, or POLICY) and through a second refserver on
# MASKPORT whose policy is bench/policy-mask.yaml (detectors email,
# credit_card, ssn; filler redacted; abalance hashed under a random key
# generated per run). It prints per round and in total the TPS, rows/s and
# the "rows10k unmasked/masked gateway/direct TPS ratio". After the run it
# queries once through the masked gateway and fails unless filler shows
# "[REDACTED]", abalance differs from the backend's value, and the masked
# recordings contain "[REDACTED]".
# rows10k uses ROWS_CLIENTS=2 (and ROWS_THREADS=2) by default, not CLIENTS:
# each transaction is ~1 MB of DataRows and the development machines have 2
# cores, so 2 clients (one per core) keep backend, pgbench and gateway busy.
# With 8 clients of 10,000-row SELECTs the direct figure swung from 287 to
# 499 TPS between consecutive rounds there, and the ratio followed the
# scheduler rather than the gateway. ROWS_CLIENTS=8 gives the saturated run.
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
MASKPORT=${MASKPORT:-16433}
MASKADMINPORT=${MASKADMINPORT:-19091}
ROWS_CLIENTS=${ROWS_CLIENTS:-2}
ROWS_THREADS=${ROWS_THREADS:-2}
ROWS=10000
rows10k=""
other_modes=""
for m in $MODES; do
  if [ "$m" = rows10k ]; then rows10k=1; else other_modes=1; fi
done

here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  [ -n "${gwpid:-}" ] && kill "$gwpid" 2>/dev/null && wait "$gwpid" 2>/dev/null
  [ -n "${maskpid:-}" ] && kill "$maskpid" 2>/dev/null && wait "$maskpid" 2>/dev/null
  [ -f "$work/pgbouncer.pid" ] && kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "# building refserver"
(cd "$here" && go build -o "$work/refserver" ./cmd/refserver)

echo "# preparing database $DB (pgbench -i -s $SCALE)"
psql -h $PGHOST -p "$PGPORT" -U postgres -d postgres -qAt -c "select 1 from pg_database where datname='$DB'" | grep -q 1 \
  || psql -h $PGHOST -p "$PGPORT" -U postgres -d postgres -qc "create database $DB"
pgbench -h $PGHOST -p "$PGPORT" -U postgres -i -q -s "$SCALE" "$DB" >/dev/null 2>&1

token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SLUICE_BENCH_TOKEN=$token
policy_block="policy:
  default: allow"
if [ -n "${POLICY:-}" ]; then
  policy_block="policy:
  files: [$(cd "$(dirname "$POLICY")" && pwd)/$(basename "$POLICY")]"
fi
write_config() { # $1 = file, $2 = data dir, $3 = admin port, $4 = listen port, $5 = policy block, $6 = extra
  cat > "$1" <<YAML
data_dir: $2
admin:
  listen: 127.0.0.1:$3
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
    listen: 127.0.0.1:$4
    address: $PGHOST:$PGPORT
    database: $DB
    sslmode: disable
    tls:
      disable: true
    allow_plaintext_loopback: true
    credential:
      username: postgres
$5
recording:
  dir: $2/recordings
  fsync: interval
  fsync_interval: 1s
$6
YAML
}

wait_up() { # $1 = port, $2 = log; bounded: 100 tries of 0.1 s
  for _ in $(seq 1 100); do
    if PGPASSWORD=$token PGCONNECT_TIMEOUT=2 psql "host=127.0.0.1 port=$1 dbname=$DB user=bench sslmode=disable" -qAtc "select 1" >/dev/null 2>&1; then
      break
    fi
    sleep 0.1
  done
  PGPASSWORD=$token PGCONNECT_TIMEOUT=2 psql "host=127.0.0.1 port=$1 dbname=$DB user=bench sslmode=disable" -qAtc "select 1" >/dev/null \
    || { echo "gateway did not come up:"; cat "$2"; exit 1; }
}

write_config "$work/refserver.yaml" "$work/data" "$ADMINPORT" "$GWPORT" "$policy_block" ""
"$work/refserver" serve --config "$work/refserver.yaml" >"$work/refserver.log" 2>&1 &
gwpid=$!
wait_up "$GWPORT" "$work/refserver.log"

if [ -n "$rows10k" ]; then
  # The second gateway, masking every result. The hash strategy's key: 32
  # random bytes, hex-encoded, new each run, passed by reference.
  SLUICE_BENCH_PSEUDONYM_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  export SLUICE_BENCH_PSEUDONYM_KEY
  write_config "$work/refserver-mask.yaml" "$work/data-mask" "$MASKADMINPORT" "$MASKPORT" "policy:
  files: [$here/bench/policy-mask.yaml]" "masking:
  pseudonym_key: env:SLUICE_BENCH_PSEUDONYM_KEY"
  "$work/refserver" serve --config "$work/refserver-mask.yaml" >"$work/refserver-mask.log" 2>&1 &
  maskpid=$!
  wait_up "$MASKPORT" "$work/refserver-mask.log"
  naccounts=$((100000 * SCALE))
  cat > "$work/rows10k.sql" <<SQL
\\set start random(1, $((naccounts - ROWS + 1)))
SELECT aid, bid, abalance, filler FROM pgbench_accounts WHERE aid BETWEEN :start AND :start + $((ROWS - 1));
SQL
fi

# pgbouncer, when installed, is measured alongside as a peer: a proxy in
# the same data path that does no checking, masking or recording.
BOUNCERPORT=${BOUNCERPORT:-16435}
# shellcheck source=bench/pgbouncer.sh
. "$here/bench/pgbouncer.sh"
start_pgbouncer 50

run() { # $1 = port, $2 = mode, $3 = password
  PGPASSWORD=$3 PGSSLMODE=disable pgbench -h 127.0.0.1 -p "$1" -U "${4:-postgres}" -S -n -M "$2" \
    -c "$CLIENTS" -j "$THREADS" -T "$DURATION" "$DB" 2>&1 \
    | awk '/^tps = / { print $3; exit }'
}

run_rows() { # $1 = port, $2 = password, $3 = user; bounded by DURATION plus a margin
  PGPASSWORD=$2 PGSSLMODE=disable timeout $((DURATION + 60)) pgbench -h 127.0.0.1 -p "$1" -U "$3" -n \
    -f "$work/rows10k.sql" -c "$ROWS_CLIENTS" -j "$ROWS_THREADS" -T "$DURATION" "$DB" 2>&1 \
    | awk '/^tps = / { print $3; exit }'
}

add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a + b }'; }

# rows10k: direct, gateway unmasked, gateway masked, alternating per round;
# then the check that the masked gateway really masks.
rows10k_mode() {
  echo "# rows10k: pgbench -f (SELECT of $ROWS rows) -c $ROWS_CLIENTS -j $ROWS_THREADS -T $DURATION, $ROUNDS alternating rounds"
  local dsum=0 usum=0 msum=0 r d u m
  for r in $(seq 1 "$ROUNDS"); do
    d=$(run_rows "$PGPORT" "" postgres)
    u=$(run_rows "$GWPORT" "$token" bench)
    m=$(run_rows "$MASKPORT" "$token" bench)
    for v in "$d" "$u" "$m"; do
      awk -v v="$v" 'BEGIN { exit !(v + 0 > 0) }' \
        || { echo "FAIL: rows10k round $r: a pgbench run reported no tps (direct='$d' unmasked='$u' masked='$m')"; exit 1; }
    done
    awk -v r="$r" -v d="$d" -v u="$u" -v m="$m" -v n="$ROWS" 'BEGIN {
      printf "mode=rows10k round=%s direct_tps=%s gateway_tps=%s masked_tps=%s\n", r, d, u, m
      printf "mode=rows10k round=%s direct_rows/s=%.0f gateway_rows/s=%.0f masked_rows/s=%.0f\n", r, d * n, u * n, m * n
      printf "mode=rows10k round=%s unmasked ratio=%.3f masked ratio=%.3f\n", r, u / d, m / d }'
    dsum=$(add "$dsum" "$d"); usum=$(add "$usum" "$u"); msum=$(add "$msum" "$m")
  done
  awk -v d="$dsum" -v u="$usum" -v m="$msum" -v n="$ROWS" -v k="$ROUNDS" 'BEGIN {
    printf "mode=rows10k mean direct_rows/s=%.0f gateway_rows/s=%.0f masked_rows/s=%.0f\n", d * n / k, u * n / k, m * n / k
    printf "rows10k unmasked gateway/direct TPS ratio: %.3f\n", u / d
    printf "rows10k masked gateway/direct TPS ratio: %.3f\n", m / d
    printf "rows10k masked/unmasked gateway TPS ratio: %.3f\n", m / u }'
  check_masked
}

check_masked() {
  local q="SELECT aid, abalance, filler FROM pgbench_accounts WHERE aid BETWEEN 1 AND 3 ORDER BY aid"
  local direct masked
  direct=$(PGCONNECT_TIMEOUT=5 timeout 30 psql -h $PGHOST -p "$PGPORT" -U postgres -d "$DB" -qAt -F'|' -c "$q")
  masked=$(PGPASSWORD=$token PGCONNECT_TIMEOUT=5 timeout 30 psql "host=127.0.0.1 port=$MASKPORT dbname=$DB user=bench sslmode=disable" -qAt -F'|' -c "$q") \
    || { echo "FAIL: rows10k: query through the masked gateway failed"; cat "$work/refserver-mask.log"; exit 1; }
  if ! awk -F'|' 'NF != 3 || $3 != "[REDACTED]" { bad = 1 } END { exit bad || NR != 3 }' <<<"$masked"; then
    echo "FAIL: rows10k: filler is not redacted through the masked gateway:"; printf '%s\n' "$masked"; exit 1
  fi
  if [ "$(cut -d'|' -f2 <<<"$masked")" = "$(cut -d'|' -f2 <<<"$direct")" ]; then
    echo "FAIL: rows10k: abalance through the masked gateway equals the backend's (not hashed):"; printf '%s\n' "$masked"; exit 1
  fi
  # The recording is appended as the session goes; give it a bounded moment.
  local found=""
  for _ in $(seq 1 30); do
    if grep -rqF '[REDACTED]' "$work/data-mask/recordings" 2>/dev/null; then found=1; break; fi
    sleep 0.1
  done
  [ -n "$found" ] || { echo "FAIL: rows10k: no [REDACTED] in the masked gateway's recordings"; exit 1; }
  echo "# rows10k masking verified: filler=[REDACTED], abalance hashed ($(cut -d'|' -f2 <<<"$masked" | paste -sd, -) vs $(cut -d'|' -f2 <<<"$direct" | paste -sd, -)), recordings hold [REDACTED]"
}

[ -n "$other_modes" ] && echo "# pgbench -S -c $CLIENTS -j $THREADS -T $DURATION, $ROUNDS alternating rounds per mode"
status=0
for mode in $MODES; do
  if [ "$mode" = rows10k ]; then
    rows10k_mode
    continue
  fi
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
recs=$(find "$work/data/recordings" -mindepth 1 -maxdepth 1 | wc -l)
echo "# recordings written: $recs"
if [ -n "$rows10k" ]; then
  echo "# recordings written by the masked gateway: $(find "$work/data-mask/recordings" -mindepth 1 -maxdepth 1 | wc -l)"
fi
exit $status
