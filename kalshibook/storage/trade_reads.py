"""Trades pages whose cost follows the page, not the history (migration 0006).

A page is answered in three steps, each a small constant query:

1. **Scope.** ``tickers`` / ``event`` / ``series`` resolve to market tickers (``market.markets``);
   none matching: an empty page, no trade is read.
2. **Extent.** ``market.trade_extents`` gives the UTC hours holding those markets' trades (all
   markets: the union); clipped by ``start``/``end`` and the cursor. No extent: empty page.
3. **Windows.** The page is read in explicit time windows from the extent's start
   (:mod:`kalshibook.storage.windows`): TimescaleDB plans only each window's chunks and the scan
   stops at ``limit``.

When the request gives its own lower bound (``start`` or a cursor), the first window (from that
bound) does not depend on the extent: it goes to the server with the extent look-up, in one round
trip, and the windows after it start where the extent says the trades are. Any partition of the
range into consecutive windows gives the same page; only the work differs.

A window that finds no trade is followed by the next hour holding trades of the scope's markets
(``market.trade_days``, migration 0013), not by a wider window: a sparse market's page (two trades
a year apart) plans the chunks of its rows, not every chunk of the gap between them.

Order: exchange order (``ts``, then ``exchange_seq``; ties across markets by ``trade_id``), the
keyset cursor ``(ts, exchange_seq, trade_id)`` (kalshibook.domain.exchange_order).
:func:`list_trades_desc` reads the same rows in the reverse order (newest first, as Kalshi's
``GET /markets/trades`` lists them), its windows walking down from the extent's end.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, LiteralString

import msgspec
from psycopg import AsyncConnection, AsyncCursor

from kalshibook.storage.windows import FIRST_WINDOW, day_skipper, read_windows, window_cursor

__all__ = ("TradeRow", "list_trades", "list_trades_desc", "trade_scope")

Conn = AsyncConnection[Any]
_ONE_US: Final = timedelta(microseconds=1)


class TradeRow(msgspec.Struct, frozen=True, gc=False):
    """Prices and count already formatted as exact strings (``"0.4200"``, ``"12.50"``). A struct,
    not a NamedTuple: built from every row of a page, and a NamedTuple's constructor is a Python
    function.

    ``ts`` is the millisecond (the cursor's time), ``created_time`` the exchange's time at the best
    precision it gave, ``exchange_seq`` the trade's place in its market's exchange order."""

    ts: datetime
    created_time: datetime
    exchange_seq: int
    trade_id: str
    market_ticker: str
    yes_price: str
    no_price: str
    contracts: str
    taker_outcome_side: str | None
    taker_book_side: str | None
    is_block_trade: bool
    source: str


MARKETS_OF_EVENT: Final[LiteralString] = (
    "SELECT ticker FROM market.markets WHERE event_ticker = %(event)s"
)
MARKETS_OF_SERIES: Final[LiteralString] = """
SELECT ticker FROM market.markets
WHERE series_ticker = %(series)s
   OR event_ticker IN (SELECT event_ticker FROM market.events WHERE series_ticker = %(series)s)
"""
EXTENT_OF: Final = """
SELECT min(first_hour), max(end_hour) FROM market.trade_extents
WHERE market_ticker = ANY(%(tickers)s::text[])
"""
EXTENT_ALL: Final = "SELECT min(first_hour), max(end_hour) FROM market.trade_extents"

_NEXT_OF_MARKETS = """
SELECT greatest(min(n.first_hour), %(t)s)
FROM unnest(%(tickers)s::text[]) AS m(ticker)
CROSS JOIN LATERAL (
    SELECT d.first_hour FROM market.trade_days AS d
    WHERE d.market_ticker = m.ticker AND d.day >= %(day)s AND d.end_hour > %(t)s
    ORDER BY d.day, d.first_hour
    LIMIT 1
) AS n
"""
_PREVIOUS_OF_MARKETS = """
SELECT least(max(n.end_hour), %(t)s)
FROM unnest(%(tickers)s::text[]) AS m(ticker)
CROSS JOIN LATERAL (
    SELECT d.end_hour FROM market.trade_days AS d
    WHERE d.market_ticker = m.ticker AND d.day <= %(day)s AND d.first_hour < %(t)s
    ORDER BY d.day DESC, d.end_hour DESC
    LIMIT 1
) AS n
"""
_NEXT_OF_ALL = """
SELECT greatest(min(d.first_hour), %(t)s) FROM market.trade_days AS d
WHERE d.end_hour > %(t)s
  AND d.day = (SELECT min(day) FROM market.trade_days
               WHERE day >= %(day)s AND end_hour > %(t)s)
"""
_PREVIOUS_OF_ALL = """
SELECT least(max(d.end_hour), %(t)s) FROM market.trade_days AS d
WHERE d.first_hour < %(t)s
  AND d.day = (SELECT max(day) FROM market.trade_days
               WHERE day <= %(day)s AND first_hour < %(t)s)
"""
NEXT_TRADE_HOUR: Final = {"markets": _NEXT_OF_MARKETS, "all": _NEXT_OF_ALL}
"""Where the scope's next trades may be from ``t`` on: the first hour holding any at or after
``t`` (``t`` itself when its hour does), from the days with trades (migration 0013); NULL: none.
Per market one index probe (its next day), so the cost follows the scope's markets; every market:
the first such day (the day index)."""
PREVIOUS_TRADE_HOUR: Final = {"markets": _PREVIOUS_OF_MARKETS, "all": _PREVIOUS_OF_ALL}
"""The same walking down: the end of the last hour holding trades before ``t``."""

_COLUMNS = """
SELECT t.ts, t.created_time, t.exchange_seq, t.trade_id::text AS trade_id, t.market_ticker,
       CASE WHEN scale(t.yes_price) = 4 THEN t.yes_price::text
            ELSE round(trim_scale(t.yes_price), greatest(4, scale(trim_scale(t.yes_price))))::text
       END AS yes_price,
       CASE WHEN scale(t.no_price) = 4 THEN t.no_price::text
            ELSE round(trim_scale(t.no_price), greatest(4, scale(trim_scale(t.no_price))))::text
       END AS no_price,
       CASE WHEN scale(t.count) = 2 THEN t.count::text
            ELSE round(trim_scale(t.count), greatest(2, scale(trim_scale(t.count))))::text
       END AS contracts,
       t.taker_outcome_side, t.taker_book_side, t.is_block_trade, t.source
FROM market.trades t
"""
_WINDOW = """
  AND t.ts >= %(lo)s::timestamptz AND t.ts < %(hi)s::timestamptz
  AND (%(c_ts)s::timestamptz IS NULL
       OR (t.ts, t.exchange_seq, t.trade_id)
          > (%(c_ts)s::timestamptz, %(c_seq)s::bigint, %(c_id)s::uuid))
ORDER BY t.ts, t.exchange_seq, t.trade_id
LIMIT %(limit)s
"""
_WINDOW_DESC = """
  AND t.ts >= %(lo)s::timestamptz AND t.ts < %(hi)s::timestamptz
  AND (%(c_ts)s::timestamptz IS NULL
       OR (t.ts, t.exchange_seq, t.trade_id)
          < (%(c_ts)s::timestamptz, %(c_seq)s::bigint, %(c_id)s::uuid))
ORDER BY t.ts DESC, t.exchange_seq DESC, t.trade_id DESC
LIMIT %(limit)s
"""
_OF_MARKETS = "WHERE t.market_ticker = ANY(%(tickers)s::text[])"
_OF_MARKET = "WHERE t.market_ticker = %(ticker)s::text"
TRADES_OF_MARKET: Final = _COLUMNS + _OF_MARKET + _WINDOW
TRADES_OF_MARKETS: Final = _COLUMNS + _OF_MARKETS + _WINDOW
TRADES_OF_ALL: Final = _COLUMNS + "WHERE true" + _WINDOW
TRADES_OF_MARKET_DESC: Final = _COLUMNS + _OF_MARKET + _WINDOW_DESC
TRADES_OF_MARKETS_DESC: Final = _COLUMNS + _OF_MARKETS + _WINDOW_DESC
TRADES_OF_ALL_DESC: Final = _COLUMNS + "WHERE true" + _WINDOW_DESC
"""Prices and counts come back as Kalshi's exact strings, formatted by the database exactly like
:func:`~kalshibook.domain.prices.fmt_dollars` (>= 4 dp) and ``fmt_count`` (>= 2 dp): a 1,000-row
page then needs no Decimal work in Python. A value stored at the scale of Kalshi's strings (the
collector stores ``"0.5600"`` and ``"12.00"`` as given) is already that text; only other scales
take the rounding expression (~0.45 ms of server time per 1,000-row page saved).

