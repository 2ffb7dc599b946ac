"""What kalshibook holds of one market, and from where (issue #19): trades from … to … per
source (live WebSocket, REST: the collector's gap backfill or ``kalshibook backfill``), the
backfill's progress, order books from the first live snapshot (order books cannot be backfilled:
Kalshi keeps none), Kalshi's candles, and the recorded gaps.

Every look-up is bounded by the market's read extents (migrations 0006 and 0013: per source, the
first and the last hour of its trades) or an index on ``market_ticker``: the cost follows the
market, not the history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import msgspec
from psycopg import AsyncConnection

__all__ = ("Coverage", "CoverageGap", "SourceSpan", "read_coverage")

AConn = AsyncConnection[Any]
MAX_GAPS: Final = 100

EXTENTS: Final = (
    "SELECT (SELECT ARRAY[first_hour, end_hour] FROM market.trade_extents "
    "WHERE market_ticker = %(ticker)s), "
    "(SELECT first_hour FROM market.book_extents WHERE market_ticker = %(ticker)s), "
    "EXISTS (SELECT 1 FROM market.markets WHERE ticker = %(ticker)s)"
)

SOURCE_EXTENTS: Final = (
    "SELECT source, min(first_hour), max(end_hour) FROM market.trade_days "
    "WHERE market_ticker = %(ticker)s GROUP BY source"
)
"""Each source's first and end hour, from its days with trades (migration 0013)."""
_SOURCE_SPAN: Final = (
    "SELECT (SELECT ts FROM market.trades WHERE market_ticker = %(ticker)s "
    "AND source = %(source)s AND ts >= %(lo)s AND ts < {first_until} ORDER BY ts LIMIT 1), "
    "(SELECT ts FROM market.trades WHERE market_ticker = %(ticker)s "
    "AND source = %(source)s AND ts >= {last_since} AND ts < %(hi)s ORDER BY ts DESC LIMIT 1)"
)
SOURCE_EDGES: Final = _SOURCE_SPAN.format(
    first_until="%(lo)s + INTERVAL '1 hour'", last_since="%(hi)s - INTERVAL '1 hour'"
)
"""A source's first and last trade, in the first and the last hour of its extent."""
SOURCE_SPAN: Final = _SOURCE_SPAN.format(first_until="%(hi)s", last_since="%(lo)s")
"""The same over its whole extent, when an edge hour holds none of its trades any more (an extent
only grows: a repair may have removed its first or last rows)."""
_LABELS: Final = {"ws": "live", "rest": "rest"}

FIRST_SNAPSHOT: Final = (
    "SELECT min(ts) FROM market.orderbook_snapshots WHERE market_ticker = %(ticker)s "
    "AND ts >= %(lo)s AND ts < %(lo)s + INTERVAL '1 hour'"
)

BACKFILL: Final = (
    "SELECT trades_from, trades_through, trades_complete, candles_through "
    "FROM market.backfill_progress WHERE market_ticker = %(ticker)s"
)

KALSHI_CANDLES_SPAN: Final = (
    "SELECT min(end_ts), max(end_ts) FROM market.kalshi_candles WHERE market_ticker = %(ticker)s"
)

GAPS: Final = (
    "SELECT from_ts, to_ts, reason FROM market.book_gaps WHERE market_ticker = %(ticker)s "
    "ORDER BY from_ts DESC LIMIT %(limit)s"
)


class SourceSpan(msgspec.Struct, kw_only=True):
    source: str
    """``live`` (WebSocket) or ``rest`` (the collector's gap backfill or ``kalshibook
    backfill``)."""
    first: datetime
    last: datetime


class CoverageGap(msgspec.Struct, kw_only=True):
    start: datetime
    end: datetime
    reason: str


class Coverage(msgspec.Struct, kw_only=True):
    ticker: str
    trades_from: datetime | None
    trades_to: datetime | None
    trade_sources: list[SourceSpan]
    backfill_from: datetime | None
    backfill_through: datetime | None
    backfill_complete: bool
    books_from: datetime | None
    kalshi_candles_from: datetime | None
    kalshi_candles_to: datetime | None
    gaps: list[CoverageGap]


async def read_coverage(conn: AConn, ticker: str) -> Coverage | None:
    """The market's coverage, or ``None`` when kalshibook knows nothing of it."""
    p = {"ticker": ticker}
    row = await (await conn.execute(EXTENTS, p)).fetchone()
    assert row is not None
    extent, book_hour, known = row
    back = await (await conn.execute(BACKFILL, p)).fetchone()
    kc = await (await conn.execute(KALSHI_CANDLES_SPAN, p)).fetchone()
    if not known and extent is None and book_hour is None and back is None:
        return None
    spans: list[SourceSpan] = []
    if extent is not None:
        extents = await (await conn.execute(SOURCE_EXTENTS, p)).fetchall()
        for source, lo, hi in sorted(extents, key=lambda r: list(_LABELS).index(r[0])):
            q = {**p, "source": source, "lo": lo, "hi": hi}
            first, last = await (await conn.execute(SOURCE_EDGES, q)).fetchone() or (None, None)
            if first is None or last is None:
                first, last = await (await conn.execute(SOURCE_SPAN, q)).fetchone() or (None, None)
            if first is not None and last is not None:
                spans.append(SourceSpan(source=_LABELS[source], first=first, last=last))
    books_from = None
    if book_hour is not None:
        got = await (await conn.execute(FIRST_SNAPSHOT, {**p, "lo": book_hour})).fetchone()
        books_from = got[0] if got else None
    gaps = [
        CoverageGap(start=r[0], end=r[1], reason=r[2])
        for r in await (await conn.execute(GAPS, {**p, "limit": MAX_GAPS})).fetchall()
    ]
    return Coverage(
        ticker=ticker,
        trades_from=min((s.first for s in spans), default=None),
        trades_to=max((s.last for s in spans), default=None),
        trade_sources=spans,
        backfill_from=back[0] if back else None,
        backfill_through=back[1] if back else None,
        backfill_complete=bool(back[2]) if back else False,
        books_from=books_from,
        kalshi_candles_from=kc[0] if kc else None,
        kalshi_candles_to=kc[1] if kc else None,
        gaps=gaps,
    )
