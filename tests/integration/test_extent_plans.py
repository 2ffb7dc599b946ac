"""Reads bounded by the read extents (migration 0006).

The seed API's market detail (kalshibook.storage.market_summary.market_data): the same figures
as counting over the whole history, planned only over the chunks inside the market's extents.

An old market's book and trades span 40 days (160 six-hour chunks of deltas); a recent market has
a book and trades in the last hours. Over the whole history, every request planned all of them.
The order book at an instant of a quiet market (last snapshot days ago) searches snapshots from
its first one, not from 1970; after a market's last snapshot only that snapshot's hour; an
unknown ticker reads no snapshot chunk outside the last day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from plan_support import PAUSE_COMPRESSION, Recorder, chunks_planned

from kalshibook.api.app import CONNECTION_OPTIONS
from kalshibook.export import sampled
from kalshibook.storage import book_reads, reads
from kalshibook.storage.book_reads import book_at
from kalshibook.storage.coverage import read_coverage
from kalshibook.storage.market_summary import MarketData, market_data

pytestmark = [pytest.mark.db]

HISTORY = [
    """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
SELECT now() - INTERVAL '41 days' + k * INTERVAL '1 day', 'OLD', now(), 'snapshot', 1, 1,
       k * 24, '[]', '[]'
FROM generate_series(0, 39) k
""",
    """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT now() - INTERVAL '41 days' + k * INTERVAL '1 hour', 'OLD', now(), 'yes', 0.5, 1, 1, 1, k
FROM generate_series(1, 40 * 24) k
""",
    """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
SELECT now() - INTERVAL '41 days' + k * INTERVAL '1 day', gen_random_uuid(), 'OLD', 0.5, 0.5, 1,
       'ws', now()
FROM generate_series(0, 39) k
""",
    """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
VALUES (now() - INTERVAL '3 hours', 'RECENT', now(), 'snapshot', 1, 2, 0, '[]',
        '[]')
""",
    """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT now() - INTERVAL '3 hours' + k * INTERVAL '1 minute', 'RECENT', now(), 'no', 0.4, -1, 1,
       2, k
FROM generate_series(1, 100) k
""",
    """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
SELECT now() - INTERVAL '4 hours' + k * INTERVAL '1 minute', gen_random_uuid(), 'RECENT', 0.5,
       0.5, 1, 'ws', now()
FROM generate_series(0, 9) k
""",
    """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
SELECT date_trunc('hour', now()) - k * INTERVAL '1 day' + INTERVAL '10 minutes', 'QUIET', now(),
       'snapshot', 1, 3, 10 - k, '[[0.4, 5]]', '[]'
FROM generate_series(4, 5) k
""",
    """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
SELECT now() - INTERVAL '40 days' + k * INTERVAL '1 day', 'ENDED', now(), 'snapshot', 1, 4,
       k, '[[0.3, 2]]', '[]'
FROM generate_series(0, 1) k
""",
    """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
SELECT now() - INTERVAL '1 hour' + k * INTERVAL '2 seconds', gen_random_uuid(), 'BUSY', 0.5,
       0.5, 1, 'ws', now()
FROM generate_series(1, 1200) k
""",
    """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT now() - INTERVAL '1 hour' + k * INTERVAL '2 seconds', 'BUSY', now(), 'no', 0.4, 1, 1, 5, k
FROM generate_series(1, 1200) k
""",
    # two REST trades of the old market (a backfill), days apart inside its 40 days
    """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
SELECT now() - INTERVAL '31 days' + k * INTERVAL '5 days' + INTERVAL '7 minutes',
       gen_random_uuid(), 'OLD', 0.5, 0.5, 1, 'rest', now()
FROM generate_series(0, 1) k
""",
    "ANALYZE market.orderbook_deltas",
]
SNAPSHOT_SPAN = """
SELECT min(ts), max(ts) FROM market.orderbook_snapshots WHERE market_ticker = %s
"""
BOOK_AND_TRADES = ["orderbook_snapshots", "orderbook_deltas", "trades"]
# the figures as the seed API first computed them: over the whole history
REFERENCE = """
SELECT (SELECT count(*) FROM market.orderbook_snapshots WHERE market_ticker = %(ticker)s),
       (SELECT count(*) FROM market.orderbook_deltas WHERE market_ticker = %(ticker)s),
       LEAST((SELECT min(ts) FROM market.orderbook_snapshots WHERE market_ticker = %(ticker)s),
             (SELECT min(ts) FROM market.trades WHERE market_ticker = %(ticker)s)),
       GREATEST((SELECT max(ts) FROM market.orderbook_snapshots WHERE market_ticker = %(ticker)s),
                (SELECT max(ts) FROM market.orderbook_deltas WHERE market_ticker = %(ticker)s),
                (SELECT max(ts) FROM market.trades WHERE market_ticker = %(ticker)s))
