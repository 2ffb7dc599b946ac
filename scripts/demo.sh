#!/usr/bin/env bash
# `make demo`: the whole product on this machine, no Docker and no Kalshi account needed.
#   scripts/demo.sh start   local TimescaleDB, migrations, simulator, collector, API, an API key,
#                           curl examples; runs until Ctrl-C, then stops everything it started
#   scripts/demo.sh stop    stop what a running demo started (from another shell)
# Environment: KALSHIBOOK_DEMO_DIR (state, default .data/demo), KALSHIBOOK_DEMO_DB (database name,
# default kalshibook), KALSHIBOOK_DEMO_MARKETS (default 200), KALSHIBOOK_DEMO_RATE (frames/s,
# default 1000), DEMO_DETACH=1 (return once ready instead of waiting for Ctrl-C),
# KALSHIBOOK_COLLECTOR_METRICS_PORT (the collector's metrics/health port when it is free, default
# 9108: the one `make status` probes; the banner prints the status command that works).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KB="${KB:-$ROOT/.venv/bin/kalshibook}"
PY="${PY:-$ROOT/.venv/bin/python}"
STATE="${KALSHIBOOK_DEMO_DIR:-$ROOT/.data/demo}"
DB_NAME="${KALSHIBOOK_DEMO_DB:-kalshibook}"
MARKETS="${KALSHIBOOK_DEMO_MARKETS:-200}"
RATE="${KALSHIBOOK_DEMO_RATE:-1000}"
SERVICES=(sim collector api)

# One line on the engine: the edition, and on the Community edition the continuous aggregates and
# policy jobs (with how many ran successfully so far) and whether the job scheduler runs here.
EDITION_SQL="SELECT CASE WHEN current_setting('timescaledb.license') = 'apache'
  THEN 'Apache-2 edition: candles are plain views computed on read (no policies)'
  ELSE 'Community edition: ' || (SELECT count(*) FROM timescaledb_information.continuous_aggregates)
    || ' continuous aggregates (1m -> 1h -> 1d, real-time), '
    || (SELECT count(*) FROM timescaledb_information.jobs
        WHERE proc_name IN ('policy_refresh_continuous_aggregate', 'policy_compression'))
    || ' refresh/compression policies, job scheduler '
    || CASE WHEN EXISTS (SELECT FROM pg_stat_activity
                         WHERE backend_type = 'TimescaleDB Background Worker Scheduler'
                           AND datname = current_database())
            THEN 'running' ELSE 'starting' END
    || ' (kalshibook status shows every run)' END"

say() { printf '\033[1m[demo]\033[0m %s\n' "$*"; }
die() { printf '[demo] error: %s\n' "$*" >&2; exit 1; }

alive() { local f="$STATE/$1.pid"; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

port_free() { "$PY" -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1])))' "$1" 2>/dev/null; }

start_bg() { # name, command... : own process group, output to $STATE/name.log
  local name="$1"; shift
  setsid "$@" >"$STATE/$name.log" 2>&1 < /dev/null &
  echo $! >"$STATE/$name.pid"
}

stop_all() {
  local name pid
  for name in api collector sim; do
    [ -f "$STATE/$name.pid" ] || continue
    pid="$(cat "$STATE/$name.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      say "stopped $name (pid $pid)"
    fi
    rm -f "$STATE/$name.pid"
  done
  if [ -f "$STATE/started_db" ]; then
    rm -f "$STATE/started_db"
    "$ROOT/scripts/db.sh" stop
  fi
}

print_examples() {
  # shellcheck disable=SC1091
  source "$STATE/env"
  cat <<TXT

  kalshibook demo is ready.
    API          $API_URL        (OpenAPI: $API_URL/schema, docs: $API_URL/schema/swagger)
    API key      $API_KEY
    simulator    $SIM_URL  (stands in for Kalshi)
    collector    metrics on http://127.0.0.1:$METRICS_PORT/metrics, logs in $STATE/collector.log
    status       ${STATUS_CMD:-make status}
    database     $DB_URL_REDACTED  (make psql)
    TimescaleDB  $EDITION_LINE

  Try:
TXT
  sed 's/^/    /' "$STATE/examples.sh" | grep -v '^    #!'
  echo
}

