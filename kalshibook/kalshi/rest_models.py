"""Kalshi REST responses (pure): the frozen Structs the ``decode_*`` functions of
:mod:`kalshibook.kalshi.rest_decode` build.

The Structs keep Kalshi's field names (``yes_bid_dollars``, ``volume_fp``) with
:class:`~decimal.Decimal`/datetime values and carry the original JSON object in ``raw``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from kalshibook.kalshi.scalars import Level
from kalshibook.kalshi.ws_frames import PriceRange

__all__ = (
    "Event",
    "EventCandlesticks",
    "EventsPage",
    "ExchangeSchedule",
    "ExchangeStatus",
    "HistoricalCutoff",
    "MaintenanceWindow",
    "Market",
    "MarketCandlestick",
    "MarketCandlesticks",
    "MarketsPage",
    "MveLeg",
    "Ohlc",
    "Orderbook",
    "PriceOhlc",
    "RestTrade",
    "Series",
    "SettlementSource",
    "StandardHours",
    "TradesPage",
    "TradingWindow",
)


class MveLeg(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    event_ticker: str | None = None
    market_ticker: str | None = None
    side: str | None = None


class SettlementSource(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    name: str | None = None
    url: str | None = None


class Market(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /markets`` item / ``GET /markets/{ticker}`` (Kalshi field names; legacy integer
    fields fill the fixed-point ones when those are missing)."""

    ticker: str
    event_ticker: str | None = None
    market_type: str | None = None
    title: str | None = None
    subtitle: str | None = None
    yes_sub_title: str | None = None
    no_sub_title: str | None = None
    status: str | None = None
    created_time: datetime | None = None
    updated_time: datetime | None = None
    open_time: datetime | None = None
    close_time: datetime | None = None
    expected_expiration_time: datetime | None = None
    latest_expiration_time: datetime | None = None
    expiration_time: datetime | None = None
    settlement_timer_seconds: int | None = None
    yes_bid_dollars: Decimal | None = None
    yes_ask_dollars: Decimal | None = None
    no_bid_dollars: Decimal | None = None
    no_ask_dollars: Decimal | None = None
    yes_bid_size_fp: Decimal | None = None
    yes_ask_size_fp: Decimal | None = None
    last_price_dollars: Decimal | None = None
    previous_yes_bid_dollars: Decimal | None = None
    previous_yes_ask_dollars: Decimal | None = None
    previous_price_dollars: Decimal | None = None
    volume_fp: Decimal | None = None
    volume_24h_fp: Decimal | None = None
    open_interest_fp: Decimal | None = None
    notional_value_dollars: Decimal | None = None
    liquidity_dollars: Decimal | None = None
    result: str | None = None
    settlement_value_dollars: Decimal | None = None
    settlement_ts: datetime | None = None
    settlement_bounds_type: str | None = None
    settlement_floor_dollars: Decimal | None = None
    expiration_value: str | None = None
    occurrence_datetime: datetime | None = None
    can_close_early: bool | None = None
    early_close_condition: str | None = None
    fee_waiver_expiration_time: datetime | None = None
    strike_type: str | None = None
    floor_strike: Decimal | None = None
    cap_strike: Decimal | None = None
    functional_strike: Any = None
    custom_strike: Any = None
    rules_primary: str | None = None
    rules_secondary: str | None = None
    mve_collection_ticker: str | None = None
    mve_selected_legs: tuple[MveLeg, ...] | None = None
    price_level_structure: str | None = None
    price_ranges: tuple[PriceRange, ...] | None = None
    is_provisional: bool | None = None
    exchange_index: int | None = None
    primary_participant_key: str | None = None
    tick_size: int | None = None
    response_price_units: str | None = None
    raw: dict[str, Any] = msgspec.field(default_factory=dict)


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /events`` item / ``GET /events/{ticker}``; ``markets`` are the nested markets (or the
    deprecated top-level list of the single-event reply)."""

    event_ticker: str
    series_ticker: str | None = None
    title: str | None = None
    sub_title: str | None = None
    collateral_return_type: str | None = None
    mutually_exclusive: bool | None = None
    category: str | None = None
    strike_date: datetime | None = None
    strike_period: str | None = None
    markets: tuple[Market, ...] | None = None
    product_metadata: Any = None
    settlement_sources: tuple[SettlementSource, ...] | None = None
    last_updated_ts: datetime | None = None
    fee_type_override: str | None = None
    fee_multiplier_override: Decimal | None = None
    exchange_index: int | None = None
    available_on_brokers: bool | None = None
    raw: dict[str, Any] = msgspec.field(default_factory=dict)
    rejected_markets: int = 0
    """Markets of ``markets`` that could not be decoded (logged, left out)."""


class Series(msgspec.Struct, frozen=True, kw_only=True):
    ticker: str
    frequency: str | None = None
    title: str | None = None
    category: str | None = None
    categories: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    settlement_sources: tuple[SettlementSource, ...] | None = None
    contract_url: str | None = None
    contract_terms_url: str | None = None
    product_metadata: Any = None
    fee_type: str | None = None
    fee_multiplier: Decimal | None = None
    additional_prohibitions: Any = None
    volume_fp: Decimal | None = None
    last_updated_ts: datetime | None = None
    exchange_index: int | None = None
    raw: dict[str, Any] = msgspec.field(default_factory=dict)


class RestTrade(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /markets/trades`` item (``created_time`` has µs precision; WS trades have ms)."""

    trade_id: str
    ticker: str
    count_fp: Decimal
    yes_price_dollars: Decimal
    no_price_dollars: Decimal | None = None
    taker_outcome_side: str | None = None
    taker_book_side: str | None = None
    taker_side: str | None = None
    created_time: datetime | None = None
    is_block_trade: bool | None = None
    raw: dict[str, Any] = msgspec.field(default_factory=dict)


