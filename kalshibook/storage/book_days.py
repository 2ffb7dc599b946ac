"""A market's snapshot count, first and last snapshot, from its book days (migration 0016).

The seed API's market detail gives them. Read from every snapshot of the market, they cost time
in proportion to its whole history (one-day chunks: ~365 planned for a market a year old, and
every checkpoint counted). ``market.book_days`` holds, per market and UTC day, how many snapshots
it has and its first and last one, kept exactly by the snapshots' insert trigger.

A day's row is trusted only if its first and last snapshot lie in one chunk of
``market.orderbook_snapshots`` that still exists and was created before the row: retention and
``drop_chunks`` fire no trigger, so a day whose chunk was dropped (or dropped and made again by
rows inserted later) may count snapshots that are gone. The days not trusted are counted from the
snapshots themselves, in as few ranges as the trusted days between them allow. While
``market.book_days_state`` says incomplete (an ``UPDATE``, ``DELETE`` or ``TRUNCATE`` of
snapshots since the last ``kalshibook rebuild-extents``), every snapshot of the market's book
extent is counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple

from psycopg import AsyncConnection

from kalshibook.storage.delta_counts import untrusted_runs

__all__ = ("BookSpan", "book_span", "day_totals")

Conn = AsyncConnection[Any]


class BookSpan(NamedTuple):
    snapshots: int
    first: datetime | None
    last: datetime | None


BOOK_DAYS: Final = """
SELECT d.day, d.snapshots, d.first_ts, d.last_ts, EXISTS (
    SELECT 1
    FROM (SELECT ds.id, ds.range_end FROM _timescaledb_catalog.dimension_slice AS ds
          WHERE ds.dimension_id = dim.id
            AND ds.range_start <= _timescaledb_functions.to_unix_microseconds(d.first_ts)
          ORDER BY ds.range_start DESC LIMIT 1) AS s
    JOIN _timescaledb_catalog.chunk_constraint AS cc ON cc.dimension_slice_id = s.id
    JOIN _timescaledb_catalog.chunk AS c ON c.id = cc.chunk_id
    WHERE s.range_end > _timescaledb_functions.to_unix_microseconds(d.last_ts)
      AND NOT c.dropped AND c.creation_time <= d.created_at)
FROM market.book_days AS d
CROSS JOIN (SELECT dm.id FROM _timescaledb_catalog.dimension AS dm
            JOIN _timescaledb_catalog.hypertable AS h ON h.id = dm.hypertable_id
            WHERE h.schema_name = 'market' AND h.table_name = 'orderbook_snapshots') AS dim
WHERE d.market_ticker = %(ticker)s AND (SELECT complete FROM market.book_days_state)
ORDER BY d.day
"""
"""The market's book days, each with whether it is trusted: the chunk slice starting at or before
its first snapshot (one index probe in TimescaleDB's catalog, readable by every role) ends after
its last one and belongs to a chunk not dropped and created before the row. No rows while the
days are incomplete (or for a market without snapshots)."""

DAYS_STATE: Final = "SELECT complete FROM market.book_days_state"

SNAPSHOT_RANGE: Final = """
SELECT count(*), min(ts), max(ts) FROM market.orderbook_snapshots
WHERE market_ticker = %(ticker)s AND ts >= %(lo)s AND ts < %(hi)s
"""
"""One market's snapshots in ``[lo, hi)``, counted one by one (index-only on ``(market_ticker, ts)``
but for the min and max)."""


def day_totals(
    rows: Sequence[tuple[datetime, int, datetime, datetime, bool]],
) -> tuple[BookSpan, list[tuple[datetime, datetime]]]:
    """The trusted days' total, and the ranges of days to count from the snapshots (pure;
    ``rows`` in day order; :func:`~kalshibook.storage.delta_counts.untrusted_runs`)."""
    kept = [(n, first, last) for _, n, first, last, trusted in rows if trusted]
    span = BookSpan(
        sum(int(n) for n, _, _ in kept),
        min((first for _, first, _ in kept), default=None),
        max((last for _, _, last in kept), default=None),
    )
    return span, untrusted_runs([(day, bool(trusted)) for day, _, _, _, trusted in rows])


def merge_span(a: BookSpan, b: BookSpan) -> BookSpan:
    """Two disjoint spans' total (pure)."""
    firsts = [t for t in (a.first, b.first) if t is not None]
    lasts = [t for t in (a.last, b.last) if t is not None]
    return BookSpan(a.snapshots + b.snapshots, min(firsts, default=None), max(lasts, default=None))


async def book_span(
    conn: Conn, ticker: str, book_from: datetime, book_to: datetime, *, complete: bool
) -> BookSpan:
    """The market's snapshot count, first and last snapshot (``[book_from, book_to)``: its book
    extent, counted whole while the book days are incomplete; ``complete``: the days' state as
    read with the extent)."""
    span = BookSpan(0, None, None)
    ranges = [(book_from, book_to)]
    if complete:
        async with conn.cursor() as cur:
            await cur.execute(BOOK_DAYS, {"ticker": ticker})
            rows = await cur.fetchall()
            if rows:
                span, ranges = day_totals(rows)
            else:  # none, or made incomplete since the extent was read
                await cur.execute(DAYS_STATE)
                state = await cur.fetchone()
                ranges = [] if state is not None and state[0] else ranges
    if not ranges:
        return span
    async with conn.pipeline():
        cursors = []
        for lo, hi in ranges:
            cur = conn.cursor()
            await cur.execute(SNAPSHOT_RANGE, {"ticker": ticker, "lo": lo, "hi": hi})
            cursors.append(cur)
        for cur in cursors:
            row = await cur.fetchone()
            if row is not None:
                span = merge_span(span, BookSpan(int(row[0]), row[1], row[2]))
            await cur.close()
    return span
