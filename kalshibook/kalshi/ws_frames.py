"""Normalised Kalshi WebSocket frames (pure): the frozen Structs the decoder produces.

:func:`kalshibook.kalshi.ws_decode.decode_frame` turns one server frame into one of these:
prices and sizes as exact :class:`~decimal.Decimal` dollars/contracts, book sides as tuples of
``(price, size)`` (an absent side is ``()``), times as aware UTC datetimes. Unknown frame types
become :class:`UnknownFrame`. ``gc=False`` throughout: frames hold no reference cycles.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Final, Literal, TypeAlias

import msgspec

from kalshibook.kalshi.scalars import Level

__all__ = (
    "TERMINAL_CODES",
    "Channel",
    "ErrorFrame",
    "EventFeeUpdate",
    "EventLifecycle",
    "Frame",
    "LifecycleMetadata",
    "MarketLifecycle",
    "Ok",
    "OrderbookDelta",
    "OrderbookSnapshot",
    "PriceRange",
    "Subscribed",
    "SubscriptionInfo",
    "Ticker",
    "Trade",
    "UnknownFrame",
    "Unsubscribed",
)

Channel: TypeAlias = Literal[
    "orderbook_delta",
    "ticker",
    "trade",
    "market_lifecycle_v2",
    "multivariate_market_lifecycle",
]


class _FrameBase(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    kind: ClassVar[str] = ""
    sid: int | None = None
    seq: int | None = None
    id: int | None = None
    received_at: datetime | None = None
    """Local receive time, set by the caller of :func:`~.ws_decode.decode_frame`."""


class SubscriptionInfo(msgspec.Struct, frozen=True, gc=False):
    channel: str
    sid: int


class Subscribed(_FrameBase, frozen=True, kw_only=True, gc=False):
    """Ack of one channel of a ``subscribe`` command (one per channel, matched by ``id``)."""

    kind: ClassVar[str] = "subscribed"
    channel: str | None = None


class Ok(_FrameBase, frozen=True, kw_only=True, gc=False):
    """Ack of ``update_subscription`` (full market list after the update) or the
    ``list_subscriptions`` reply (``subscriptions`` set)."""

    kind: ClassVar[str] = "ok"
    market_tickers: tuple[str, ...] | None = None
    market_ids: tuple[str, ...] | None = None
    subscriptions: tuple[SubscriptionInfo, ...] | None = None


class Unsubscribed(_FrameBase, frozen=True, kw_only=True, gc=False):
    kind: ClassVar[str] = "unsubscribed"


TERMINAL_CODES: Final = frozenset((10, 25))
"""Error codes that end a subscription: 10 (channel error), 25 (buffer overflow)."""


class ErrorFrame(_FrameBase, frozen=True, kw_only=True, gc=False):
    """Error reply. Codes 10 (channel error) and 25 (buffer overflow) end the subscription."""

    kind: ClassVar[str] = "error"
    code: int
    msg: str = ""
    market_tickers: tuple[str, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.code in TERMINAL_CODES


class OrderbookSnapshot(_FrameBase, frozen=True, kw_only=True, gc=False):
    """Full book of one market. ``yes``/``no`` are bids as sent (NO side in NO-leg prices unless
    the subscription used ``use_yes_price``), ascending by price as Kalshi sends them."""

    kind: ClassVar[str] = "orderbook_snapshot"
    market_ticker: str
    market_id: str | None = None
    yes: tuple[Level, ...] = ()
    no: tuple[Level, ...] = ()
    ts: datetime | None = None


class OrderbookDelta(_FrameBase, frozen=True, kw_only=True, gc=False):
    """Signed change ``delta`` of the resting size at (``side``, ``price``)."""

    kind: ClassVar[str] = "orderbook_delta"
    market_ticker: str
    market_id: str | None = None
    price: Decimal
    delta: Decimal
    side: Literal["yes", "no"]
    ts: datetime | None = None
    client_order_id: str | None = None
    subaccount: int | None = None


class Trade(_FrameBase, frozen=True, kw_only=True, gc=False):
    """A public trade. ``taker_outcome_side`` falls back to the legacy ``taker_side``/``side``;
    ``taker_book_side`` is derived from it when absent (bid = yes, ask = no)."""

    kind: ClassVar[str] = "trade"
    trade_id: str
    market_ticker: str
    yes_price: Decimal
    no_price: Decimal
    count: Decimal
    taker_outcome_side: str | None = None
    taker_book_side: str | None = None
    taker_side: str | None = None
    is_block_trade: bool | None = None
    ts: datetime | None = None


class Ticker(_FrameBase, frozen=True, kw_only=True, gc=False):
    """Market stats as Kalshi reports them (``price`` = last trade; ``None`` when never traded)."""

    kind: ClassVar[str] = "ticker"
    market_ticker: str
    market_id: str | None = None
    price: Decimal | None = None
    yes_bid: Decimal | None = None
    yes_ask: Decimal | None = None
    volume: Decimal | None = None
    open_interest: Decimal | None = None
    dollar_volume: Decimal | None = None
    dollar_open_interest: Decimal | None = None
    yes_bid_size: Decimal | None = None
    yes_ask_size: Decimal | None = None
    last_trade_size: Decimal | None = None
    ts: datetime | None = None
    clock: int | None = None
    """Kalshi's undocumented global ``Clock`` counter, when present."""