cmd_start() {
  mkdir -p "$STATE"
  if alive sim && alive collector && alive api; then
    say "already running (pids $(cat "$STATE"/{sim,collector,api}.pid | tr '\n' ' '))"
    print_examples
  else
    stop_all >/dev/null 2>&1 || true
    local url_file="$ROOT/.data/database_url"
    if ! "$ROOT/scripts/db.sh" status; then touch "$STATE/started_db"; fi
    say "database: local PostgreSQL + TimescaleDB (scripts/db.sh)"
    "$ROOT/scripts/db.sh" start >/dev/null
    local base_url; base_url="$(cat "$url_file")"
    DB_URL="${base_url%/*}/$DB_NAME"
    if ! psql "${base_url%/*}/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname='$DB_NAME'" | grep -q 1; then
      psql "${base_url%/*}/postgres" -qc "CREATE DATABASE \"$DB_NAME\"" >/dev/null
    fi
    export KALSHIBOOK_DATABASE_URL="$DB_URL"
    say "migrating"
    "$KB" migrate >/dev/null
    # the collector and the API run as their own least-privilege logins, never as the superuser
    local svc
    for svc in collector api; do
      local svc_file="$STATE/${svc}_database_url"
      if [ -s "$svc_file" ] && psql "$(cat "$svc_file")" -tAc 'SELECT 1' >/dev/null 2>&1; then
        continue
      fi
      rm -f "$svc_file"
      "$KB" service-user create "$svc" "kb_demo_${svc}_$(date +%s)_$$" --url-file "$svc_file" >/dev/null
    done

    if [ ! -f "$STATE/kalshi_private.pem" ]; then
      say "generating a demo Kalshi API key pair (RSA) for signed requests to the simulator"
      "$PY" - "$STATE" <<'PY'
import os, sys
from pathlib import Path
from kalshibook.kalshi.auth import generate_key_pair
state = Path(sys.argv[1])
private_pem, public_pem = generate_key_pair("rsa")
(state / "kalshi_private.pem").write_bytes(private_pem)
os.chmod(state / "kalshi_private.pem", 0o600)
(state / "kalshi_public.pem").write_bytes(public_pem)
PY
    fi

    say "starting the Kalshi simulator ($MARKETS markets, $RATE frames/s)"
    rm -f "$STATE/sim.addr"
    start_bg sim "$KB" sim --port 0 --ready-file "$STATE/sim.addr" --seed 7 --markets "$MARKETS" \
      --rate "$RATE" --lifetime 600 --public-key "demo=$STATE/kalshi_public.pem"
    for _ in $(seq 1 100); do [ -s "$STATE/sim.addr" ] && break; alive sim || break; sleep 0.1; done
    [ -s "$STATE/sim.addr" ] || { cat "$STATE/sim.log" >&2; stop_all; die "the simulator did not start"; }
    local sim_addr; sim_addr="$(cat "$STATE/sim.addr")"

    # the collector's metrics on the port `make status` probes (KALSHIBOOK_COLLECTOR_METRICS_PORT,
    # default 9108) when it is free; otherwise any free port, and the banner's status command
    # names it
    local metrics_port api_port default_metrics_port
    default_metrics_port="${KALSHIBOOK_COLLECTOR_METRICS_PORT:-9108}"
    if [ "$default_metrics_port" -gt 0 ] 2>/dev/null && port_free "$default_metrics_port"; then
      metrics_port="$default_metrics_port"
    else
      metrics_port="$(free_port)"
    fi
    api_port="${KALSHIBOOK_API_PORT:-8000}"
    port_free "$api_port" || api_port="$(free_port)"

    say "starting the collector (signed WebSocket + REST to the simulator)"
    KALSHIBOOK_KALSHI_REST_URL="http://$sim_addr/trade-api/v2" \
    KALSHIBOOK_KALSHI_WS_URL="ws://$sim_addr/trade-api/ws/v2" \
    KALSHIBOOK_KALSHI_KEY_ID=demo \
    KALSHIBOOK_KALSHI_PRIVATE_KEY_PATH="$STATE/kalshi_private.pem" \
    KALSHIBOOK_COLLECTOR_METRICS_PORT="$metrics_port" \
    KALSHIBOOK_DATA_DIR="$STATE" \
    KALSHIBOOK_DATABASE_URL="$(cat "$STATE/collector_database_url")" \
    KALSHIBOOK_REFUSE_SUPERUSER=true \
      start_bg collector "$KB" collect

    say "starting the API on 127.0.0.1:$api_port"
    KALSHIBOOK_DATA_DIR="$STATE" \
    KALSHIBOOK_DATABASE_URL="$(cat "$STATE/api_database_url")" \
    KALSHIBOOK_REFUSE_SUPERUSER=true \
      start_bg api "$KB" serve --host 127.0.0.1 --port "$api_port"
    local api_url="http://127.0.0.1:$api_port"
    for _ in $(seq 1 150); do
      curl -fsS "$api_url/health" >/dev/null 2>&1 && break
      alive api || break
      sleep 0.2
    done
    curl -fsS "$api_url/health" >/dev/null 2>&1 || { tail -20 "$STATE/api.log" >&2; stop_all; die "the API did not start"; }

    local api_key=""
    if [ -f "$STATE/api_key" ]; then
      api_key="$(cat "$STATE/api_key")"
      local code; code="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $api_key" "$api_url/v1/series?limit=1")"
      if [ "$code" = 401 ] || [ "$code" = 402 ]; then api_key=""; fi
    fi
    if [ -z "$api_key" ]; then
      api_key="$("$KB" keys create --name demo --credits 1000000 | tail -1)"
      printf '%s\n' "$api_key" >"$STATE/api_key"; chmod 600 "$STATE/api_key"
      say "created API key (saved in $STATE/api_key)"
    else
      say "reusing API key from $STATE/api_key"
    fi

    say "waiting for data to arrive"
    local since; since="$(($(date +%s) - 5))"
    local ticker="" waited=0
    while [ -z "$ticker" ]; do
      alive collector || { tail -30 "$STATE/collector.log" >&2; stop_all; die "the collector exited"; }
      ticker="$(curl -fsS -H "Authorization: Bearer $api_key" "$api_url/v1/trades?limit=1&start=$since" 2>/dev/null \
        | "$PY" -c 'import json,sys; d=json.load(sys.stdin)["data"]; print(d[0]["ticker"] if d else "")' 2>/dev/null || true)"
      [ -n "$ticker" ] && break
      waited=$((waited + 1))
      [ "$waited" -ge 120 ] && { stop_all; die "no trades recorded after 120 s (see $STATE/collector.log)"; }
      local stats; stats="$(psql "$DB_URL" -tAc "SELECT (SELECT count(*) FROM market.markets) || ' markets, ' || (SELECT count(*) FROM market.orderbook_deltas) || ' book deltas, ' || (SELECT count(*) FROM market.trades) || ' trades'" 2>/dev/null || echo '…')"
      if [ -t 1 ]; then printf '\r[demo] recorded so far: %s   ' "$stats"
      elif [ $((waited % 5)) -eq 1 ]; then printf '[demo] recorded so far: %s\n' "$stats"; fi
      sleep 1
    done
    printf '\n'

    local edition_line
    edition_line="$(psql "$DB_URL" -tAc "$EDITION_SQL" 2>/dev/null || echo 'edition unknown')"
    local at; at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    # `make status` reads KALSHIBOOK_COLLECTOR_METRICS_PORT and the database of .data/database_url
    local status_cmd="make status"
    if [ "$metrics_port" != 9108 ]; then
      status_cmd="KALSHIBOOK_COLLECTOR_METRICS_PORT=$metrics_port $status_cmd"
    fi
    if [ "$DB_URL" != "$base_url" ]; then
      status_cmd="KALSHIBOOK_DATABASE_URL=\"\$(sed 's,/[^/]*\$,/$DB_NAME,' $url_file)\" $status_cmd"
    fi
    cat >"$STATE/examples.sh" <<EX
