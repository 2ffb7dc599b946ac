"""Export throughput and memory: `kalshibook export` vs PostgreSQL's own COPY of the same rows.

1. creates a scratch database next to ``KALSHIBOOK_DATABASE_URL``'s (``kb_bench_export``),
   migrates it and generates server-side one market's UTC day of ``--deltas`` order-book deltas
   (one snapshot at midnight) and a tenth as many trades;
2. times ``--repeats`` exports of that day's deltas and trades per format (Parquet zstd, gzip CSV;
   in-process ``run_export`` into a fresh directory each time), and in the same run
   ``COPY (SELECT <the export's columns> ... ORDER BY <its order>) TO STDOUT`` of the same rows
   (the floor: the database's own serialisation, no file written), read to the end twice: by
   psycopg (a row at a time, as an application would) and by ``psql -o /dev/null`` (libpq's C
   loop; includes psql's start and connection, a few tens of ms);
3. runs ``kalshibook export`` once per format as a child process and samples its RSS
   (``/proc/<pid>/status`` every 20 ms): the peak, beside the peak of the same command over a day
   with no rows (start-up: imports, connection);
4. rewrites the ``<!-- bench:export -->`` section of BENCHMARKS.md (``--section NAME``: another
   one); the scratch database is dropped unless ``--keep``.

    python bench/bench_export.py                     # 2,000,000 deltas (modest, the default)
    python bench/bench_export.py --deltas 10000000 --section export-10m   # a 10M-delta day
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import LiteralString

import psycopg

from kalshibook.export.files import FORMATS, Format
from kalshibook.export.reads import RAW_ROWS
from kalshibook.export.run import ExportRequest, run_export
from kalshibook.storage import migrate
from kalshibook.storage.urls import redact, with_database

from benchlib import (
    drop_database,
    median_min_max,
    reuse_or_create_database,
    rss_kib,
    write_section,
)

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "kb_bench_export"
TICKER = "BENCH-EXPORT-M1"
DAY = datetime(2026, 2, 2, tzinfo=UTC)
NEXT = datetime(2026, 2, 3, tzinfo=UTC)

LOAD_DELTAS: LiteralString = """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT %(day)s + g * (INTERVAL '86000 seconds' / %(n)s), %(ticker)s,
       %(day)s + g * (INTERVAL '86000 seconds' / %(n)s) + INTERVAL '3 ms',
       CASE WHEN g %% 2 = 0 THEN 'yes' ELSE 'no' END, ((g %% 40) + 30) / 100.0,
       CASE WHEN g %% 3 = 0 THEN -1.5 ELSE 2.25 END, 1, 1, g + 1
FROM generate_series(1, %(n)s) g
"""
LOAD_SNAPSHOT: LiteralString = """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
VALUES (%(day)s, %(ticker)s, %(day)s, 'snapshot', 1, 1, 1,
        '[[0.30, 1000000], [0.50, 1000000]]', '[[0.30, 1000000], [0.45, 1000000]]')
"""
LOAD_TRADES: LiteralString = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count,
                           taker_outcome_side, taker_book_side, source, received_at)
SELECT %(day)s + g * (INTERVAL '86000 seconds' / %(n)s), gen_random_uuid(), %(ticker)s,
       ((g %% 98) + 1) / 100.0, 1 - ((g %% 98) + 1) / 100.0, (g %% 500) / 10.0 + 1, 'yes', 'bid',
       'ws', %(day)s + g * (INTERVAL '86000 seconds' / %(n)s) + INTERVAL '40 ms'
FROM generate_series(1, %(n)s) g
"""


def _copy_statement(url: str, table: str) -> str:
    query = f"COPY ({RAW_ROWS[table].strip()}) TO STDOUT"  # the export's own statement
    params = {"ticker": TICKER, "start": DAY, "end": NEXT}
    with psycopg.connect(url) as conn, psycopg.ClientCursor(conn) as cur:
        return cur.mogrify(query, params)


def copy_rows_per_s(url: str, table: str, rows: int) -> float:
    statement = _copy_statement(url, table)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        t = time.perf_counter()
        with cur.copy(statement.encode()) as copy:
            for _ in copy:
                pass
        return rows / (time.perf_counter() - t)


def psql_copy_rows_per_s(url: str, table: str, rows: int) -> float:
    statement = _copy_statement(url, table)
    argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null", "-c", statement, url]
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return rows / (time.perf_counter() - t)


def export_rows_per_s(url: str, table: str, fmt: Format, rows: int) -> float:
    async def once() -> float:
        with tempfile.TemporaryDirectory(prefix="kb-bench-export-") as out:
            req = ExportRequest(tables=(table,), start=DAY, end=NEXT, fmt=fmt, tickers=(TICKER,))
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                t = time.perf_counter()
                summary = await run_export(conn, req, Path(out))
                elapsed = time.perf_counter() - t
            assert summary.rows == rows, (summary.rows, rows)
            return rows / elapsed

    return asyncio.run(once())


