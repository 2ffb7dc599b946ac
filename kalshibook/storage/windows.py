"""Keyset pages read in explicit time windows, so a hypertable read plans only the chunks it needs.

TimescaleDB plans every chunk a statement may touch (hundreds of milliseconds for a year of daily
chunks) and an ascending page with no upper time bound may scan old chunks for nothing. A page is
therefore read window by window from its lower bound: the first window is one hour, the next as
wide as the density seen so far says the rest of the page needs (four times wider while nothing
was found, at most sixteen times the last). Each statement binds ``lo``/``hi`` as constants, so
plan-time chunk exclusion keeps its plan to the window. The bounds come from the read extents of
migration 0006 (``market.trade_extents``, ``market.book_extents``). :func:`read_windows` with
``descending`` walks down from the upper bound instead, for newest-first pages. Given ``skip``, a
window that found nothing is followed by the next time holding rows (the days with trades,
migration 0013, or with deltas, 0015), not by a wider window: a sparse market's page costs its
rows, not the gaps between them.

Rows come in PostgreSQL's binary format: the same values (timestamps, integers, exact numerics
with their scale), without the server formatting each timestamp as text and the client parsing it
back: ~1 ms of a 1,000-row trades page (bench/bench_api.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, LiteralString, TypeVar

from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import args_row

__all__ = ("FIRST_WINDOW", "day_skipper", "next_width", "read_windows", "window_cursor")

FIRST_WINDOW: Final = timedelta(hours=1)
WINDOW_GROWTH: Final = 4
MAX_GROWTH: Final = 16

R = TypeVar("R")


def window_cursor(conn: AsyncConnection[Any], row: Callable[..., R]) -> AsyncCursor[R]:
    """A cursor for one window's rows, built by ``row``, in the binary format."""
    return conn.cursor(row_factory=args_row(row), binary=True)


def next_width(width: timedelta, scanned: timedelta, found: int, missing: int) -> timedelta:
    """The next window: wide enough for the ``missing`` rows at the density seen over ``scanned``
    (plus a quarter), between the last width and ``MAX_GROWTH`` times it; ``WINDOW_GROWTH`` times
    wider while nothing was found."""
    if found == 0:
        return width * WINDOW_GROWTH
    wanted = scanned * (missing / found) * 1.25
    return min(max(wanted, width), width * MAX_GROWTH)


async def read_windows(
    conn: AsyncConnection[Any],
    row: Callable[..., R],
    query: LiteralString,
    params: Mapping[str, Any],
    lo: datetime,
    hi: datetime,
    limit: int,
    *,
    descending: bool = False,
    skip: Callable[[datetime], Awaitable[datetime | None]] | None = None,
) -> list[R]:
    """Up to ``limit`` rows of ``query`` (bound by ``%(lo)s <= ts < %(hi)s`` and
    ``LIMIT %(limit)s``) over ``[lo, hi)``, window by window: from ``lo`` upwards for a query
    ordered by time, or from ``hi`` downwards (``descending``) for one ordered newest first.

    ``skip(t)``: where the next rows past ``t`` may be (ascending: the earliest time at or after
    ``t``; descending: the latest end at or before ``t``), None when there are none; asked only
    after a window found nothing. When it lies beyond ``t`` the windows start there again from
    ``FIRST_WINDOW``; at ``t`` they keep widening."""
    out: list[R] = []
    start, width, before = (hi if descending else lo), FIRST_WINDOW, 0
    while lo < hi and len(out) < limit:
        if descending:
            w_lo, w_hi = max(lo, hi - width), hi
        else:
            w_lo, w_hi = lo, min(hi, lo + width)
        bound = {**params, "lo": w_lo, "hi": w_hi, "limit": limit - len(out)}
        async with window_cursor(conn, row) as cur:
            await cur.execute(query, bound)
            found = await cur.fetchall()
        out += found
        if descending:
            hi = w_lo
        else:
            lo = w_hi
        if not found and skip is not None and lo < hi:
            nxt = await skip(hi if descending else lo)
            if nxt is None:
                break
            if (nxt < hi) if descending else (nxt > lo):  # a jump: start again from there
                if descending:
                    hi = nxt
                else:
                    lo = nxt
                start, width, before = (hi if descending else lo), FIRST_WINDOW, len(out)
                continue
            # rows may be right here (a day's hours with trades span its quiet ones): widen
        scanned = (start - w_lo) if descending else (w_hi - start)
        width = next_width(width, scanned, len(out) - before, limit - len(out))
    return out


def day_skipper(
    conn: AsyncConnection[Any], query: LiteralString, params: Mapping[str, Any]
) -> Callable[[datetime], Awaitable[datetime | None]]:
    """:func:`read_windows`' ``skip`` from a look-up of days with rows (trades: migration 0013;
    deltas: 0015): ``query`` takes ``params``, ``t`` (UTC) and ``day`` (``t``'s UTC day) and
    returns the next (or previous) time holding rows, or no row / NULL for none."""

    async def skip(t: datetime) -> datetime | None:
        utc = t.astimezone(UTC)
        day = utc.replace(hour=0, minute=0, second=0, microsecond=0)
        async with conn.cursor() as cur:
            await cur.execute(query, {**params, "t": utc, "day": day})
            row = await cur.fetchone()
        return None if row is None else row[0]

    return skip
