"""``POST /trades`` (2 credits), ``GET /settlements`` and ``GET /settlements/{ticker}`` (1 each),
read by the same functions as ``/v1/markets/{ticker}/trades`` and ``/v1/settlements``."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from litestar import Request, get, post
from litestar.params import JSONBody, Parameter

from kalshibook.api.deps import Conn, SettingsDep, envelope_meta, require_market
from kalshibook.api.docs import SettledTickerPath
from kalshibook.api.params import parse_range
from kalshibook.api.routes._paging import Pager
from kalshibook.api.seed import schemas as s
from kalshibook.api.seed.docs import seed_route
from kalshibook.api.seed.errors import SeedNotFound
from kalshibook.api.seed.lists import ListCursor, ListLimit, list_pager
from kalshibook.api.seed.numbers import cents, quantity
from kalshibook.storage import reads, trade_reads

__all__ = ("HANDLERS", "settlement_record", "trade_record")


def trade_record(row: trade_reads.TradeRow) -> s.TradeRecord:
    return s.TradeRecord(
        trade_id=row.trade_id,
        market_ticker=row.market_ticker,
        yes_price=cents(Decimal(row.yes_price)),
        no_price=cents(Decimal(row.no_price)),
        count=quantity(Decimal(row.contracts)),
        taker_side=row.taker_outcome_side,
        ts=row.created_time,
    )


def settlement_record(row: reads.SettlementRow) -> s.SettlementRecord:
    return s.SettlementRecord(
        market_ticker=row.market_ticker,
        event_ticker=row.event_ticker,
        result=row.result,
        settlement_value=None if row.settlement_value is None else cents(row.settlement_value),
        determined_at=row.determined_at,
        settled_at=row.settled_at,
    )


@post(
    "/trades",
    status_code=200,
    summary="Trades of one market (kalshibook SDK: list_trades)",
    description=(
        "The same rows and exchange order as `GET /v1/markets/{ticker}/trades` "
        "(`[start_time, end_time)`); prices in cents, `ts` = the trade's exchange time "
        "(/v1's `created_time`), `taker_side` = the outcome the taker bought."
    ),
    **seed_route(2, s.TradesResponse, errors=(404,)),
)
async def trades(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    data: JSONBody[s.TradesRequest],
) -> s.TradesResponse:
    ticker = data.market_ticker
    pager = Pager(request, settings, data.limit, "trades")
    t0, t1 = parse_range(
        data.start_time, data.end_time, start_name="start_time", end_name="end_time"
    )
    after = pager.after(data.cursor, tuple[datetime, int, uuid.UUID])
    rows = await trade_reads.list_trades(
        conn,
        tickers=[ticker],
        event=None,
        series=None,
        start=t0,
        end=t1,
        after=after,
        limit=pager.fetch,
    )
    if not rows and after is None:
        await require_market(conn, ticker)
    return pager.page(
        s.TradesResponse, rows, trade_record, lambda r: (r.ts, r.exchange_seq, r.trade_id)
    )


@get(
    "/settlements",
    summary="Settlements (kalshibook SDK: list_settlements)",
    description=(
        "The same rows and order as `GET /v1/settlements`; `settlement_value` in cents. The "
        "SDK reads one response: up to `limit` (default and maximum 5,000) rows, then "
        "`has_more`/`next_cursor`."
    ),
    **seed_route(1, s.SettlementsResponse),
)
async def list_settlements(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    event_ticker: Annotated[str | None, Parameter(description="parent event")] = None,
    result: Annotated[
        Literal["yes", "no", "scalar", "void"] | None, Parameter(description="resolution")
    ] = None,
    limit: ListLimit = None,
    cursor: ListCursor = None,
) -> s.SettlementsResponse:
    pager = list_pager(request, settings, limit, "settlements")
    after = pager.after(cursor, tuple[datetime | None, str])
    rows = await reads.list_settlements(
        conn,
        event=event_ticker,
        series=None,
        result=result,
        start=None,
        end=None,
        after=after,
        limit=pager.fetch,
    )
    return pager.page(
        s.SettlementsResponse, rows, settlement_record, lambda r: (r.settled_at, r.market_ticker)
    )


@get(
    "/settlements/{ticker:str}",
    summary="Settlement of one market (kalshibook SDK: get_settlement)",
    **seed_route(1, s.SettlementResponse, errors=(404,)),
)
async def get_settlement(
    request: Request[Any, Any, Any], conn: Conn, ticker: SettledTickerPath
) -> s.SettlementResponse:
    row = await reads.get_settlement(conn, ticker)
    if row is None:
        raise SeedNotFound(
            f"no settlement recorded for market {ticker!r}",
            code="settlement_not_found",
            parameter="ticker",
        )
    return s.SettlementResponse(data=settlement_record(row), **envelope_meta(request))


HANDLERS = [trades, list_settlements, get_settlement]