def child_rss(url: str, fmt: str, day: datetime = DAY) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one `kalshibook export` process of the deltas of ``day``."""
    with tempfile.TemporaryDirectory(prefix="kb-bench-export-") as out:
        argv = [sys.executable, "-m", "kalshibook", "export", "--out", out, "--start"]
        end = (day + timedelta(days=1)).date().isoformat()
        argv += [day.date().isoformat(), "--end", end, "--tables", "deltas"]
        argv += ["--market", TICKER, "--format", fmt]
        env = {**os.environ, "KALSHIBOOK_DATABASE_URL": url}
        samples: list[int] = []
        t = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)

        def watch() -> None:
            while proc.poll() is None:
                kib = rss_kib(proc.pid)
                if kib:
                    samples.append(kib)
                time.sleep(0.02)

        thread = threading.Thread(target=watch)
        thread.start()
        code = proc.wait()
        thread.join()
        elapsed = time.perf_counter() - t
        if code != 0:
            raise RuntimeError(f"kalshibook export exited {code}")
    return elapsed, (max(samples) if samples else 0) / 1024


LABELS = {
    "psycopg": "COPY … TO STDOUT (text), psycopg",
    "psql": "COPY … TO STDOUT (text), psql",
    "parquet": "Parquet (zstd)",
    "csv": "gzip CSV",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--deltas", type=int, default=2_000_000, help="deltas in the day (2M)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per format (3)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", action="store_true", help="reuse a --keep database as is")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--database", default=DB_NAME, help=f"scratch database ({DB_NAME})")
    parser.add_argument(
        "--section", default="export", help="BENCHMARKS.md section to rewrite (export)"
    )
    args = parser.parse_args(argv)
    base = os.environ.get("KALSHIBOOK_DATABASE_URL")
    if not base:
        print("KALSHIBOOK_DATABASE_URL is not set (run make db)", file=sys.stderr)
        return 2
    db_name: str = args.database
    url = with_database(base, db_name)
    n_trades = max(1, args.deltas // 10)
    reused = reuse_or_create_database(base, db_name, args.reuse)
    try:
        if not reused:
            print(f"loading {args.deltas:,} deltas into {redact(url)} ...", flush=True)
            migrate.upgrade(url)
            with psycopg.connect(url, autocommit=True) as conn:
                p = {"day": DAY, "ticker": TICKER, "n": args.deltas}
                conn.execute(LOAD_SNAPSHOT, p)
                conn.execute(LOAD_DELTAS, p)
                conn.execute(LOAD_TRADES, {**p, "n": n_trades})
                conn.execute("SELECT market.rebuild_delta_extents()")  # loaded by SQL (0009)
                conn.execute("ANALYZE")
        results: list[tuple[str, ...]] = []
        for table, rows in (("deltas", args.deltas), ("trades", n_trades)):
            runs: dict[str, list[float]] = {"psycopg": [], "psql": [], "parquet": [], "csv": []}
            for _ in range(args.repeats):  # interleaved: the machine's load hits all alike
                runs["psycopg"].append(copy_rows_per_s(url, table, rows))
                runs["psql"].append(psql_copy_rows_per_s(url, table, rows))
                for fmt in FORMATS:
                    runs[fmt].append(export_rows_per_s(url, table, fmt, rows))
            floor = {k: statistics.median(runs[k]) for k in ("psycopg", "psql")}
            for key, label in LABELS.items():
                ratios = [
                    statistics.median([x / y for x, y in zip(runs[key], runs[b], strict=True)])
                    for b in floor
                ]  # each repeat against the COPY of the same round, then the median
                results.append(
                    (
                        table,
                        f"{rows:,}",
                        label,
                        median_min_max(runs[key]),
                        f"{statistics.median(runs[key]) / floor['psycopg']:.2f} ({ratios[0]:.2f})",
                        f"{statistics.median(runs[key]) / floor['psql']:.2f} ({ratios[1]:.2f})",
                    )
                )
            print(results[-4:], flush=True)
        empty_day = DAY - timedelta(days=30)
        rss = {fmt: (child_rss(url, fmt, empty_day), child_rss(url, fmt)) for fmt in FORMATS}
        load = os.getloadavg()
    finally:
        if not args.keep:
            drop_database(base, db_name)
    lines = [
        f"## Bulk exports, {args.deltas:,} deltas (`bench/bench_export.py`)",
        "",
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        "database on the same machine. "
        f"Run: `python bench/bench_export.py --deltas {args.deltas} --repeats {args.repeats}` "
        f"({datetime.now(UTC):%Y-%m-%d}; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}).",
        "",
        "| table (one market, one UTC day) | rows | reader / writer | rows/s median (min–max) "
        "| vs COPY by psycopg | vs COPY by psql |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for row in results:
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "| `kalshibook export --tables deltas` | seconds | peak RSS MiB |",
        "|---|---:|---:|",
    ]
    for name, ((_, startup), (secs, peak)) in rss.items():
        lines.append(f"| {name}, a day with no rows (start-up) | – | {startup:.0f} |")
        lines.append(f"| {name}, {args.deltas:,} deltas | {secs:.1f} | {peak:.0f} |")
    lines += [
        "",
        "- *COPY*: `COPY (<the export's SELECT>) TO STDOUT` of the same rows in the same order, no "
        "file written, read to the end by psycopg (a Python loop over rows) and by `psql -o "
        "/dev/null` (libpq's C loop; the time includes psql's start and connection). *Parquet / "
        "gzip CSV*: `run_export` in-process into a fresh directory (day fingerprint, COPY … "
        "(FORMAT csv) read in 8 MiB blocks of whole rows, parsed by pyarrow into exact decimals "
        "in a worker thread while the next block is read, written and checksummed). Runs "
        "interleaved; ratios: medians over medians, in brackets the median of the per-round "
        "ratios.",
        "- RSS: a child `kalshibook export` process sampled every 20 ms. Memory is bounded by a "
        "few blocks (one being read, one being parsed, one being written), so the peak does not "
        "grow with the day's size (compare `--deltas` sizes).",
    ]
    write_section(args.out, args.section, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
