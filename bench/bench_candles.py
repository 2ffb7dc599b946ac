"""Candle reads: the endpoint vs one time_bucket GROUP BY over market.trades.

1. prepares a scratch database next to ``KALSHIBOOK_DATABASE_URL``'s (``kb_bench_candles``):
   migrates it and generates server-side (``INSERT ... SELECT``, seeded) ``--trades`` trades over
   ``--markets`` markets spread over one year (market popularity is Zipf-like, so one market is
   much busier than the rest), plus half as many quotes and a tenth as many market-stats rows; on
   the Community edition the candle aggregates are then refreshed over the whole year and the
   compression policies run once (the state the policies would have reached), with the
   database's policy jobs paused meanwhile. Each phase (load, refresh, compress) is recorded in
   the database: ``--reuse`` resumes an interrupted preparation and measures a kept database
   again, ``--prepare-only`` stops after preparing (10M trades: ~5 + 9 + 2 minutes on 2 CPUs);
2. for the busiest market, times ``--requests`` requests of each scenario through
   ``GET /v1/markets/{ticker}/candles`` (``kalshibook serve`` in its own process, one client over
   a keep-alive connection, auth and credit charging on): a 1-day 1m request, a 30-day 1h
   request, a 1-year 1d request, each at a random (seeded) position in the year (cold), then the
   first range again as many
   times (warm), with ``fill=true``; beside each cold request, a body of its size from a
   minimal Litestar route (``bench/constant_app.py``: HTTP alone) and the handler's parts (read,
   assembly, formatting, JSON) at the same position; then the handler's own work on one
   connection, cold and warm likewise; all of it ``--repeat`` times;
3. times the same ranges computed straight from ``market.trades`` with one
   ``time_bucket ... GROUP BY`` (trade OHLC/volume/VWAP only: no quotes, no open interest, no
   assembly, no HTTP), over one direct connection without JIT, for at most about ``RAW_BUDGET_S``
   per scenario;
4. rewrites the ``<!-- bench:candles -->`` section of BENCHMARKS.md (``bench:candles-apache`` on
   the Apache-2 edition) with both; the scratch database is dropped unless ``--keep``.

    python bench/bench_candles.py --trades 1000000      # modest
    python bench/bench_candles.py --keep                # 10,000,000 trades over 1,000 markets
    python bench/bench_candles.py --reuse --keep        # measure the kept database again
    python bench/bench_candles.py --recent --keep       # the year ending today: recent ranges

``--recent`` anchors the year at today, so the compression policies leave its last weeks
uncompressed as in production, and reads the ranges there (the candles-recent section).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import itertools
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, LiteralString
from urllib.parse import urlencode

import msgspec
import psycopg

from kalshibook.api.app import POOL_MIN_SIZE, connection_options
from kalshibook.api.routes.candles import candles_out
from kalshibook.api.schemas import CandleOut, CandlePage
from kalshibook.domain.periods import Interval, period_floor
from kalshibook.gctune import tune_gc
from kalshibook.settings import ApiSettings, StorageSettings
from kalshibook.storage import migrate
from kalshibook.storage.api_keys import create_key
from kalshibook.storage.candles import (
    CANDLE_CHAIN,
    DB_NOW,
    REFRESH,
    fetch_candle_data,
    read_candle_rows,
    refresh_window,
)
from kalshibook.storage.urls import redact, with_database

from benchlib import (
    drop_database,
    free_port,
    http_get,
    pct_round,
    reuse_or_create_database,
    stop_process,
    write_section,
)
from constant_app import ConstantServer

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "kb_bench_candles"
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 365
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
SCENARIOS: list[tuple[str, Interval, timedelta, LiteralString]] = [
    ("1 day of 1m candles", "1m", timedelta(days=1), RAW_MINUTE),
    ("30 days of 1h candles", "1h", timedelta(days=30), RAW_HOUR),
    ("1 year of 1d candles", "1d", timedelta(days=DAYS), RAW_DAY),
]


def tickers(markets: int) -> list[str]:
    return [f"KXBENCH-25-M{i:04d}" for i in range(markets)]


# Server-side generation (one INSERT ... SELECT per table and day, rows in time order as the
# collector writes them): a year of 10M trades loads in minutes instead of the better part of an
# hour of Python row building. Market popularity is Zipf-like: index = floor((N+1)^u) - 1 for a
# uniform u gives P(index <= k) ~ ln(k+2)/ln(N+1) (the busiest market gets ~10 % of the rows).
# Prices wander per market and day on the cent grid; random() is seeded per day (setseed), so a
# given --seed loads the same rows every time. Numbers have the scales the collector stores from
# Kalshi's strings ("0.5600" dollars, "12.00" counts): a bare ``p / 100.0`` has 20 decimal
# places, which made every number the reads return five times longer than real data's.
_EVENTS = """
SELECT %(day_start)s::timestamptz + floor(random() * 86400000) * INTERVAL '1 millisecond' AS ts,
       least(%(markets)s - 1, floor(exp(random() * ln(%(markets)s + 1)))::int - 1) AS m
