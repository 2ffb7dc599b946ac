"""``GET /series``, ``/series/{series_ticker}``, ``/events``, ``/events/{event_ticker}``,
``/markets``, ``/markets/{ticker}`` and the historical market reads (1 credit each), answered by
the reads of ``/v1/series``, ``/v1/events`` and ``/v1/markets``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from litestar import Request, get
from litestar.params import Parameter

from kalshibook.api.deps import Conn
from kalshibook.api.kalshi_compat import schemas as k
from kalshibook.api.kalshi_compat.common import (
    Cursor,
    EventPath,
    Flag,
    KalshiPager,
    Limit,
    SeriesPath,
    Text,
    TickerPath,
    kalshi_route,
    parse_flag,
    parse_tickers,
)
from kalshibook.api.kalshi_compat.shapes import EPOCH, event_out, market_out, series_out
from kalshibook.api.routes.reference import STATUS_FILTER
from kalshibook.errors import BadRequest, NotFound
from kalshibook.storage import reads

__all__ = ("HANDLERS", "list_market_rows")

KalshiStatus = Annotated[
    Literal["unopened", "open", "paused", "closed", "settled"] | None,
    Parameter(description="Kalshi's filter word"),
]
_UNSUPPORTED: Final = (
    "min_created_ts",
    "max_created_ts",
    "min_close_ts",
    "max_close_ts",
    "min_settled_ts",
    "max_settled_ts",
    "min_updated_ts",
    "max_updated_ts",
)
Tickers = Annotated[list[str] | None, Parameter(description="comma-separated or repeated")]


def _refuse_unsupported(request: Request[Any, Any, Any]) -> None:
    for name in _UNSUPPORTED:
        if name in request.query_params:
            raise BadRequest(
                f"{name} is not supported by kalshibook (filter by status, event_ticker, "
                "series_ticker or tickers)",
                parameter=name,
            )
    if request.query_params.get("mve_filter") == "only":
        raise BadRequest(
            "mve_filter=only is not supported: kalshibook does not mark multivariate markets",
            parameter="mve_filter",
        )


async def list_market_rows(
    request: Request[Any, Any, Any],
    conn: Conn,
    limit: int | None,
    cursor: str | None,
    *,
    event: str | None,
    series: str | None,
    status: str | None,
    tickers: list[str] | None,
) -> k.Markets:
    """One Kalshi page of markets by ticker (``GET /markets``, ``GET /historical/markets``):
    ``/v1/markets``' read, or the listed tickers."""
    _refuse_unsupported(request)
    pager = KalshiPager(request, limit, "markets", default=100, maximum=1000)
    wanted = parse_tickers(tickers, "tickers", 1000)
    after = pager.after(cursor, tuple[str])
    statuses = None if status is None else STATUS_FILTER[status]
    if wanted is None:
        rows = await reads.list_markets(
            conn,
            event=event,
            series=series,
            statuses=statuses,
            after=after[0] if after else None,
            limit=pager.fetch,
        )
    else:
        rows = []
        for ticker in sorted(wanted):
            if after is not None and ticker <= after[0]:
                continue
            row = await reads.get_market(conn, ticker)
            if row is None or (event is not None and row.event_ticker != event):
                continue
            if series is not None and row.series_ticker != series:
                continue
            if statuses is not None and row.status not in statuses:
                continue
            rows.append(row)
            if len(rows) == pager.fetch:
                break
    page, next_cursor = pager.split(rows, lambda r: (r.ticker,))
    return k.Markets(markets=[market_out(r) for r in page], cursor=next_cursor)


