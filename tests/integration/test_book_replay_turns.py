"""A long order-book replay gives the event loop back between batches.

The order book at an instant replays every delta after the snapshot it starts from: at most a
checkpoint interval (500) normally, millions where a book has no recent snapshot. That replay is
Python work with no I/O in it; done in one piece it stalled every other request of the API
process for seconds, and the request's own deadline (noticed only when the loop turns) could not
stop it: a request with a 10 s deadline answered after 20 s (bench/bench_api.py, 10M deltas
without checkpoints). Here the loop's longest stall during such a replay is measured by a task
that only yields, and compared with the replay's own duration.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from kalshibook.storage.book_reads import REPLAY_BATCH, book_at

pytestmark = [pytest.mark.db, pytest.mark.asyncio(loop_scope="session")]

DELTAS = 20 * REPLAY_BATCH
AT = datetime(2026, 3, 2, 12, tzinfo=UTC)
SNAPSHOT = """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
VALUES (%(t0)s, 'LONG', %(t0)s, 'snapshot', 1, 1, 0, '[[0.40, 10]]', '[[0.55, 7]]')
"""
# +1 then -1 contract at 0.41, alternately: the book ends as the snapshot plus one contract at
# 0.41 when the count is odd, as the snapshot when it is even
DELTAS_SQL = """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT %(t0)s + k * INTERVAL '1 millisecond', 'LONG', %(t0)s, 'yes', 0.41,
       CASE WHEN k %% 2 = 1 THEN 1 ELSE -1 END, 1, 1, k
FROM generate_series(1, %(n)s) k
"""


async def test_a_long_replay_lets_the_loop_turn(db_url: str) -> None:
    t0 = AT - timedelta(minutes=30)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SNAPSHOT, {"t0": t0})
        conn.execute(DELTAS_SQL, {"t0": t0, "n": DELTAS + 1})
    stalls: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            stalls.append(now - last)
            last = now

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as aconn:
        turning = asyncio.create_task(ticker())
        started = time.perf_counter()
        try:
            result = await book_at(aconn, "LONG", AT)
        finally:
            took = time.perf_counter() - started
            done.set()
            await turning
    assert result.deltas_applied == DELTAS + 1
    assert result.gap is None
    levels = {
        side: sorted((Decimal(p), Decimal(q)) for p, q in result.book.levels(side, None))
        for side in ("yes", "no")
    }
    assert levels["yes"] == [(Decimal("0.40"), Decimal(10)), (Decimal("0.41"), Decimal(1))]
    assert levels["no"] == [(Decimal("0.55"), Decimal(7))]
    # one batch is a twentieth of the replay: the loop never waited for the whole of it
    assert max(stalls) < took / 4, (max(stalls), took)