FROM generate_series(1, %(n)s)
"""
GEN_TRADES: LiteralString = (
    """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count,
    taker_outcome_side, taker_book_side, is_block_trade, source, received_at)
SELECT ts, gen_random_uuid(), format('KXBENCH-25-M%%s', lpad(m::text, 4, '0')),
       round(p / 100.0, 4), round((100 - p) / 100.0, 4),
       round((1 + floor(random() * 499))::numeric, 2),
       CASE WHEN random() < 0.5 THEN 'yes' ELSE 'no' END,
       CASE WHEN random() < 0.5 THEN 'bid' ELSE 'ask' END, false, 'ws', now()
FROM ("""
    + _EVENTS
    + """) e
CROSS JOIN LATERAL (SELECT 20 + (m * 7 + %(day)s + floor(random() * 3)::int) %% 60 AS p) q
ORDER BY ts
"""
)
GEN_QUOTES: LiteralString = (
    """
INSERT INTO market.quotes (ts, market_ticker, received_at, yes_bid, yes_bid_size, yes_ask,
    yes_ask_size)
SELECT ts, format('KXBENCH-25-M%%s', lpad(m::text, 4, '0')), now(),
       CASE WHEN random() < 0.02 THEN NULL ELSE round((p - 1) / 100.0, 4) END,
       round((1 + floor(random() * 499))::numeric, 2), round((p + 1) / 100.0, 4),
       round((1 + floor(random() * 499))::numeric, 2)
FROM ("""
    + _EVENTS
    + """) e
CROSS JOIN LATERAL (SELECT 20 + (m * 7 + %(day)s) %% 60 AS p) q
ORDER BY ts
"""
)
GEN_STATS: LiteralString = (
    """
INSERT INTO market.market_stats (ts, market_ticker, received_at, price, volume, open_interest)
SELECT ts, format('KXBENCH-25-M%%s', lpad(m::text, 4, '0')), now(),
       round((20 + (m * 7 + %(day)s) %% 60) / 100.0, 4), round(%(day)s * 1000 + m, 2),
       round((100 + floor(random() * 9900))::numeric, 2)
FROM ("""
    + _EVENTS
    + """) e
ORDER BY ts
"""
)


def per_day(total: int, rnd: random.Random) -> list[int]:
    """``total`` split over DAYS days (mildly uneven)."""
    weights = [0.5 + rnd.random() for _ in range(DAYS)]
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    counts[-1] += total - sum(counts)
    return counts


def load(url: str, trades: int, markets: int, seed: int, first: datetime) -> None:
    rnd = random.Random(seed)
    loaded = 0
    with psycopg.connect(url, autocommit=True) as conn:
        days = zip(
            per_day(trades, rnd), per_day(trades // 2, rnd), per_day(trades // 10, rnd), strict=True
        )
        for day, (nt, nq, ns) in enumerate(days):
            day_start = first + timedelta(days=day)
            with conn.transaction():
                conn.execute("SELECT setseed(%s)", (((seed * 7919 + day) % 1000) / 1000.0,))
                for query, n in ((GEN_TRADES, nt), (GEN_QUOTES, nq), (GEN_STATS, ns)):
                    conn.execute(
                        query, {"day_start": day_start, "markets": markets, "n": n, "day": day}
                    )
            loaded += nt
            if day % 60 == 59:
                print(f"  loaded {day + 1}/{DAYS} days ({loaded:,} trades)", flush=True)
        conn.execute("ANALYZE market.trades, market.quotes, market.market_stats")


COMPRESSION_JOBS: LiteralString = (
    "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression' "
    "ORDER BY job_id"
)
# The scratch database's policy jobs (ids >= 1000: TimescaleDB's own jobs lie below).
SCHEDULE_JOBS: LiteralString = """
SELECT count(*) FROM timescaledb_information.jobs AS j,
     LATERAL alter_job(j.job_id, scheduled => %s) AS a
