#!/usr/bin/env bash
# Run every benchmark in bench/ against KALSHIBOOK_DATABASE_URL; each rewrites its own section of
# BENCHMARKS.md. Sizes can be overridden, e.g. BENCH_ARGS_candles="--trades 10000000".
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
: "${KALSHIBOOK_DATABASE_URL:?KALSHIBOOK_DATABASE_URL is not set (run make db)}"
for bench in bench/bench_*.py; do
  name="$(basename "$bench" .py)"; name="${name#bench_}"
  var="BENCH_ARGS_${name}"
  echo "== $bench ${!var:-}"
  # shellcheck disable=SC2086
  "$PY" "$bench" ${!var:-}
done
echo "BENCHMARKS.md updated"
