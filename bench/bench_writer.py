"""Writer throughput: the Writer vs a minimal raw binary COPY of the same rows.

Rows are a realistic collector mix (orderbook deltas 70%, quotes 15%, trades 10%, market stats 5%),
interleaved as they arrive from the feed. ``--repeat`` alternating runs of each path (best kept) on
a scratch database (created next to ``KALSHIBOOK_DATABASE_URL``'s, migrated, dropped at the end):

- ``Writer``: ``await writer.put(table, row)`` for every row, then ``drain()``: queues, batching,
  one transaction per batch, trades through the staging table + ``ON CONFLICT DO NOTHING``;
- ``Writer, per burst``: the same rows handed over as the collector does, per table per burst
  (``put_table_nowait``, the rest via ``put()``): runs are msgpack-encoded at hand-over;
- ``raw COPY, same batches``: per table, ``COPY … FROM STDIN (FORMAT BINARY)`` of ``batch_rows``
  rows per transaction, straight into the tables (no dedupe), one connection;
- ``raw COPY, one per table``: one COPY and one transaction per table.

Also reported: the producer-side cost of ``put()`` per row (queues only, nothing flushed meanwhile).
Rewrites the ``bench:writer`` section of BENCHMARKS.md.

    python bench/bench_writer.py --rows 500000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import psycopg
from psycopg import sql

from kalshibook.domain.exchange_order import exchange_seq
from kalshibook.settings import CoreSettings, Settings, WriterSettings
from kalshibook.storage.pool import open_pool
from kalshibook.storage.tables import (
    MARKET_STATS,
    ORDERBOOK_DELTAS,
    QUOTES,
    TABLES,
    TRADES,
    DeltaRow,
    MarketStatsRow,
    QuoteRow,
    TradeRow,
)
from kalshibook.storage.writer import Writer

from benchlib import run_in_scratch_database, write_section

ROOT = Path(__file__).resolve().parents[1]
MIX = ((ORDERBOOK_DELTAS.name, 70), (QUOTES.name, 15), (TRADES.name, 10), (MARKET_STATS.name, 5))
BENCH_TABLES = [name for name, _ in MIX]

Mixed = list[tuple[str, tuple[Any, ...]]]


def make_rows(n: int, seed: int = 7) -> Mixed:
    rnd = random.Random(seed)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    tickers = [f"KXBENCH-26DEC31-T{i}" for i in range(400)]
    prices = [Decimal(i).scaleb(-2) for i in range(1, 100)]
    sizes = [Decimal(i).scaleb(-2) for i in range(1, 50_000, 37)]
    names = [name for name, _ in MIX]
    weights = [w for _, w in MIX]
    out: Mixed = []
    for i, table in enumerate(rnd.choices(names, weights, k=n)):
        ts = t0 + timedelta(microseconds=i * 1000)
        ticker = tickers[i % len(tickers)]
        price = prices[i % 99]
        size = sizes[i % len(sizes)]
        row: tuple[Any, ...]
        if table == ORDERBOOK_DELTAS.name:
            side = "yes" if i & 1 else "no"
            row = DeltaRow(ts, ticker, ts, side, price, size if i & 2 else -size, 1, 1 + i % 8, i)
        elif table == QUOTES.name:
            row = QuoteRow(ts, ticker, ts, price, size, prices[98 - i % 99], size)
        elif table == TRADES.name:
            row = TradeRow(
                ts, uuid.UUID(int=rnd.getrandbits(128)), ticker, price, Decimal(1) - price, size,
                "yes", "bid", False, "ws", ts, exchange_seq(ts, 0),
            )  # fmt: skip
        else:
            row = MarketStatsRow(
                ts, ticker, ts, price, price, prices[98 - i % 99], size, size, size,
                Decimal(i), Decimal(i // 2), i * 3, i,
            )  # fmt: skip
        out.append((table, row))
    return out


async def truncate(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for name in BENCH_TABLES:
            await conn.execute(sql.SQL("TRUNCATE market.{}").format(sql.Identifier(name)))
        await conn.execute("CHECKPOINT")


async def count_rows(url: str) -> int:
    total = 0
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for name in BENCH_TABLES:
            cur = await conn.execute(
                sql.SQL("SELECT count(*) FROM market.{}").format(sql.Identifier(name))
            )
            row = await cur.fetchone()
            assert row is not None
            total += int(row[0])
    return total


BURST = 512
"""Rows per hand-over: the collector takes up to 512 buffered frames per burst (``take(512)`` in
``Collector._consume``) and hands their rows to the writer per table (~1.25 rows per frame)."""


async def run_writer(
    settings: Settings, rows: Mixed, bursts: bool = False
) -> tuple[float, dict[str, Any]]:
    async with open_pool(settings, min_size=1, max_size=2) as pool, Writer(settings, pool) as w:
        started = time.perf_counter()
        put = w.put
        if bursts:  # as the collector hands rows over: per table, per burst
            for i in range(0, len(rows), BURST):
                by_table: dict[str, list[Any]] = {}
                for table, row in rows[i : i + BURST]:
                    by_table.setdefault(table, []).append(row)
                for table, part in by_table.items():
                    done = w.put_table_nowait(table, part)
                    for row in part[done:]:
                        await put(table, row)
        else:
            for table, row in rows:
                await put(table, row)
        await w.drain()
        elapsed = time.perf_counter() - started
        s = w.stats()
    waits = sum(t.producer_waits for t in s.tables.values())
    blocked = sum(t.producer_blocked_seconds for t in s.tables.values())
    mean_latency = s.batch_latency.sum / max(s.batch_latency.count, 1)
    return elapsed, {
        "batches": s.batches_written,
        "mean_batch_ms": mean_latency * 1000,
        "producer_waits": waits,
        "blocked_s": blocked,
    }


async def measure_put(settings: Settings, rows: Mixed) -> float:
    """Seconds per put() with the flusher idle (queues big enough, nothing due)."""
    quiet = Settings(
        core=settings.core,
        writer=WriterSettings(batch_rows=len(rows) + 1, queue_rows=len(rows) + 1, batch_age=3600.0),
    )
    async with open_pool(quiet, min_size=1, max_size=1) as pool, Writer(quiet, pool) as w:
        started = time.perf_counter()
        put = w.put
        for table, row in rows:
            await put(table, row)
        per_row = (time.perf_counter() - started) / len(rows)
        await w.drain()
    return per_row


async def run_raw(url: str, rows: Mixed, batch_rows: int | None) -> float:
    by_table: dict[str, list[tuple[Any, ...]]] = {name: [] for name in BENCH_TABLES}
    for table, row in rows:
        by_table[table].append(row)
    copy_sql = {
        name: sql.SQL("COPY market.{} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, TABLES[name].columns))
        )
        for name in BENCH_TABLES
    }
    async with await psycopg.AsyncConnection.connect(url) as conn:
        started = time.perf_counter()
        for name, table_rows in by_table.items():
            types = TABLES[name].pg_types
            step = batch_rows or len(table_rows) or 1
            for i in range(0, len(table_rows), step):
                async with (
                    conn.transaction(),
                    conn.cursor() as cur,
                    cur.copy(copy_sql[name]) as copy,
                ):
                    copy.set_types(types)
                    for row in table_rows[i : i + step]:
                        await copy.write_row(row)
        return time.perf_counter() - started


def server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), "
            "(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')"
        ).fetchone()
    assert row is not None
    return f"PostgreSQL {row[0]}, TimescaleDB {row[1]}"


def fmt_rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}"


async def bench(url: str, n: int, out: Path, repeat: int) -> str:
    base = WriterSettings()
    rows = make_rows(n)
    warm = rows[: min(20_000, n)]
    with TemporaryDirectory() as tmp:
        settings = Settings(
            core=CoreSettings(database_url=url, data_dir=tmp), writer=WriterSettings()
        )
        # warm-up (caches, chunk creation), then the measured runs
        await run_writer(settings, warm)
        await truncate(url)
        await run_raw(url, warm, base.batch_rows)
        await truncate(url)

        raw_batched = raw_single = writer_s = burst_s = float("inf")
        info: dict[str, Any] = {}
        for _ in range(repeat):  # alternate the paths; keep each one's best run (noise)
            t = await run_raw(url, rows, base.batch_rows)
            assert await count_rows(url) == n
            await truncate(url)
            raw_batched = min(raw_batched, t)
            t = await run_raw(url, rows, None)
            assert await count_rows(url) == n
            await truncate(url)
            raw_single = min(raw_single, t)
            t, run_info = await run_writer(settings, rows)
            assert await count_rows(url) == n, "the writer lost rows"
            await truncate(url)
            if t < writer_s:
                writer_s, info = t, run_info
            t, _ = await run_writer(settings, rows, bursts=True)
            assert await count_rows(url) == n, "the writer lost rows"
            await truncate(url)
            burst_s = min(burst_s, t)
        put_cost = await measure_put(settings, rows[: min(n, 200_000)])
        await truncate(url)

    counts = dict.fromkeys(BENCH_TABLES, 0)
    for table, _ in rows:
        counts[table] += 1
    mix = ", ".join(f"{name} {counts[name]:,}" for name in BENCH_TABLES)
    ratio = writer_s / raw_batched
    body = f"""## Writer throughput (`bench/bench_writer.py`)

