"""Response bodies of the REST API (msgspec Structs).

Shapes follow Kalshi's where one exists (``*_dollars`` price strings with at least 4 decimals,
``*_fp`` contract counts with 2 decimals, RFC 3339 UTC times). Every list is wrapped in the same
envelope ``{data, next_cursor, has_more, request_id, response_time}``; single objects in
``{data, request_id, response_time}``. Errors are RFC 9457 :class:`Problem` documents.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

__all__ = (
    "BestPrices",
    "BookEventRef",
    "BookGapRef",
    "CandleOut",
    "CandlePage",
    "ChannelFreshness",
    "Coverage",
    "Delta",
    "DeltaPage",
    "Event",
    "EventDetail",
    "EventOne",
    "EventPage",
    "Gap",
    "GapPage",
    "Health",
    "KalshiPrice",
    "KalshiQuoteOHLC",
    "Market",
    "MarketOne",
    "MarketPage",
    "OrderBook",
    "OrderBookOne",
    "Problem",
    "Series",
    "SeriesDetail",
    "SeriesOne",
    "SeriesPage",
    "Settlement",
    "SettlementOne",
    "SettlementPage",
    "SnapshotRef",
    "Status",
    "StatusOne",
    "Trade",
    "TradePage",
)

Dollars = Annotated[str, Meta(description="exact dollar amount, at least 4 decimals")]
Count = Annotated[str, Meta(description="exact contract count, 2 decimals")]
PriceLevel = Annotated[
    tuple[str, str], Meta(description="[price in dollars, size in contracts], exact strings")
]
RequestId = Annotated[str, Meta(description="id of this request (also the X-Request-ID header)")]
ResponseTime = Annotated[float, Meta(description="server time spent on this request, in ms")]
NextCursor = Annotated[
    str | None, Meta(description="pass as `cursor` to get the next page; null at the end")
]


class Base(msgspec.Struct, kw_only=True):
    pass


# -- reference data ------------------------------------------------------------------------------


class Series(Base):
    ticker: str
    title: str | None
    category: str | None
    frequency: str | None
    tags: list[str]
    fee_type: str | None
    fee_multiplier: str | None
    first_seen_at: datetime
    updated_at: datetime


class Event(Base):
    event_ticker: str
    series_ticker: str | None
    title: str | None
    sub_title: str | None
    category: str | None
    mutually_exclusive: bool | None
    collateral_return_type: str | None
    strike_date: datetime | None
    strike_period: str | None
    first_seen_at: datetime
    updated_at: datetime


class SeriesDetail(Series):
    events: list[Event]


class Market(Base):
    ticker: str
    event_ticker: str
    series_ticker: str | None
    market_type: str | None
    title: str | None
    yes_sub_title: str | None
    no_sub_title: str | None
    status: Annotated[str, Meta(description="Kalshi's market status, as last recorded")]
    created_time: datetime | None
    open_time: datetime | None
    close_time: datetime | None
    expected_expiration_time: datetime | None
    latest_expiration_time: datetime | None
    strike_type: str | None
    floor_strike: str | None
    cap_strike: str | None
    functional_strike: str | None
    custom_strike: Any
    price_level_structure: str | None
    price_ranges: Any
    result: str | None
    settlement_value_dollars: Dollars | None
    first_seen_at: datetime
    updated_at: datetime


class EventDetail(Event):
    markets: list[Market]


# -- trades and settlements ----------------------------------------------------------------------


class Trade(Base):
    trade_id: str
    ticker: str
    created_time: Annotated[
        datetime,
        Meta(description="exchange time of the trade: microseconds where REST gave them, else ms"),
    ]
    exchange_seq: Annotated[
        int,
        Meta(
            description="place in the market's exchange order: epoch ms x 1,000,000 + rank of the "
            "trade among the market's trades of that millisecond"
        ),
    ]
    yes_price_dollars: Dollars
    no_price_dollars: Dollars
    count_fp: Count
    taker_outcome_side: str | None
    taker_book_side: str | None
    is_block_trade: bool
    source: Annotated[str, Meta(description="ws (live feed) or rest (backfill)")]


class Settlement(Base):
    ticker: str
    event_ticker: str | None
    series_ticker: str | None
    result: Annotated[str, Meta(description="yes, no, scalar or void")]
    settlement_value_dollars: Dollars | None
    determined_at: datetime | None
    settled_at: datetime | None
    source: str
    confirmed: Annotated[bool, Meta(description="confirmed against Kalshi's REST market")]


# -- order book ----------------------------------------------------------------------------------


class BookGapRef(Base):
    from_ts: Annotated[datetime | None, Meta(description="null: before the first snapshot")]
    to_ts: datetime | None
    reason: str


class BookEventRef(Base):
    kind: Annotated[str, Meta(description="snapshot or delta")]
    ts: datetime
    epoch: int
    seq: int | None


class SnapshotRef(Base):
    ts: datetime
    source: Annotated[str, Meta(description="snapshot, resync, checkpoint or rest")]
    epoch: int
    seq: int | None


class BestPrices(Base):
    yes_bid_dollars: Dollars | None
    yes_bid_size_fp: Count | None
    yes_ask_dollars: Annotated[str | None, Meta(description="1 - best NO bid")]
    yes_ask_size_fp: Count | None
    no_bid_dollars: Dollars | None
    no_bid_size_fp: Count | None
    no_ask_dollars: Annotated[str | None, Meta(description="1 - best YES bid")]
    no_ask_size_fp: Count | None


class OrderBook(Base):
    ticker: str
    at: Annotated[datetime, Meta(description="the instant the book was rebuilt for")]
    complete: Annotated[
        bool, Meta(description="false when `at` is inside a recorded gap or before any snapshot")
    ]
    gap: BookGapRef | None
    yes_bids: Annotated[
        list[PriceLevel], Meta(description="YES bids ascending by price, best bid last")
    ]
    no_bids: Annotated[
        list[PriceLevel], Meta(description="NO bids ascending by price, best bid last")
    ]
    best: BestPrices
    last_event: BookEventRef | None
    snapshot: SnapshotRef | None
    deltas_applied: int


class Delta(Base):
    ts: datetime
    side: Annotated[str, Meta(description="yes or no")]
    price_dollars: Dollars
    delta_fp: Annotated[str, Meta(description="signed change of the resting size, 2 decimals")]
    epoch: int
    sid: int
    seq: int
    received_at: datetime


class Gap(Base):
    ticker: str
    from_ts: datetime
    to_ts: datetime
    reason: str
    sid: int | None
    detected_at: datetime


# -- data quality --------------------------------------------------------------------------------


class ChannelFreshness(Base):
    table: str
    channel: str
    last_received_at: Annotated[
        datetime | None, Meta(description="newest local receive time (freshness)")
    ]
    last_ts: datetime | None
    first_ts: datetime | None
    lag_seconds: Annotated[float | None, Meta(description="now - last_received_at")]
    approx_rows: int


class Coverage(Base):
    series: int
    events: int
    markets: int
    markets_by_status: dict[str, int]
    settlements: int
    gaps_last_24h: int


class ReplicaStatus(Base):
    name: Annotated[str, Meta(description="the replica's URL without its password")]
    healthy: Annotated[bool, Meta(description="reads go to it (reachable, lag within the limit)")]
    lag_seconds: Annotated[
        float | None, Meta(description="replay lag behind the primary (0 when caught up)")
    ]
    behind_bytes: Annotated[float | None, Meta(description="WAL bytes not replayed yet")]
    error: str | None


class Status(Base):
    now: datetime
    channels: list[ChannelFreshness]
    coverage: Coverage
    replicas: Annotated[
        list[ReplicaStatus],
        Meta(description="read replicas (KALSHIBOOK_REPLICA_URLS); empty without any"),
    ] = []


class Health(Base):
    status: Annotated[str, Meta(description="ok or unavailable")]
    database: bool


# -- envelopes -----------------------------------------------------------------------------------


class SeriesPage(Base):
    data: list[Series]
    next_cursor: NextCursor
    has_more: bool
    request_id: RequestId
    response_time: ResponseTime


class SeriesOne(Base):
    data: SeriesDetail
    next_cursor: NextCursor
    has_more: bool
    request_id: RequestId
    response_time: ResponseTime


class EventPage(Base):
    data: list[Event]
    next_cursor: NextCursor
    has_more: bool
    request_id: RequestId
    response_time: ResponseTime


class EventOne(Base):
    data: EventDetail
    next_cursor: NextCursor
    has_more: bool
    request_id: RequestId
    response_time: ResponseTime


class MarketPage(Base):
    data: list[Market]
    next_cursor: NextCursor
    has_more: bool
    request_id: RequestId
    response_time: ResponseTime


class MarketOne(Base):
    data: Market
    request_id: RequestId
    response_time: ResponseTime


class TradePage(Base):
    data: list[Trade]
    next_cursor: NextCursor
    has_more: bool
    request_id: RequestId
    response_time: ResponseTime


class SettlementPage(Base):
    data: list[Settlement]
    next_cursor: NextCursor
    has_more: bool
    request_id: RequestId
    response_time: ResponseTime


class SettlementOne(Base):
    data: Settlement
    request_id: RequestId
    response_time: ResponseTime


class OrderBookOne(Base):
    data: OrderBook
    request_id: RequestId
    response_time: ResponseTime


class DeltaPage(Base):
    data: list[Delta]
    next_cursor: NextCursor
    has_more: bool
    request_id: RequestId
    response_time: ResponseTime
    book: Annotated[
        OrderBook | None,
        Meta(
            description="with_book=true, first page only: the book just before `start` "
            "(every event with ts < start), to which `data` applies in order"
        ),
    ] = None


class GapPage(Base):
    data: list[Gap]
    next_cursor: NextCursor
    has_more: bool
    request_id: RequestId
    response_time: ResponseTime


class StatusOne(Base):
    data: Status
    request_id: RequestId
    response_time: ResponseTime


# -- candles ------------------------------------------------------------------------------------


class KalshiQuoteOHLC(Base, gc=False):
    """Kalshi's ``yes_bid`` / ``yes_ask`` object."""

    open_dollars: Dollars | None
    low_dollars: Dollars | None
    high_dollars: Dollars | None
    close_dollars: Dollars | None


