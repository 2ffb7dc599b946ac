"""Community edition: candle reads split at the aggregates' watermark (materialisation below it,
the real-time aggregate above it) return every bucket once, with the same values, and survive
aggregates replaced under a running process (kalshibook.storage.candle_reads)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import psycopg
import pytest
from candle_support import AUTO_EXPLAIN, INSERT_QUOTE, INSERT_STATS, INSERT_TRADE, REFRESH

from kalshibook.api.app import CONNECTION_OPTIONS
from kalshibook.domain.periods import period_floor
from kalshibook.storage import candle_reads
from kalshibook.storage.candle_reads import read_candles

pytestmark = [pytest.mark.db]

TICKER = "KXWATERMARK-26-T1"
T0 = datetime(2026, 1, 12, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)

WATERMARK = """
SELECT _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(mat_hypertable_id))
FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = %s
"""


def price(minute: int) -> Decimal:
    return Decimal("0.30") + Decimal(minute) / 100


def load(url: str) -> None:
    """Ten minutes with one trade and one quote each; the 1m aggregates materialised up to
    minute 5 (their watermark), minutes 5-9 only in the raw hypertables."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SHOW timescaledb.license").fetchone() != ("timescale",):
            pytest.skip("continuous aggregates are Community edition only")
        for k in range(10):
            ts = T0 + k * M + timedelta(seconds=10)
            p = price(k)
            conn.execute(INSERT_TRADE, (ts, uuid.uuid4(), TICKER, p, p, Decimal(k + 1)))
            conn.execute(INSERT_QUOTE, (ts, TICKER, p - Decimal("0.01"), p + Decimal("0.01")))
            conn.execute(INSERT_STATS, (ts, TICKER, Decimal(100 + k)))
        for source in ("trades", "quotes", "stats"):
            conn.execute(REFRESH, (f"market.candles_{source}_1m", T0 - 60 * M, T0 + 5 * M))
        for source in ("trades", "quotes", "stats"):
            (mark,) = conn.execute(WATERMARK, (f"candles_{source}_1m",)).fetchone() or (None,)
            assert mark == T0 + 5 * M  # the ranges read below span the watermark


async def test_a_range_across_the_watermark_has_every_bucket_once(db_url: str) -> None:
    load(db_url)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        candles = await read_candles(conn, TICKER, "1m", T0, T0 + 10 * M, fill=False)
        # the carried-in state of a range starting above the watermark comes from the live part
        later = await read_candles(conn, TICKER, "1m", T0 + 7 * M, T0 + 8 * M, fill=False)
    assert [c.start for c in candles] == [T0 + k * M for k in range(10)]
    assert [c.close for c in candles] == [price(k) for k in range(10)]
    assert [c.volume for c in candles] == [Decimal(k + 1) for k in range(10)]
    assert [c.previous for c in candles[1:]] == [price(k) for k in range(9)]
    assert [c.yes_bid_open for c in candles[1:]] == [price(k) - Decimal("0.01") for k in range(9)]
    assert [c.vwap for c in candles] == [price(k) for k in range(10)]
    assert [c.open_interest for c in candles] == [Decimal(100 + k) for k in range(10)]
    assert [(c.previous, c.yes_ask_open, c.close, c.open_interest) for c in later] == [
        (price(6), price(6) + Decimal("0.01"), price(7), Decimal(107))
    ]


async def test_aggregates_replaced_under_a_running_process_are_looked_up_again(
    db_url: str,
) -> None:
    load(db_url)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        first = await read_candles(conn, TICKER, "1m", T0, T0 + 10 * M, fill=False)
        key = candle_reads._db_key(conn)
        known = candle_reads._DIRECT[key]
        assert known is not None  # the materialisations were found and used
        # what a cached name of a dropped materialisation looks like to the read path
        stale = dict.fromkeys(("1m", "1h", "1d"), known.rows_sql["1m"])
        gone = candle_reads._rows_sql(
            dict.fromkeys(
                ("trades", "quotes", "stats"),
                psycopg.sql.Identifier("_timescaledb_internal", "_gone_materialisation"),
            )
        )
        stale["1m"] = gone
        candle_reads._DIRECT[key] = msgspec.structs.replace(known, rows_sql=stale)
        again = await read_candles(conn, TICKER, "1m", T0, T0 + 10 * M, fill=False)
        assert candle_reads._DIRECT[key] == known
        # ... and the id of a dropped aggregate (cagg_watermark refuses it)
        gone_ids = {level: [999_999] for level in ("1m", "1h", "1d")}
        candle_reads._DIRECT[key] = msgspec.structs.replace(known, ids=gone_ids)
        once_more = await read_candles(conn, TICKER, "1m", T0, T0 + 10 * M, fill=False)
    assert again == first
    assert once_more == first
    assert candle_reads._DIRECT[key] == known


