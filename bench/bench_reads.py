"""List endpoints against history size: trades, deltas and settlements pages at 1M and 10M rows.

    python bench/bench_reads.py [--rows 1000000 10000000] [--requests 30]

For each size N, a scratch database on ``KALSHIBOOK_DATABASE_URL``'s server gets (server-side
``INSERT ... SELECT``, seeded): N trades of 1,000 markets over a year (daily chunks) plus one
market with 2,000 trades in the last hour; N deltas of 200 markets over 60 days (6-hour chunks),
each market with a snapshot at its start; N / 100 settlements. Then, through the real app
in-process (Litestar ``AsyncTestClient``, auth on: every request authenticated and charged), each
page is requested ``--requests`` times (after one warm-up) at ``limit`` 1, 10, 100 and 1000:

- ``/v1/markets/{recent}/trades`` (a market whose trades are all in the last hour),
- ``/v1/markets/{old}/trades`` (one of the 1,000 markets, from its first trade),
- ``/v1/trades?series_ticker=NOPE`` and ``/v1/markets/NOPE/trades`` (empty answers),
- ``/v1/markets/{book}/deltas`` (from the market's first delta),
- ``/v1/settlements``.

It reports p50/p99 per size and the ratio of the medians 10M/1M (target <= 1.5: the cost follows
the page, not the history), and rewrites the ``<!-- bench:reads -->`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kalshibook.storage import migrate  # noqa: E402
from kalshibook.storage.urls import with_database  # noqa: E402

BENCH_MD = ROOT / "BENCHMARKS.md"
START, END = "<!-- bench:reads -->", "<!-- /bench:reads -->"
LIMITS = (1, 10, 100, 1000)

SEED = """
SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs
WHERE job_id >= 1000;
INSERT INTO market.series (ticker, raw) VALUES ('S', '{}');
INSERT INTO market.events (event_ticker, series_ticker, raw) VALUES ('S-E', 'S', '{}');
INSERT INTO market.markets (ticker, event_ticker, series_ticker, status, raw)
SELECT 'M-' || k, 'S-E', 'S', 'settled', '{}' FROM generate_series(0, 999) k;
INSERT INTO market.markets (ticker, event_ticker, series_ticker, status, raw)
SELECT 'B-' || k, 'S-E', 'S', 'active', '{}' FROM generate_series(0, 199) k;
INSERT INTO market.markets (ticker, event_ticker, series_ticker, status, raw)
VALUES ('RECENT', 'S-E', 'S', 'active', '{}');
"""
TRADES = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
SELECT now() - INTERVAL '366 days' + (k::float8 / %(n)s) * INTERVAL '365 days', gen_random_uuid(),
       'M-' || (k %% 1000), 0.5, 0.5, 1, 'ws', now()
FROM generate_series(1, %(n)s::bigint) k;
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
SELECT now() - INTERVAL '1 hour' + k * INTERVAL '1 second', gen_random_uuid(), 'RECENT', 0.5,
       0.5, 1, 'ws', now()
FROM generate_series(1, 2000) k;
"""
BOOKS = """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
SELECT now() - INTERVAL '61 days', 'B-' || k, now(), 'snapshot', 1, 1, 0, '[]', '[]'
FROM generate_series(0, 199) k;
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT now() - INTERVAL '61 days' + (k::float8 / %(n)s) * INTERVAL '60 days', 'B-' || (k %% 200),
       now(), 'yes', 0.5, 1, 1, 1, k
FROM generate_series(1, %(n)s::bigint) k;
"""
SETTLEMENTS = """
INSERT INTO market.settlements (market_ticker, event_ticker, series_ticker, result,
                                settlement_value, settled_at, source, confirmed, raw)
SELECT 'X-' || k, 'S-E', 'S', 'yes', 1, now() - k * INTERVAL '1 minute', 'rest', true, '{}'
FROM generate_series(1, %(n)s::bigint) k;
ANALYZE
"""


def default_url() -> str:
    url = os.environ.get("KALSHIBOOK_DATABASE_URL")
    if url:
        return url
    path = ROOT / ".data" / "database_url"
    if path.exists():
        return path.read_text().strip()
    raise SystemExit("no database: set KALSHIBOOK_DATABASE_URL or run `make db`")