"""


@pytest.fixture(scope="module")
def history(databases: Any) -> Iterator[str]:
    with databases.database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(PAUSE_COMPRESSION)
            for statement in HISTORY:
                conn.execute(statement)
        yield url


@pytest.mark.parametrize(("ticker", "bound"), [("OLD", None), ("RECENT", 12), ("NOPE", 0)])
async def test_market_data_is_the_whole_history_planned_inside_the_extents(
    history: str, ticker: str, bound: int | None
) -> None:
    with psycopg.connect(history, autocommit=True) as conn:
        expected = MarketData(*(conn.execute(REFERENCE, {"ticker": ticker}).fetchone() or ()))
    Recorder.log = []
    async with await psycopg.AsyncConnection.connect(
        history, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
    ) as conn:
        got = await market_data(conn, ticker)
    assert got == expected
    if ticker == "OLD":
        assert (got.delta_count, got.snapshot_count) == (960, 40)
        # its first and last trade: in the first and last hour of its 40 days of trades
        assert chunks_planned(history, Recorder.log, ["trades"]) <= 2
    # of ~200 chunks of the three hypertables: the recent market's last hours only; an unknown
    # market's none (the old market's book spans the whole history, and is counted)
    if bound is not None:
        assert chunks_planned(history, Recorder.log, BOOK_AND_TRADES) <= bound


SOURCE_SPANS = """
SELECT CASE source WHEN 'ws' THEN 'live' ELSE source END, min(ts), max(ts) FROM market.trades
WHERE market_ticker = %s GROUP BY source ORDER BY source = 'rest'
"""


async def test_coverage_reads_each_source_s_first_and_last_hour_only(history: str) -> None:
    """Each trade source's first and last trade (migration 0013): as over the whole history, from
    the first and last hour of the source's extent (40 daily chunks of live trades, and a
    source with two trades days apart: every chunk between them was planned, and every trade
    read, for each source and direction)."""
    with psycopg.connect(history, autocommit=True) as conn:
        expected = conn.execute(SOURCE_SPANS, ("OLD",)).fetchall()
    Recorder.log = []
    async with await psycopg.AsyncConnection.connect(
        history, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
    ) as conn:
        got = await read_coverage(conn, "OLD")
    assert got is not None
    assert [(s.source, s.first, s.last) for s in got.trade_sources] == expected
    assert [source for source, _, _ in expected] == ["live", "rest"]
    assert chunks_planned(history, Recorder.log, ["trades"]) <= 4  # two edge hours per source


async def test_book_at_searches_snapshots_only_inside_the_market_s_book(history: str) -> None:
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(
        history, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
    ) as conn:
        with psycopg.connect(history, autocommit=True) as sync:
            first, last = sync.execute(SNAPSHOT_SPAN, ("QUIET",)).fetchone() or (None, None)
            _, last_ended = sync.execute(SNAPSHOT_SPAN, ("ENDED",)).fetchone() or (None, None)
        Recorder.log = []
        quiet = await book_at(conn, "QUIET", now)
        quiet_log = list(Recorder.log)
        Recorder.log = []
        unknown = await book_at(conn, "NOPE", now)
        unknown_log = list(Recorder.log)
        before = await book_at(conn, "QUIET", first - timedelta(hours=2))
        Recorder.log = []
        ended = await book_at(conn, "ENDED", now)
        ended_log = list(Recorder.log)
    assert quiet.snapshot is not None
    assert quiet.snapshot.ts == last
    assert quiet.gap is None
    assert unknown.snapshot is None
    assert unknown.gap == (None, None, "no_snapshot")
    assert before.snapshot is None
    assert before.gap == (None, first, "no_snapshot")
    assert ended.snapshot is not None
    assert ended.snapshot.ts == last_ended
    # of ~42 daily chunks of snapshots: the last day's and the quiet market's five days
    assert chunks_planned(history, quiet_log, ["orderbook_snapshots"]) <= 8
    assert chunks_planned(history, unknown_log, ["orderbook_snapshots"]) <= 2
    # a market whose snapshots ended 39 days ago: the last day's and its last snapshot's hour
    assert chunks_planned(history, ended_log, ["orderbook_snapshots"]) <= 4


async def test_export_replays_find_the_snapshot_before_a_day_inside_the_book(history: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(history, autocommit=True) as sync:
        first, last = sync.execute(SNAPSHOT_SPAN, ("QUIET",)).fetchone() or (None, None)
        _, last_ended = sync.execute(SNAPSHOT_SPAN, ("ENDED",)).fetchone() or (None, None)
    found = {}
    logs = {}
    async with await psycopg.AsyncConnection.connect(
        history, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
    ) as conn:
        for name, ticker, at in [
            ("quiet now", "QUIET", now),
            ("quiet between", "QUIET", last - timedelta(minutes=1)),
            ("quiet before", "QUIET", first - timedelta(minutes=1)),
            ("ended now", "ENDED", now),
            ("unknown", "NOPE", now),
        ]:
            Recorder.log = []
            async with conn.cursor() as cur:
                found[name] = await sampled._snapshot_before(cur, ticker, at)
            logs[name] = list(Recorder.log)
    assert found == {
        "quiet now": last, "quiet between": first, "quiet before": None, "ended now": last_ended,
        "unknown": None,
    }  # fmt: skip
    planned = {n: chunks_planned(history, log, ["orderbook_snapshots"]) for n, log in logs.items()}
    # of ~45 daily chunks of snapshots: a day or an hour of the market's book each
    assert planned["ended now"] <= 1, planned
    assert planned["unknown"] == 0, planned
    assert max(planned.values()) <= 4, planned


async def test_status_reads_the_newest_and_oldest_chunks_only(history: str) -> None:
    Recorder.log = []
    async with await psycopg.AsyncConnection.connect(
        history, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
    ) as conn:
        rows = {r.table: r for r in await reads.status_channels(conn)}
    assert without_estimates(rows) == without_estimates(whole_table_status(history))
    # of ~290 chunks (160 of deltas): trades and deltas, busy in the last hour, are read in their
    # two newest and two oldest chunks, three look-ups, twice (the quiet tables, a few rows each,
    # are read again over all their chunks, in the same statement)
    for table in ("trades", "orderbook_deltas"):
        assert chunks_planned(history, Recorder.log, [table]) <= 2 * 3 * 2, table


def without_estimates(rows: dict[str, reads.ChannelRow]) -> dict[str, reads.ChannelRow]:
    """The rows without TimescaleDB's row estimate (it moves when autovacuum analyses a chunk)."""
    return {t: r._replace(approx_rows=0) for t, r in rows.items()}


