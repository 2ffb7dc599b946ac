"""Candle reads: the endpoint vs one time_bucket GROUP BY over market.trades.

1. creates a scratch database next to ``KALSHIBOOK_DATABASE_URL``'s (``kb_bench_candles``), migrates
   it and loads, by binary COPY, ``--trades`` trades over ``--markets`` markets spread over one year
   (market popularity is Zipf-like, so one market is much busier than the rest), plus half as many
   quotes and a tenth as many market-stats rows; on the Community edition the candle aggregates
   are then refreshed over the whole year (as the policies would have done);
2. for the busiest market, times ``--requests`` requests of each scenario through
   ``GET /v1/markets/{ticker}/candles`` (the real app in-process via Litestar's AsyncTestClient,
   with auth and credit charging on): a 1-day 1m request, a 30-day 1h request, a 1-year 1d request,
   each at a random (seeded) position in the year, with ``fill=true``;
3. times the same ranges computed straight from ``market.trades`` with one
   ``time_bucket … GROUP BY`` (trade OHLC/volume/VWAP only: no quotes, no open interest, no
   assembly, no HTTP), over one direct connection;
4. rewrites the ``<!-- bench:candles -->`` section of BENCHMARKS.md with p50/p99 of both and the
   TimescaleDB edition measured; the scratch database is dropped unless ``--keep``.

    python bench/bench_candles.py --trades 1000000      # modest
    python bench/bench_candles.py                       # 10,000,000 trades over 1,000 markets
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import logging
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from pathlib import Path
from typing import LiteralString

import psycopg
from litestar.testing import AsyncTestClient
from psycopg import sql

from kalshibook.api.app import create_app
from kalshibook.settings import ApiSettings, CoreSettings, Settings
from kalshibook.storage import migrate
from kalshibook.storage.api_keys import create_key
from kalshibook.storage.candles import refresh_candles
from kalshibook.storage.urls import redact, with_database

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench:candles -->", "<!-- /bench:candles -->"
DB_NAME = "kb_bench_candles"
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 365
MS_PER_DAY = 86_400_000

PRICES = [Decimal(i).scaleb(-2) for i in range(0, 101)]
SIZES = [Decimal(i).scaleb(-2) for i in range(100, 50_000, 100)]

COPY_TRADES = (
    "COPY market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, "
    "taker_outcome_side, taker_book_side, is_block_trade, source, received_at) "
    "FROM STDIN (FORMAT BINARY)"
)
TRADE_TYPES = [
    "timestamptz",
    "uuid",
    "text",
    "numeric",
    "numeric",
    "numeric",
    "text",
    "text",
    "bool",
    "text",
    "timestamptz",
]
COPY_QUOTES = (
    "COPY market.quotes (ts, market_ticker, received_at, yes_bid, yes_bid_size, yes_ask, "
    "yes_ask_size) FROM STDIN (FORMAT BINARY)"
)
QUOTE_TYPES = ["timestamptz", "text", "timestamptz", "numeric", "numeric", "numeric", "numeric"]
COPY_STATS = (
    "COPY market.market_stats (ts, market_ticker, received_at, price, volume, open_interest) "
    "FROM STDIN (FORMAT BINARY)"
)
STATS_TYPES = ["timestamptz", "text", "timestamptz", "numeric", "numeric", "numeric"]

RAW_MINUTE: LiteralString = """
SELECT time_bucket(INTERVAL '1 minute', ts) AS b, first(yes_price, ts), max(yes_price),
       min(yes_price), last(yes_price, ts), sum(count), sum(yes_price * count), count(*)
FROM market.trades WHERE market_ticker = %s AND ts >= %s AND ts < %s GROUP BY b ORDER BY b
"""
RAW_HOUR: LiteralString = """
SELECT time_bucket(INTERVAL '1 hour', ts) AS b, first(yes_price, ts), max(yes_price),
       min(yes_price), last(yes_price, ts), sum(count), sum(yes_price * count), count(*)
