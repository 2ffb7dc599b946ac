"""Trade history (2 credits) and settlements (1 credit)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from litestar import Request, get
from litestar.openapi.spec import Example
from litestar.params import Parameter

from kalshibook.api import docs
from kalshibook.api import schemas as s
from kalshibook.api.deps import (
    Conn,
    SettingsDep,
    dollars_str,
    envelope_meta,
    parse_tickers,
    require_market,
)
from kalshibook.api.docs import (
    CursorParam,
    EndParam,
    EventFilter,
    LimitParam,
    SeriesFilter,
    SettledTickerPath,
    StartParam,
    TickerPath,
    priced,
    responses,
)
from kalshibook.api.params import parse_range
from kalshibook.api.routes._paging import Pager
from kalshibook.errors import NotFound
from kalshibook.storage import reads, trade_reads

__all__ = ("HANDLERS",)


def trade_out(row: trade_reads.TradeRow) -> s.Trade:
    return s.Trade(
        trade_id=row.trade_id,
        ticker=row.market_ticker,
        created_time=row.created_time,
        exchange_seq=row.exchange_seq,
        yes_price_dollars=row.yes_price,
        no_price_dollars=row.no_price,
        count_fp=row.contracts,
        taker_outcome_side=row.taker_outcome_side,
        taker_book_side=row.taker_book_side,
        is_block_trade=row.is_block_trade,
        source=row.source,
    )


def settlement_out(row: reads.SettlementRow) -> s.Settlement:
    return s.Settlement(
        ticker=row.market_ticker,
        event_ticker=row.event_ticker,
        series_ticker=row.series_ticker,
        result=row.result,
        settlement_value_dollars=dollars_str(row.settlement_value),
        determined_at=row.determined_at,
        settled_at=row.settled_at,
        source=row.source,
        confirmed=row.confirmed,
    )


async def _trades_page(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    *,
    tickers: list[str] | None,
    event: str | None,
    series: str | None,
    start: str | None,
    end: str | None,
    limit: int | None,
    cursor: str | None,
    known_ticker: str | None = None,
) -> s.TradePage:
    pager = Pager(request, settings, limit, "trades")
    t0, t1 = parse_range(start, end)
    after = pager.after(cursor, tuple[datetime, int, uuid.UUID])
    rows = await trade_reads.list_trades(
        conn,
        tickers=tickers,
        event=event,
        series=series,
        start=t0,
        end=t1,
        after=after,
        limit=pager.fetch,
    )
    if not rows and after is None and known_ticker is not None:
        await require_market(conn, known_ticker)
    return pager.page(s.TradePage, rows, trade_out, lambda r: (r.ts, r.exchange_seq, r.trade_id))


@get(
    "/v1/trades",
    summary="Trades of one or many markets",
    description=(
        "In exchange order: by time, one market's trades of one millisecond by `exchange_seq` "
        "(the order the exchange printed them), other ties by trade_id; `[start, end)` on the "
        "millisecond."
    ),
    tags=["trades"],
    responses=responses(s.TradePage, docs.TRADE_PAGE),
    **priced(2),
)
async def list_trades(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    tickers: Annotated[
        list[str] | None,
        Parameter(
            description="market tickers, comma-separated and/or repeated (at most 100)",
            examples=[Example(value=docs.EXAMPLE_MARKET)],
        ),
    ] = None,
    event_ticker: EventFilter = None,
    series_ticker: SeriesFilter = None,
    start: StartParam = None,
    end: EndParam = None,
    limit: LimitParam = None,
    cursor: CursorParam = None,
) -> s.TradePage:
    return await _trades_page(
        request,
        conn,
        settings,
        tickers=parse_tickers(tickers),
        event=event_ticker,
        series=series_ticker,
        start=start,
        end=end,
        limit=limit,
        cursor=cursor,
    )


@get(
    "/v1/markets/{ticker:str}/trades",
    summary="Trades of one market",
    description=(
        "In exchange order: by time, one market's trades of one millisecond by `exchange_seq` "
        "(the order the exchange printed them), other ties by trade_id; `[start, end)` on the "
        "millisecond."
    ),
    tags=["trades"],
    responses=responses(s.TradePage, docs.TRADE_PAGE, errors=(400, 401, 402, 404, 429, 503)),
    **priced(2),
)
async def market_trades(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    ticker: TickerPath,
    start: StartParam = None,
    end: EndParam = None,
    limit: LimitParam = None,
    cursor: CursorParam = None,
) -> s.TradePage:
    return await _trades_page(
        request,
        conn,
        settings,
        tickers=[ticker],
        event=None,
        series=None,
        start=start,
        end=end,
        limit=limit,
        cursor=cursor,
        known_ticker=ticker,
    )


@get(
    "/v1/settlements",
    summary="Settlements",
    description="Ordered by settled_at (unsettled determinations last), then ticker; "
    "`start`/`end` filter settled_at in `[start, end)`.",
    tags=["settlements"],
    responses=responses(s.SettlementPage, docs.SETTLEMENT_PAGE),
    **priced(1),
)
async def list_settlements(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    event_ticker: EventFilter = None,
    series_ticker: SeriesFilter = None,
    result: Annotated[
        Literal["yes", "no", "scalar", "void"] | None,
        Parameter(description="resolution", examples=[Example(value="yes")]),
    ] = None,
    start: StartParam = None,
    end: EndParam = None,
    limit: LimitParam = None,
    cursor: CursorParam = None,
) -> s.SettlementPage:
    pager = Pager(request, settings, limit, "settlements")
    t0, t1 = parse_range(start, end)
    after = pager.after(cursor, tuple[datetime | None, str])
    rows = await reads.list_settlements(
        conn,
        event=event_ticker,
        series=series_ticker,
        result=result,
        start=t0,
        end=t1,
        after=after,
        limit=pager.fetch,
    )
    return pager.page(
        s.SettlementPage, rows, settlement_out, lambda r: (r.settled_at, r.market_ticker)
    )


@get(
    "/v1/settlements/{ticker:str}",
    summary="Settlement of one market",
    tags=["settlements"],
    responses=responses(s.SettlementOne, docs.SETTLEMENT_ONE, errors=(401, 402, 404, 429, 503)),
    **priced(1),
)
async def get_settlement(
    request: Request[Any, Any, Any], conn: Conn, ticker: SettledTickerPath
) -> s.SettlementOne:
    row = await reads.get_settlement(conn, ticker)
    if row is None:
        raise NotFound(f"no settlement recorded for market {ticker!r}", parameter="ticker")
    return s.SettlementOne(data=settlement_out(row), **envelope_meta(request))


HANDLERS = [list_trades, market_trades, list_settlements, get_settlement]
