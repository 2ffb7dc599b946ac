"""Series > events > markets: the reference hierarchy (1 credit each)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Request, get
from litestar.openapi.spec import Example
from litestar.params import Parameter

from kalshibook.api import docs
from kalshibook.api import schemas as s
from kalshibook.api.deps import Conn, SettingsDep, dollars_str, envelope_meta, num_str
from kalshibook.api.docs import (
    CursorParam,
    EventFilter,
    EventTickerPath,
    LimitParam,
    SeriesFilter,
    SeriesTickerPath,
    TickerPath,
    priced,
    responses,
)
from kalshibook.api.routes._paging import Pager
from kalshibook.errors import NotFound
from kalshibook.storage import reads

__all__ = ("HANDLERS", "STATUS_FILTER")

MarketStatus = Literal[
    "unopened",
    "open",
    "paused",
    "closed",
    "settled",
    "initialized",
    "inactive",
    "active",
    "determined",
    "disputed",
    "amended",
    "finalized",
]
STATUS_FILTER: dict[str, list[str]] = {
    "unopened": ["unopened", "initialized"],
    "open": ["open", "active"],
    "paused": ["paused", "inactive"],
    "closed": ["closed"],
    "settled": ["settled", "determined", "disputed", "amended", "finalized"],
    **{raw: [raw] for raw in ("initialized", "inactive", "active")},
    **{raw: [raw] for raw in ("determined", "disputed", "amended", "finalized")},
}
"""Kalshi's filter words (``open``…) map to the statuses markets carry (``active``…); a raw
status matches only itself."""

StatusParam = Annotated[
    MarketStatus | None,
    Parameter(
        description="Kalshi's filter words (unopened, open, paused, closed, settled) or a raw "
        "market status (active, finalized, ...)",
        examples=[Example(value="open")],
    ),
]


def series_out(row: reads.SeriesRow) -> s.Series:
    return s.Series(
        ticker=row.ticker,
        title=row.title,
        category=row.category,
        frequency=row.frequency,
        tags=list(row.tags or []),
        fee_type=row.fee_type,
        fee_multiplier=num_str(row.fee_multiplier),
        first_seen_at=row.first_seen_at,
        updated_at=row.updated_at,
    )


def event_out(row: reads.EventRow) -> s.Event:
    return s.Event(**row._asdict())


def market_out(row: reads.MarketRow) -> s.Market:
    return s.Market(
        ticker=row.ticker,
        event_ticker=row.event_ticker,
        series_ticker=row.series_ticker,
        market_type=row.market_type,
        title=row.title,
        yes_sub_title=row.yes_sub_title,
        no_sub_title=row.no_sub_title,
        status=row.status,
        created_time=row.created_time,
        open_time=row.open_time,
        close_time=row.close_time,
        expected_expiration_time=row.expected_expiration_time,
        latest_expiration_time=row.latest_expiration_time,
        strike_type=row.strike_type,
        floor_strike=num_str(row.floor_strike),
        cap_strike=num_str(row.cap_strike),
        functional_strike=row.functional_strike,
        custom_strike=row.custom_strike,
        price_level_structure=row.price_level_structure,
        price_ranges=row.price_ranges,
        result=row.result,
        settlement_value_dollars=dollars_str(row.settlement_value),
        first_seen_at=row.first_seen_at,
        updated_at=row.updated_at,
    )


def _statuses(status: str | None) -> list[str] | None:
    return None if status is None else STATUS_FILTER[status]


@get(
    "/v1/series",
    summary="List series",
    tags=["reference"],
    responses=responses(s.SeriesPage, docs.SERIES_PAGE),
    **priced(1),
)
async def list_series(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    limit: LimitParam = None,
    cursor: CursorParam = None,
    category: Annotated[
        str | None,
        Parameter(description="exact category", examples=[Example(value="Climate and Weather")]),
    ] = None,
) -> s.SeriesPage:
    pager = Pager(request, settings, limit, "series")
    after = pager.after(cursor, tuple[str])
    rows = await reads.list_series(
        conn, category=category, after=after[0] if after else None, limit=pager.fetch
    )
    return pager.page(s.SeriesPage, rows, series_out, lambda r: (r.ticker,))


@get(
    "/v1/series/{ticker:str}",
    summary="One series with its events",
    description="`data.events` is one page of the series' events, ordered by ticker: at most "
    "`limit`; `next_cursor` gives the next page (the series again, with the following events).",
    tags=["reference"],
    responses=responses(s.SeriesOne, docs.SERIES_ONE, errors=(401, 402, 404, 429, 503)),
    **priced(1),
)
async def get_series(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    ticker: SeriesTickerPath,
    limit: LimitParam = None,
    cursor: CursorParam = None,
) -> s.SeriesOne:
    pager = Pager(request, settings, limit, "series_events")
    after = pager.after(cursor, tuple[str])
    row = await reads.get_series(conn, ticker)
    if row is None:
        raise NotFound(f"unknown series ticker {ticker!r}", parameter="ticker")
    rows = await reads.series_events(
        conn, ticker, after=after[0] if after else None, limit=pager.fetch
    )
    events, next_cursor, has_more = pager.split(rows, lambda r: (r.event_ticker,))
    base = series_out(row)
    detail = s.SeriesDetail(
        **{f: getattr(base, f) for f in base.__struct_fields__},
        events=[event_out(e) for e in events],
    )
    return s.SeriesOne(
        data=detail, next_cursor=next_cursor, has_more=has_more, **envelope_meta(request)
    )


@get(
    "/v1/events",
    summary="List events",
    description="`status`: events with at least one market in that status.",
    tags=["reference"],
    responses=responses(s.EventPage, docs.EVENT_PAGE),
    **priced(1),
)
async def list_events(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    limit: LimitParam = None,
    cursor: CursorParam = None,
    series_ticker: SeriesFilter = None,
    status: StatusParam = None,
) -> s.EventPage:
    pager = Pager(request, settings, limit, "events")
    after = pager.after(cursor, tuple[str])
    rows = await reads.list_events(
        conn,
        series=series_ticker,
        statuses=_statuses(status),
        after=after[0] if after else None,
        limit=pager.fetch,
    )
    return pager.page(s.EventPage, rows, event_out, lambda r: (r.event_ticker,))


@get(
    "/v1/events/{event_ticker:str}",
    summary="One event with its markets",
    description="`data.markets` is one page of the event's markets, ordered by ticker: at most "
    "`limit`; `next_cursor` gives the next page (the event again, with the following markets).",
    tags=["reference"],
    responses=responses(s.EventOne, docs.EVENT_ONE, errors=(401, 402, 404, 429, 503)),
    **priced(1),
)
async def get_event(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    event_ticker: EventTickerPath,
    limit: LimitParam = None,
    cursor: CursorParam = None,
) -> s.EventOne:
    pager = Pager(request, settings, limit, "event_markets")
    after = pager.after(cursor, tuple[str])
    row = await reads.get_event(conn, event_ticker)
    if row is None:
        raise NotFound(f"unknown event ticker {event_ticker!r}", parameter="event_ticker")
    rows = await reads.event_markets(
        conn, event_ticker, after=after[0] if after else None, limit=pager.fetch
    )
    markets, next_cursor, has_more = pager.split(rows, lambda r: (r.ticker,))
    detail = s.EventDetail(**row._asdict(), markets=[market_out(m) for m in markets])
    return s.EventOne(
        data=detail, next_cursor=next_cursor, has_more=has_more, **envelope_meta(request)
    )


@get(
    "/v1/markets",
    summary="List markets",
    tags=["reference"],
    responses=responses(s.MarketPage, docs.MARKET_PAGE),
    **priced(1),
)
async def list_markets(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    limit: LimitParam = None,
    cursor: CursorParam = None,
    event_ticker: EventFilter = None,
    series_ticker: SeriesFilter = None,
    status: StatusParam = None,
) -> s.MarketPage:
    pager = Pager(request, settings, limit, "markets")
    after = pager.after(cursor, tuple[str])
    rows = await reads.list_markets(
        conn,
        event=event_ticker,
        series=series_ticker,
        statuses=_statuses(status),
        after=after[0] if after else None,
        limit=pager.fetch,
    )
    return pager.page(s.MarketPage, rows, market_out, lambda r: (r.ticker,))


@get(
    "/v1/markets/{ticker:str}",
    summary="One market",
    tags=["reference"],
    responses=responses(s.MarketOne, docs.MARKET_ONE, errors=(401, 402, 404, 429, 503)),
    **priced(1),
)
async def get_market(
    request: Request[Any, Any, Any], conn: Conn, ticker: TickerPath
) -> s.MarketOne:
    row = await reads.get_market(conn, ticker)
    if row is None:
        raise NotFound(f"unknown market ticker {ticker!r}", parameter="ticker")
    return s.MarketOne(data=market_out(row), **envelope_meta(request))


HANDLERS = [list_series, get_series, list_events, get_event, list_markets, get_market]
