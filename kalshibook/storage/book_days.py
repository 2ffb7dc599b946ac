"""A market's snapshot count, first and last snapshot, from its book days (migration 0016).

The seed API's market detail gives them. Read from every snapshot of the market, they cost time
in proportion to its whole history (one-day chunks: ~365 planned for a market a year old, and
every checkpoint counted). ``market.book_days`` holds, per market and UTC day, how many snapshots
it has and its first and last one, kept exactly by the snapshots' insert trigger.

A day's row is trusted only while every chunk of ``market.orderbook_snapshots`` its snapshots
went to still exists: retention and ``drop_chunks`` fire no trigger, so a day whose chunk was
dropped (or dropped and made again by rows inserted later: a new relation) may count snapshots
that are gone. The days not trusted are counted from the snapshots themselves, in as few ranges
as the trusted days between them allow. While ``market.book_days_state`` says incomplete (an
``UPDATE``, ``DELETE`` or ``TRUNCATE`` of snapshots since the last ``kalshibook rebuild-extents``),
every snapshot of the market's book extent is counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, LiteralString, NamedTuple

from psycopg import AsyncConnection

from kalshibook.storage.delta_counts import range_rows, untrusted_runs

__all__ = ("BookSpan", "book_span", "day_totals")

Conn = AsyncConnection[Any]


class BookSpan(NamedTuple):
    snapshots: int
    first: datetime | None
    last: datetime | None


BOOK_DAYS: Final = """
SELECT d.day, d.snapshots, d.first_ts, d.last_ts, NOT EXISTS (
    SELECT 1 FROM unnest(d.chunks) AS k (relid)
    WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class AS c WHERE c.oid = k.relid))
FROM market.book_days AS d
WHERE d.market_ticker = %(ticker)s AND (SELECT complete FROM market.book_days_state)
ORDER BY d.day
"""
"""The market's book days, each with whether it is trusted: every chunk its snapshots went to
still exists (a primary-key probe of ``pg_class`` per chunk). No rows while the days are
incomplete (or for a market without snapshots)."""

DAYS_STATE: Final = "SELECT complete FROM market.book_days_state"
REBUILD: Final = "SELECT markets, days FROM market.rebuild_book_days()"
"""Recompute the book days from the snapshots (``kalshibook rebuild-extents``)."""

SNAPSHOT_RANGE: Final[LiteralString] = """
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
    for n, first, last in await range_rows(conn, SNAPSHOT_RANGE, ticker, ranges):
        span = merge_span(span, BookSpan(int(n), first, last))
    return span