FROM market.trades WHERE market_ticker = %s AND ts >= %s AND ts < %s GROUP BY b ORDER BY b
"""
RAW_DAY: LiteralString = """
SELECT time_bucket(INTERVAL '1 day', ts, 'America/New_York') AS b, first(yes_price, ts),
       max(yes_price), min(yes_price), last(yes_price, ts), sum(count), sum(yes_price * count),
       count(*)
FROM market.trades WHERE market_ticker = %s AND ts >= %s AND ts < %s GROUP BY b ORDER BY b
"""

# (label, interval, span, raw query)
SCENARIOS: list[tuple[str, str, timedelta, LiteralString]] = [
    ("1 day of 1m candles", "1m", timedelta(days=1), RAW_MINUTE),
    ("30 days of 1h candles", "1h", timedelta(days=30), RAW_HOUR),
    ("1 year of 1d candles", "1d", timedelta(days=DAYS), RAW_DAY),
]


def tickers(markets: int) -> list[str]:
    return [f"KXBENCH-25-M{i:04d}" for i in range(markets)]


def zipf_cum(markets: int) -> list[float]:
    return list(accumulate(1.0 / (i + 1) for i in range(markets)))


def per_day(total: int, rnd: random.Random) -> list[int]:
    """``total`` split over DAYS days (mildly uneven)."""
    weights = [0.5 + rnd.random() for _ in range(DAYS)]
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    counts[-1] += total - sum(counts)
    return counts


def day_events(
    n: int, day: int, cum: list[float], rnd: random.Random
) -> Iterator[tuple[datetime, int]]:
    """``n`` (time, market index) pairs in time order within ``day``."""
    base = YEAR_START + timedelta(days=day)
    offsets = sorted(rnd.randrange(MS_PER_DAY) for _ in range(n))
    total = cum[-1]
    for off in offsets:
        m = bisect.bisect_left(cum, rnd.random() * total)
        yield base + timedelta(milliseconds=off), min(m, len(cum) - 1)


def load(url: str, trades: int, markets: int, seed: int) -> None:
    rnd = random.Random(seed)
    names = tickers(markets)
    cum = zipf_cum(markets)
    price = [rnd.randint(20, 80) for _ in range(markets)]
    oi = [rnd.randint(100, 10_000) for _ in range(markets)]
    volume = [0] * markets
    received = datetime.now(UTC)
    loaded = 0
    with psycopg.connect(url, autocommit=False) as conn:
        for day, (nt, nq, ns) in enumerate(
            zip(
                per_day(trades, rnd),
                per_day(trades // 2, rnd),
                per_day(trades // 10, rnd),
                strict=True,
            )
        ):
            with conn.cursor() as cur:
                with cur.copy(COPY_TRADES) as copy:
                    copy.set_types(TRADE_TYPES)
                    for ts, m in day_events(nt, day, cum, rnd):
                        p = min(99, max(1, price[m] + rnd.choice((-1, 0, 0, 1))))
                        price[m] = p
                        size = rnd.choice(SIZES)
                        volume[m] += int(size)
                        copy.write_row(
                            (
                                ts,
                                uuid.UUID(int=rnd.getrandbits(128)),
                                names[m],
                                PRICES[p],
                                PRICES[100 - p],
                                size,
                                rnd.choice(("yes", "no")),
                                rnd.choice(("bid", "ask")),
                                False,
                                "ws",
                                received,
                            )
                        )
                with cur.copy(COPY_QUOTES) as copy:
                    copy.set_types(QUOTE_TYPES)
                    for ts, m in day_events(nq, day, cum, rnd):
                        p = price[m]
                        bid = PRICES[p - 1] if rnd.random() > 0.02 else None
                        copy.write_row(
                            (
                                ts,
                                names[m],
                                received,
                                bid,
                                rnd.choice(SIZES),
                                PRICES[min(100, p + 1)],
                                rnd.choice(SIZES),
                            )
                        )
                with cur.copy(COPY_STATS) as copy:
                    copy.set_types(STATS_TYPES)
                    for ts, m in day_events(ns, day, cum, rnd):
                        oi[m] = max(0, oi[m] + rnd.randint(-50, 60))
                        copy.write_row(
                            (
                                ts,
                                names[m],
                                received,
                                PRICES[price[m]],
                                Decimal(volume[m]),
                                Decimal(oi[m]),
                            )
                        )
            conn.commit()
            loaded += nt
            if day % 60 == 59:
                print(f"  loaded {day + 1}/{DAYS} days ({loaded:,} trades)", flush=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE market.trades, market.quotes, market.market_stats")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def windows(span: timedelta, n: int, rnd: random.Random) -> list[tuple[datetime, datetime]]:
    last_start = YEAR_START + timedelta(days=DAYS) - span
    out = []
    for _ in range(n):
        if span >= timedelta(days=DAYS):
            start = YEAR_START
        else:
            days = (last_start - YEAR_START).days
            start = YEAR_START + timedelta(days=rnd.randrange(days + 1))
        out.append((start, start + span))
    return out


async def time_endpoint(
    url: str, ticker: str, interval: str, wins: list[tuple[datetime, datetime]]
) -> tuple[list[float], int]:
    settings = Settings(
        core=CoreSettings(database_url=url),
        api=ApiSettings(rate_limit_per_second=1_000_000.0),
    )
    key = create_key(url, name="bench candles", credits=10**9).key
    samples: list[float] = []
    returned = 0
    async with AsyncTestClient(app=create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        path = f"/v1/markets/{ticker}/candles"
        params = {
            "interval": interval,
            "start": wins[0][0].isoformat(),
            "end": wins[0][1].isoformat(),
            "fill": "true",
        }
        await client.get(path, params=params)  # warm-up (pool, plans)
        for start, end in wins:
            params = {
                "interval": interval,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "fill": "true",
            }
            t = time.perf_counter()
            r = await client.get(path, params=params)
            samples.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                raise SystemExit(f"{path} {params}: {r.status_code} {r.text[:300]}")
            returned = len(r.json()["data"])
    return samples, returned


def time_raw(
    url: str, ticker: str, query: LiteralString, wins: list[tuple[datetime, datetime]]
) -> tuple[list[float], int]:
    samples: list[float] = []
    rows = 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(query, (ticker, *wins[0])).fetchall()  # warm-up
        for start, end in wins:
            t = time.perf_counter()
            rows = len(conn.execute(query, (ticker, start, end)).fetchall())
            samples.append((time.perf_counter() - t) * 1000)
    return samples, rows


def server_facts(url: str) -> dict[str, str]:
    with psycopg.connect(url, autocommit=True) as conn:

        def one(q: LiteralString) -> str:
            row = conn.execute(q).fetchone()
            return "" if row is None else str(row[0])

        return {
            "license": one("SELECT current_setting('timescaledb.license')"),
            "tsdb": one("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"),
            "pg": one("SHOW server_version"),
            "size": one("SELECT pg_size_pretty(pg_database_size(current_database()))"),
        }


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trades", type=int, default=10_000_000)
    parser.add_argument("--markets", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=40, help="timed requests per scenario")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="use the scratch database as left by --keep (no reload)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    base = os.environ.get("KALSHIBOOK_DATABASE_URL")
    if not base:
        print("KALSHIBOOK_DATABASE_URL is not set (run make db)", file=sys.stderr)
        return 2
    admin = with_database(base, "postgres")
    url = with_database(base, DB_NAME)
    t_load = 0.0
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
        if exists and not args.reuse:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))
        if not exists or not args.reuse:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
    try:
        if not (exists and args.reuse):
            print(
                f"loading {args.trades:,} trades over {args.markets:,} markets into "
                f"{redact(url)} ...",
                flush=True,
            )
            migrate.upgrade(url)
            t = time.perf_counter()
            load(url, args.trades, args.markets, args.seed)
            t_load = time.perf_counter() - t

            async def refresh() -> list[str]:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
                    return await refresh_candles(
                        c, YEAR_START, YEAR_START + timedelta(days=DAYS + 1)
                    )

            refreshed = asyncio.run(refresh())
            if refreshed:
                print(f"  refreshed {len(refreshed)} continuous aggregates", flush=True)
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT market_ticker, count(*) FROM market.trades GROUP BY 1 ORDER BY 2 DESC "
                "LIMIT 1"
            ).fetchone()
            assert row is not None
            busiest, busiest_n = str(row[0]), int(row[1])
            totals = {
                t: int(conn.execute(q).fetchone()[0])  # type: ignore[index]
                for t, q in (
                    ("trades", "SELECT count(*) FROM market.trades"),
                    ("quotes", "SELECT count(*) FROM market.quotes"),
                    ("market_stats", "SELECT count(*) FROM market.market_stats"),
                )
            }
        facts = server_facts(url)
        rnd = random.Random(args.seed)
        rows = []
        for label, interval, span, raw in SCENARIOS:
            wins = windows(span, args.requests, rnd)
            print(f"timing {label} ...", flush=True)
            api, candles = asyncio.run(time_endpoint(url, busiest, interval, wins))
            direct, groups = time_raw(url, busiest, raw, wins)
            rows.append((label, candles, groups, api, direct))
    finally:
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(DB_NAME)
                    )
                )

    edition = (
        "Community (continuous aggregates, materialised over the whole year)"
        if facts["license"] == "timescale"
        else "Apache-2 (candle relations are plain views, computed on read)"
    )
    load_note = f" Load by binary COPY: {t_load:.0f} s." if t_load else ""
    lines = [
        "## Candles (`bench/bench_candles.py`)",
        "",
        f"TimescaleDB {facts['tsdb']} **{edition}**, PostgreSQL {facts['pg']}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; API in-process "
        "(Litestar AsyncTestClient, auth and credit charging on), database on the same machine.",
        f"Data: {totals['trades']:,} trades over {args.markets:,} markets (Zipf-like popularity) "
        f"across {DAYS} days, {totals['quotes']:,} quotes, {totals['market_stats']:,} market-stats "
        f"rows; database {facts['size']}.{load_note} Busiest market `{busiest}`: "
        f"{busiest_n:,} trades.",
        f"Run: `python bench/bench_candles.py --trades {args.trades} --markets {args.markets} "
        f"--requests {args.requests}` ({datetime.now(UTC):%Y-%m-%d}); {args.requests} timed "
        "requests per row, each at a random position in the year, `fill=true`.",
        "",
        "| request (busiest market) | candles | endpoint p50 ms | endpoint p99 ms "
        "| raw GROUP BY p50 ms | raw GROUP BY p99 ms | buckets with trades |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, candles, groups, api, direct in rows:
        lines.append(
            f"| {label} | {candles:,} | {statistics.median(api):.1f} | {pct(api, 0.99):.1f} "
            f"| {statistics.median(direct):.1f} | {pct(direct, 0.99):.1f} | {groups:,} |"
        )
    lines += [
        "",
        "- *endpoint*: `GET /v1/markets/{ticker}/candles`, the whole request: auth + charge, the "
        "trades/quotes/stats candle relations, three carried-in-state look-ups, assembly "
        "(bid/ask/OI carried, fill), JSON with both kalshibook's and Kalshi's fields.",
        "- *raw GROUP BY*: one `time_bucket` query over `market.trades` for the same range (trade "
        "OHLC, volume, notional, count only), on a direct connection: what computing candles "
        "from the hypertable costs without any candle relation.",
        "- On the Apache edition both read the same raw rows, so the endpoint cannot beat the raw "
        "query there; the Community edition's continuous aggregates read pre-aggregated rows.",
        "- Apache, 1d: the view nests three aggregations (1m, 1h, New York day) per source and "
        "the time-zone bucket defeats chunk exclusion, so every 1d read aggregates the market's "
        "whole history of trades, quotes and stats, and plans over every chunk.",
    ]
    write_section(args.out, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
