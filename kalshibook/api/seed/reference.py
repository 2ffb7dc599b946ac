"""``GET /markets``, ``/markets/{ticker}``, ``/events``, ``/events/{event_ticker}`` (1 credit each),
read by the same functions as ``/v1/markets`` and ``/v1/events``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Final

import msgspec
from litestar import Request, get
from litestar.params import Parameter

from kalshibook.api.deps import Conn, SettingsDep, envelope_meta
from kalshibook.api.docs import EventTickerPath, TickerPath
from kalshibook.api.routes.reference import STATUS_FILTER, MarketStatus, market_out
from kalshibook.api.seed import schemas as s
from kalshibook.api.seed.docs import seed_route
from kalshibook.api.seed.lists import ListCursor, ListLimit, list_pager
from kalshibook.api.seed.numbers import exact_number
from kalshibook.errors import NotFound
from kalshibook.storage import market_summary, reads

__all__ = ("HANDLERS", "event_status")

LIVENESS: Final = ("open", "paused", "unopened", "closed", "settled")
"""Kalshi's market filter words, liveliest first: an event's status is its liveliest market's."""
_WORD_OF: Final = {raw: word for word in LIVENESS for raw in STATUS_FILTER[word]}
_SUMMARY_FIELDS: Final = frozenset(s.MarketSummary.__struct_fields__)

StatusFilter = Annotated[
    MarketStatus | None,
    Parameter(description="events with a market in this status (as /v1/events' `status`)"),
]


def event_status(statuses: Iterable[str]) -> str | None:
    """``open`` if any market is open (active), else paused, unopened, closed, settled."""
    words = {_WORD_OF.get(st) for st in statuses}
    return next((w for w in LIVENESS if w in words), None)


def market_summary_of(
    row: reads.MarketRow, category: str | None, data: market_summary.MarketData | None = None
) -> s.MarketSummary:
    return s.MarketSummary(
        ticker=row.ticker,
        title=row.title,
        event_ticker=row.event_ticker,
        status=row.status,
        category=category,
        first_data_at=None if data is None else data.first_data_at,
        last_data_at=None if data is None else data.last_data_at,
    )


def event_summary_of(
    row: reads.EventRow, stats: market_summary.EventStats | None
) -> s.EventSummary:
    return s.EventSummary(
        event_ticker=row.event_ticker,
        series_ticker=row.series_ticker,
        title=row.title,
        sub_title=row.sub_title,
        category=row.category,
        mutually_exclusive=row.mutually_exclusive,
        status=None if stats is None else event_status(stats.statuses),
        market_count=0 if stats is None else stats.market_count,
    )


@get(
    "/markets",
    summary="List markets (kalshibook SDK: list_markets)",
    description=(
        "The same rows and order as `GET /v1/markets` (by ticker), up to 5,000 per response. "
        "`first_data_at`/`last_data_at` are null here and filled by `GET /markets/{ticker}`."
    ),
    **seed_route(1, s.MarketsResponse),
)
async def list_markets(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    limit: ListLimit = None,
    cursor: ListCursor = None,
) -> s.MarketsResponse:
    pager = list_pager(request, settings, limit, "markets")
    after = pager.after(cursor, tuple[str])
    rows = await reads.list_markets(
        conn,
        event=None,
        series=None,
        statuses=None,
        after=after[0] if after else None,
        limit=pager.fetch,
    )
    categories = await market_summary.market_categories(conn, [r.ticker for r in rows])
    return pager.page(
        s.MarketsResponse,
        rows,
        lambda r: market_summary_of(r, categories.get(r.ticker)),
        lambda r: (r.ticker,),
    )


@get(
    "/markets/{ticker:str}",
    summary="One market (kalshibook SDK: get_market)",
    description=(
        "`/v1/markets/{ticker}`'s market as `metadata`, with the recorded book's extent: "
        "`snapshot_count`, `delta_count`, first and last book snapshot, delta or trade time."
    ),
    **seed_route(1, s.MarketDetailResponse, errors=(404,)),
)
async def get_market(
    request: Request[Any, Any, Any], conn: Conn, ticker: TickerPath
) -> s.MarketDetailResponse:
    row = await reads.get_market(conn, ticker)
    if row is None:
        raise NotFound(f"unknown market ticker {ticker!r}", parameter="ticker")
    data = await market_summary.market_data(conn, ticker)
    categories = await market_summary.market_categories(conn, [ticker])
    base = market_summary_of(row, categories.get(ticker), data)
    strike = row.floor_strike if row.floor_strike is not None else row.cap_strike
    detail = s.MarketDetail(
        **{f: getattr(base, f) for f in _SUMMARY_FIELDS},
        rules=None,
        strike_price=None if strike is None else exact_number(strike),
        discovered_at=row.first_seen_at,
        metadata=msgspec.to_builtins(market_out(row)),
        snapshot_count=data.snapshot_count,
        delta_count=data.delta_count,
    )
    return s.MarketDetailResponse(data=detail, **envelope_meta(request))


@get(
    "/events",
    summary="List events (kalshibook SDK: list_events)",
    description=(
        "The same rows and order as `GET /v1/events`, up to 5,000 per response; `status` is "
        "the liveliest status of the event's markets, `market_count` their number."
    ),
    **seed_route(1, s.EventsResponse),
)
async def list_events(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    category: Annotated[str | None, Parameter(description="exact event category")] = None,
    series_ticker: Annotated[str | None, Parameter(description="parent series")] = None,
    status: StatusFilter = None,
    limit: ListLimit = None,
    cursor: ListCursor = None,
) -> s.EventsResponse:
    pager = list_pager(request, settings, limit, "events")
    after = pager.after(cursor, tuple[str])
    rows = await reads.list_events(
        conn,
        series=series_ticker,
        statuses=None if status is None else STATUS_FILTER[status],
        category=category,
        after=after[0] if after else None,
        limit=pager.fetch,
    )
    stats = await market_summary.event_stats(conn, [r.event_ticker for r in rows])
    return pager.page(
        s.EventsResponse,
        rows,
        lambda r: event_summary_of(r, stats.get(r.event_ticker)),
        lambda r: (r.event_ticker,),
    )


@get(
    "/events/{event_ticker:str}",
    summary="One event with its markets (kalshibook SDK: get_event)",
    **seed_route(1, s.EventDetailResponse, errors=(404,)),
)
async def get_event(
    request: Request[Any, Any, Any], conn: Conn, event_ticker: EventTickerPath
) -> s.EventDetailResponse:
    row = await reads.get_event(conn, event_ticker)
    if row is None:
        raise NotFound(f"unknown event ticker {event_ticker!r}", parameter="event_ticker")
    markets = await reads.event_markets(conn, event_ticker)
    categories = await market_summary.market_categories(conn, [m.ticker for m in markets])
    stats = market_summary.EventStats(len(markets), [m.status for m in markets])
    base = event_summary_of(row, stats)
    detail = s.EventDetail(
        **{f: getattr(base, f) for f in s.EventSummary.__struct_fields__},
        markets=[market_summary_of(m, categories.get(m.ticker)) for m in markets],
    )
    return s.EventDetailResponse(data=detail, **envelope_meta(request))


HANDLERS = [list_markets, get_market, list_events, get_event]