WHERE j.job_id >= 1000
"""
IS_COMMUNITY: LiteralString = "SELECT current_setting('timescaledb.license') = 'timescale'"


def is_community(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(IS_COMMUNITY).fetchone()
    return bool(row and row[0])


def schedule_jobs(url: str, scheduled: bool) -> None:
    """Community edition: pause (or resume) the scratch database's policy jobs. Paused while the
    data is prepared: a compression policy compressing chunks while they are still loaded or read
    by a refresh only adds lock waits and decompression to the preparation."""
    if not is_community(url):
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEDULE_JOBS, (scheduled,))


def refresh_year(url: str, first: datetime) -> list[tuple[str, float]]:
    """Community edition: materialise every candle aggregate over the year, as
    ``refresh_candles`` (``kalshibook refresh-candles``) does: one window, widened to New York
    midnights, each aggregate in chain order (1m -> 1h -> 1d), logging each one's time.

    Chain order per window matters: a 1d refresh reads the 1h aggregate, whose real-time part
    reads the 1m aggregate, whose real-time part aggregates ``market.trades`` from the 1m
    watermark on, and the New York day bucket gives that scan no upper bound. Refreshed window by
    window (a month of 1m, 1h, 1d, then the next month), every 1d refresh aggregated all raw rows
    of the rest of the year (~100 s per window and source at 10M trades); with the whole year of
    1m and 1h materialised first, the real-time parts are empty. One window for the year took
    537 s at 10M trades; month windows level by level (1m, then 1h, then 1d) ~690 s.
    Returns (aggregate, seconds)."""
    if not is_community(url):
        return []
    start, end = first, first + timedelta(days=DAYS + 1)
    done: list[tuple[str, float]] = []
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(DB_NOW).fetchone()
        assert row is not None
        for name, level in CANDLE_CHAIN:
            window = refresh_window(start, end, level, row[0])
            if window is None:
                continue
            t = time.perf_counter()
            conn.execute(REFRESH, (name, *window))
            took = time.perf_counter() - t
            print(f"  refreshed {name}: {took:.0f} s", flush=True)
            done.append((name, took))
    return done


def compress_as_policies_would(url: str) -> int:
    """Community edition: run every compression policy once, now (the year of data lies beyond
    every compress-after: the state a production database reaches on its own), then vacuum (as
    autovacuum would: the visibility maps the index-only candle reads rely on)."""
    if not is_community(url):
        return 0
    with psycopg.connect(url, autocommit=True) as conn:
        jobs = [int(r[0]) for r in conn.execute(COMPRESSION_JOBS).fetchall()]
        for job in jobs:
            conn.execute("CALL run_job(%s)", (job,))
        conn.execute("VACUUM (ANALYZE)")
    return len(jobs)


# Preparation phases done, kept in the scratch database itself: --reuse resumes after the last
# one that finished (a load or refresh interrupted half-way is redone from its start).
STATE_DDL: LiteralString = """
CREATE TABLE IF NOT EXISTS public.bench_candles_state (
    phase text PRIMARY KEY, seconds double precision NOT NULL, done_at timestamptz NOT NULL
)
"""
STATE_DONE: LiteralString = "SELECT phase, seconds FROM public.bench_candles_state"
STATE_MARK: LiteralString = (
    "INSERT INTO public.bench_candles_state VALUES (%s, %s, now()) "
    "ON CONFLICT (phase) DO UPDATE SET seconds = excluded.seconds, done_at = excluded.done_at"
)
PHASES = ("load", "refresh", "compress")


def prepare(url: str, trades: int, markets: int, seed: int, first: datetime) -> dict[str, float]:
    """Run the preparation phases not done yet (the year from ``first``); the seconds each took
    (this run or an earlier)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(STATE_DDL)
        done = {str(r[0]): float(r[1]) for r in conn.execute(STATE_DONE).fetchall()}
    if "load" not in done:
        for phase in PHASES:  # a reload invalidates every later phase
            done.pop(phase, None)
    schedule_jobs(url, False)
    for phase in PHASES:
        if phase in done:
            continue
        print(f"{phase} ...", flush=True)
        t = time.perf_counter()
        if phase == "load":
            load(url, trades, markets, seed, first)
        elif phase == "refresh":
            refresh_year(url, first)
        else:
            compressed = compress_as_policies_would(url)
            if compressed:
                print(f"  ran {compressed} compression policies", flush=True)
        done[phase] = time.perf_counter() - t
        print(f"{phase}: {done[phase]:.0f} s", flush=True)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(STATE_MARK, (phase, done[phase]))
    schedule_jobs(url, True)
    return done


def cpu_reference() -> float:
    """ms for a fixed pure-Python loop: the speed of this machine's CPU at the moment. On a
    shared virtual machine it drifts (by half and more over minutes), and every latency here drifts
    with it; the figures are shown beside the results."""
    started = time.perf_counter()
    total = 0
    for i in range(1_000_000):
        total += i * i % 7
    assert total > 0
    return (time.perf_counter() - started) * 1000


