"""Export throughput and memory: `kalshibook export` vs PostgreSQL's own COPY of the same rows.

1. creates a scratch database next to ``KALSHIBOOK_DATABASE_URL``'s (``kb_bench_export``),
   migrates it and generates server-side one market's UTC day of ``--deltas`` order-book deltas
   (one snapshot at midnight) and a tenth as many trades;
2. times ``--repeats`` exports of that day's deltas and trades per format (Parquet zstd, gzip CSV;
   in-process ``run_export`` into a fresh directory each time), and in the same run
   ``COPY (SELECT <the export's columns> ... ORDER BY <its order>) TO STDOUT`` of the same rows read
   to the end by psycopg (the floor: the database's own serialisation, no file written);
3. runs ``kalshibook export`` once per format as a child process and samples its RSS
   (``/proc/<pid>/status`` every 20 ms): the peak beside the RSS right after start-up;
4. rewrites the ``<!-- bench:export -->`` section of BENCHMARKS.md; the scratch database is
   dropped unless ``--keep``.

    python bench/bench_export.py                     # 2,000,000 deltas (modest, the default)
    python bench/bench_export.py --deltas 10000000   # the issue's 10M-delta day
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
from datetime import UTC, datetime
from pathlib import Path
from typing import LiteralString

import psycopg
from psycopg import sql

from kalshibook.export.files import FORMATS, Format
from kalshibook.export.reads import RAW_ROWS
from kalshibook.export.run import ExportRequest, run_export
from kalshibook.storage import migrate
from kalshibook.storage.urls import redact, with_database

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench:export -->", "<!-- /bench:export -->"
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


def copy_rows_per_s(url: str, table: str, rows: int) -> float:
    query = f"COPY ({RAW_ROWS[table].strip()}) TO STDOUT"  # the export's own statement
    params = {"ticker": TICKER, "start": DAY, "end": NEXT}
    with psycopg.connect(url) as conn, psycopg.ClientCursor(conn) as cur:
        t = time.perf_counter()
        with cur.copy(cur.mogrify(query, params)) as copy:
            for _ in copy:
                pass
        return rows / (time.perf_counter() - t)


def export_rows_per_s(url: str, table: str, fmt: Format, rows: int) -> float:
    async def once() -> float:
        with tempfile.TemporaryDirectory(prefix="kb-bench-export-") as out:
            req = ExportRequest(tables=(table,), start=DAY, end=NEXT, fmt=fmt, tickers=(TICKER,))
            async with await psycopg.AsyncConnection.connect(url) as conn:
                t = time.perf_counter()
                summary = await run_export(conn, req, Path(out))
                elapsed = time.perf_counter() - t
            assert summary.rows == rows, (summary.rows, rows)
            return rows / elapsed

    return asyncio.run(once())


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def child_rss(url: str, fmt: str) -> tuple[float, float, float]:
    """(seconds, RSS after start-up MiB, peak RSS MiB) of one `kalshibook export` process."""
    with tempfile.TemporaryDirectory(prefix="kb-bench-export-") as out:
        argv = [sys.executable, "-m", "kalshibook", "export", "--out", out, "--start"]
        argv += [DAY.date().isoformat(), "--end", NEXT.date().isoformat(), "--tables", "deltas"]
        argv += ["--market", TICKER, "--format", fmt]
        env = {**os.environ, "KALSHIBOOK_DATABASE_URL": url}
        samples: list[int] = []
        t = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)

        def watch() -> None:
            while proc.poll() is None:
                kib = _rss_kib(proc.pid)
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
    # the first second is start-up (imports, connection); the peak is over the whole run
    startup = max(samples[: min(len(samples), 50)]) if samples else 0
    return elapsed, startup / 1024, (max(samples) if samples else 0) / 1024


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# kalshibook benchmarks\n"
    block = f"{BEGIN}\n{section.rstrip()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def _spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):,.0f} ({min(xs):,.0f}–{max(xs):,.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--deltas", type=int, default=2_000_000, help="deltas in the day (2M)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per format (3)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", action="store_true", help="reuse a --keep database as is")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    base = os.environ.get("KALSHIBOOK_DATABASE_URL")
    if not base:
        print("KALSHIBOOK_DATABASE_URL is not set (run make db)", file=sys.stderr)
        return 2
    admin, url = with_database(base, "postgres"), with_database(base, DB_NAME)
    n_trades = max(1, args.deltas // 10)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
        if exists and not args.reuse:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))
        if not (exists and args.reuse):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
    try:
        if not (exists and args.reuse):
            print(f"loading {args.deltas:,} deltas into {redact(url)} ...", flush=True)
            migrate.upgrade(url)
            with psycopg.connect(url, autocommit=True) as conn:
                p = {"day": DAY, "ticker": TICKER, "n": args.deltas}
                conn.execute(LOAD_SNAPSHOT, p)
                conn.execute(LOAD_DELTAS, p)
                conn.execute(LOAD_TRADES, {**p, "n": n_trades})
                conn.execute("ANALYZE")
        results: list[tuple[str, int, str, str, float]] = []
        for table, rows in (("deltas", args.deltas), ("trades", n_trades)):
            copy_runs: list[float] = []
            runs: dict[Format, list[float]] = {"parquet": [], "csv": []}
            for _ in range(args.repeats):  # interleaved: the machine's load hits all alike
                copy_runs.append(copy_rows_per_s(url, table, rows))
                for fmt in FORMATS:
                    runs[fmt].append(export_rows_per_s(url, table, fmt, rows))
            base_rate = statistics.median(copy_runs)
            results.append((table, rows, "COPY … TO STDOUT (text)", _spread(copy_runs), 1.0))
            for fmt, label in (("parquet", "Parquet (zstd)"), ("csv", "gzip CSV")):
                ratio = statistics.median(runs[fmt]) / base_rate
                results.append((table, rows, label, _spread(runs[fmt]), ratio))
            print(results[-3:], flush=True)
        rss = {fmt: child_rss(url, fmt) for fmt in ("parquet", "csv")}
    finally:
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(DB_NAME)
                    )
                )
    lines = [
        "## Bulk exports (`bench/bench_export.py`)",
        "",
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        "database on the same machine. "
        f"Run: `python bench/bench_export.py --deltas {args.deltas} --repeats {args.repeats}` "
        f"({datetime.now(UTC):%Y-%m-%d}); for the 10M-delta day: `--deltas 10000000`.",
        "",
        "| table (one market, one UTC day) | rows | writer | rows/s median (min–max) | vs COPY |",
        "|---|---:|---|---:|---:|",
    ]
    for table, rows, label, spread, ratio in results:
        lines.append(f"| {table} | {rows:,} | {label} | {spread} | {ratio:.2f} |")
    lines += [
        "",
        "| `kalshibook export --tables deltas` | seconds | RSS after start-up MiB | peak RSS MiB |",
        "|---|---:|---:|---:|",
    ]
    for name, (secs, startup, peak) in rss.items():
        lines.append(
            f"| {name}, {args.deltas:,} deltas | {secs:.1f} | {startup:.0f} | {peak:.0f} |"
        )
    lines += [
        "",
        "- *COPY*: `COPY (<the export's SELECT>) TO STDOUT` read to the end by psycopg, the same "
        "rows in the same order, no file written. *Parquet / gzip CSV*: `run_export` in-process "
        "(COPY … (FORMAT csv) parsed by pyarrow in 4 MiB blocks into exact decimals, written "
        "and checksummed). Runs interleaved, medians of the repeats.",
        "- RSS: a child `kalshibook export` process sampled every 20 ms; memory is bounded by one "
        "batch, so the peak does not grow with the day's size (compare `--deltas` sizes).",
    ]
    write_section(args.out, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