def whole_table_status(url: str) -> dict[str, reads.ChannelRow]:
    """What the status read over every chunk of each table gives, for comparison."""
    tables = [t for t, _, _ in reads._CHANNEL_TABLES]
    with psycopg.connect(url, autocommit=True) as sync:
        chunks = sync.execute(reads.STATUS_CHUNKS, {"tables": tables, "k": 2}).fetchall()
        params = reads.status_channel_params(chunks, tables)
        return {
            str(r[0]): reads.ChannelRow(*r)
            for r in sync.execute(reads.STATUS_CHANNELS, params).fetchall()
        }


TRADE_AT = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
VALUES (%s, gen_random_uuid(), 'F', 0.5, 0.5, 1, 'ws', %s)
"""


async def test_status_reads_the_whole_table_when_its_end_chunks_are_not_enough(
    db_url: str,
) -> None:
    """Rows in the future (their chunks newest), chunks emptied by a DELETE: the same answer as
    over every chunk."""
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # trades keep milliseconds
    old_receipt = now - timedelta(days=400)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for days in (-60, -30, 0):
            conn.execute(TRADE_AT, (now + timedelta(days=days), now))
        for days in (400, 404):  # two future chunks, received long ago
            conn.execute(TRADE_AT, (now + timedelta(days=days), old_receipt))
    states = []
    async with await psycopg.AsyncConnection.connect(
        db_url, autocommit=True, options=CONNECTION_OPTIONS
    ) as conn:
        states.append({r.table: r for r in await reads.status_channels(conn)})
        with psycopg.connect(db_url, autocommit=True) as sync:
            states.append(whole_table_status(db_url))
            sync.execute("DELETE FROM market.trades WHERE ts > now() + INTERVAL '1 day'")
            sync.execute("DELETE FROM market.trades WHERE ts < now() - INTERVAL '45 days'")
        states.append({r.table: r for r in await reads.status_channels(conn)})
        states.append(whole_table_status(db_url))
    states = [without_estimates(state) for state in states]
    assert states[0] == states[1]
    assert states[0]["trades"].last_received_at == now  # not the future rows' old receipt
    assert states[2] == states[3]
    assert states[2]["trades"].last_ts == now
    assert states[2]["trades"].first_ts == now - timedelta(days=30)


SNAPSHOT_AT = """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
VALUES (%s, %s, now(), 'snapshot', 1, 9, %s, '[[0.45, 10]]', '[]')
"""
DELTA_AT = """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
VALUES (%s, %s, now(), 'yes', 0.45, 1, 1, 9, %s)
"""


async def test_bounded_reads_hold_across_time_zones_retention_and_clock_slack(
    db_url: str,
) -> None:
    """A session in New York across the spring-forward hour, the first snapshots' chunks dropped
    (an extent only grows), a delta stamped just before its snapshot's hour."""
    dst = datetime(2025, 3, 9, 6, 30, tzinfo=UTC)  # 01:30 EST; 07:00Z is 03:00 EDT
    first = datetime(2025, 5, 1, 12, tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SNAPSHOT_AT, (dst, "DST", 0))
        for k in range(5):  # RET: one snapshot a day, 1-5 May
            conn.execute(SNAPSHOT_AT, (first + timedelta(days=k), "RET", k))
        conn.execute(
            "SELECT drop_chunks('market.orderbook_snapshots', older_than => %s::timestamptz, "
            "newer_than => %s::timestamptz)",
            (first + timedelta(days=2) - timedelta(hours=12), first - timedelta(days=2)),
        )
        slack = datetime(2025, 6, 1, 10, 0, 0, 100000, tzinfo=UTC)
        conn.execute(SNAPSHOT_AT, (slack, "SLACK", 0))
        conn.execute(DELTA_AT, (slack - timedelta(milliseconds=150), "SLACK", 1))
        conn.execute(DELTA_AT, (slack + timedelta(seconds=5), "SLACK", 2))
    remaining = first + timedelta(days=2)
    new_york = f"{CONNECTION_OPTIONS} -c timezone=America/New_York"
    async with await psycopg.AsyncConnection.connect(
        db_url, autocommit=True, options=new_york
    ) as conn:
        async with conn.cursor() as cur:
            before_export = await sampled._snapshot_before(cur, "DST", dst + timedelta(days=1))
        later = await book_at(conn, "DST", dst + timedelta(days=3))
        early = await book_at(conn, "RET", first)
        ret = await market_data(conn, "RET")
        slack_data = await market_data(conn, "SLACK")
        slack_page = await book_reads.list_deltas(
            conn, ticker="SLACK", start=None, end=None, after=None, limit=10
        )
    assert before_export == dst
    assert later.snapshot is not None
    assert later.snapshot.ts == dst
    assert early.gap == (None, remaining, "no_snapshot")  # the first snapshot left
    assert ret.first_data_at == remaining
    assert ret.snapshot_count == 3
    assert slack_data.delta_count == 2
    assert [d.seq for d in slack_page] == [1, 2]