def windows(
    span: timedelta,
    n: int,
    rnd: random.Random,
    first: datetime,
    within: timedelta | None,
) -> list[tuple[datetime, datetime]]:
    """``n`` ranges of ``span`` at random whole days of the year from ``first`` (the year itself
    for a year's span); only in its last ``within`` when not None."""
    year_end = first + timedelta(days=DAYS)
    lowest = first if within is None else max(first, year_end - within)
    last_start = year_end - span
    out = []
    for _ in range(n):
        if span >= timedelta(days=DAYS):
            start = first
        else:
            days = (last_start - lowest).days
            start = lowest + timedelta(days=rnd.randrange(days + 1))
        out.append((start, start + span))
    return out


def recent_within(interval: Interval) -> timedelta | None:
    """``--recent``: the last days of the year a level's candles stay uncompressed (its default
    compress-after; the 1d level is never compressed: the whole year)."""
    storage = StorageSettings()
    days = {
        "1m": storage.candles_1m_compress_after_days,
        "1h": storage.candles_1h_compress_after_days,
    }.get(interval)
    return None if days is None else timedelta(days=days)


YEAR_OF_DATA: LiteralString = "SELECT date_trunc('day', min(ts)) FROM market.trades"


def year_start(url: str, recent: bool) -> datetime:
    """The first day of the data: ``YEAR_START``, or with ``recent`` the year ending today (UTC)
    for a new database and the year it holds for a reused one."""
    if not recent:
        return YEAR_START
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(YEAR_OF_DATA).fetchone()
    if row is not None and row[0] is not None:
        held: datetime = row[0]
        return held.astimezone(UTC)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=DAYS)


HANDLER_WARM_UP = 6
"""Handler calls before the timed ones: the candle statements make their generic plans at their
first execution on a connection, and psycopg prepares the others (the watermarks) at their 5th
(the pooled connections of the endpoint pass have long passed both)."""


@dataclass
class Timings:
    """One repeat of one scenario, ms per request."""

    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    handler_cold: list[float] = field(default_factory=list)
    handler_warm: list[float] = field(default_factory=list)
    candles: int = 0
    body_bytes: int = 0
    # a body of each cold response's size from the constant server, beside it
    http_alone: list[float] = field(default_factory=list)
    # the handler's parts at the cold positions, ms per request: HANDLER_PARTS
    parts: dict[str, list[float]] = field(default_factory=dict)


HANDLER_PARTS = ("read", "assembly", "formatting", "json")
"""The handler's parts: the database read (storage.candle_reads.fetch_candle_data), assembly
(domain.candle_rows.assemble_rows), formatting (routes.candles.candles_out), the JSON body."""


def _params(interval: str, start: datetime, end: datetime) -> dict[str, str]:
    return {
        "interval": interval,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "fill": "true",
    }


async def handler_work(
    conn: psycopg.AsyncConnection[Any],
    ticker: str,
    interval: Interval,
    start: datetime,
    end: datetime,
) -> bytes:
    """What the route does once auth, charging and the connection are done: the read, assembly,
    formatting and the JSON body (routes.candles.candles_handler, minus HTTP)."""
    now = datetime.now(UTC)
    rows = await read_candle_rows(conn, ticker, interval, start, end, fill=True, until=now)
    return page_body(ticker, interval, candles_out(rows, interval))


def page_body(ticker: str, interval: Interval, data: list[CandleOut]) -> bytes:
    """The route's response body for ``data``."""
    page = CandlePage(
        data=data,
        next_cursor=None,
        has_more=False,
        request_id="bench",
        response_time=0.0,
        ticker=ticker,
        interval=interval,
    )
    return msgspec.json.encode(page)


async def handler_parts(
    conn: psycopg.AsyncConnection[Any],
    ticker: str,
    interval: Interval,
    start: datetime,
    end: datetime,
) -> dict[str, float]:
    """:func:`handler_work` in its parts (ms each): read_candle_rows' read and assembly (its
    unknown-market check is not needed: the market has rows), candles_out, the JSON body."""
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    first = period_floor(start, interval)
    data = await fetch_candle_data(conn, ticker, interval, first, end)
    t1 = time.perf_counter()
    rows = data.assemble(interval, first, end, fill=True, until=now)
    t2 = time.perf_counter()
    out = candles_out(rows, interval)
    t3 = time.perf_counter()
    page_body(ticker, interval, out)
    t4 = time.perf_counter()
    spans = itertools.pairwise((t0, t1, t2, t3, t4))
    return {ph: (b - a) * 1000 for ph, (a, b) in zip(HANDLER_PARTS, spans, strict=True)}


