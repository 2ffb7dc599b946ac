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
from plan_support import Recorder, chunks_planned
from psycopg import sql

from kalshibook.api.app import CONNECTION_OPTIONS
from kalshibook.export import sampled
from kalshibook.storage import reads
from kalshibook.storage.market_summary import MarketData, market_data
from kalshibook.storage.reads import book_at

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
    with psycopg.connect(history, autocommit=True) as sync:
        for table, _, ts in reads._CHANNEL_TABLES:
            span = sync.execute(
                sql.SQL("SELECT max({ts}), min({ts}) FROM {t}").format(
                    ts=sql.Identifier(ts), t=sql.Identifier("market", table)
                )
            ).fetchone()
            assert (rows[table].last_ts, rows[table].first_ts) == span, table
    tables = [t for t, _, _ in reads._CHANNEL_TABLES]
    # of ~290 chunks (160 of deltas): two at each end of each table, for three look-ups each
    assert chunks_planned(history, Recorder.log, tables) <= 3 * 2 * len(tables)