{n:,} rows ({mix}), interleaved as from the feed; batch_rows={base.batch_rows}, batch_age={base.batch_age} s; best of {repeat} alternating runs per path.
{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} CPUs, Python {platform.python_version()}, psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), {server_version(url)} on the same machine.

| path | seconds | rows/s | time vs raw COPY (same batches) |
|---|---:|---:|---:|
| Writer (`await put()` per row + `drain()`) | {writer_s:.2f} | {fmt_rate(n, writer_s)} | {ratio:.2f}x |
| Writer (`put_table_nowait()` per table per {BURST}-row burst, as the collector) | {burst_s:.2f} | {fmt_rate(n, burst_s)} | {burst_s / raw_batched:.2f}x |
| raw binary COPY, {base.batch_rows}-row transactions | {raw_batched:.2f} | {fmt_rate(n, raw_batched)} | 1.00x |
| raw binary COPY, one per table | {raw_single:.2f} | {fmt_rate(n, raw_single)} | {raw_single / raw_batched:.2f}x |

- Writer (`put()` path): {info["batches"]} batches, mean batch latency {info["mean_batch_ms"]:.1f} ms, producer waited {info["producer_waits"]} times ({info["blocked_s"]:.2f} s in total: backpressure while the database was busy).
- `put()` costs {put_cost * 1e9:,.0f} ns per row on the producer side (queue append; flusher idle).
- Per burst, the rows are msgpack-encoded at hand-over (while still in the CPU cache) and a batch of such runs is sent as those bytes; rows put one by one are encoded when their batch is written.
- The Writer's trades go through the TEMP staging table, a look-up of copies of the staged trades stored at another time (`TRADE_COPY_BOUNDS`: a WS trade without `ts_ms` has whole seconds; the look-ups run only for REST rows and whole-second WS rows) and `INSERT … ON CONFLICT` (dedupe); the raw runs COPY trades straight into the table.
- The Writer runs its transactions in its COPY worker processes (`KALSHIBOOK_WRITER_CONNECTIONS`, default {base.connections}; rows reach them as msgpack over a pipe) and moves a commit mark per batch; the raw runs format and send in this process, one connection.
"""  # noqa: E501
    write_section(out, "writer", body)
    return body


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per path (best kept)")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--database-url", default=os.environ.get("KALSHIBOOK_DATABASE_URL", ""))
    args = parser.parse_args(argv)
    return run_in_scratch_database(
        args.database_url,
        "kb_bench_writer",
        lambda url: print(asyncio.run(bench(url, args.rows, args.out, max(1, args.repeat)))),
    )


if __name__ == "__main__":
    raise SystemExit(main())