async def test_state_carried_from_days_before_comes_from_the_daily_materialisation(
    db_url: str,
) -> None:
    """Nothing in the two days before the range: the state before it is the last 1d bucket's,
    read from the 1d materialisation (the range starts below the 1d watermark)."""
    old = datetime(2025, 11, 28, 15, 0, tzinfo=UTC)
    later = datetime(2025, 12, 3, 15, 0, tzinfo=UTC)  # another market: moves the watermarks
    with psycopg.connect(db_url, autocommit=True) as conn:
        if conn.execute("SHOW timescaledb.license").fetchone() != ("timescale",):
            pytest.skip("continuous aggregates are Community edition only")
        for ticker, ts in ((TICKER, old), ("KXWATERMARK-26-OTHER", later)):
            conn.execute(
                INSERT_TRADE, (ts, uuid.uuid4(), ticker, Decimal("0.61"), Decimal("0.61"), 2)
            )
            conn.execute(INSERT_QUOTE, (ts, ticker, Decimal("0.60"), Decimal("0.63")))
            conn.execute(INSERT_STATS, (ts, ticker, Decimal(77)))
        window = (datetime(2025, 11, 27, 5, tzinfo=UTC), datetime(2025, 12, 5, 5, tzinfo=UTC))
        for level in ("1m", "1h", "1d"):
            for source in ("trades", "quotes", "stats"):
                conn.execute(REFRESH, (f"market.candles_{source}_{level}", *window))
        for source in ("trades", "quotes", "stats"):
            (mark,) = conn.execute(WATERMARK, (f"candles_{source}_1d",)).fetchone() or (None,)
            assert mark is not None
            assert mark > datetime(2025, 12, 2, tzinfo=UTC)
    start = datetime(2025, 12, 2, tzinfo=UTC)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        candles = await read_candles(conn, TICKER, "1m", start, start + 2 * M, fill=True)
    assert [
        (c.start, c.previous, c.yes_bid_open, c.yes_ask_close, c.open_interest, c.volume)
        for c in candles
    ] == [
        (start + k * M, Decimal("0.61"), Decimal("0.60"), Decimal("0.63"), Decimal(77), 0)
        for k in range(2)
    ]


# Every statement's plan as a NOTICE; forced parallel mode puts a
# Gather on top of every parallel-safe plan unless max_parallel_workers_per_gather is 0 (the GUC
# was renamed in PostgreSQL 16).
EXPLAIN_EVERYTHING = (
    *AUTO_EXPLAIN,
    "SET auto_explain.log_settings = on",  # the plan lists the planner settings that differ
)
FORCE_PARALLEL = """
SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
                       THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END, 'on', false)
"""


async def test_reads_plan_no_parallel_workers(db_url: str) -> None:
    """A candle read of one market is planned serially and without hash aggregation (READ_PLANS):
    starting parallel workers costs more than the read (~25 ms of a 30 ms day of 1m candles at 10M
    trades), even when the planner's costs say otherwise; the settings end with the read's
    transaction."""
    load(db_url)
    plans: list[str] = []
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        for statement in EXPLAIN_EVERYTHING:
            await conn.execute(statement)  # type: ignore[arg-type]  # constants above
        await conn.execute(FORCE_PARALLEL)
        direct = await candle_reads._direct(conn)
        assert direct is not None
        conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
        # the control: without the read's setting this connection plans the same rows in parallel
        params = {"ticker": TICKER, "start": T0 - 60 * M, "end": T0 + 5 * M}
        for statement in direct.rows_sql["1m"]:
            await conn.execute(statement, params)
        assert any("Gather" in p for p in plans)
        plans.clear()
        candles = await read_candles(conn, TICKER, "1m", T0 - 60 * M, T0 + 10 * M, fill=False)
        read_plans = list(plans)
        cur = await conn.execute(
            "SELECT current_setting('max_parallel_workers_per_gather'), "
            "current_setting('enable_hashagg'), current_setting('plan_cache_mode')"
        )
        after = await cur.fetchone()
    assert len(candles) == 10
    # the watermarks, each source's rows below and above the watermark, the carried-in state
    assert len(read_plans) >= 1 + 3 + 3 + 1
    assert not [p for p in read_plans if "Gather" in p]
    assert after is not None
    assert after[0] != "0"  # SET LOCAL: not left on the connection
    assert after[1] == "on"
    assert after[2] == "auto"
    # every statement of the read planned without hash aggregation (the live part groups raw
    # rows in bucket order), with
    # generic plans for its prepared statements
    assert all("enable_hashagg = 'off'" in p for p in read_plans)
    assert all("plan_cache_mode = 'force_generic_plan'" in p for p in read_plans)