class PriceRange(msgspec.Struct, frozen=True, gc=False):
    start: Decimal
    end: Decimal
    step: Decimal


class LifecycleMetadata(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``additional_metadata`` of a ``created`` lifecycle event."""

    name: str | None = None
    title: str | None = None
    yes_sub_title: str | None = None
    no_sub_title: str | None = None
    rules_primary: str | None = None
    rules_secondary: str | None = None
    can_close_early: bool | None = None
    event_ticker: str | None = None
    expected_expiration_ts: datetime | None = None
    strike_type: str | None = None
    floor_strike: Decimal | None = None
    cap_strike: Decimal | None = None
    custom_strike: Any = None


class MarketLifecycle(_FrameBase, frozen=True, kw_only=True, gc=False):
    """``market_lifecycle_v2`` (or ``multivariate_market_lifecycle``, ``multivariate=True``).

    ``event_type`` in created, activated, deactivated, close_date_updated, determined, settled,
    price_level_structure_updated, metadata_updated (others pass through). Fields absent from the
    message are ``None``; ``raw`` is the message object as received.
    """

    kind: ClassVar[str] = "market_lifecycle_v2"
    market_ticker: str
    event_type: str
    multivariate: bool = False
    exchange_index: int | None = None
    open_ts: datetime | None = None
    close_ts: datetime | None = None
    determination_ts: datetime | None = None
    settled_ts: datetime | None = None
    result: str | None = None
    settlement_value: Decimal | None = None
    is_deactivated: bool | None = None
    price_level_structure: str | None = None
    price_ranges: tuple[PriceRange, ...] | None = None
    additional_metadata: LifecycleMetadata | None = None
    strike_type: str | None = None
    floor_strike: Decimal | None = None
    cap_strike: Decimal | None = None
    custom_strike: Any = None
    yes_sub_title: str | None = None
    no_sub_title: str | None = None
    raw: dict[str, Any] = msgspec.field(default_factory=dict)


class EventLifecycle(_FrameBase, frozen=True, kw_only=True, gc=False):
    kind: ClassVar[str] = "event_lifecycle"
    event_ticker: str
    exchange_index: int | None = None
    title: str | None = None
    subtitle: str | None = None
    collateral_return_type: str | None = None
    series_ticker: str | None = None
    strike_date: datetime | None = None
    strike_period: str | None = None
    raw: dict[str, Any] = msgspec.field(default_factory=dict)


class EventFeeUpdate(_FrameBase, frozen=True, kw_only=True, gc=False):
    """Fee override of an event; both ``None`` = override cleared."""

    kind: ClassVar[str] = "event_fee_update"
    event_ticker: str
    fee_type_override: str | None = None
    fee_multiplier_override: Decimal | None = None
    raw: dict[str, Any] = msgspec.field(default_factory=dict)


class UnknownFrame(_FrameBase, frozen=True, kw_only=True, gc=False):
    """A frame type this decoder does not know; ``msg`` is the decoded JSON (or ``None``)."""

    kind: ClassVar[str] = "unknown"
    type: str
    msg: Any = None


Frame: TypeAlias = (
    Subscribed
    | Ok
    | Unsubscribed
    | ErrorFrame
    | OrderbookSnapshot
    | OrderbookDelta
    | Trade
    | Ticker
    | MarketLifecycle
    | EventLifecycle
    | EventFeeUpdate
    | UnknownFrame
)
