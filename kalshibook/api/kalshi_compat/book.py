"""``GET /markets/{ticker}/orderbook`` (5 credits) and ``GET /markets/orderbooks`` (5 per
ticker, charged before any is read; 5 if the request fails): Kalshi's ``orderbook_fp`` rebuilt
by :func:`kalshibook.storage.book_reads.book_at`, the read of ``/v1/markets/{ticker}/orderbook``.

kalshibook extension: ``at`` (RFC 3339 or Unix seconds) gives the book at that instant; without
it, the latest recorded book (the book now). ``depth`` 0 to 100 (0 = every level). A known market
with no recorded book at that instant answers empty sides; an unknown ticker 404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import get
from litestar.params import Parameter

from kalshibook.api.deps import Conn, require_market
from kalshibook.api.kalshi_compat import schemas as k
from kalshibook.api.kalshi_compat.common import (
    TickerPath,
    kalshi_route,
    parse_tickers,
)
from kalshibook.api.kalshi_compat.shapes import book_out
from kalshibook.api.params import parse_time
from kalshibook.errors import BadRequest
from kalshibook.storage import book_reads

__all__ = ("HANDLERS",)

At = Annotated[
    str | None,
    Parameter(description="kalshibook extension: the book at this instant (default: latest)"),
]
Depth = Annotated[int | None, Parameter(description="levels per side, 0 to 100 (0 = all)")]


def _depth(value: int | None) -> int | None:
    if value is None or value == 0:
        return None
    if not 0 <= value <= 100:
        raise BadRequest(f"depth must be between 0 and 100, got {value}", parameter="depth")
    return value


async def _book(conn: Conn, ticker: TickerPath, at: datetime, depth: int | None) -> k.Orderbook:
    result = await book_reads.book_at(conn, ticker, at)
    if result.snapshot is None:
        await require_market(conn, ticker)
    return book_out(result.book, depth)


def _instant(at: str | None) -> datetime:
    return datetime.now(UTC) if at is None else parse_time(at, "at")


@get(
    "/markets/{ticker:str}/orderbook",
    summary="Order book (Kalshi GetMarketOrderbook; `at` = any instant)",
    **kalshi_route(5, k.OrderbookOne),
)
async def orderbook(
    conn: Conn, ticker: TickerPath, depth: Depth = None, at: At = None
) -> k.OrderbookOne:
    levels = _depth(depth)
    return k.OrderbookOne(orderbook_fp=await _book(conn, ticker, _instant(at), levels))


@get(
    "/markets/orderbooks",
    summary="Order books of up to 100 markets (Kalshi GetMarketOrderbooks)",
    **kalshi_route(5, k.Orderbooks, per="tickers"),
)
async def orderbooks(
    conn: Conn,
    tickers: Annotated[list[str] | None, Parameter(description="1 to 100 tickers")] = None,
    depth: Depth = None,
    at: At = None,
) -> k.Orderbooks:
    wanted = parse_tickers(tickers, "tickers", 100)
    if not wanted:
        raise BadRequest("tickers is required (1 to 100 market tickers)", parameter="tickers")
    levels, instant = _depth(depth), _instant(at)
    return k.Orderbooks(
        orderbooks=[
            k.TickerBook(ticker=t, orderbook_fp=await _book(conn, t, instant, levels))
            for t in wanted
        ]
    )


HANDLERS: list[Any] = [orderbook, orderbooks]