One market is ``market_ticker = %(ticker)s``, not ``= ANY`` of a one-element array: over a
compressed chunk the array form scanned every compressed batch of the chunk and sorted them, where
the equality uses the compressed chunk's index on the segment column (a 1,000-row page 3.28 ->
3.08 ms; the same on an uncompressed chunk)."""


def _window_query(
    scope: list[str] | None, descending: bool
) -> tuple[LiteralString, dict[str, Any]]:
    """The window statement of a scope and its scope parameters."""
    if scope is None:
        return (TRADES_OF_ALL_DESC if descending else TRADES_OF_ALL), {}
    if len(scope) == 1:
        return (TRADES_OF_MARKET_DESC if descending else TRADES_OF_MARKET), {"ticker": scope[0]}
    return (TRADES_OF_MARKETS_DESC if descending else TRADES_OF_MARKETS), {"tickers": scope}


def _skipper(
    conn: Conn, scope: list[str] | None, descending: bool
) -> Callable[[datetime], Awaitable[datetime | None]]:
    """:func:`read_windows`' ``skip`` for the trades of ``scope``."""
    query = (PREVIOUS_TRADE_HOUR if descending else NEXT_TRADE_HOUR)[
        "all" if scope is None else "markets"
    ]
    return day_skipper(conn, query, {} if scope is None else {"tickers": scope})


