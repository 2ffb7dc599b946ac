#!/usr/bin/env bash
# Run every benchmark in bench/ against KALSHIBOOK_DATABASE_URL; each rewrites its own section of
# BENCHMARKS.md. Sizes can be overridden, e.g. BENCH_ARGS_candles="--trades 10000000".
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
: "${KALSHIBOOK_DATABASE_URL:?KALSHIBOOK_DATABASE_URL is not set (run make db)}"
# bench_api drives the API with wrk (its httpx fallback is a slower load generator than the
# servers it measures): install it where Debian's packages are reachable.
if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null 2>&1 \
    || echo "wrk not installed: bench_api falls back to its httpx load generator"
fi
# bench_reads also serves its largest size from a streaming replica (a private primary + standby)
: "${BENCH_ARGS_reads:=--replica}"
for bench in bench/bench_*.py; do
  name="$(basename "$bench" .py)"; name="${name#bench_}"
  var="BENCH_ARGS_${name}"
  echo "== $bench ${!var:-}"
  # shellcheck disable=SC2086
  "$PY" "$bench" ${!var:-}
done
# the candles again on a year ending today: the recent, uncompressed ranges (candles-recent)
echo "== bench/bench_candles.py --recent ${BENCH_ARGS_candles:-}"
# shellcheck disable=SC2086
"$PY" bench/bench_candles.py --recent ${BENCH_ARGS_candles:-}
echo "BENCHMARKS.md updated"