async def test_generic_plans_read_what_custom_plans_read(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read's prepared statements run with generic plans (READ_PLANS): the same rows and
    carried-in state as statements planned with their values, below, across and above the
    watermark, at every level (a connection that prepares at once against one that never does
    and plans with its values: READ_PLANS with force_custom_plan for its reads, since under
    force_generic_plan even an unprepared statement is planned generically)."""
    load(db_url)
    generic_plans = candle_reads.READ_PLANS
    custom_plans = generic_plans.replace("'force_generic_plan'", "'force_custom_plan'")
    assert custom_plans != generic_plans
    options = "-c plan_cache_mode=force_custom_plan"
    async with (
        await psycopg.AsyncConnection.connect(
            db_url, autocommit=True, options=options, prepare_threshold=None
        ) as custom,
        await psycopg.AsyncConnection.connect(
            db_url, autocommit=True, options=options, prepare_threshold=0
        ) as generic,
    ):
        ranges = [(T0 - 60 * M, T0 + 3 * M), (T0, T0 + 10 * M), (T0 + 6 * M, T0 + 9 * M)]
        for interval in ("1m", "1h", "1d"):
            for start, end in ranges * 3:  # each statement executed several times
                if interval != "1m":
                    start = period_floor(start - timedelta(days=2), interval)
                    end = end + timedelta(days=1)
                monkeypatch.setattr(candle_reads, "READ_PLANS", custom_plans)
                a = await candle_reads.fetch_candle_data(custom, TICKER, interval, start, end)
                monkeypatch.setattr(candle_reads, "READ_PLANS", generic_plans)
                b = await candle_reads.fetch_candle_data(generic, TICKER, interval, start, end)
                assert a == b, (interval, start, end)
        cur = await generic.execute(
            "SELECT sum(generic_plans), sum(custom_plans) FROM pg_prepared_statements "
            "WHERE cardinality(parameter_types) > 0"
        )
        row = await cur.fetchone()
    assert row is not None
    assert row[0] > 0  # the statements with parameters did run with generic plans
    assert row[1] == 0


async def test_a_connection_prepares_the_read_at_its_first_execution(db_url: str) -> None:
    """The read's statements run with generic plans (READ_PLANS): each is prepared at its first
    execution on a connection, so that its generic plan is made once and kept. At psycopg's
    default threshold (5) the first four executions were unnamed statements, each planned
    generically again over every chunk of the relations (30-50 ms a read at 10M trades)."""
    load(db_url)
    async with await psycopg.AsyncConnection.connect(
        db_url, autocommit=True, options=CONNECTION_OPTIONS
    ) as conn:
        assert conn.prepare_threshold == 5  # psycopg's default, as the API's connections have
        # across the watermark (rows below and above it) with nothing in the two days before
        # (the state before the range from the 1d aggregates): every statement of a read
        data = await candle_reads.fetch_candle_data(conn, TICKER, "1m", T0, T0 + 10 * M)
        assert len(data.buckets) == 10
        cur = await conn.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE cardinality(parameter_types) > 0"
        )
        first = await cur.fetchall()
        await candle_reads.fetch_candle_data(conn, TICKER, "1m", T0, T0 + 10 * M)
        cur = await conn.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE cardinality(parameter_types) > 0"
        )
        second = await cur.fetchall()
    # the watermarks, the rows (trades, quotes, stats) below the watermark and above it, the near
    # and the far carried-in state
    assert first == [(1, 0)] * (1 + 6 + 2)
    assert second == [(2, 0)] * (1 + 6 + 2)