class ApiServer:
    """``kalshibook serve`` (the command operators run: settings from the environment, its
    garbage-collector tuning, uvicorn) on a free local port, and one client's keep-alive
    connection to it (``http.client``: ~0.1 ms of its own per request, where httpx adds ~3 ms)."""

    def __init__(self, url: str, request_timeout: float) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "KALSHIBOOK_DATABASE_URL": url,
            "KALSHIBOOK_API_RATE_LIMIT_PER_SECOND": "1000000",
            "KALSHIBOOK_API_REQUEST_TIMEOUT": f"{request_timeout:g}",
            "KALSHIBOOK_LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "kalshibook", "serve", "--host", "127.0.0.1"]
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port), "--no-access-log"], cwd=ROOT, env=env
        )
        self.timeout = request_timeout + 30
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        deadline = time.monotonic() + 60
        try:
            while True:
                try:
                    if self.get("/health", {})[0] == 200:
                        return
                except OSError:
                    self.conn.close()
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit("kalshibook serve did not start")
                time.sleep(0.2)
        except BaseException:
            self.close()
            raise

    def get(self, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
        return http_get(self.conn, target, headers)

    def close(self) -> None:
        self.conn.close()
        stop_process(self.proc)


async def time_endpoint(
    server: ApiServer,
    constant: ConstantServer,
    conn: psycopg.AsyncConnection[Any],
    key: str,
    ticker: str,
    interval: Interval,
    wins: list[tuple[datetime, datetime]],
    out: Timings,
) -> None:
    """The endpoint at ``wins`` (cold), then ``wins[0]`` as often (warm), one request at a time
    over one keep-alive connection; the body read in full. Beside each cold request, in turns
    (before it at even positions, after it at odd ones, so that neither always finds the other's
    pages in the buffer cache): a body of its size from the constant server (HTTP alone) and the
    handler's parts at the same position on ``conn``."""
    headers = {"Authorization": f"Bearer {key}"}
    path = f"/v1/markets/{ticker}/candles"
    # the next requests open new connections: uvicorn closes idle ones after 5 s
    server.conn.close()
    constant.conn.close()

    def target(start: datetime, end: datetime) -> str:
        return f"{path}?{urlencode(_params(interval, start, end))}"

    # warm-up: one request per connection the server's pool opens (it hands them out in turn;
    # the pool prepared each one's candle statements when it opened it, and a server process's
    # first read loads the candle relations' catalog entries)
    for _ in range(POOL_MIN_SIZE):
        status, body = server.get(target(*wins[0]), headers)
        if status != 200:
            raise SystemExit(f"{target(*wins[0])}: {status} {body[:300]!r}")
    out.candles = len(msgspec.json.decode(body)["data"])
    out.body_bytes = len(body)
    constant.get(f"/bytes?n={len(body)}")  # the size's body is made on its first request

    async def beside(start: datetime, end: datetime, size: int) -> None:
        t = time.perf_counter()
        constant.get(f"/bytes?n={size}")
        out.http_alone.append((time.perf_counter() - t) * 1000)
        for name, ms in (await handler_parts(conn, ticker, interval, start, end)).items():
            out.parts.setdefault(name, []).append(ms)

    for k, (start, end) in enumerate([*wins, *[wins[0]] * len(wins)]):
        cold = k < len(wins)
        if cold and k % 2 == 0:
            await beside(start, end, out.body_bytes)
        t = time.perf_counter()
        status, body = server.get(target(start, end), headers)
        took = (time.perf_counter() - t) * 1000
        (out.cold if cold else out.warm).append(took)
        if status != 200:
            raise SystemExit(f"{target(start, end)}: {status} {body[:300]!r}")
        if cold and k % 2 == 1:
            await beside(start, end, len(body))


async def time_scenario(
    server: ApiServer,
    constant: ConstantServer,
    url: str,
    key: str,
    ticker: str,
    interval: Interval,
    wins: list[tuple[datetime, datetime]],
    handler_wins: list[tuple[datetime, datetime]],
    request_timeout: float,
    out: Timings,
) -> None:
    """One request kind: the endpoint (:func:`time_endpoint`), then the handler's work alone at
    ``handler_wins`` (cold), then ``handler_wins[0]`` as often (warm). The handler runs on one
    connection with the API's connection settings, warmed up first, and this process's garbage
    collector tuned as ``kalshibook serve`` tunes the server's."""
    tune_gc()
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, options=connection_options(int(request_timeout * 1000))
    ) as conn:
        for _ in range(HANDLER_WARM_UP):
            await handler_work(conn, ticker, interval, *wins[0])
        await time_endpoint(server, constant, conn, key, ticker, interval, wins, out)
        for k, (start, end) in enumerate([*handler_wins, *[handler_wins[0]] * len(handler_wins)]):
            t = time.perf_counter()
            await handler_work(conn, ticker, interval, start, end)
            took = (time.perf_counter() - t) * 1000
            (out.handler_cold if k < len(handler_wins) else out.handler_warm).append(took)


