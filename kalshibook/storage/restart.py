"""What the previous collector run left behind: read once at daemon start (restart recovery).

The collector opens ``daemon_restart`` gaps on the books of the markets it was following, from
the last book data the previous run stored, and backfills trades from the last trade stored; it
also seeds its market catalog with the markets already stored.

The writer commits each table on its own and holds rows in memory while the database is slow, so
a run that was killed (SIGKILL, OOM, power) may have stored later rows of one table and lost
earlier rows of another: trades up to 10:00:10 and deltas only up to 10:00:01, or the deltas after
a reconnection without the snapshot they apply to. The book gap therefore starts at the older of
the newest stored delta and the newest stored snapshot, never at a trade's time: every book row
that may be missing is inside it. (After a clean stop the two are the same instant: the last
checkpoints are written at each book's last delta.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, LiteralString, NamedTuple

from psycopg import AsyncConnection

__all__ = (
    "BOOK_MARKETS",
    "KNOWN_MARKETS",
    "LAST_DELTA",
    "LAST_SNAPSHOT",
    "LAST_TRADE",
    "KnownMarket",
    "LastStored",
    "book_markets",
    "known_markets",
    "last_stored",
)

AConn = AsyncConnection[Any]

LAST_DELTA: Final = "SELECT ts FROM market.orderbook_deltas ORDER BY ts DESC LIMIT 1"
LAST_SNAPSHOT: Final = "SELECT ts FROM market.orderbook_snapshots ORDER BY ts DESC LIMIT 1"
LAST_TRADE: Final = "SELECT ts FROM market.trades ORDER BY ts DESC LIMIT 1"
BOOK_MARKETS: Final = """
SELECT m.ticker FROM market.markets m
JOIN market.book_extents e ON e.market_ticker = m.ticker
WHERE m.status NOT IN ('determined', 'finalized', 'settled')
"""
"""Unfinished markets with a stored book: the books a restart leaves unknown. The book extents
(migration 0006) say which markets ever had a snapshot; an ``EXISTS`` over the snapshots
hypertable was a semi-join over all its chunks at every start."""
KNOWN_MARKETS: Final = "SELECT ticker, event_ticker, series_ticker, status FROM market.markets"


class LastStored(NamedTuple):
    """Exchange times of the newest stored rows (None: the table is empty)."""

    data: datetime | None
    """Where the books become unknown: the older of the newest delta and the newest snapshot
    (either, when the other table is empty)."""
    trade: datetime | None


class KnownMarket(NamedTuple):
    ticker: str
    event_ticker: str | None
    series_ticker: str | None
    status: str | None


async def _last_ts(conn: AConn, sql: LiteralString) -> datetime | None:
    cur = await conn.execute(sql)
    row = await cur.fetchone()
    return row[0] if row is not None else None


async def last_stored(conn: AConn) -> LastStored:
    """Where the stored books end and the newest stored trade's time."""
    times = [await _last_ts(conn, sql) for sql in (LAST_DELTA, LAST_SNAPSHOT, LAST_TRADE)]
    book = [t for t in times[:2] if t is not None]
    return LastStored(min(book) if book else None, times[2])


async def book_markets(conn: AConn) -> list[str]:
    """Markets not finished whose book was stored."""
    cur = await conn.execute(BOOK_MARKETS)
    return [r[0] for r in await cur.fetchall()]


async def known_markets(conn: AConn) -> list[KnownMarket]:
    """Every stored market, with its event, series and status."""
    cur = await conn.execute(KNOWN_MARKETS)
    return [KnownMarket(*r) for r in await cur.fetchall()]
