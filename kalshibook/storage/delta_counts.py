"""Per market and day, how many order-book deltas it holds (migration 0015), and a market's total.

The seed API's market detail gives a market's delta count. Counting its deltas each time took
time in proportion to its whole history (~100 ms per 1.8M deltas, every chunk of its life
planned). ``market.delta_days.deltas`` holds each day's count once the day is over:
:func:`count_days` counts, one day and one transaction at a time, the days that ended at least
:data:`SEAL` ago (the collector every :data:`COUNT_EVERY` seconds, ``kalshibook rebuild-extents``
all of them), and :func:`market_delta_count` adds the counted days to a count of the rest.

A count is right only while nothing writes into its day. The writer's rows of a day that has ended
(a spool replayed after an outage) set the day's count back to NULL and bump its ``version`` in
the same transaction (kalshibook.storage.extents); a count is stored only if the day's
``version`` is still the one read with the rows counted, so a count racing such a write is not
kept. A day is counted :data:`SEAL` after it ended: a batch the writer formed before the day
ended and commits later than that is the only write the version cannot see, and a batch commits
within seconds. Any other write (plain SQL, a DELETE) marks the extents incomplete, and the
counts are then not used until the rebuild, which sets them all back to NULL. Retention drops
whole chunks and fires no trigger: counts are used only for days after the deltas' first chunk
began (the day it begins in is counted again).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from psycopg import AsyncConnection, sql

__all__ = (
    "COUNT_EVERY",
    "SEAL",
    "count_days",
    "day_counts_of",
    "live_ranges",
    "market_delta_count",
    "whole_days_from",
)

Conn = AsyncConnection[Any]

DAY: Final = timedelta(days=1)
SEAL: Final = timedelta(hours=3)
"""A day is counted this long after it ended."""
COUNT_EVERY: Final = 600.0
"""Seconds between the collector's counting rounds."""

UNCOUNTED_DAYS: Final = """
SELECT DISTINCT day FROM market.delta_days
WHERE deltas IS NULL AND day <= %(last)s
ORDER BY day
LIMIT %(n)s
"""
"""The first ``n`` days not counted that may be (``last``: the last day that ended ``SEAL`` ago)."""

COUNT_DAY: Final = sql.SQL("""
UPDATE market.delta_days AS y SET deltas = coalesce(c.n, 0)
FROM market.delta_days AS s
LEFT JOIN (SELECT market_ticker, count(*) AS n FROM market.orderbook_deltas
           WHERE ts >= {day} AND ts < {next} GROUP BY market_ticker) AS c USING (market_ticker)
WHERE s.day = {day} AND s.deltas IS NULL
  AND y.market_ticker = s.market_ticker AND y.day = s.day AND y.version = s.version
""")
"""Count one day's deltas per market and store the counts of the days whose ``version`` has not
moved since the statement's snapshot: ``s`` is read in that snapshot, and a row of ``y`` that a
concurrent write changed is re-checked in its new version (PostgreSQL's EvalPlanQual) against
``s``'s old one. The day's bounds are literals, so the plan holds only that day's chunks."""

DAY_COUNTS: Final = """
SELECT coalesce(sum(d.deltas) FILTER (WHERE d.day >= %(whole_from)s
                                        AND (u.day IS NULL OR d.day < u.day)), 0),
       u.day
FROM (SELECT min(day) AS day FROM market.delta_days
      WHERE market_ticker = %(ticker)s AND deltas IS NULL AND day >= %(whole_from)s) AS u
LEFT JOIN market.delta_days AS d ON d.market_ticker = %(ticker)s
GROUP BY u.day
"""
"""The market's counted deltas on whole days from ``whole_from`` up to its first uncounted day
(NULL: none), and that day."""


async def count_days(
    conn: Conn,
    now: datetime,
    *,
    limit: int | None = None,
    progress: Callable[[datetime, int], None] | None = None,
) -> int:
    """Count the days that ended :data:`SEAL` before ``now`` and are not counted yet, oldest
    first, each in a transaction of its own (``conn`` in autocommit); at most ``limit`` days.
    ``progress(day, markets)`` after each. Returns the days counted (a day whose count a
    racing write kept from being stored, and that is counted again, counts twice)."""
    last = (now.astimezone(UTC) - SEAL - DAY).replace(hour=0, minute=0, second=0, microsecond=0)
    done = 0
    while limit is None or done < limit:
        batch = 64 if limit is None else min(64, limit - done)
        async with conn.cursor() as cur:
            await cur.execute(UNCOUNTED_DAYS, {"last": last, "n": batch})
            days = [row[0] for row in await cur.fetchall()]
        if not days:
            break
        for day in days:
            statement = COUNT_DAY.format(day=sql.Literal(day), next=sql.Literal(day + DAY))
            async with conn.cursor() as cur:
                await cur.execute(statement)
                markets = cur.rowcount
            done += 1
            if progress is not None:
                progress(day, markets)
    return done


def whole_days_from(floor: datetime) -> datetime:
    """The first whole day at or after the deltas' first chunk's start (pure)."""
    utc = floor.astimezone(UTC)
    day = utc.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if day == utc else day + DAY


def live_ranges(
    floor: datetime, whole_from: datetime, uncounted: datetime | None, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The ranges whose deltas must be counted row by row (pure): the part of a day retention
    cut into (``[floor, whole_from)``), and everything from the first uncounted day to ``end``."""
    out = []
    if floor < whole_from:
        out.append((floor, min(whole_from, end)))
    if uncounted is not None and uncounted < end:
        out.append((max(uncounted, whole_from), end))
    return [(lo, hi) for lo, hi in out if lo < hi]


def day_counts_of(row: Any) -> tuple[int, datetime | None]:
    """:data:`DAY_COUNTS`' row (pure)."""
    if row is None:
        return 0, None
    return int(row[0]), (None if row[1] is None else row[1].astimezone(UTC))


COUNT_RANGE: Final = """
SELECT count(*) FROM market.orderbook_deltas
WHERE market_ticker = %(ticker)s AND ts >= %(lo)s AND ts < %(hi)s
"""


async def market_delta_count(conn: Conn, ticker: str, floor: datetime | None, end: datetime) -> int:
    """The market's deltas, from its counted days and a count of the rest (``floor``: where the
    stored deltas begin, None: none stored; ``end``: past its last delta). Only while the delta
    extents are complete."""
    if floor is None:
        return 0
    whole_from = whole_days_from(floor)
    cur = await conn.execute(DAY_COUNTS, {"ticker": ticker, "whole_from": whole_from})
    counted, uncounted = day_counts_of(await cur.fetchone())
    total = counted
    for lo, hi in live_ranges(floor.astimezone(UTC), whole_from, uncounted, end):
        cur = await conn.execute(COUNT_RANGE, {"ticker": ticker, "lo": lo, "hi": hi})
        row = await cur.fetchone()
        total += int(row[0]) if row else 0
    return total