async def trade_scope(
    conn: Conn, tickers: Sequence[str] | None, event: str | None, series: str | None
) -> list[str] | None:
    """The markets a trades request covers: ``None`` for every market, else their tickers (empty:
    none, e.g. an unknown event)."""
    scope: set[str] | None = None if tickers is None else set(tickers)
    lookups: list[tuple[str, dict[str, str]]] = []
    if event is not None:
        lookups.append((MARKETS_OF_EVENT, {"event": event}))
    if series is not None:
        lookups.append((MARKETS_OF_SERIES, {"series": series}))
    for query, params in lookups:
        async with conn.cursor() as cur:
            await cur.execute(query, params)
            found = {str(r[0]) for r in await cur.fetchall()}
        scope = found if scope is None else scope & found
    return None if scope is None else sorted(scope)


async def _extent(
    conn: Conn, tickers: list[str] | None, event: str | None, series: str | None
) -> tuple[list[str] | None, datetime, datetime] | None:
    """``(scope, first hour, end hour)`` of the trades a request covers; ``None``: no trade."""
    scope = await trade_scope(conn, tickers, event, series)
    if scope is not None and not scope:
        return None
    async with conn.cursor() as cur:
        await _execute_extent(cur, scope)
        found = _hours(await cur.fetchone())
    return None if found is None else (scope, *found)


async def _execute_extent(cur: AsyncCursor[Any], scope: list[str] | None) -> None:
    if scope is None:
        await cur.execute(EXTENT_ALL)
    else:
        await cur.execute(EXTENT_OF, {"tickers": scope})


def _hours(row: tuple[Any, ...] | None) -> tuple[datetime, datetime] | None:
    return None if row is None or row[0] is None else (row[0], row[1])


async def list_trades(
    conn: Conn,
    *,
    tickers: list[str] | None,
    event: str | None,
    series: str | None,
    start: datetime | None,
    end: datetime | None,
    after: tuple[datetime, int, uuid.UUID | str] | None,
    limit: int,
) -> list[TradeRow]:
    """One page of trades in exchange order, ``[start, end)`` on ``ts``, after the cursor."""
    floors = [t for t in (start, after[0] if after is not None else None) if t is not None]
    if not floors:
        extent = await _extent(conn, tickers, event, series)
        if extent is None:
            return []
        scope, lo, hi = extent
        first: list[TradeRow] = []
    else:
        # the request's own lower bound: its first window goes with the extent look-up
        lo = max(floors)
        scope = await trade_scope(conn, tickers, event, series)
        if (scope is not None and not scope) or (end is not None and end <= lo):
            return []
    query, of_scope = _window_query(scope, descending=False)
    cursor = dict(zip(("c_ts", "c_seq", "c_id"), after or (None, None, None), strict=True))
    params = {**of_scope, **cursor}
    if floors:
        w_hi = lo + FIRST_WINDOW if end is None else min(lo + FIRST_WINDOW, end)
        async with conn.pipeline(), conn.cursor() as cur, window_cursor(conn, TradeRow) as win:
            await _execute_extent(cur, scope)
            await win.execute(query, {**params, "lo": lo, "hi": w_hi, "limit": limit})
            found = _hours(await cur.fetchone())
            first = await win.fetchall()
        if found is None or len(first) >= limit:
            return first  # no extent: no trade (the window found none either)
        lo, hi = max(found[0], w_hi), found[1]
    if end is not None:
        hi = min(hi, end)
    skip = _skipper(conn, scope, descending=False)
    rest = await read_windows(conn, TradeRow, query, params, lo, hi, limit - len(first), skip=skip)
    return first + rest


async def list_trades_desc(
    conn: Conn,
    *,
    tickers: list[str] | None,
    event: str | None,
    series: str | None,
    start: datetime | None,
    end: datetime | None,
    before: tuple[datetime, int, uuid.UUID | str] | None,
    limit: int,
) -> list[TradeRow]:
    """One page of trades newest first (reverse exchange order), ``[start, end)`` on ``ts``,
    before the cursor."""
    extent = await _extent(conn, tickers, event, series)
    if extent is None:
        return []
    scope, lo, hi = extent
    if start is not None:
        lo = max(lo, start)
    if end is not None:
        hi = min(hi, end)
    if before is not None:
        hi = min(hi, before[0] + _ONE_US)
    cursor = dict(zip(("c_ts", "c_seq", "c_id"), before or (None, None, None), strict=True))
    query, of_scope = _window_query(scope, descending=True)
    return await read_windows(
        conn,
        TradeRow,
        query,
        {**of_scope, **cursor},
        lo,
        hi,
        limit,
        descending=True,
        skip=_skipper(conn, scope, descending=True),
    )