class Orderbook(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /markets/{ticker}/orderbook``: bids per side, ascending (best bid last)."""

    yes: tuple[Level, ...] = ()
    no: tuple[Level, ...] = ()
    raw: dict[str, Any] = msgspec.field(default_factory=dict)


class Ohlc(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    open_dollars: Decimal | None = None
    low_dollars: Decimal | None = None
    high_dollars: Decimal | None = None
    close_dollars: Decimal | None = None


class PriceOhlc(Ohlc, frozen=True, kw_only=True, gc=False):
    mean_dollars: Decimal | None = None
    previous_dollars: Decimal | None = None
    min_dollars: Decimal | None = None
    max_dollars: Decimal | None = None


class MarketCandlestick(msgspec.Struct, frozen=True, kw_only=True):
    end_period_ts: int
    yes_bid: Ohlc | None = None
    yes_ask: Ohlc | None = None
    price: PriceOhlc | None = None
    volume_fp: Decimal | None = None
    open_interest_fp: Decimal | None = None
    raw: dict[str, Any] = msgspec.field(default_factory=dict)


class MarketCandlesticks(msgspec.Struct, frozen=True, kw_only=True):
    """Candles of one market (single-market and batch endpoints)."""

    market_ticker: str | None = None
    candlesticks: tuple[MarketCandlestick, ...] = ()


class EventCandlesticks(msgspec.Struct, frozen=True, kw_only=True):
    market_tickers: tuple[str, ...] = ()
    market_candlesticks: tuple[tuple[MarketCandlestick, ...], ...] = ()
    adjusted_end_ts: int | None = None


class HistoricalCutoff(msgspec.Struct, frozen=True, kw_only=True):
    market_settled_ts: datetime | None = None
    trades_created_ts: datetime | None = None
    orders_updated_ts: datetime | None = None
    market_positions_last_updated_ts: datetime | None = None
    raw: dict[str, Any] = msgspec.field(default_factory=dict)


class ExchangeStatus(msgspec.Struct, frozen=True, kw_only=True):
    exchange_active: bool | None = None
    trading_active: bool | None = None
    exchange_estimated_resume_time: datetime | None = None
    raw: dict[str, Any] = msgspec.field(default_factory=dict)


class TradingWindow(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    open_time: str | None = None
    close_time: str | None = None
    """``HH:MM`` America/New_York; ``00:00`` close = end of day."""


class StandardHours(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    start_time: datetime | None = None
    end_time: datetime | None = None
    monday: tuple[TradingWindow, ...] = ()
    tuesday: tuple[TradingWindow, ...] = ()
    wednesday: tuple[TradingWindow, ...] = ()
    thursday: tuple[TradingWindow, ...] = ()
    friday: tuple[TradingWindow, ...] = ()
    saturday: tuple[TradingWindow, ...] = ()
    sunday: tuple[TradingWindow, ...] = ()


class MaintenanceWindow(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    start_datetime: datetime | None = None
    end_datetime: datetime | None = None


class ExchangeSchedule(msgspec.Struct, frozen=True, kw_only=True):
    standard_hours: tuple[StandardHours, ...] = ()
    maintenance_windows: tuple[MaintenanceWindow, ...] = ()
    raw: dict[str, Any] = msgspec.field(default_factory=dict)


class MarketsPage(msgspec.Struct, frozen=True, kw_only=True):
    markets: tuple[Market, ...] = ()
    cursor: str | None = None
    rejected: int = 0
    """Items of the page that could not be decoded (logged, left out of ``markets``)."""


class EventsPage(msgspec.Struct, frozen=True, kw_only=True):
    events: tuple[Event, ...] = ()
    cursor: str | None = None
    milestones: Any = None
    rejected: int = 0
    """Items of the page that could not be decoded (logged, left out of ``events``)."""


class TradesPage(msgspec.Struct, frozen=True, kw_only=True):
    trades: tuple[RestTrade, ...] = ()
    cursor: str | None = None
