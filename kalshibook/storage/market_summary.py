"""Per-market and per-event summaries the seed API's reference endpoints add to /v1's rows.

``/v1`` and the seed API read markets and events with the same queries
(:mod:`kalshibook.storage.reads`); these queries only add what the seed's shapes carry besides:
how much book data one market has and when it starts and ends, and, for a page of events, their
market counts, market statuses and categories. Named SQL with parameters, like ``reads``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

from psycopg import AsyncConnection

from kalshibook.storage.book_days import BookSpan, book_span
from kalshibook.storage.book_reads import DELTA_SLACK, delta_span_of
from kalshibook.storage.delta_counts import market_delta_count

__all__ = ("EventStats", "MarketData", "event_stats", "market_categories", "market_data")

Conn = AsyncConnection[Any]
_INFINITY: Final = datetime.max.replace(tzinfo=UTC)
"""No end to the deltas known: later than any stored time."""
_HOUR: Final = timedelta(hours=1)


class MarketData(NamedTuple):
    snapshot_count: int
    delta_count: int
    first_data_at: datetime | None
    last_data_at: datetime | None


class EventStats(NamedTuple):
    market_count: int
    statuses: list[str]


MARKET_EXTENTS = """
SELECT b.first_hour, b.end_hour, t.first_hour, t.end_hour, s.complete, d.first_hour, d.end_hour,
       bs.complete
FROM (SELECT 1) AS one
LEFT JOIN market.book_extents AS b ON b.market_ticker = %(ticker)s
LEFT JOIN market.trade_extents AS t ON t.market_ticker = %(ticker)s
LEFT JOIN market.delta_extents_state AS s ON true
LEFT JOIN market.delta_extents AS d ON d.market_ticker = %(ticker)s
LEFT JOIN market.book_days_state AS bs ON true
"""
"""Where one market's snapshots, trades and deltas lie (read extents, migrations 0006 and 0009): a
market without an extent has none, and the statements below plan only chunks inside its extents.
Over the whole history they planned every chunk of the hypertables (deltas: four chunks a day)
for every request. Also whether the delta extents and the book days (0016) are complete."""

DELTAS_LIVE: Final = """
SELECT count(*), max(ts) FROM market.orderbook_deltas
WHERE market_ticker = %(ticker)s AND ts >= %(deltas_from)s AND ts < %(deltas_to)s
"""
"""One market's deltas, counted one by one, and its last. Deltas follow the first snapshot,
stamped at most ``DELTA_SLACK`` before it (``deltas_from``), but may outlast the last one: they
are read up to the end of their extent, or, while the delta extents are incomplete, up to
``'infinity'``."""
LAST_DELTA: Final = """
SELECT NULL::bigint, max(ts) FROM market.orderbook_deltas
WHERE market_ticker = %(ticker)s AND ts >= %(last_delta_since)s AND ts < %(deltas_to)s
"""
"""With complete delta extents: no count (it comes from the days' counts,
kalshibook.storage.delta_counts) and the last delta looked for in the last hour of the market's
delta extent, where it lies (a DELETE of deltas makes the extents incomplete), or, when that hour
holds none any more (``drop_chunks`` took it: an extent only grows), from ``deltas_from`` on.
The hour's start is computed here: given as ``greatest(from, to - 1 hour)``
in SQL, a stable expression, it excluded no chunk when planned, and the statement read every
delta chunk of the market's life (350 ms at a year of deltas every 15 s)."""

_TRADE_SPAN = """
SELECT (SELECT min(ts) FROM market.trades
        WHERE market_ticker = %(ticker)s AND ts >= %(trades_from)s AND ts < {first_until}),
       (SELECT max(ts) FROM market.trades
        WHERE market_ticker = %(ticker)s AND ts >= {last_since} AND ts < %(trades_to)s)
"""
MARKET_TRADE_EDGES: Final = _TRADE_SPAN.format(
    first_until="%(trades_from)s + INTERVAL '1 hour'",
    last_since="%(trades_to)s - INTERVAL '1 hour'",
)
"""One market's first and last trade, in the first and the last hour of its trade extent."""
MARKET_TRADE_SPAN: Final = _TRADE_SPAN.format(
    first_until="%(trades_to)s", last_since="%(trades_from)s"
)
"""The same over the whole extent, when an edge hour holds no trade any more (an extent only grows:
retention or a DELETE may have removed its first or last rows)."""

