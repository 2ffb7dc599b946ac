"""``GET /markets/trades`` and ``GET /historical/trades`` (2 credits): Kalshi's trade list, newest
first, read by :func:`kalshibook.storage.trade_reads.list_trades_desc` (``/v1``'s trades in the
reverse exchange order).

``min_ts``/``max_ts`` (Unix seconds) are both inclusive: trades of the seconds ``min_ts`` through
``max_ts``. ``limit`` 1 to 1000 (default 100); ``cursor`` resumes; ``"cursor": ""`` on the last
page. ``created_time`` is the exchange's time with microseconds.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Final

from litestar import Request, get

from kalshibook.api.deps import Conn
from kalshibook.api.kalshi_compat import schemas as k
from kalshibook.api.kalshi_compat.common import (
    Cursor,
    KalshiPager,
    Limit,
    Ticker,
    UnixTs,
    kalshi_route,
    unix_time,
)
from kalshibook.api.kalshi_compat.shapes import trade_out
from kalshibook.errors import BadRequest
from kalshibook.storage import trade_reads

__all__ = ("HANDLERS",)

_ONE_S: Final = timedelta(seconds=1)


async def _trades(
    request: Request[Any, Any, Any],
    conn: Conn,
    *,
    ticker: str | None,
    min_ts: int | None,
    max_ts: int | None,
    limit: int | None,
    cursor: str | None,
) -> k.Trades:
    if "is_block_trade" in request.query_params:
        raise BadRequest("is_block_trade is not supported", parameter="is_block_trade")
    pager = KalshiPager(request, limit, "trades", default=100, maximum=1000)
    start = unix_time(min_ts, "min_ts")
    last = unix_time(max_ts, "max_ts")
    end = None if last is None else last + _ONE_S
    if start is not None and end is not None and end <= start:
        raise BadRequest("max_ts must not be before min_ts", parameter="max_ts")
    before = pager.after(cursor, tuple[datetime, int, uuid.UUID])
    rows = await trade_reads.list_trades_desc(
        conn,
        tickers=None if not ticker else [ticker],
        event=None,
        series=None,
        start=start,
        end=end,
        before=before,
        limit=pager.fetch,
    )
    page, next_cursor = pager.split(rows, lambda r: (r.ts, r.exchange_seq, r.trade_id))
    return k.Trades(trades=[trade_out(r) for r in page], cursor=next_cursor)


@get(
    "/markets/trades",
    summary="Trades, newest first (Kalshi GetTrades)",
    **kalshi_route(2, k.Trades),
)
async def list_trades(
    request: Request[Any, Any, Any],
    conn: Conn,
    ticker: Ticker = None,
    min_ts: UnixTs = None,
    max_ts: UnixTs = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> k.Trades:
    return await _trades(
        request, conn, ticker=ticker, min_ts=min_ts, max_ts=max_ts, limit=limit, cursor=cursor
    )


@get(
    "/historical/trades",
    summary="Historical trades (Kalshi GetHistoricalTrades)",
    description="The same trades as `GET /markets/trades` (nothing is only historical).",
    **kalshi_route(2, k.Trades),
)
async def historical_trades(
    request: Request[Any, Any, Any],
    conn: Conn,
    ticker: Ticker = None,
    min_ts: UnixTs = None,
    max_ts: UnixTs = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> k.Trades:
    return await _trades(
        request, conn, ticker=ticker, min_ts=min_ts, max_ts=max_ts, limit=limit, cursor=cursor
    )


HANDLERS: list[Any] = [list_trades, historical_trades]
