"""OpenAPI documentation helpers: documented error responses, examples, shared parameters.

The example tickers are the ones the API tests seed, so schemathesis' example phase exercises
real rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Parameter

from kalshibook.api import schemas as s
from kalshibook.api.problems import PROBLEM_MEDIA_TYPE
from kalshibook.domain.exchange_order import exchange_seq

__all__ = (
    "EXAMPLE_EVENT",
    "EXAMPLE_MARKET",
    "EXAMPLE_SERIES",
    "AtParam",
    "CursorParam",
    "EndParam",
    "EventFilter",
    "EventTickerPath",
    "LimitParam",
    "SeriesFilter",
    "StartParam",
    "TickerPath",
    "priced",
    "responses",
)

EXAMPLE_SERIES = "KXHIGHNY"
EXAMPLE_EVENT = "KXHIGHNY-26JAN15"
EXAMPLE_MARKET = "KXHIGHNY-26JAN15-B45"
EXAMPLE_SETTLED = "KXHIGHNY-26JAN15-B47"
EXAMPLE_TIME = "2026-01-15T15:00:00Z"
_T0 = datetime(2026, 1, 15, 15, 0, tzinfo=UTC)

_ERROR_TEXT = {
    400: "invalid parameter (problem+json; `parameter` names it)",
    401: "missing, unknown or revoked API key",
    402: "the API key has no credits left",
    404: "unknown ticker (problem+json; `parameter` names it)",
    429: "rate limit of the API key exceeded (see Retry-After)",
    503: "the database is unavailable",
}

_PROBLEM_EXAMPLE = s.Problem(
    type="urn:kalshibook:problem:bad-request",
    title="Bad Request",
    status=400,
    detail="limit must be between 1 and 1000, got 5000",
    instance="/v1/trades",
    request_id="4f6c1b0e2d3a4c5b8e9f0a1b2c3d4e5f",
    parameter="limit",
)


def _example(value: Any) -> Example:
    # The Struct itself, not a dict: Litestar drops None entries from dicts in the document, which
    # would leave required nullable fields out of the examples; msgspec encodes the Struct whole.
    return Example(summary="example", value=value)


def responses(
    ok: type[Any],
    example: Any,
    *,
    errors: tuple[int, ...] = (400, 401, 402, 429, 503),
    description: str = "OK",
) -> dict[int, ResponseSpec]:
    """``responses=`` for a handler: the 200 body with an example, then problem+json errors."""
    errors = tuple(sorted({400, 503, *errors}))  # Litestar documents 400 on any parameter
    out = {
        200: ResponseSpec(
            data_container=ok,
            description=description,
            examples=[_example(example)],
            generate_examples=False,
        )
    }
    for status in errors:
        problem = msgspec.structs.replace(
            _PROBLEM_EXAMPLE,
            status=status,
            title=_ERROR_TEXT[status].split(" (")[0],
            parameter="limit" if status == 400 else ("ticker" if status == 404 else None),
        )
        out[status] = ResponseSpec(
            data_container=s.Problem,
            description=_ERROR_TEXT[status],
            media_type=PROBLEM_MEDIA_TYPE,
            examples=[_example(problem)],
            generate_examples=False,
        )
    return out


def priced(cost: int) -> dict[str, Any]:
    """Handler keywords of a route that needs an API key and costs ``cost`` credits."""
    return {"opt": {"cost": cost}, "security": [{"bearer": []}]}


LimitParam = Annotated[
    int | None,
    Parameter(
        description="page size, 1 to the server's maximum (default 100, max 1000)",
        examples=[Example(value=100)],
    ),
]
CursorParam = Annotated[
    str | None,
    Parameter(description="`next_cursor` of the previous page, unchanged"),
]
StartParam = Annotated[
    str | None,
    Parameter(
        description="inclusive start: RFC 3339 (2026-01-15T00:00:00Z) or Unix seconds",
        examples=[Example(value="2026-01-15T00:00:00Z")],
    ),
]
EndParam = Annotated[
    str | None,
    Parameter(
        description="exclusive end: RFC 3339 or Unix seconds",
        examples=[Example(value="2026-01-16T00:00:00Z")],
    ),
]
AtParam = Annotated[
    str | None,
    Parameter(
        description="the instant (RFC 3339 or Unix seconds); default now",
        examples=[Example(value=EXAMPLE_TIME)],
    ),
]
TickerPath = Annotated[
    str, Parameter(description="market ticker", examples=[Example(value=EXAMPLE_MARKET)])
]
EventTickerPath = Annotated[
    str, Parameter(description="event ticker", examples=[Example(value=EXAMPLE_EVENT)])
]
SettledTickerPath = Annotated[
    str, Parameter(description="market ticker", examples=[Example(value=EXAMPLE_SETTLED)])
]
SeriesTickerPath = Annotated[
    str, Parameter(description="series ticker", examples=[Example(value=EXAMPLE_SERIES)])
]
SeriesFilter = Annotated[
    str | None,
    Parameter(description="series ticker", examples=[Example(value=EXAMPLE_SERIES)]),
]
EventFilter = Annotated[
    str | None,
    Parameter(description="event ticker", examples=[Example(value=EXAMPLE_EVENT)]),
]

# -- example bodies ------------------------------------------------------------------------------

_RID = "4f6c1b0e2d3a4c5b8e9f0a1b2c3d4e5f"

SERIES = s.Series(
    ticker=EXAMPLE_SERIES,
    title="Highest temperature in NYC",
    category="Climate and Weather",
    frequency="daily",
    tags=["Weather"],
    fee_type="quadratic",
    fee_multiplier="1",
    first_seen_at=_T0,
    updated_at=_T0,
)
EVENT = s.Event(
    event_ticker=EXAMPLE_EVENT,
    series_ticker=EXAMPLE_SERIES,
    title="Highest temperature in NYC on Jan 15, 2026?",
    sub_title="On Jan 15, 2026",
    category="Climate and Weather",
    mutually_exclusive=True,
    collateral_return_type="MECNET",
    strike_date=datetime(2026, 1, 16, 4, 59, tzinfo=UTC),
    strike_period=None,
    first_seen_at=_T0,
    updated_at=_T0,
)
MARKET = s.Market(
    ticker=EXAMPLE_MARKET,
    event_ticker=EXAMPLE_EVENT,
    series_ticker=EXAMPLE_SERIES,
    market_type="binary",
    title="Will the high temp in NYC be 44-45° on Jan 15, 2026?",
    yes_sub_title="44° to 45°",
    no_sub_title="44° to 45°",
    status="active",
    created_time=_T0,
    open_time=_T0,
    close_time=datetime(2026, 1, 16, 4, 59, tzinfo=UTC),
    expected_expiration_time=None,
    latest_expiration_time=datetime(2026, 1, 23, 15, 0, tzinfo=UTC),
    strike_type="between",
    floor_strike="44",
    cap_strike="45",
    functional_strike=None,
    custom_strike=None,
    price_level_structure="linear_cent",
    price_ranges=[{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
    result=None,
    settlement_value_dollars=None,
    first_seen_at=_T0,
    updated_at=_T0,
)
TRADE = s.Trade(
    trade_id="d91bc706-ee49-470d-82d8-11418bda6fed",
    ticker=EXAMPLE_MARKET,
    created_time=_T0,
    exchange_seq=exchange_seq(_T0, 0),
    yes_price_dollars="0.4200",
    no_price_dollars="0.5800",
    count_fp="12.50",
    taker_outcome_side="yes",
    taker_book_side="bid",
    is_block_trade=False,
    source="ws",
)
SETTLEMENT = s.Settlement(
    ticker=EXAMPLE_SETTLED,
    event_ticker=EXAMPLE_EVENT,
    series_ticker=EXAMPLE_SERIES,
    result="no",
    settlement_value_dollars="0.0000",
    determined_at=datetime(2026, 1, 16, 14, 0, tzinfo=UTC),
    settled_at=datetime(2026, 1, 16, 15, 0, tzinfo=UTC),
    source="ws",
    confirmed=True,
)
BEST = s.BestPrices(
    yes_bid_dollars="0.4200",
    yes_bid_size_fp="13.00",
    yes_ask_dollars="0.4400",
    yes_ask_size_fp="5.00",
    no_bid_dollars="0.5600",
    no_bid_size_fp="5.00",
    no_ask_dollars="0.5800",
    no_ask_size_fp="13.00",
)
ORDERBOOK = s.OrderBook(
    ticker=EXAMPLE_MARKET,
    at=_T0,
    complete=True,
    gap=None,
    yes_bids=[("0.4100", "20.00"), ("0.4200", "13.00")],
    no_bids=[("0.5500", "7.50"), ("0.5600", "5.00")],
    best=BEST,
    last_event=s.BookEventRef(kind="delta", ts=_T0, epoch=3, seq=1042),
    snapshot=s.SnapshotRef(ts=_T0, source="checkpoint", epoch=3, seq=1000),
    deltas_applied=42,
)
DELTA = s.Delta(
    ts=_T0,
    side="yes",
    price_dollars="0.4200",
    delta_fp="-3.00",
    epoch=3,
    sid=1,
    seq=1043,
    received_at=_T0,
)
GAP = s.Gap(
    ticker=EXAMPLE_MARKET,
    from_ts=_T0,
    to_ts=datetime(2026, 1, 15, 15, 0, 4, tzinfo=UTC),
    reason="disconnect",
    sid=1,
    detected_at=datetime(2026, 1, 15, 15, 0, 4, tzinfo=UTC),
)
STATUS = s.Status(
    now=_T0,
    channels=[
        s.ChannelFreshness(
            table="trades",
            channel="trade",
            last_received_at=_T0,
            last_ts=_T0,
            first_ts=datetime(2025, 11, 1, tzinfo=UTC),
            lag_seconds=0.8,
            approx_rows=1_250_000,
        )
    ],
    coverage=s.Coverage(
        series=120,
        events=3400,
        markets=41000,
        markets_by_status={"active": 5200, "finalized": 35800},
        settlements=35800,
        gaps_last_24h=2,
    ),
)

_PAGE: dict[str, Any] = {
    "next_cursor": "AZJ0cmFkZXOS1_8AAAAA",
    "has_more": True,
    "request_id": _RID,
}
_ONE: dict[str, Any] = {"request_id": _RID, "response_time": 1.8}

SERIES_PAGE = s.SeriesPage(data=[SERIES], response_time=2.1, **_PAGE)
_ONE_PAGED: dict[str, Any] = {**_ONE, "next_cursor": None, "has_more": False}
SERIES_ONE = s.SeriesOne(
    data=s.SeriesDetail(**msgspec.structs.asdict(SERIES), events=[EVENT]), **_ONE_PAGED
)
EVENT_PAGE = s.EventPage(data=[EVENT], response_time=2.4, **_PAGE)
EVENT_ONE = s.EventOne(
    data=s.EventDetail(**msgspec.structs.asdict(EVENT), markets=[MARKET]), **_ONE_PAGED
)
MARKET_PAGE = s.MarketPage(data=[MARKET], response_time=2.6, **_PAGE)
MARKET_ONE = s.MarketOne(data=MARKET, **_ONE)
TRADE_PAGE = s.TradePage(data=[TRADE], response_time=3.2, **_PAGE)
SETTLEMENT_PAGE = s.SettlementPage(data=[SETTLEMENT], response_time=1.9, **_PAGE)
SETTLEMENT_ONE = s.SettlementOne(data=SETTLEMENT, **_ONE)
ORDERBOOK_ONE = s.OrderBookOne(data=ORDERBOOK, **_ONE)
DELTA_PAGE = s.DeltaPage(data=[DELTA], response_time=2.9, book=ORDERBOOK, **_PAGE)
GAP_PAGE = s.GapPage(data=[GAP], response_time=1.2, **_PAGE)
STATUS_ONE = s.StatusOne(data=STATUS, **_ONE)

CANDLE = s.CandleOut(
    start=_T0,
    end=datetime(2026, 1, 15, 16, 0, tzinfo=UTC),
    open="0.4200",
    high="0.4500",
    low="0.4100",
    close="0.4400",
    volume="120.00",
    vwap="0.4325",
    trade_count=9,
    taker_yes_volume="80.00",
    taker_no_volume="40.00",
    previous="0.4100",
    yes_bid_open="0.4100",
    yes_bid_high="0.4400",
    yes_bid_low="0.4000",
    yes_bid_close="0.4300",
    yes_ask_open="0.4300",
    yes_ask_high="0.4600",
    yes_ask_low="0.4200",
    yes_ask_close="0.4500",
    open_interest="1520.00",
    end_period_ts=int(datetime(2026, 1, 15, 16, 0, tzinfo=UTC).timestamp()),
    yes_bid=s.KalshiQuoteOHLC(
        open_dollars="0.4100", low_dollars="0.4000", high_dollars="0.4400", close_dollars="0.4300"
    ),
    yes_ask=s.KalshiQuoteOHLC(
        open_dollars="0.4300", low_dollars="0.4200", high_dollars="0.4600", close_dollars="0.4500"
    ),
    price=s.KalshiPrice(
        open_dollars="0.4200",
        low_dollars="0.4100",
        high_dollars="0.4500",
        close_dollars="0.4400",
        mean_dollars="0.4325",
        previous_dollars="0.4100",
    ),
    volume_fp="120.00",
    open_interest_fp="1520.00",
)
CANDLE_PAGE = s.CandlePage(
    data=[CANDLE],
    next_cursor=None,
    has_more=False,
    request_id=_RID,
    response_time=3.1,
    ticker=EXAMPLE_MARKET,
    interval="1h",
)
