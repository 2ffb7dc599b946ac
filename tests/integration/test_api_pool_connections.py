"""The API's pooled connections: on the Community edition they prepare their candle statements
before serving anything (kalshibook.api.app.warm_connection), so no request pays for their
generic plans; and they never JIT-compile a plan (kalshibook.api.app.connection_options)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from candle_support import AUTO_EXPLAIN, REFRESH, insert_hourly

from kalshibook.api.app import connection_options, make_pool
from kalshibook.domain.periods import Interval, period_floor
from kalshibook.settings import CoreSettings, Settings
from kalshibook.storage import candle_reads, migrate

pytestmark = [pytest.mark.db]

TICKER = "KXWARM-26-T1"
H = timedelta(hours=1)
LEVELS: tuple[Interval, ...] = ("1m", "1h", "1d")
STEP = {"1m": timedelta(minutes=1), "1h": H, "1d": timedelta(days=1)}
SPAN = {"1m": 3 * H, "1h": timedelta(days=1), "1d": timedelta(days=3)}  # each read's reach back
JIT_EVERYWHERE = " -c jit_above_cost=0 -c jit_optimize_above_cost=0 -c jit_inline_above_cost=0"
"""Connection options under which every plan qualifies for JIT compilation."""
# the statements with parameters prepared on this connection, and their plans
PREPARED = """
SELECT name, generic_plans, custom_plans FROM pg_prepared_statements
WHERE cardinality(parameter_types) > 0
"""


def load(url: str, now: datetime) -> None:
    """A trade, a quote and an open interest every hour of the last five days; every level
    materialised up to the hour before ``now`` (the day's start for 1d), as the policies leave
    them: the live part of a recent range lies above the watermarks."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SHOW timescaledb.license").fetchone() != ("timescale",):
            pytest.skip("continuous aggregates are Community edition only")
        first = period_floor(now - timedelta(days=5), "1h")
        insert_hourly(conn, TICKER, first, 5 * 24)
        for level in LEVELS:
            end = period_floor(now, "1d") if level == "1d" else period_floor(now, "1h") - H
            for source in ("trades", "quotes", "stats"):
                conn.execute(REFRESH, (f"market.candles_{source}_{level}", first - 2 * H, end))


async def test_a_new_pooled_connection_has_its_candle_statements_prepared(
    settings: Settings, db_url: str
) -> None:
    now = datetime.now(UTC)
    load(db_url, now)
    pool = make_pool(settings)
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            cur = await conn.execute(PREPARED)
            warmed = {str(r[0]): (r[1], r[2]) for r in await cur.fetchall()}
            cur = await conn.execute("SHOW jit")
            jit = await cur.fetchone()
            found = []
            # the reads users make most: the last day of 1m, hours, days up to now (rows below
            # and above the watermark, the state before from the materialisations), and a range
            # after every watermark (the state before from the aggregates)
            for level in LEVELS:
                start = period_floor(now - SPAN[level], level)
                data = await candle_reads.fetch_candle_data(
                    conn, TICKER, level, start, now + STEP[level]
                )
                found.append((len(data.buckets) > 0, data.carried.open_interest is not None))
            late = period_floor(now, "1h")
            data = await candle_reads.fetch_candle_data(conn, TICKER, "1h", late, late + H)
            cur = await conn.execute(PREPARED)
            after = {str(r[0]): (r[1], r[2]) for r in await cur.fetchall()}
    finally:
        await pool.close()
    assert jit == ("off",)  # connection_options (next test)
    assert found == [(True, True)] * 3
    assert data.carried.open_interest is not None
    # the watermarks, the rows (trades, quotes, stats) below and above the watermark per level
    # (3 x 2 x 3), the near and far look-ups on the materialisations and on the aggregates: planned
    # before the connection served anything
    assert len(warmed) == 1 + 18 + 4
    assert all(custom == 0 for _generic, custom in warmed.values())
    # the reads planned nothing new: every statement they ran was one of those
    assert set(after) == set(warmed)
    # and they ran prepared: the watermarks, the three rows statements below and above the
    # watermark at each level, the near look-ups on the materialisation and on the aggregate
    # (nothing needed the far ones)
    ran = sum(1 for name, (generic, _c) in after.items() if generic > warmed[name][0])
    assert ran == 1 + 18 + 2