RAW_BUDGET_S = 60.0
"""Seconds the raw baseline may take per scenario (at least two timed queries): a year of 1d
candles of the busiest market straight from the hypertable takes about a second per query at 10M
trades, and far longer as the history grows."""


def time_raw(
    url: str, ticker: str, query: LiteralString, wins: list[tuple[datetime, datetime]]
) -> tuple[list[float], int]:
    samples: list[float] = []
    rows = 0
    spent = 0.0
    # without JIT, as the API's connections (kalshibook.storage.database_defaults: a year of 1d
    # of the busiest market took 30 s with it, 0.76 s without)
    with psycopg.connect(url, autocommit=True, options="-c jit=off") as conn:
        for start, end in wins:
            t = time.perf_counter()
            rows = len(conn.execute(query, (ticker, start, end)).fetchall())
            took = time.perf_counter() - t
            samples.append(took * 1000)
            spent += took
            if len(samples) >= 2 and spent > RAW_BUDGET_S:
                break
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


def figure(reps: list[Timings], kind: str, q: float) -> str:
    """The ``q`` quantile of the ``kind`` samples, over the repeats (see :func:`spread`)."""
    return spread([pct_round(getattr(t, kind), q) for t in reps])


def spread(values: list[float]) -> str:
    """The median of per-repeat figures, with their min-max when there are several."""
    mid = statistics.median(values)
    if len(values) < 2:
        return f"{mid:,.1f}"
    return f"{mid:,.1f} ({min(values):,.1f}-{max(values):,.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trades", type=int, default=10_000_000)
    parser.add_argument("--markets", type=int, default=1_000)
    parser.add_argument(
        "--requests",
        type=int,
        default=100,
        help="timed requests per scenario (default 100: the p99 of fewer samples is their maximum)",
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--repeat", type=int, default=3, help="repeats of every request kind (default 3)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="use the scratch database as left by --keep: only the preparation phases (load, "
        "refresh, compress) it has not finished are run",
    )
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="stop after preparing the scratch database (implies --keep)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=ApiSettings().request_timeout,
        help="the API's request deadline, s (default the API's): the Apache edition's year of "
        "1d candles at 10M trades takes longer than the default",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument(
        "--database-name",
        default=None,
        help=f"scratch database name (default {DB_NAME}, {DB_NAME}_recent with --recent): keep "
        "data sets of two sizes side by side",
    )
    parser.add_argument(
        "--recent",
        action="store_true",
        help="the year of data ends today, so the compression policies leave its last weeks "
        "uncompressed (as in production), and the ranges are read there: a day of 1m and 30 days "
        "of 1h within their levels' default compress-after; writes the candles-recent section",
    )
    args = parser.parse_args(argv)

    base = os.environ.get("KALSHIBOOK_DATABASE_URL")
    if not base:
        print("KALSHIBOOK_DATABASE_URL is not set (run make db)", file=sys.stderr)
        return 2
    db_name = args.database_name or (f"{DB_NAME}_recent" if args.recent else DB_NAME)
    url = with_database(base, db_name)
    reuse_or_create_database(base, db_name, args.reuse)
    try:
        migrate.upgrade(url)  # a reused database gets the migrations added since
        print(f"{args.trades:,} trades over {args.markets:,} markets in {redact(url)}", flush=True)
        first = year_start(url, args.recent)
        phases = prepare(url, args.trades, args.markets, args.seed, first)
        if args.prepare_only:
            return 0
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
        runs: dict[str, list[Timings]] = {label: [] for label, *_ in SCENARIOS}
        raws: dict[str, list[float]] = {}
        loads: list[float] = []
        cpu: list[float] = []
        key = create_key(url, name="bench candles", credits=10**9).key
        server = ApiServer(url, args.request_timeout)
        constant = ConstantServer()
        try:
            for repeat in range(args.repeat):
                rnd = random.Random(args.seed + repeat)
                for label, interval, span, raw in SCENARIOS:
                    within = recent_within(interval) if args.recent else None
                    wins = windows(span, args.requests, rnd, first, within)
                    handler_wins = windows(span, args.requests, rnd, first, within)
                    loads.append(os.getloadavg()[0])
                    cpu.append(cpu_reference())
                    print(f"timing {label} (repeat {repeat + 1}) ...", flush=True)
                    timings = Timings()
                    asyncio.run(
                        time_scenario(
                            server,
                            constant,
                            url,
                            key,
                            busiest,
                            interval,
                            wins,
                            handler_wins,
                            args.request_timeout,
                            timings,
                        )
                    )
                    runs[label].append(timings)
                    if repeat == 0:
                        raws[label], _ = time_raw(url, busiest, raw, wins)
                loads.append(os.getloadavg()[0])
                cpu.append(cpu_reference())
        finally:
            server.close()
            constant.stop()
    finally:
        if not (args.keep or args.prepare_only):
            drop_database(base, db_name)

    community = facts["license"] == "timescale"
    recent = {i: recent_within(i) for i in ("1m", "1h")}
    last = {i: f"the last {w.days} days" for i, w in recent.items() if w is not None}
    compressed = (
        f"the year ends today ({first + timedelta(days=DAYS):%Y-%m-%d}): the policies compressed "
        f"all but its last weeks (1m candles: {last['1m']} uncompressed, 1h: {last['1h']}, 1d: "
        "never compressed)"
        if args.recent
        else "the year lies beyond every compress-after"
    )
    edition = (
        "Community (continuous aggregates, materialised over the whole year, then compressed "
        f"by running the compression policies: {compressed})"
        if community
        else "Apache-2 (candle relations are plain views, computed on read)"
    )
    where = (
        f"at a random day of the level's uncompressed weeks (a day of 1m in {last['1m']}, "
        f"30 days of 1h in {last['1h']})"
        if args.recent
        else "at a random position in the year"
    )
    load_note = f" Load (server-side generation): {phases['load']:.0f} s" + (
        f"; refresh (one window, chain order, jobs paused) {phases['refresh']:.0f} s; "
        f"compression {phases['compress']:.0f} s."
        if community
        else "."
    )
    command = (
        f"python bench/bench_candles.py --trades {args.trades} --markets {args.markets} "
        f"--requests {args.requests} --repeat {args.repeat}"
    ) + (" --recent" if args.recent else "")
    if args.request_timeout != ApiSettings().request_timeout:
        command += f" --request-timeout {args.request_timeout:g}"
    lines = [
        (
            "## Candles, recent ranges (`bench/bench_candles.py --recent`)"
            if args.recent
            else "## Candles (`bench/bench_candles.py`)"
        )
        if community
        else "## Candles, Apache-2 edition",
        "",
        f"TimescaleDB {facts['tsdb']} **{edition}**, PostgreSQL {facts['pg']}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; API: `kalshibook serve` "
        "(uvicorn, auth and credit charging on) and one client over a keep-alive connection, "
        "database on the same machine.",
        f"Data: {totals['trades']:,} trades over {args.markets:,} markets (Zipf-like popularity) "
        f"across {DAYS} days, {totals['quotes']:,} quotes, {totals['market_stats']:,} market-stats "
        f"rows; database {facts['size']}.{load_note} Busiest market `{busiest}`: "
        f"{busiest_n:,} trades.",
        f"Run: `{command}` ({datetime.now(UTC):%Y-%m-%d}), 1-minute load average "
        f"{min(loads):.1f}-{max(loads):.1f} during the run; CPU reference (a fixed Python loop, "
        f"timed before each request kind) {min(cpu):.0f}-{max(cpu):.0f} ms, median "
        f"{statistics.median(cpu):.0f}. Per repeat and request kind: "
        f"*cold*: {args.requests} requests, each {where} (a year of "
        "1d: the whole year, the same range each time); *warm*: the "
        f"first of those ranges {args.requests} times again; `fill=true`; after one warm-up "
        "request per pooled connection. "
        + (
            f"Figures: the median over the {args.repeat} repeats of each repeat's p50 / p99 "
            "(min-max over the repeats in brackets)."
            if args.repeat > 1
            else f"Figures: p50 / p99 of the {args.requests} samples."
        ),
        "",
        "| request (busiest market) | candles | cold p50 ms | cold p99 ms | warm p50 ms "
        "| warm p99 ms | handler cold p50 / p99 ms | handler warm p50 / p99 ms "
        "| raw GROUP BY p50 ms (n) | raw / endpoint (cold p50) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, *_ in SCENARIOS:
        reps = runs[label]
        cold_p50 = statistics.median(pct_round(t.cold, 0.5) for t in reps)
        raw_ms = raws[label]
        lines.append(
            f"| {label} | {reps[0].candles:,} | {figure(reps, 'cold', 0.5)} "
            f"| {figure(reps, 'cold', 0.99)} | {figure(reps, 'warm', 0.5)} "
            f"| {figure(reps, 'warm', 0.99)} "
            f"| {figure(reps, 'handler_cold', 0.5)} / {figure(reps, 'handler_cold', 0.99)} "
            f"| {figure(reps, 'handler_warm', 0.5)} / {figure(reps, 'handler_warm', 0.99)} "
            f"| {statistics.median(raw_ms):,.1f} ({len(raw_ms)}) "
            f"| {statistics.median(raw_ms) / cold_p50:,.1f}x |"
        )
    lines += [
        "",
        "Where a cold request's time goes: p50 of each part over the cold positions, median over "
        "the repeats. The handler's parts and HTTP alone are timed beside each cold request (at "
        "its position, in turns before and after it), the parts in the bench's process; *the "
        "rest* is the endpoint's p50 less the others' (auth, the charge, Litestar's routing and "
        "parameters, the usage row, and the difference between the processes):",
        "",
        "| request | body | read (database) | assembly | formatting | JSON | handler (parts' sum) "
        "| HTTP alone for that body | endpoint cold p50 | the rest: auth, charge, routing, usage "
        "|",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, *_ in SCENARIOS:
        reps = runs[label]
        parts = [
            statistics.median(pct_round(t.parts[ph], 0.5) for t in reps) for ph in HANDLER_PARTS
        ]
        alone = statistics.median(pct_round(t.http_alone, 0.5) for t in reps)
        endpoint = statistics.median(pct_round(t.cold, 0.5) for t in reps)
        rest = endpoint - sum(parts) - alone
        lines.append(
            f"| {label} | {reps[0].body_bytes / 1000:,.0f} KB | "
            + " | ".join(f"{x:.1f}" for x in parts)
            + f" | {sum(parts):.1f} | {alone:.1f} | {endpoint:.1f} | {rest:.1f} |"
        )
    lines += [
        "",
        "- *endpoint*: `GET /v1/markets/{ticker}/candles`, the whole request as the client sees "
        "it (sent until the body is read): auth + charge, the "
        "trades/quotes/stats candle relations (a statement each, in one pipeline), the carried-in "
        "state (the 1m "
        "aggregates of the two days before, the 1d ones only when those leave something unknown; "
        "three raw look-ups on Apache), assembly (bid/ask/OI carried, fill), JSON with both "
        "kalshibook's and Kalshi's fields. On Community one pipelined transaction (no parallel "
        "workers, no hash aggregation, generic plans for its prepared statements) reads the "
        "aggregates' watermarks and then the range below "
        "them from the materialisation hypertables directly (what the real-time aggregates "
        "return there, without planning their live part); above them, the aggregates.",
        "- *handler*: the route's own work (the read, assembly, formatting, the JSON body) called "
        "directly on one connection with the API's connection settings, at other random "
        "positions (cold) and one range repeated (warm), in the bench's process: the endpoint "
        "minus HTTP, auth, charging and usage.",
        "- *HTTP alone*: beside each cold request, a body of its size from a minimal "
        "Litestar route (bench/constant_app.py: no auth, no database, no JSON encoding) over its "
        "own keep-alive connection: what serving that many bytes costs on this machine.",
        "- *raw GROUP BY*: one `time_bucket` query over `market.trades` for the same range (trade "
        "OHLC, volume, notional, count only), on a direct connection without JIT (as the API's): "
        "what computing candles "
        "from the hypertable costs without any candle relation (first repeat's positions; "
        f"bounded to about {RAW_BUDGET_S:.0f} s per row, at least two queries).",
        "- On the Apache edition both read the same raw rows, so the endpoint cannot beat the raw "
        "query there; the Community edition's continuous aggregates read pre-aggregated rows.",
        "- Apache, 1d: the view nests three aggregations (1m, 1h, New York day) per source and "
        "the time-zone bucket defeats chunk exclusion, so every 1d read aggregates the market's "
        "whole history of trades, quotes and stats, and plans over every chunk.",
    ]
    default_timeout = ApiSettings().request_timeout
    if args.request_timeout != default_timeout:
        lines.append(
            f"- Request deadline raised to {args.request_timeout:g} s for this run (the API's "
            f"default, {default_timeout:g} s, stops a longer request with a 504)."
        )
    if community and args.recent:
        write_section(args.out, "candles-recent", "\n".join(lines), after="candles")
    elif community:
        write_section(args.out, "candles", "\n".join(lines))
    else:
        write_section(args.out, "candles-apache", "\n".join(lines), after="candles")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
