# bench/pgbouncer.sh — sourced by the bench scripts: start_pgbouncer runs
# Debian's pgbouncer in session mode on 127.0.0.1:$BOUNCERPORT in front of
# $PGHOST:$PGPORT/$DB, with its files in $work (the caller's cleanup stops
# it through $work/pgbouncer.pid), and sets bouncer=1 when it runs. Without
# pgbouncer installed, or with PGBOUNCER=0, it does nothing.
# $1 is default_pool_size.
start_pgbouncer() {
  bouncer=""
  command -v pgbouncer >/dev/null && [ "${PGBOUNCER:-1}" = 1 ] || return 0
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
default_pool_size = $1
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
}