QUIET_QUOTES = """
INSERT INTO market.quotes (ts, market_ticker, received_at, yes_bid, yes_bid_size, yes_ask,
                           yes_ask_size)
SELECT date_trunc('day', now()) - INTERVAL '100 days' + k * INTERVAL '29 minutes', 'Q',
       now() - INTERVAL '100 days' + k * INTERVAL '29 minutes', 0.4, 10, 0.5, 10
FROM generate_series(0, 100 * 1440 / 29 - 1) k
"""


async def test_a_quiet_table_s_status_reads_more_end_chunks_before_all_of_them(
    db_url: str,
) -> None:
    """Quotes 29 minutes apart over 100 daily chunks (~50 a chunk): the two newest chunks hold
    too few rows for the freshness reading, the 32 newest enough. The answer is the whole
    table's; before, the second reading planned all 100 chunks."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PAUSE_COMPRESSION)
        conn.execute(QUIET_QUOTES)
    Recorder.log = []
    async with await psycopg.AsyncConnection.connect(
        db_url, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
    ) as conn:
        rows = await reads.status_channels(conn)
    got = without_estimates({r.table: r for r in rows})
    assert got == without_estimates(whole_table_status(db_url))
    assert got["quotes"].newest_rows == 1000
    # the first reading's 2 newest and 2 oldest chunks, then the 32 newest and the 32 oldest,
    # not all 100 (distinct chunks per statement)
    assert chunks_planned(db_url, Recorder.log, ["quotes"]) <= 2 * 2 + 2 * 32