def load(server: str, rows: int) -> str:
    name = f"kb_bench_reads_{rows}"
    admin = with_database(server, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server, name)
    migrate.upgrade(url)
    t = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED)
        for script, n in ((TRADES, rows), (BOOKS, rows), (SETTLEMENTS, max(1, rows // 100))):
            for statement in script.split(";\n"):
                if statement.strip():
                    conn.execute(statement, {"n": n} if "%(n)s" in statement else None)
    print(f"loaded {rows:,} rows per table in {time.perf_counter() - t:.0f} s", flush=True)
    return url


def drop(server: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(with_database(server, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


CASES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("recent market trades", "/v1/markets/RECENT/trades", {}),
    ("old market trades", "/v1/markets/M-7/trades", {}),
    ("series NOPE trades", "/v1/trades", {"series_ticker": "NOPE"}),
    ("unknown market trades", "/v1/markets/NOPE/trades", {}),
    ("market deltas", "/v1/markets/B-7/deltas", {}),
    ("settlements", "/v1/settlements", {}),
)


async def measure(url: str, requests: int) -> dict[tuple[str, int], list[float]]:
    from litestar.testing import AsyncTestClient

    from kalshibook.api.app import create_app
    from kalshibook.settings import ApiSettings, CoreSettings, Settings
    from kalshibook.storage.api_keys import create_key

    key = create_key(url, name="bench reads", credits=10**9).key
    settings = Settings(
        core=CoreSettings(database_url=url), api=ApiSettings(rate_limit_per_second=1e9)
    )
    out: dict[tuple[str, int], list[float]] = {}
    async with AsyncTestClient(app=create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        for name, path, params in CASES:
            for limit in LIMITS:
                q = {**params, "limit": str(limit)}
                r = await client.get(path, params=q)
                if r.status_code not in (200, 404):
                    raise SystemExit(f"{path} {q}: {r.status_code} {r.text[:200]}")
                samples = []
                for _ in range(requests):
                    t = time.perf_counter()
                    await client.get(path, params=q)
                    samples.append((time.perf_counter() - t) * 1000)
                out[name, limit] = samples
    return out


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def write_section(text: str) -> None:
    current = BENCH_MD.read_text() if BENCH_MD.exists() else "# kalshibook benchmarks\n"
    section = f"{START}\n{text.rstrip()}\n{END}"
    if START in current and END in current:
        before, rest = current.split(START, 1)
        after = rest.split(END, 1)[1]
        BENCH_MD.write_text(before + section + after)
    else:
        BENCH_MD.write_text(current.rstrip() + "\n\n" + section + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--requests", type=int, default=30)
    p.add_argument("--keep", action="store_true", help="keep the scratch databases")
    p.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = p.parse_args(argv)
    server = default_url()
    results: dict[int, dict[tuple[str, int], list[float]]] = {}
    for rows in args.rows:
        url = load(server, rows)
        try:
            results[rows] = asyncio.run(measure(url, args.requests))
        finally:
            if not args.keep:
                drop(server, url)
    sizes = args.rows
    head = " | ".join(f"{n:,} p50 / p99 ms" for n in sizes)
    lines = [
        "## List endpoints vs history size (`bench/bench_reads.py`)",
        "",
        f"{platform.processor() or platform.machine()}, {datetime.now(UTC):%Y-%m-%d}; in-process "
        f"app (auth and credits on), {args.requests} requests per cell after a warm-up. Rows per "
        "table: trades over a year (1,000 markets + one with 2,000 trades in the last hour), "
        "deltas over 60 days (200 markets), settlements = rows / 100. Target: median "
        f"{sizes[-1]:,} / {sizes[0]:,} <= 1.5.",
        "",
        f"| page | limit | {head} | ratio |",
        "|---|---:|" + "---:|" * len(sizes) + "---:|",
    ]
    for name, _path, _params in CASES:
        for limit in LIMITS:
            cells = []
            for n in sizes:
                s = results[n][name, limit]
                cells.append(f"{statistics.median(s):.1f} / {pct(s, 0.99):.1f}")
            ratio = statistics.median(results[sizes[-1]][name, limit]) / max(
                1e-9, statistics.median(results[sizes[0]][name, limit])
            )
            lines.append(f"| {name} | {limit} | {' | '.join(cells)} | {ratio:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
