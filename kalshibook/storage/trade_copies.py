"""Finding and merging trades stored twice (kalshibook.domain.trade_copies decides which row stays).

Day by day (UTC), so that each statement is bounded by constants and plans only that day's chunks:
the look-up reads the day (a compressed chunk is read, not decompressed), and each market's
merge names that market and the copies' time range, so a compressed chunk decompresses only that
market's batches there. One transaction per day: a day is merged whole or not at all.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Final, LiteralString

from psycopg import AsyncConnection

from kalshibook.domain.trade_copies import Merge, StoredCopy, plan_merges

__all__ = ("COPY_SPREAD", "find_copies", "merge_copies", "trade_days")

AConn = AsyncConnection[Any]

COPY_SPREAD: Final = timedelta(seconds=1)
"""How far apart two copies of a trade may be stored (a whole-second WS time and the REST time):
each day's look-up starts this much before midnight, so copies either side of it meet."""

TRADE_DAYS: Final[LiteralString] = """
SELECT date_trunc('day', min(first_hour), 'UTC'), max(end_hour) FROM market.trade_extents
"""
# every row of a trade_id stored more than once in [lo, hi)
FIND_COPIES: Final[LiteralString] = """
SELECT market_ticker, trade_id::text, ts, created_time, source, received_at,
       taker_outcome_side, taker_book_side, is_block_trade
FROM (SELECT market_ticker, trade_id, ts, created_time, source, received_at, taker_outcome_side,
             taker_book_side, is_block_trade, count(*) OVER (PARTITION BY trade_id) AS copies
      FROM market.trades
      WHERE ts >= %(lo)s::timestamptz AND ts < %(hi)s::timestamptz) AS day
WHERE copies > 1
ORDER BY trade_id, ts
"""
DROP_COPIES: Final[LiteralString] = """
DELETE FROM market.trades AS t
USING unnest(%(ids)s::uuid[], %(ts)s::timestamptz[]) AS d(trade_id, ts)
WHERE t.market_ticker = %(market)s
  AND t.ts >= %(lo)s::timestamptz AND t.ts <= %(hi)s::timestamptz
  AND t.trade_id = d.trade_id AND t.ts = d.ts
"""
KEEP_MERGED: Final[LiteralString] = """
UPDATE market.trades AS t SET source = k.source, received_at = k.received_at,
       taker_outcome_side = k.outcome, taker_book_side = k.book, is_block_trade = k.block
FROM unnest(%(ids)s::uuid[], %(ts)s::timestamptz[], %(sources)s::text[],
            %(received)s::timestamptz[], %(outcome)s::text[], %(book)s::text[],
            %(block)s::boolean[]) AS k(trade_id, ts, source, received_at, outcome, book, block)
WHERE t.market_ticker = %(market)s
  AND t.ts >= %(lo)s::timestamptz AND t.ts <= %(hi)s::timestamptz
  AND t.trade_id = k.trade_id AND t.ts = k.ts
  AND (t.source, t.received_at, t.taker_outcome_side, t.taker_book_side, t.is_block_trade)
      IS DISTINCT FROM (k.source, k.received_at, k.outcome, k.book, k.block)
"""
"""The kept row: the first receipt's source and time, the copies' taker sides and block flag."""
WIDEN_TRADE_DAYS: Final[LiteralString] = """
INSERT INTO market.trade_days AS e (market_ticker, source, day, first_hour, end_hour)
SELECT %(market)s, k.source, time_bucket(INTERVAL '1 day', k.ts),
       min(time_bucket(INTERVAL '1 hour', k.ts)),
       max(time_bucket(INTERVAL '1 hour', k.ts)) + INTERVAL '1 hour'
FROM unnest(%(ts)s::timestamptz[], %(sources)s::text[]) AS k(ts, source)
GROUP BY k.source, time_bucket(INTERVAL '1 day', k.ts)
ON CONFLICT (market_ticker, source, day) DO UPDATE
SET first_hour = least(e.first_hour, EXCLUDED.first_hour),
    end_hour = greatest(e.end_hour, EXCLUDED.end_hour)
"""
"""The kept rows' hours in their (possibly new) source's trade days (migration 0013: the insert
trigger recorded the source each copy had, and the kept row may take the other copy's)."""


async def find_copies(conn: AConn, day: datetime) -> list[Merge]:
    """The merges of the trades stored twice with a copy in ``[day, day + 1 day)``: their copies
    are looked for from ``COPY_SPREAD`` before midnight (a pair across it is the later day's; a
    pair wholly before it is the day before's, not counted twice)."""
    params = {"lo": day - COPY_SPREAD, "hi": day + timedelta(days=1)}
    async with conn.cursor() as cur:
        await cur.execute(FIND_COPIES, params)
        rows = await cur.fetchall()
    merges = plan_merges(StoredCopy(*row) for row in rows)
    return [m for m in merges if max(m.keep_ts, *m.drop_ts) >= day]


async def merge_copies(conn: AConn, merges: list[Merge]) -> int:
    """Apply ``merges`` in one transaction; the number of rows removed."""
    by_market: defaultdict[str, list[Merge]] = defaultdict(list)
    for merge in merges:
        by_market[merge.market_ticker].append(merge)
    removed = 0
    async with conn.transaction(), conn.cursor() as cur:
        for market, group in by_market.items():
            times = [t for m in group for t in (m.keep_ts, *m.drop_ts)]
            bounds = {"market": market, "lo": min(times), "hi": max(times)}
            await cur.execute(
                DROP_COPIES,
                {
                    **bounds,
                    "ids": [m.trade_id for m in group for _ in m.drop_ts],
                    "ts": [t for m in group for t in m.drop_ts],
                },
            )
            removed += max(cur.rowcount, 0)
            await cur.execute(
                KEEP_MERGED,
                {
                    **bounds,
                    "ids": [m.trade_id for m in group],
                    "ts": [m.keep_ts for m in group],
                    "sources": [m.source for m in group],
                    "received": [m.received_at for m in group],
                    "outcome": [m.taker_outcome_side for m in group],
                    "book": [m.taker_book_side for m in group],
                    "block": [m.is_block_trade for m in group],
                },
            )
            await cur.execute(
                WIDEN_TRADE_DAYS,
                {
                    "market": market,
                    "ts": [m.keep_ts for m in group],
                    "sources": [m.source for m in group],
                },
            )
    return removed


async def trade_days(conn: AConn) -> tuple[datetime, datetime] | None:
    """``(first UTC midnight, end)`` of the recorded trades (market.trade_extents), if any."""
    row = await (await conn.execute(TRADE_DAYS)).fetchone()
    return None if row is None or row[0] is None else (row[0], row[1])