#!/usr/bin/env bash
curl -s -H "Authorization: Bearer $api_key" "$api_url/v1/markets?status=open&limit=5"
curl -s -H "Authorization: Bearer $api_key" "$api_url/v1/markets/$ticker/trades?limit=5"
curl -s -H "Authorization: Bearer $api_key" "$api_url/v1/markets/$ticker/candles?interval=1m&fill=true&start=\$(date -u -d '-30 min' +%s)&end=\$(date -u -d '+1 min' +%s)"
curl -s -H "Authorization: Bearer $api_key" "$api_url/v1/markets/$ticker/orderbook?at=\$(date -u +%Y-%m-%dT%H:%M:%SZ)&depth=5"
EX
    chmod +x "$STATE/examples.sh"
    cat >"$STATE/env" <<ENV
API_URL=$api_url
API_KEY=$api_key
SIM_URL=http://$sim_addr
METRICS_PORT=$metrics_port
$(printf 'STATUS_CMD=%q' "$status_cmd")
DB_URL_REDACTED='${DB_URL%%:*}://…@${DB_URL##*@}'
EDITION_LINE='$edition_line'
ENV
    print_examples
  fi

  if [ "${DEMO_DETACH:-0}" = 1 ]; then
    say "running in the background; stop with: make demo-stop"
    return 0
  fi
  # With a terminal, the watch loop runs as its own foreground job (job control), so Ctrl-C
  # reaches only the loop, which stops everything and exits 0: `make` itself never sees the
  # signal and exits 0 too (GNU make dies by SIGINT when it receives one).
  if [ -t 0 ]; then set -m; fi
  rm -f "$STATE/stop_requested"
  watch_services
}

watch_services() (
  trap 'echo; say "stopping"; stop_all; exit 0' INT TERM
  say "running; press Ctrl-C to stop (or run make demo-stop)"
  while true; do
    for name in "${SERVICES[@]}"; do
      if ! alive "$name"; then
        if [ -f "$STATE/stop_requested" ]; then  # `make demo-stop` from another shell
          rm -f "$STATE/stop_requested"
          say "stopped by make demo-stop"
          exit 0
        fi
        say "$name exited unexpectedly; last lines of $STATE/$name.log:"
        tail -20 "$STATE/$name.log" >&2 || true
        stop_all
        exit 1
      fi
    done
    sleep 1
  done
)

cmd_stop() {
  mkdir -p "$STATE"
  touch "$STATE/stop_requested"
  stop_all
  say "stopped"
}

case "${1:-start}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
