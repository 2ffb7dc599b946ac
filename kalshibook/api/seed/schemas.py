"""Request and response bodies of the seed API, in the shapes the kalshibook SDK 0.1.0 parses.

Prices are cents and sizes contracts, as JSON integers when whole and exact JSON numbers otherwise
(:mod:`kalshibook.api.seed.numbers`); times are RFC 3339 UTC. Fields the SDK does not read
(``complete``, ``exchange_seq``, ``next_cursor`` on lists) are extra information it ignores.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

__all__ = (
    "Candle",
    "CandlesResponse",
    "DeltaRecord",
    "DeltasRequest",
    "DeltasResponse",
    "ErrorBody",
    "ErrorResponse",
    "EventDetail",
    "EventDetailResponse",
    "EventSummary",
    "EventsResponse",
    "Level",
    "MarketDetail",
    "MarketDetailResponse",
    "MarketSummary",
    "MarketsResponse",
    "OrderbookRequest",
    "OrderbookResponse",
    "SettlementRecord",
    "SettlementResponse",
    "SettlementsResponse",
    "TradeRecord",
    "TradesRequest",
    "TradesResponse",
)

Cents = Annotated[
    float,
    Meta(description="cents: an integer when whole, else the exact decimal (4.5 = $0.045)"),
]
Contracts = Annotated[
    float,
    Meta(description="contracts: an integer when whole, else the exact decimal (12.5)"),
]
Ticker = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Time = Annotated[str, Meta(description="RFC 3339 with an offset, or Unix seconds")]
RequestId = Annotated[str, Meta(description="id of this request (also the X-Request-ID header)")]
ResponseTime = Annotated[float, Meta(description="server time spent on this request, in ms")]


class Base(msgspec.Struct, kw_only=True):
    pass


class Envelope(Base):
    request_id: RequestId
    response_time: ResponseTime


class PageEnvelope(Envelope):
    next_cursor: Annotated[
        str | None, Meta(description="pass back as `cursor` for the next page; null at the end")
    ]
    has_more: bool


# -- requests ------------------------------------------------------------------------------------


class OrderbookRequest(Base, forbid_unknown_fields=True):
    market_ticker: Ticker
    timestamp: Time
    depth: Annotated[int, Meta(ge=0, le=100)] | None = None
    """Levels per side, best first; absent or 0 = all."""


class _RangeRequest(Base, forbid_unknown_fields=True):
    market_ticker: Ticker
    start_time: Time
    end_time: Time
    limit: Annotated[int, Meta(ge=1)] | None = None
    cursor: str | None = None


class DeltasRequest(_RangeRequest):
    pass


class TradesRequest(_RangeRequest):
    pass


# -- order book ----------------------------------------------------------------------------------


class Level(Base):
    price: Cents
    quantity: Contracts


class OrderbookResponse(Envelope):
    market_ticker: str
    timestamp: datetime
    snapshot_basis: Annotated[
        datetime, Meta(description="time of the snapshot the book starts from")
    ]
    deltas_applied: int
    yes: Annotated[list[Level], Meta(description="YES bids, best (highest) first")]
    no: Annotated[list[Level], Meta(description="NO bids, best (highest) first")]
    complete: Annotated[
        bool, Meta(description="false inside or after a recorded gap (see /v1's gap field)")
    ]


class DeltaRecord(Base):
    market_ticker: str
    ts: datetime
    seq: int
    price_cents: Cents
    delta_amount: Annotated[float, Meta(description="contracts added (negative: removed)")]
    side: str


class DeltasResponse(PageEnvelope):
    data: list[DeltaRecord]


# -- trades and settlements ----------------------------------------------------------------------


class TradeRecord(Base):
    trade_id: str
    market_ticker: str
    yes_price: Cents
    no_price: Cents
    count: Contracts
    taker_side: Annotated[str | None, Meta(description="outcome the taker bought: yes or no")]
    ts: datetime


class TradesResponse(PageEnvelope):
    data: list[TradeRecord]


class SettlementRecord(Base):
    market_ticker: str
    event_ticker: str | None
    result: str | None
    settlement_value: Cents | None
    determined_at: datetime | None
    settled_at: datetime | None


class SettlementsResponse(PageEnvelope):
    data: list[SettlementRecord]


class SettlementResponse(Envelope):
    data: SettlementRecord


# -- candles -------------------------------------------------------------------------------------


class Candle(Base):
    bucket: Annotated[datetime, Meta(description="start of the period")]
    market_ticker: str
    open: Cents
    high: Cents
    low: Cents
    close: Cents
    volume: Contracts
    trade_count: int


class CandlesResponse(Envelope):
    data: list[Candle]


# -- reference -----------------------------------------------------------------------------------


class MarketSummary(Base):
    ticker: str
    title: str | None
    event_ticker: str | None
    status: str
    category: str | None
    first_data_at: Annotated[
        datetime | None,
        Meta(description="first recorded book snapshot or trade (null in lists: see detail)"),
    ]
    last_data_at: Annotated[
        datetime | None,
        Meta(description="last recorded book snapshot or trade (null in lists: see detail)"),
    ]


class MarketsResponse(PageEnvelope):
    data: list[MarketSummary]


class MarketDetail(MarketSummary):
    rules: str | None
    strike_price: Annotated[float | None, Meta(description="floor strike, else cap strike, exact")]
    discovered_at: Annotated[datetime, Meta(description="when kalshibook first saw the market")]
    metadata: dict[str, Any] | None
    snapshot_count: int
    delta_count: int


class MarketDetailResponse(Envelope):
    data: MarketDetail


class EventSummary(Base):
    event_ticker: str
    series_ticker: str | None
    title: str | None
    sub_title: str | None
    category: str | None
    mutually_exclusive: bool | None
    status: Annotated[
        str | None,
        Meta(description="open, paused, unopened, closed or settled: the liveliest of its markets"),
    ]
    market_count: int | None


class EventsResponse(PageEnvelope):
    data: list[EventSummary]


class EventDetail(EventSummary):
    markets: list[MarketSummary]


class EventDetailResponse(Envelope):
    data: EventDetail


# -- errors --------------------------------------------------------------------------------------


class ErrorBody(Base):
    code: Annotated[
        str,
        Meta(
            description="invalid_api_key, credits_exhausted, rate_limit_exceeded, "
            "market_not_found, event_not_found, settlement_not_found, no_data_available, "
            "validation_error, invalid_timestamp, not_found, method_not_allowed, "
            "service_unavailable, internal_error"
        ),
    ]
    message: str


class ErrorResponse(Base):
    error: ErrorBody
    request_id: RequestId
