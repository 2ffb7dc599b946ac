"""Kalshi Trade API v2 response shapes (2026, fixed-point era) served under ``/trade-api/v2``.

Every struct omits the keys it has no value for (``omit_defaults``), as Kalshi's responses do
since the 2026 migration; prices are ``*_dollars`` strings (4 decimal places, more on sub-penny
grids), counts ``*_fp`` strings (2 places), times RFC 3339 UTC (``Z``), ``*_ts`` Unix seconds.
Keys kalshibook adds to Kalshi's shapes are listed in :data:`EXTENSIONS`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import msgspec

__all__ = (
    "EXTENSIONS",
    "OHLC",
    "BatchCandles",
    "Candle",
    "Cutoff",
    "Error",
    "ErrorResponse",
    "Event",
    "EventCandles",
    "EventOne",
    "Events",
    "HistCandle",
    "HistCandles",
    "HistOHLC",
    "HistPrice",
    "Market",
    "MarketCandles",
    "MarketOne",
    "Markets",
    "Orderbook",
    "OrderbookOne",
    "Orderbooks",
    "Price",
    "Series",
    "SeriesList",
    "SeriesOne",
    "TickerBook",
    "TickerCandles",
    "Trade",
    "Trades",
)

EXTENSIONS: Final = frozenset({"series_ticker"})
"""Market keys Kalshi does not send (``series_ticker``: clients such as pykalshi use it to build
candlestick URLs without an extra ``GET /events/{event_ticker}``)."""


class _Omit(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


class Series(_Omit):
    ticker: str
    title: str | None = None
    category: str | None = None
    frequency: str | None = None
    tags: list[str] | None = None
    fee_type: str | None = None
    fee_multiplier: float | None = None
    last_updated_ts: datetime | None = None


class SeriesList(msgspec.Struct, kw_only=True):
    series: list[Series]
    cursor: str = ""


class SeriesOne(msgspec.Struct, kw_only=True):
    series: Series


class Market(_Omit):
    ticker: str
    event_ticker: str
    status: str
    result: str
    """``""`` until the market is determined, as Kalshi sends it."""
    series_ticker: str | None = None
    market_type: str | None = None
    title: str | None = None
    yes_sub_title: str | None = None
    no_sub_title: str | None = None
    created_time: datetime | None = None
    updated_time: datetime | None = None
    open_time: datetime | None = None
    close_time: datetime | None = None
    expected_expiration_time: datetime | None = None
    latest_expiration_time: datetime | None = None
    strike_type: str | None = None
    floor_strike: float | None = None
    cap_strike: float | None = None
    functional_strike: str | None = None
    custom_strike: Any = None
    price_level_structure: str | None = None
    price_ranges: Any = None
    settlement_value_dollars: str | None = None
    settlement_ts: datetime | None = None
    """When the market settled (its settlement's ``settled_at``): clients compare it with
    ``/historical/cutoff``'s ``market_settled_ts`` to route by market."""


class Markets(msgspec.Struct, kw_only=True):
    markets: list[Market]
    cursor: str


class MarketOne(msgspec.Struct, kw_only=True):
    market: Market


class Event(_Omit):
    event_ticker: str
    series_ticker: str
    """``""`` when the parent series is not recorded (Kalshi always sends the key)."""
    title: str | None = None
    sub_title: str | None = None
    category: str | None = None
    mutually_exclusive: bool | None = None
    collateral_return_type: str | None = None
    strike_date: datetime | None = None
    strike_period: str | None = None
    last_updated_ts: datetime | None = None
    markets: list[Market] | None = None


class Events(msgspec.Struct, kw_only=True):
    events: list[Event]
    cursor: str


class EventOne(msgspec.Struct, kw_only=True):
    event: Event
    markets: list[Market]


class Trade(msgspec.Struct, kw_only=True, omit_defaults=True):
    trade_id: str
    ticker: str
    count_fp: str
    yes_price_dollars: str
    no_price_dollars: str
    taker_outcome_side: str | None = None
    taker_book_side: str | None = None
    taker_side: str | None = None
    created_time: datetime
    is_block_trade: bool


class Trades(msgspec.Struct, kw_only=True):
    trades: list[Trade]
    cursor: str


class Orderbook(msgspec.Struct, kw_only=True):
    yes_dollars: list[tuple[str, str]]
    no_dollars: list[tuple[str, str]]


class OrderbookOne(msgspec.Struct, kw_only=True):
    orderbook_fp: Orderbook


class TickerBook(msgspec.Struct, kw_only=True):
    ticker: str
    orderbook_fp: Orderbook


class Orderbooks(msgspec.Struct, kw_only=True):
    orderbooks: list[TickerBook]


class _Nulls(msgspec.Struct, kw_only=True):
    """Candle objects send every key, ``null`` when there is no value, as Kalshi does (its
    candlestick fields are all nullable: client code reads ``c["price"]["close_dollars"]``)."""


class OHLC(_Nulls):
    open_dollars: str | None = None
    low_dollars: str | None = None
    high_dollars: str | None = None
    close_dollars: str | None = None


class Price(_Nulls):
    open_dollars: str | None = None
    low_dollars: str | None = None
    high_dollars: str | None = None
    close_dollars: str | None = None
    mean_dollars: str | None = None
    previous_dollars: str | None = None
    min_dollars: str | None = None
    """Null in every candle Kalshi was seen sending (KALSHI_API.md §3.6); kalshibook has none."""
    max_dollars: str | None = None


class Candle(_Nulls):
    end_period_ts: int
    yes_bid: OHLC
    yes_ask: OHLC
    price: Price
    volume_fp: str
    open_interest_fp: str | None = None


class MarketCandles(msgspec.Struct, kw_only=True):
    ticker: str
    candlesticks: list[Candle]


class TickerCandles(msgspec.Struct, kw_only=True):
    market_ticker: str
    candlesticks: list[Candle]


class BatchCandles(msgspec.Struct, kw_only=True):
    markets: list[TickerCandles]


class EventCandles(msgspec.Struct, kw_only=True):
    market_tickers: list[str]
    market_candlesticks: list[list[Candle]]
    adjusted_end_ts: int


class HistOHLC(_Nulls):
    open: str | None = None
    low: str | None = None
    high: str | None = None
    close: str | None = None


class HistPrice(_Nulls):
    open: str | None = None
    low: str | None = None
    high: str | None = None
    close: str | None = None
    mean: str | None = None
    previous: str | None = None


class HistCandle(_Nulls):
    end_period_ts: int
    yes_bid: HistOHLC
    yes_ask: HistOHLC
    price: HistPrice
    volume: str
    open_interest: str | None = None


class HistCandles(msgspec.Struct, kw_only=True):
    ticker: str
    candlesticks: list[HistCandle]


class Cutoff(msgspec.Struct, kw_only=True):
    market_settled_ts: datetime
    trades_created_ts: datetime
    orders_updated_ts: datetime
    market_positions_last_updated_ts: datetime


class Error(msgspec.Struct, kw_only=True):
    code: str
    message: str


class ErrorResponse(msgspec.Struct, kw_only=True):
    error: Error | str
    """``{"code", "message"}``; a 429's is Kalshi's plain ``"too many requests"``."""
    request_id: str
