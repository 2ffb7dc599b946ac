"""Per-market and per-event summaries the seed API's reference endpoints add to /v1's rows.

``/v1`` and the seed API read markets and events with the same queries
(:mod:`kalshibook.storage.reads`); these queries only add what the seed's shapes carry besides:
how much book data one market has and when it starts and ends, and, for a page of events, their
market counts, market statuses and categories. Named SQL with parameters, like ``reads``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from psycopg import AsyncConnection

__all__ = ("EventStats", "MarketData", "event_stats", "market_categories", "market_data")

Conn = AsyncConnection[Any]


class MarketData(NamedTuple):
    snapshot_count: int
    delta_count: int
    first_data_at: datetime | None
    last_data_at: datetime | None


class EventStats(NamedTuple):
    market_count: int
    statuses: list[str]


MARKET_DATA = """
SELECT (SELECT count(*) FROM market.orderbook_snapshots WHERE market_ticker = %(ticker)s),
       (SELECT count(*) FROM market.orderbook_deltas WHERE market_ticker = %(ticker)s),
       LEAST((SELECT min(ts) FROM market.orderbook_snapshots WHERE market_ticker = %(ticker)s),
             (SELECT min(ts) FROM market.trades WHERE market_ticker = %(ticker)s)),
       GREATEST((SELECT max(ts) FROM market.orderbook_snapshots WHERE market_ticker = %(ticker)s),
                (SELECT max(ts) FROM market.orderbook_deltas WHERE market_ticker = %(ticker)s),
                (SELECT max(ts) FROM market.trades WHERE market_ticker = %(ticker)s))
"""
"""One market's recorded book: snapshot and delta counts, first and last book/trade time (each an
index scan on ``(market_ticker, ts)``)."""

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
    cur = await conn.execute(MARKET_DATA, {"ticker": ticker})
    row = await cur.fetchone()
    assert row is not None  # scalar subqueries: always one row
    return MarketData(int(row[0]), int(row[1]), row[2], row[3])


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
