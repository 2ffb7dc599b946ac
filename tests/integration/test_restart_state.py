"""What a restarted collector reads of the previous run: where its books became unknown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from kalshibook.storage.restart import last_stored

pytestmark = pytest.mark.db

T = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
SNAPSHOT = """
INSERT INTO market.orderbook_snapshots
    (ts, market_ticker, received_at, source, epoch, sid, seq, yes_bids, no_bids)
VALUES (%s, 'KXR-1', %s, 'snapshot', 1, 1, 1, '[["0.4000","10.00"]]', '[]')
"""
DELTA = """
INSERT INTO market.orderbook_deltas
    (ts, market_ticker, received_at, side, price, delta, epoch, sid, seq)
VALUES (%s, 'KXR-1', %s, 'yes', 0.4000, 1.00, 1, 1, 2)
"""
TRADE = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count,
    taker_outcome_side, taker_book_side, is_block_trade, source, received_at)
VALUES (%s, gen_random_uuid(), 'KXR-2', 0.3600, 0.6400, 1.00, 'yes', 'bid', false, 'ws', %s)
"""


async def test_books_are_unknown_from_the_older_end_of_the_book_tables(db_url: str) -> None:
    """A killed run stored a trade at 10:00:10 but its deltas only to 10:00:01 (the writer
    commits each table on its own): the books are unknown from there, not from the trade."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SNAPSHOT, (T, T))
        conn.execute(DELTA, (T + timedelta(seconds=1),) * 2)
        conn.execute(TRADE, (T + timedelta(seconds=10),) * 2)
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        last = await last_stored(conn)
    assert last.trade == T + timedelta(seconds=10)
    assert last.data == T  # the older of the newest snapshot (10:00:00) and delta (10:00:01)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SNAPSHOT, (T + timedelta(seconds=5),) * 2)  # a later checkpoint
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        assert (await last_stored(conn)).data == T + timedelta(seconds=1)


async def test_no_book_stored_means_no_book_gap(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(TRADE, (T, T))
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        last = await last_stored(conn)
    assert (last.data, last.trade) == (None, T)
