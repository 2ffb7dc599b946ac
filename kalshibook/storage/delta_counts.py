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
counts are then not used until the rebuild, which sets them all back to NULL. Retention and
``drop_chunks`` drop whole chunks and fire no trigger: a count is used only while every chunk that
overlapped its day when it was counted still exists (migration 0016: a chunk dropped from the
start or the middle of the history, or dropped and made again by a late row, makes its days be
counted row by row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, LiteralString

from psycopg import AsyncConnection, sql

__all__ = (
    "COUNT_EVERY",
    "SEAL",
    "count_days",
    "live_ranges",
    "market_delta_count",
    "range_rows",
    "untrusted_runs",
)

Conn = AsyncConnection[Any]

DAY: Final = timedelta(days=1)
SEAL: Final = timedelta(hours=3)
"""A day is counted this long after it ended."""
COUNT_EVERY: Final = 600.0
"""Seconds between the collector's counting rounds."""

UNCOUNTED_DAYS: Final = """
SELECT DISTINCT day FROM market.delta_days
WHERE (deltas IS NULL OR chunks IS NULL) AND day <= %(last)s
ORDER BY day
LIMIT %(n)s
"""
"""The first ``n`` days not counted that may be (``last``: the last day that ended ``SEAL`` ago),
or counted without their chunks (by a collector of before migration 0016)."""

COUNT_DAY: Final = sql.SQL("""
UPDATE market.delta_days AS y SET deltas = coalesce(c.n, 0), chunks = k.ids
FROM (SELECT market.delta_day_chunks({day}) AS ids) AS k
CROSS JOIN market.delta_days AS s
LEFT JOIN (SELECT market_ticker, count(*) AS n FROM market.orderbook_deltas
           WHERE ts >= {day} AND ts < {next} GROUP BY market_ticker) AS c USING (market_ticker)
WHERE s.day = {day} AND (s.deltas IS NULL OR s.chunks IS NULL)
  AND y.market_ticker = s.market_ticker AND y.day = s.day AND y.version = s.version
""")
"""Count one day's deltas per market and store the counts of the days whose ``version`` has not
moved since the statement's snapshot: ``s`` is read in that snapshot, and a row of ``y`` that a
concurrent write changed is re-checked in its new version (PostgreSQL's EvalPlanQual) against
``s``'s old one. The day's bounds are literals, so the plan holds only that day's chunks. With
the count, the ids of the delta chunks the day overlaps (migration 0016): a read trusts the count
only while they all exist (none dropped, none dropped and made again)."""

DAY_ROWS: Final = """
SELECT d.day, d.deltas, d.deltas IS NOT NULL AND d.chunks IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM unnest(d.chunks) AS k (id)
    WHERE NOT EXISTS (SELECT 1 FROM _timescaledb_catalog.chunk AS c
                      WHERE c.id = k.id AND NOT c.dropped))
FROM market.delta_days AS d
WHERE d.market_ticker = %(ticker)s
ORDER BY d.day
"""
"""The market's days, each with its count and whether it is trusted: counted,
and every delta chunk the day overlapped when it was counted still there (a primary-key probe of
TimescaleDB's catalog per chunk, readable by every role). Retention and ``drop_chunks``, from the
start or the middle, fire no trigger: a day with a chunk dropped, or dropped and made again (a new
id), is counted row by row: also the days retention dropped (their range holds no chunk left to
plan) and the day it cut into. A chunk made since the count holds rows that set the count back
to NULL or mark the extents incomplete."""


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


def untrusted_runs(days: Sequence[tuple[datetime, bool]]) -> list[tuple[datetime, datetime]]:
    """The days to count row by row (pure; ``(day, trusted)`` in day order): each run of untrusted
    days not separated by a trusted one, as ``[its first day, the day after its last)``. Days
    without a row between two untrusted ones hold no rows: they join the run."""
    runs: list[tuple[datetime, datetime]] = []
    lo: datetime | None = None
    hi: datetime | None = None
    for day, trusted in days:
        if trusted:
            if lo is not None and hi is not None:
                runs.append((lo, hi))
            lo = hi = None
        else:
            day = day.astimezone(UTC)
            lo = day if lo is None else lo
            hi = day + DAY
    if lo is not None and hi is not None:
        runs.append((lo, hi))
    return runs


def live_ranges(
    runs: Sequence[tuple[datetime, datetime]], end: datetime
) -> list[tuple[datetime, datetime]]:
    """The runs of days not counted or not trusted, cut at ``end`` (past the market's last
    delta): the ranges whose deltas are counted row by row (pure)."""
    return [(lo, min(hi, end)) for lo, hi in runs if lo < min(hi, end)]


COUNT_RANGE: Final[LiteralString] = """
SELECT count(*) FROM market.orderbook_deltas
WHERE market_ticker = %(ticker)s AND ts >= %(lo)s AND ts < %(hi)s
"""


async def market_delta_count(conn: Conn, ticker: str, end: datetime) -> int:
    """The market's deltas, from its trusted counted days and a count of the rest (``end``: past
    its last delta). Only while the delta extents are complete."""
    cur = await conn.execute(DAY_ROWS, {"ticker": ticker})
    rows = await cur.fetchall()
    total = sum(int(n) for _, n, trusted in rows if trusted)
    runs = untrusted_runs([(day, bool(trusted)) for day, _, trusted in rows])
    for row in await range_rows(conn, COUNT_RANGE, ticker, live_ranges(runs, end)):
        total += int(row[0])
    return total


async def range_rows(
    conn: Conn, query: LiteralString, ticker: str, ranges: Sequence[tuple[datetime, datetime]]
) -> list[tuple[Any, ...]]:
    """The one row ``query`` (an aggregate over ``[lo, hi)`` of one market) gives for each range,
    the statements sent at once (one round trip)."""
    if not ranges:
        return []
    out = []
    async with conn.pipeline():
        cursors = []
        for lo, hi in ranges:
            cur = conn.cursor()
            await cur.execute(query, {"ticker": ticker, "lo": lo, "hi": hi})
            cursors.append(cur)
        for cur in cursors:
            row = await cur.fetchone()
            assert row is not None  # an aggregate: always one row
            out.append(tuple(row))
            await cur.close()
    return out