async def test_the_api_connections_never_jit_compile(db_url: str) -> None:
    """JIT compiles a plan at every execution once its estimated cost passes jit_above_cost, and
    the estimates over hypertables grow with their history: the API's connections turn it off.
    With every JIT threshold at 0, the candle read's statements on a connection with the API's
    options compile nothing; with JIT on as well, they compile (the check can see it)."""
    now = datetime.now(UTC)
    load(db_url, now)
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT pg_jit_available()").fetchone()
    if row != (True,):
        pytest.skip("this PostgreSQL has no JIT provider (llvmjit)")
    start = period_floor(now - SPAN["1m"], "1m")
    plans: dict[str, list[str]] = {}
    for name, extra in (("api", ""), ("jit on", " -c jit=on")):
        options = connection_options(10_000) + JIT_EVERYWHERE + extra
        async with await psycopg.AsyncConnection.connect(
            db_url, autocommit=True, options=options
        ) as conn:
            for statement in AUTO_EXPLAIN:
                await conn.execute(statement)  # type: ignore[arg-type]  # constants
            seen = plans[name] = []
            conn.add_notice_handler(lambda d, seen=seen: seen.append(d.message_primary or ""))
            data = await candle_reads.fetch_candle_data(conn, TICKER, "1m", start, now)
            assert data.buckets
    # the candle statements (rows, carried-in state), not the settings and watermark look-ups
    candle = {name: [p for p in found if "market_ticker" in p] for name, found in plans.items()}
    assert len(candle["api"]) >= 3
    assert not any("JIT:" in p for p in candle["api"])
    assert len(candle["jit on"]) == len(candle["api"])
    assert all("JIT:" in p for p in candle["jit on"])


async def test_an_api_started_before_the_migrations_reads_the_materialisations_after_them(
    empty_db_url: str, tmp_path: Path
) -> None:
    """The pools' warm-up looks the candle aggregates up as soon as the API starts: on a database
    without candle relations yet it must not remember "plain views" (the Apache edition's
    answer), or after ``kalshibook migrate`` every candle read would plan the real-time
    aggregates through the whole chain until a restart."""
    migrate.upgrade(empty_db_url, "0001")  # the hypertables, no candle relation yet
    with psycopg.connect(empty_db_url) as conn:
        if conn.execute("SHOW timescaledb.license").fetchone() != ("timescale",):
            pytest.skip("continuous aggregates are Community edition only")
    settings = Settings(core=CoreSettings(database_url=empty_db_url, data_dir=str(tmp_path)))
    pool = make_pool(settings)
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            assert await candle_reads._direct(conn) is None
        migrate.upgrade(empty_db_url)
        async with pool.connection() as conn:
            direct = await candle_reads._direct(conn)
    finally:
        await pool.close()
    assert direct is not None
    assert sorted(direct.ids) == ["1d", "1h", "1m"]


async def test_a_warm_up_that_meets_a_lock_gives_up_at_once(
    settings: Settings, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A pool hands a new connection out only once it is warmed: a warm-up waiting behind a lock
    (here an ACCESS EXCLUSIVE on market.trades, which the aggregates' live part reads) would hold
    up every request waiting for it, up to the request deadline. It gives up at its own lock
    timeout (WARM_LIMITS), and the connection serves with its session settings as they were."""
    now = datetime.now(UTC)
    load(db_url, now)
    lock = await psycopg.AsyncConnection.connect(db_url)
    pool = make_pool(settings)
    try:
        await lock.execute("LOCK TABLE market.trades IN ACCESS EXCLUSIVE MODE")
        with caplog.at_level(logging.WARNING, logger="kalshibook.api.app"):
            await pool.open(wait=True)
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
            )
            timeouts = await cur.fetchone()
    finally:
        await lock.rollback()
        await lock.close()
        await pool.close()
    given_up = [r.getMessage() for r in caplog.records if "not prepared ahead" in r.getMessage()]
    assert given_up
    assert all("lock timeout" in m for m in given_up), given_up
    # the connection's own settings again: no lock timeout, the request deadline (10 s)
    assert timeouts == ("0", "10s")
