#!/usr/bin/env bash
# Local PostgreSQL 15 + TimescaleDB cluster for development, tests and the demo (no Docker needed).
#   scripts/db.sh start   install if needed, init if needed, start, print the URL
#   scripts/db.sh stop    stop the cluster
#   scripts/db.sh url     print the URL of a running cluster
#   scripts/db.sh status  exit 0 when the cluster is running
#   scripts/db.sh edition print the edition the cluster runs (community or apache)
#   scripts/db.sh dir     print the cluster's data directory
# The cluster lives in $KALSHIBOOK_DATA_DIR/pg (default .data/pg) and listens on 127.0.0.1.
#
# KALSHIBOOK_DB_EDITION=apache gives a second cluster (.data/pg-apache, URL in
# .data/database_url_apache) running the same build as the Apache-2 edition
# (timescaledb.license = apache): the fallback path the tests also cover. Without it the cluster
# runs the best edition installed (Community when scripts/install_timescaledb.sh built it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_ROOT="${KALSHIBOOK_DATA_DIR:-$ROOT/.data}"
WANT_EDITION="${KALSHIBOOK_DB_EDITION:-}"
case "$WANT_EDITION" in
  ""|community) SUFFIX="" ;;
  apache) SUFFIX="-apache" ;;
  *) echo "KALSHIBOOK_DB_EDITION must be community or apache, not '$WANT_EDITION'" >&2; exit 2 ;;
esac
URL_FILE="$DATA_ROOT/database_url${SUFFIX//-/_}"
PGDATA="$DATA_ROOT/pg$SUFFIX"
# Run as root with the project somewhere the postgres user cannot reach (e.g. under /root):
# keep the cluster in postgres's home instead, one per project directory.
if [ "$(id -u)" -eq 0 ] && ! (cd / && runuser -u postgres -- test -x "$(dirname "$DATA_ROOT")") 2>/dev/null; then
  PGDATA="/var/lib/postgresql/kalshibook-$(printf '%s' "$DATA_ROOT" | md5sum | cut -c1-12)/pg$SUFFIX"
fi
PG_MAJOR="${PG_MAJOR:-15}"
BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"

log() { printf '[db] %s\n' "$*" >&2; }

as_owner() {
  # postgres refuses to run as root: run the server as the 'postgres' OS user in that case.
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

free_port() {
  python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

installed_edition() {
  local lib; lib="$("$BIN/pg_config" --pkglibdir)"
  if ls "$lib"/timescaledb-tsl-*.so >/dev/null 2>&1; then echo community; else echo apache; fi
}

# The edition-dependent settings live in their own file, rewritten at every start (a cluster made
# before a Community build picks it up on its next start).
write_edition_conf() {
  local edition="$1" conf
  if [ "$edition" = community ]; then
    conf="timescaledb.license = 'timescale'
# job scheduler for continuous-aggregate refresh, compression and retention policies
timescaledb.max_background_workers = 16
max_worker_processes = 24"
  else
    conf="timescaledb.license = 'apache'
# no job scheduler: the Apache edition has no policies
timescaledb.max_background_workers = 0"
  fi
  local new="$PGDATA/kalshibook_edition.conf.new"
  printf '# written by scripts/db.sh: %s edition\n%s\n' "$edition" "$conf" | as_owner tee "$new" >/dev/null
  if ! cmp -s "$new" "$PGDATA/kalshibook_edition.conf" 2>/dev/null; then
    as_owner mv "$new" "$PGDATA/kalshibook_edition.conf"
    return 0  # changed
  fi
  as_owner rm -f "$new"
  return 1
}

cluster_edition() {
  local e="$WANT_EDITION"
  if [ -z "$e" ]; then e="$(installed_edition)"; fi
  if [ "$e" = community ] && [ "$(installed_edition)" != community ]; then
    echo "the Community edition is not installed (run scripts/install_timescaledb.sh with KALSHIBOOK_TSDB_TARBALL)" >&2
    exit 2
  fi
  echo "$e"
}

is_running() { [ -f "$PGDATA/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }

cmd_start() {
  "$ROOT/scripts/install_timescaledb.sh"
  mkdir -p "$DATA_ROOT"
  # One start of a cluster at a time (the test suite's workers may all start the same cluster on a
  # fresh clone: two initdb runs, or two servers, in one directory). The lock is held on
  # descriptor 9 until this script exits; the server is started with 9 closed (`9>&-`), or the
  # postmaster would inherit the lock and hold it for its whole life, blocking every later start.
  exec 9>"$DATA_ROOT/.db-start${SUFFIX}.lock"
  flock 9
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$DATA_ROOT"
    mkdir -p "$(dirname "$PGDATA")" && chown postgres: "$(dirname "$PGDATA")"
  fi
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    local pw port
    pw="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    port="$(free_port)"
    log "initialising cluster in $PGDATA (port $port)"
    local pwfile; pwfile="$(mktemp)"; printf '%s\n' "$pw" >"$pwfile"
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$pwfile"; fi
    as_owner "$BIN/initdb" -D "$PGDATA" -U postgres --pwfile="$pwfile" -A scram-sha-256 \
      --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    as_owner tee -a "$PGDATA/postgresql.conf" >/dev/null <<CONF
# kalshibook local cluster
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PGDATA'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
include_if_exists = 'kalshibook_edition.conf'
max_connections = 300
shared_buffers = 512MB
max_locks_per_transaction = 256
logging_collector = off
CONF
    (umask 077 && printf 'postgresql://postgres:%s@127.0.0.1:%s/kalshibook\n' "$pw" "$port" >"$URL_FILE")
  fi
  chmod 600 "$URL_FILE"  # the superuser's password: the operator's eyes only
  local edition; edition="$(cluster_edition)"
  if write_edition_conf "$edition" && is_running; then
    log "edition settings changed ($edition): restarting PostgreSQL"
    as_owner "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
  fi
  if ! is_running; then
    log "starting PostgreSQL"
    as_owner "$BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start >/dev/null 9>&-
  fi
  local url; url="$(cat "$URL_FILE")"
  local admin="${url%/kalshibook}/postgres"
  if ! psql "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname='kalshibook'" | grep -q 1; then
    psql "$admin" -qc "CREATE DATABASE kalshibook" >/dev/null
  fi
  # the log line (on the terminal, e.g. under `make demo`) never shows the superuser's password;
  # stdout keeps the whole URL for scripts (tests/conftest.py reads its last line)
  local shown; shown="$(printf '%s' "$url" | sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#')"
  log "ready: $shown (TimescaleDB $edition edition; the URL with the password is in $URL_FILE, mode 0600)"
  echo "$url"
}

cmd_stop() {
  if is_running; then
    as_owner "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    log "stopped"
  else
    log "not running"
  fi
}

cmd_url() { cat "$URL_FILE"; }

cmd_edition() { sed -n "s/^# written by scripts\/db.sh: \(.*\) edition$/\1/p" "$PGDATA/kalshibook_edition.conf"; }

case "${1:-start}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  url) cmd_url ;;
  status) is_running ;;
  edition) cmd_edition ;;
  dir) echo "$PGDATA" ;;
  *) echo "usage: $0 start|stop|url|status|edition|dir" >&2; exit 2 ;;
esac