EVENT_STATS = """
SELECT event_ticker, count(*), array_agg(DISTINCT status ORDER BY status)
FROM market.markets
WHERE event_ticker = ANY(%(events)s::text[])
GROUP BY event_ticker
"""

MARKET_CATEGORIES = """
SELECT m.ticker, COALESCE(e.category, s.category)
FROM market.markets m
LEFT JOIN market.events e ON e.event_ticker = m.event_ticker
LEFT JOIN market.series s ON s.ticker = COALESCE(m.series_ticker, e.series_ticker)
WHERE m.ticker = ANY(%(tickers)s::text[])
"""
"""A market's category: its event's, else its series'."""


async def market_data(conn: Conn, ticker: str) -> MarketData:
    """Snapshot and delta counts, first and last book or trade time of one market."""
    params: dict[str, Any] = {"ticker": ticker}
    cur = await conn.execute(MARKET_EXTENTS, params)
    extents = await cur.fetchone()
    assert extents is not None  # scalar subqueries: always one row
    # in UTC: arithmetic on a local datetime (a session in another time zone) is wall-clock time
    book_from, book_to, trades_from, trades_to = (
        None if t is None else t.astimezone(UTC) for t in extents[:4]
    )
    params.update(
        book_from=book_from, book_to=book_to, trades_from=trades_from, trades_to=trades_to
    )
    params["deltas_from"] = None if book_from is None else book_from - DELTA_SLACK
    span = delta_span_of(extents[4:7])
    params["deltas_to"] = _INFINITY if span is None else span.hi
    counted = span is not None and book_from is not None
    if span is not None and book_from is not None:
        params["last_delta_since"] = max(params["deltas_from"], span.hi - _HOUR)
    deltas: tuple[Any, ...] = (0, None)
    first_trade = last_trade = None
    async with conn.pipeline(), conn.cursor() as delta_cur, conn.cursor() as trade_cur:
        if book_from is not None:
            await delta_cur.execute(LAST_DELTA if counted else DELTAS_LIVE, params)
        if trades_from is not None:
            await trade_cur.execute(MARKET_TRADE_EDGES, params)
        if book_from is not None:
            deltas = tuple(await delta_cur.fetchone() or deltas)
            if counted and deltas[1] is None:  # its last hour dropped: the whole span
                params["last_delta_since"] = params["deltas_from"]
                await delta_cur.execute(LAST_DELTA, params)
                deltas = tuple(await delta_cur.fetchone() or deltas)
        if trades_from is not None:
            first_trade, last_trade = await trade_cur.fetchone() or (None, None)
            if first_trade is None or last_trade is None:
                await trade_cur.execute(MARKET_TRADE_SPAN, params)
                first_trade, last_trade = await trade_cur.fetchone() or (None, None)
    book = BookSpan(0, None, None)
    if book_from is not None and book_to is not None:
        book = await book_span(conn, ticker, book_from, book_to, complete=bool(extents[7]))
    delta_count, last_delta = deltas
    if counted and span is not None:
        delta_count = await market_delta_count(conn, ticker, span.hi)
    return MarketData(
        book.snapshots,
        int(delta_count),
        _least(book.first, first_trade),
        _greatest(_greatest(book.last, last_delta), last_trade),
    )


def _least(a: datetime | None, b: datetime | None) -> datetime | None:
    """SQL's LEAST: the smaller of the values that are not null."""
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


async def event_stats(conn: Conn, events: list[str]) -> dict[str, EventStats]:
    """Market count and the distinct market statuses of each event (absent: no markets)."""
    if not events:
        return {}
    cur = await conn.execute(EVENT_STATS, {"events": events})
    return {str(e): EventStats(int(n), list(st)) for e, n, st in await cur.fetchall()}


async def market_categories(conn: Conn, tickers: list[str]) -> dict[str, str | None]:
    if not tickers:
        return {}
    cur = await conn.execute(MARKET_CATEGORIES, {"tickers": tickers})
    return {str(t): c for t, c in await cur.fetchall()}