class KalshiPrice(Base, gc=False):
    """Kalshi's ``price`` object (trades). ``min``/``max`` are null, as in every Kalshi sample."""

    open_dollars: Dollars | None
    low_dollars: Dollars | None
    high_dollars: Dollars | None
    close_dollars: Dollars | None
    mean_dollars: Annotated[str | None, Meta(description="VWAP, rounded half-even to 6 dp")]
    previous_dollars: Annotated[str | None, Meta(description="last trade before the period")]
    min_dollars: None = None
    max_dollars: None = None


class CandleOut(Base, gc=False):
    start: Annotated[datetime, Meta(description="period start (inclusive)")]
    end: Annotated[
        datetime,
        Meta(description="period end (exclusive); 1d periods end at New York midnight"),
    ]
    open: Dollars | None
    high: Dollars | None
    low: Dollars | None
    close: Dollars | None
    volume: Count
    vwap: Annotated[str | None, Meta(description="volume-weighted price, half-even to 6 dp")]
    trade_count: int
    taker_yes_volume: Count
    taker_no_volume: Count
    previous: Annotated[str | None, Meta(description="last trade price before the period")]
    yes_bid_open: Annotated[str | None, Meta(description="best YES bid carried into the period")]
    yes_bid_high: Dollars | None
    yes_bid_low: Dollars | None
    yes_bid_close: Dollars | None
    yes_ask_open: Annotated[str | None, Meta(description="best YES ask carried into the period")]
    yes_ask_high: Dollars | None
    yes_ask_low: Dollars | None
    yes_ask_close: Dollars | None
    open_interest: Annotated[
        str | None, Meta(description="last open interest at or before the period end")
    ]
    # Kalshi's MarketCandlestick
    end_period_ts: Annotated[
        int,
        Meta(
            description="Kalshi's label, Unix seconds: `start` + 1 min / 1 h / 24 h (= `end` "
            "but on New York's 23- and 25-hour days)"
        ),
    ]
    yes_bid: KalshiQuoteOHLC
    yes_ask: KalshiQuoteOHLC
    price: KalshiPrice
    volume_fp: Count
    open_interest_fp: Count | None


class CandlePage(Base):
    data: list[CandleOut]
    next_cursor: NextCursor
    has_more: bool
    request_id: RequestId
    response_time: ResponseTime
    ticker: str
    interval: Annotated[str, Meta(description="1m, 1h or 1d")]


class Problem(Base, omit_defaults=True):
    """RFC 9457 problem details (media type ``application/problem+json``)."""

    type: Annotated[str, Meta(description="URI identifying the kind of problem")]
    title: str
    status: int
    detail: Annotated[str, Meta(description="what went wrong and how to fix it")]
    instance: Annotated[str, Meta(description="the request path")]
    request_id: RequestId
    parameter: Annotated[
        str | None, Meta(description="the request parameter at fault, when there is one")
    ] = None