@get("/series", summary="List series (Kalshi GetSeriesList)", **kalshi_route(1, k.SeriesList))
async def list_series(
    request: Request[Any, Any, Any],
    conn: Conn,
    category: Text = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> k.SeriesList:
    pager = KalshiPager(request, limit, "series", default=1000, maximum=1000)
    after = pager.after(cursor, tuple[str])
    rows = await reads.list_series(
        conn, category=category, after=after[0] if after else None, limit=pager.fetch
    )
    page, next_cursor = pager.split(rows, lambda r: (r.ticker,))
    return k.SeriesList(series=[series_out(r) for r in page], cursor=next_cursor)


@get(
    "/series/{series_ticker:str}",
    summary="One series (Kalshi GetSeries)",
    **kalshi_route(1, k.SeriesOne),
)
async def get_series(conn: Conn, series_ticker: SeriesPath) -> k.SeriesOne:
    row = await reads.get_series(conn, series_ticker)
    if row is None:
        raise NotFound(f"unknown series ticker {series_ticker!r}", parameter="series_ticker")
    return k.SeriesOne(series=series_out(row))


@get("/events", summary="List events (Kalshi GetEvents)", **kalshi_route(1, k.Events))
async def list_events(
    request: Request[Any, Any, Any],
    conn: Conn,
    limit: Limit = None,
    cursor: Cursor = None,
    status: KalshiStatus = None,
    series_ticker: Text = None,
    with_nested_markets: Flag = None,
) -> k.Events:
    _refuse_unsupported(request)
    nested = parse_flag(with_nested_markets, "with_nested_markets")
    pager = KalshiPager(request, limit, "events", default=200, maximum=200)
    after = pager.after(cursor, tuple[str])
    rows = await reads.list_events(
        conn,
        series=series_ticker,
        statuses=None if status is None else STATUS_FILTER[status],
        after=after[0] if after else None,
        limit=pager.fetch,
    )
    page, next_cursor = pager.split(rows, lambda r: (r.event_ticker,))
    events = []
    for row in page:
        markets = await reads.event_markets(conn, row.event_ticker) if nested else None
        events.append(event_out(row, markets))
    return k.Events(events=events, cursor=next_cursor)


@get(
    "/events/{event_ticker:str}",
    summary="One event (Kalshi GetEvent)",
    **kalshi_route(1, k.EventOne),
)
async def get_event(
    conn: Conn, event_ticker: EventPath, with_nested_markets: Flag = None
) -> k.EventOne:
    nested = parse_flag(with_nested_markets, "with_nested_markets")
    row = await reads.get_event(conn, event_ticker)
    if row is None:
        raise NotFound(f"unknown event ticker {event_ticker!r}", parameter="event_ticker")
    markets = await reads.event_markets(conn, event_ticker)
    return k.EventOne(
        event=event_out(row, markets if nested else None),
        markets=[market_out(m) for m in markets],
    )


@get("/markets", summary="List markets (Kalshi GetMarkets)", **kalshi_route(1, k.Markets))
async def list_markets(
    request: Request[Any, Any, Any],
    conn: Conn,
    limit: Limit = None,
    cursor: Cursor = None,
    event_ticker: Text = None,
    series_ticker: Text = None,
    status: KalshiStatus = None,
    tickers: Tickers = None,
) -> k.Markets:
    return await list_market_rows(
        request,
        conn,
        limit,
        cursor,
        event=event_ticker,
        series=series_ticker,
        status=status,
        tickers=tickers,
    )


async def _market(conn: Conn, ticker: TickerPath) -> k.MarketOne:
    row = await reads.get_market(conn, ticker)
    if row is None:
        raise NotFound(f"unknown market ticker {ticker!r}", parameter="ticker")
    return k.MarketOne(market=market_out(row))


@get(
    "/markets/{ticker:str}", summary="One market (Kalshi GetMarket)", **kalshi_route(1, k.MarketOne)
)
async def get_market(conn: Conn, ticker: TickerPath) -> k.MarketOne:
    return await _market(conn, ticker)


# --- historical ---------------------------------------------------------------------------------


@get(
    "/historical/cutoff",
    summary="Historical cutoff (Kalshi GetHistoricalCutoff)",
    description=(
        "kalshibook never moves data to a historical tier: every cutoff is the Unix epoch, so a "
        "client that routes by the cutoff reads the whole record from the live endpoints. The "
        "`/historical/*` endpoints answer from the same record too."
    ),
    **kalshi_route(0, k.Cutoff),
)
async def cutoff() -> k.Cutoff:
    epoch: datetime = EPOCH
    return k.Cutoff(
        market_settled_ts=epoch,
        trades_created_ts=epoch,
        orders_updated_ts=epoch,
        market_positions_last_updated_ts=epoch,
    )


@get(
    "/historical/markets",
    summary="Historical markets (Kalshi GetHistoricalMarkets)",
    description="The same markets as `GET /markets` (nothing is only historical in kalshibook).",
    **kalshi_route(1, k.Markets),
)
async def historical_markets(
    request: Request[Any, Any, Any],
    conn: Conn,
    limit: Limit = None,
    cursor: Cursor = None,
    event_ticker: Text = None,
    series_ticker: Text = None,
    tickers: Tickers = None,
) -> k.Markets:
    return await list_market_rows(
        request,
        conn,
        limit,
        cursor,
        event=event_ticker,
        series=series_ticker,
        status=None,
        tickers=tickers,
    )


@get(
    "/historical/markets/{ticker:str}",
    summary="One historical market (Kalshi GetHistoricalMarket)",
    **kalshi_route(1, k.MarketOne),
)
async def historical_market(conn: Conn, ticker: TickerPath) -> k.MarketOne:
    return await _market(conn, ticker)


HANDLERS: list[Any] = [
    list_series,
    get_series,
    list_events,
    get_event,
    list_markets,
    get_market,
    cutoff,
    historical_markets,
    historical_market,
]
