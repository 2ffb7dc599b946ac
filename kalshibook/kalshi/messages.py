"""Kalshi wire formats (pure): WebSocket frames, commands and REST responses.

WebSocket frames are decoded in one msgspec pass into a tagged union of raw Structs whose fields
are all optional and loosely typed (a price may be a string, a JSON number or legacy integer
cents), then normalised into frozen domain Structs: prices and sizes as exact
:class:`~decimal.Decimal` dollars/contracts, book sides as tuples of ``(price, size)`` (an absent
side is ``()``), times as aware UTC datetimes. Unknown frame types become :class:`UnknownFrame`;
unknown fields are ignored. Malformed input raises :class:`~kalshibook.errors.ProtocolError`.

Throughput (CPython 3.11, one core, ``python -m kalshibook.kalshi.messages``): about 420k
orderbook_delta frames/s and 400k trade frames/s including normalisation, far above the
collector's 50k frames/s budget.

REST responses are decoded into frozen Structs that keep Kalshi's field names (``yes_bid_dollars``,
``volume_fp``) with Decimal/datetime values, fall back to the legacy integer fields when the
fixed-point ones are missing, and carry the original JSON object in ``raw``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal, TypeAlias, TypeVar

import msgspec

from kalshibook.domain.prices import cents_to_dollars, parse_count, parse_dollars
from kalshibook.errors import ProtocolError

__all__ = (
    "KNOWN_TYPES",
    "Channel",
    "DecodeStats",
    "ErrorFrame",
    "Event",
    "EventCandlesticks",
    "EventFeeUpdate",
    "EventLifecycle",
    "EventsPage",
    "ExchangeSchedule",
    "ExchangeStatus",
    "Frame",
    "HistoricalCutoff",
    "Level",
    "LifecycleMetadata",
    "MaintenanceWindow",
    "Market",
    "MarketCandlestick",
    "MarketCandlesticks",
    "MarketLifecycle",
    "MarketsPage",
    "MveLeg",
    "Ohlc",
    "Ok",
    "Orderbook",
    "OrderbookDelta",
    "OrderbookSnapshot",
    "PriceOhlc",
    "PriceRange",
    "RestTrade",
    "Series",
    "SettlementSource",
    "StandardHours",
    "Subscribed",
    "SubscriptionInfo",
    "Ticker",
    "Trade",
    "TradesPage",
    "TradingWindow",
    "UnknownFrame",
    "Unsubscribed",
    "decode_batch_candlesticks",
    "decode_candlesticks",
    "decode_event",
    "decode_event_candlesticks",
    "decode_events_page",
    "decode_exchange_schedule",
    "decode_exchange_status",
    "decode_frame",
    "decode_historical_cutoff",
    "decode_market",
    "decode_markets_page",
    "decode_orderbook",
    "decode_series",
    "decode_series_list",
    "decode_trades_page",
    "list_subscriptions_cmd",
    "parse_time",
    "subscribe_cmd",
    "unsubscribe_cmd",
    "update_subscription_cmd",
)

Channel: TypeAlias = Literal[
    "orderbook_delta",
    "ticker",
    "trade",
    "market_lifecycle_v2",
    "multivariate_market_lifecycle",
]
Level: TypeAlias = tuple[Decimal, Decimal]
"""One book level: ``(price in dollars, resting size in contracts)``."""

_Num: TypeAlias = str | int | float | None
_M = TypeVar("_M")
_S = TypeVar("_S", bound=msgspec.Struct)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_MS_THRESHOLD = 100_000_000_000  # an integer "seconds" value this large is really milliseconds
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"

# --------------------------------------------------------------------------------------------
# Scalar helpers
# --------------------------------------------------------------------------------------------


# Decimal text -> Decimal: the feed repeats a small set of price/size strings, so a dict lookup
# (the str hash is cached) replaces most Decimal constructions, and the shared Decimal objects
# carry a cached hash into the book's unit caches. Decimals are immutable and ``Decimal(s)`` is
# exact, so a cached value is identical to a fresh one. Bounded: cleared when full.
_DEC_CACHE_MAX = 1 << 16
_dec_cache: dict[str, Decimal] = {}
_int_dec_cache: dict[int, Decimal] = {}
_dec_hit: Callable[[object], Decimal | None] = _dec_cache.get  # type: ignore[assignment]
"""The cache's own lookup (C): ``_dec_hit(v) or helper(v)`` on the per-frame paths."""


def _dec(v: Any) -> Decimal | None:
    """Fixed-point dollars/count: string fast path, JSON numbers via ``str``."""
    if v.__class__ is str:
        d = _dec_cache.get(v)
        if d is not None:
            return d
        if not v:
            return None
        try:
            d = Decimal(v)
        except InvalidOperation:
            raise ProtocolError(f"invalid decimal {v[:40]!r}") from None
        if d.is_finite():
            if len(_dec_cache) >= _DEC_CACHE_MAX:
                _dec_cache.clear()
            _dec_cache[v] = d
            return d
        raise ProtocolError(f"invalid decimal {v!r}")
    if v is None:
        return None
    if v.__class__ is int:  # e.g. ticker dollar_volume: whole dollars (bool is not int here)
        d = _int_dec_cache.get(v)
        if d is None:
            if len(_int_dec_cache) >= _DEC_CACHE_MAX:
                _int_dec_cache.clear()
            d = _int_dec_cache[v] = Decimal(v)
        return d
    return parse_dollars(v)


def _legacy_price(v: Any) -> Decimal | None:
    """A price field of unknown era: integers are cents, strings/floats are dollars."""
    if v.__class__ is int:
        return cents_to_dollars(v)
    return _dec(v)


def _pick_price(dollars: Any, cents: Any) -> Decimal | None:
    """The ``*_dollars`` value when the key was sent (``""`` = none), else legacy cents."""
    if dollars is not None:
        return _dec(dollars)
    if cents is None:
        return None
    return _legacy_price(cents)


def _pick_count(fp: Any, legacy: Any) -> Decimal | None:
    if fp is not None:
        return _dec(fp)
    if legacy is None:
        return None
    return parse_count(legacy)


_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_time(v: Any) -> datetime | None:
    """Kalshi time of any era -> aware UTC datetime.

    Integers are Unix seconds (or milliseconds when implausibly large for seconds), floats Unix
    seconds, strings RFC 3339 (fractional seconds beyond microseconds are truncated) or digits.
    ``None``, ``""`` and Go's zero time give ``None``.
    """
    if v is None:
        return None
    cls = v.__class__
    try:
        if cls is int:
            if v >= _MS_THRESHOLD or v <= -_MS_THRESHOLD:
                return _EPOCH + timedelta(milliseconds=v)
            return _EPOCH + timedelta(seconds=v)
        if cls is float:
            return _EPOCH + timedelta(seconds=v)
    except OverflowError:
        raise ProtocolError(f"timestamp out of range: {v!r}") from None
    if cls is not str:
        raise ProtocolError(f"invalid timestamp of type {cls.__name__}")
    s = v.strip()
    if not s or s == _GO_ZERO_TIME:
        return None
    if s.isdigit():
        return parse_time(int(s))
    m = _RFC3339.match(s)
    if m is None:
        raise ProtocolError(f"invalid timestamp {s[:40]!r}")
    date, clock, frac, tz = m.groups()
    text = f"{date}T{clock}"
    if frac:
        text += "." + (frac[:6]).ljust(6, "0")
    if tz is None or tz in ("Z", "z"):
        text += "+00:00"
    elif ":" not in tz:
        text += f"{tz[:3]}:{tz[3:]}"
    else:
        text += tz
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ProtocolError(f"invalid timestamp {s[:40]!r}") from None
    return dt.astimezone(UTC)


# The last ``(ms, datetime)``: consecutive frames share milliseconds. One tuple, replaced whole,
# so a reader on another thread never sees a half-updated pair.
_last_ms: tuple[int, datetime] = (-(1 << 62), _EPOCH)


def _ms_time(v: int) -> datetime:
    global _last_ms
    last = _last_ms
    if last[0] == v:
        return last[1]
    dt = _EPOCH + _ONE_MS * v  # exact; no keyword parsing (timedelta(milliseconds=v) is 2x)
    _last_ms = (v, dt)
    return dt


def _frame_time(ts_ms: Any, *fallbacks: Any) -> datetime | None:
    """``ts_ms`` when present, else the first usable fallback (``ts`` seconds/RFC3339, ``time``)."""
    if ts_ms is not None:
        if ts_ms.__class__ is int:
            return _ms_time(ts_ms)
        if isinstance(ts_ms, str | float):
            try:
                return _ms_time(int(Decimal(str(ts_ms))))
            except (InvalidOperation, ValueError):
                raise ProtocolError(f"invalid ts_ms {ts_ms!r}") from None
    for v in fallbacks:
        if v is not None:
            t = parse_time(v)
            if t is not None:
                return t
    return None


def _level(row: Sequence[Any], legacy_cents: bool) -> Level:
    if len(row) != 2:
        raise ProtocolError(f"book level must be [price, size], got {list(row)[:4]!r}")
    p, n = row
    if legacy_cents:
        if p.__class__ is not int:
            raise ProtocolError(f"legacy book price must be integer cents, got {p!r}")
        price: Decimal | None = cents_to_dollars(p)
    else:
        price = _dec(p)
    size = _dec(n)
    if price is None or size is None:
        raise ProtocolError(f"empty book level {list(row)!r}")
    return (price, size)


def _side(fp: Any, dollars: Any, cents: Any) -> tuple[Level, ...]:
    """One book side, preferring ``*_dollars_fp``, then ``*_dollars``, then legacy cents."""
    if fp is not None:
        return tuple([_level(r, False) for r in fp])
    if dollars is not None:
        return tuple([_level(r, False) for r in dollars])
    if cents is not None:
        return tuple([_level(r, True) for r in cents])
    return ()


def _tuple_str(v: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if v is None else tuple(v)


# --------------------------------------------------------------------------------------------
# Normalised WebSocket frames
# --------------------------------------------------------------------------------------------


class _FrameBase(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    kind: ClassVar[str] = ""
    sid: int | None = None
    seq: int | None = None
    id: int | None = None
    received_at: datetime | None = None
    """Local receive time, set by the caller of :func:`decode_frame` (``None`` otherwise)."""


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


class ErrorFrame(_FrameBase, frozen=True, kw_only=True, gc=False):
    """Error reply. Codes 10 (channel error) and 25 (buffer overflow) end the subscription."""

    kind: ClassVar[str] = "error"
    code: int
    msg: str = ""
    market_tickers: tuple[str, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.code in (10, 25)


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

# --------------------------------------------------------------------------------------------
# Raw wire layer (all optional, loosely typed; one msgspec pass)
# --------------------------------------------------------------------------------------------

_Rows: TypeAlias = list[list[str | int | float]] | None


class _RawSubInfo(msgspec.Struct, gc=False):
    channel: str | None = None
    sid: int | None = None


class _RawOkMsg(msgspec.Struct, gc=False):
    market_tickers: list[str] | None = None
    market_ids: list[str] | None = None


class _RawErrorMsg(msgspec.Struct, gc=False):
    code: int | None = None
    msg: str | None = None
    market_ticker: str | None = None
    market_tickers: list[str] | None = None


class _RawSnapshotMsg(msgspec.Struct, gc=False):
    market_ticker: str | None = None
    market_id: str | None = None
    yes_dollars_fp: _Rows = None
    no_dollars_fp: _Rows = None
    yes_dollars: _Rows = None
    no_dollars: _Rows = None
    yes: _Rows = None
    no: _Rows = None
    ts_ms: _Num = None
    ts: _Num = None


class _RawDeltaMsg(msgspec.Struct, gc=False):
    market_ticker: str | None = None
    market_id: str | None = None
    price_dollars: _Num = None
    price: _Num = None
    delta_fp: _Num = None
    delta: _Num = None
    side: str | None = None
    ts_ms: _Num = None
    ts: _Num = None
    client_order_id: str | None = None
    subaccount: int | None = None


class _RawTradeMsg(msgspec.Struct, gc=False):
    trade_id: str | None = None
    market_ticker: str | None = None
    yes_price_dollars: _Num = None
    no_price_dollars: _Num = None
    count_fp: _Num = None
    yes_price: _Num = None
    no_price: _Num = None
    count: _Num = None
    price: _Num = None
    side: str | None = None
    taker_side: str | None = None
    taker_outcome_side: str | None = None
    taker_book_side: str | None = None
    is_block_trade: bool | None = None
    ts_ms: _Num = None
    ts: _Num = None


class _RawTickerMsg(msgspec.Struct, gc=False):
    market_ticker: str | None = None
    market_id: str | None = None
    price_dollars: _Num = None
    yes_bid_dollars: _Num = None
    yes_ask_dollars: _Num = None
    volume_fp: _Num = None
    open_interest_fp: _Num = None
    dollar_volume: _Num = None
    dollar_open_interest: _Num = None
    yes_bid_size_fp: _Num = None
    yes_ask_size_fp: _Num = None
    last_trade_size_fp: _Num = None
    price: _Num = None
    yes_bid: _Num = None
    yes_ask: _Num = None
    volume: _Num = None
    open_interest: _Num = None
    ts_ms: _Num = None
    ts: _Num = None
    time: _Num = None
    Clock: int | None = None


class _RawPriceRange(msgspec.Struct, gc=False):
    start: _Num = None
    end: _Num = None
    step: _Num = None


class _RawLifecycleMeta(msgspec.Struct, gc=False):
    name: str | None = None
    title: str | None = None
    yes_sub_title: str | None = None
    no_sub_title: str | None = None
    rules_primary: str | None = None
    rules_secondary: str | None = None
    can_close_early: bool | None = None
    event_ticker: str | None = None
    expected_expiration_ts: _Num = None
    strike_type: str | None = None
    floor_strike: _Num = None
    cap_strike: _Num = None
    custom_strike: Any = None


class _RawLifecycleMsg(msgspec.Struct, gc=False):
    market_ticker: str | None = None
    event_type: str | None = None
    exchange_index: int | None = None
    open_ts: _Num = None
    close_ts: _Num = None
    determination_ts: _Num = None
    settled_ts: _Num = None
    result: str | None = None
    settlement_value: _Num = None
    is_deactivated: bool | None = None
    price_level_structure: str | None = None
    price_ranges: list[_RawPriceRange] | None = None
    additional_metadata: _RawLifecycleMeta | None = None
    strike_type: str | None = None
    floor_strike: _Num = None
    cap_strike: _Num = None
    custom_strike: Any = None
    yes_sub_title: str | None = None
    no_sub_title: str | None = None


class _RawEventLifecycleMsg(msgspec.Struct, gc=False):
    event_ticker: str | None = None
    exchange_index: int | None = None
    title: str | None = None
    subtitle: str | None = None
    sub_title: str | None = None
    collateral_return_type: str | None = None
    series_ticker: str | None = None
    strike_date: _Num = None
    strike_period: str | None = None


class _RawFeeMsg(msgspec.Struct, gc=False):
    event_ticker: str | None = None
    fee_type_override: str | None = None
    fee_multiplier_override: _Num = None


class _Env(msgspec.Struct, tag_field="type", gc=False):
    sid: int | None = None
    seq: int | None = None
    id: int | None = None


class _EnvSubscribed(_Env, tag="subscribed", gc=False):
    msg: _RawSubInfo | None = None


class _EnvOk(_Env, tag="ok", gc=False):
    msg: _RawOkMsg | list[_RawSubInfo] | None = None
    market_tickers: list[str] | None = None
    market_ids: list[str] | None = None


class _EnvUnsubscribed(_Env, tag="unsubscribed", gc=False):
    pass


class _EnvError(_Env, tag="error", gc=False):
    msg: _RawErrorMsg | None = None


class _EnvSnapshot(_Env, tag="orderbook_snapshot", gc=False):
    msg: _RawSnapshotMsg | None = None


class _EnvDelta(_Env, tag="orderbook_delta", gc=False):
    msg: _RawDeltaMsg | None = None


class _EnvTrade(_Env, tag="trade", gc=False):
    msg: _RawTradeMsg | None = None


class _EnvTicker(_Env, tag="ticker", gc=False):
    msg: _RawTickerMsg | None = None


class _EnvLifecycle(_Env, tag="market_lifecycle_v2", gc=False):
    msg: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class _EnvMveLifecycle(_Env, tag="multivariate_market_lifecycle", gc=False):
    msg: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class _EnvEventLifecycle(_Env, tag="event_lifecycle", gc=False):
    msg: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class _EnvFee(_Env, tag="event_fee_update", gc=False):
    msg: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class _EnvAny(msgspec.Struct, gc=False):
    type: str
    sid: int | None = None
    seq: int | None = None
    id: int | None = None
    msg: Any = None


_EnvUnion: TypeAlias = (
    _EnvSubscribed
    | _EnvOk
    | _EnvUnsubscribed
    | _EnvError
    | _EnvSnapshot
    | _EnvDelta
    | _EnvTrade
    | _EnvTicker
    | _EnvLifecycle
    | _EnvMveLifecycle
    | _EnvEventLifecycle
    | _EnvFee
)
_ENV_DECODER = msgspec.json.Decoder(_EnvUnion)
# Wire type of each envelope class (``__struct_config__`` builds a new object on every access).
_TAG_OF: dict[type, str] = {cls: str(cls.__struct_config__.tag) for cls in _EnvUnion.__args__}
_ANY_DECODER = msgspec.json.Decoder(_EnvAny)
_LIFECYCLE_DECODER = msgspec.json.Decoder(_RawLifecycleMsg)
_EVENT_LIFECYCLE_DECODER = msgspec.json.Decoder(_RawEventLifecycleMsg)
_FEE_DECODER = msgspec.json.Decoder(_RawFeeMsg)
_DICT_DECODER = msgspec.json.Decoder(dict[str, Any])
_GENERIC_DECODER = msgspec.json.Decoder()


def _names(cls: type[msgspec.Struct]) -> frozenset[str]:
    return frozenset(f.encode_name for f in msgspec.structs.fields(cls))


_MSG_FIELDS: dict[str, frozenset[str]] = {
    "subscribed": _names(_RawSubInfo),
    "ok": _names(_RawOkMsg),
    "error": _names(_RawErrorMsg),
    "orderbook_snapshot": _names(_RawSnapshotMsg),
    "orderbook_delta": _names(_RawDeltaMsg),
    "trade": _names(_RawTradeMsg),
    "ticker": _names(_RawTickerMsg),
    "market_lifecycle_v2": _names(_RawLifecycleMsg),
    "multivariate_market_lifecycle": _names(_RawLifecycleMsg),
    "event_lifecycle": _names(_RawEventLifecycleMsg),
    "event_fee_update": _names(_RawFeeMsg),
    "unsubscribed": frozenset(),
}
_TOP_FIELDS = frozenset({"type", "sid", "seq", "id", "msg", "market_tickers", "market_ids"})
KNOWN_TYPES = frozenset(_MSG_FIELDS)


class DecodeStats:
    """Counters updated by :func:`decode_frame` when passed.

    ``by_type`` counts decoded frames per wire type, ``unknown_types`` frames of unknown type,
    ``malformed`` frames that raised. With ``field_sample_every=N`` (> 0), every Nth frame of each
    type is also decoded generically and fields this decoder ignores are counted in
    ``unknown_fields[(type, "msg.field" | "field")]``: a cheap canary for schema changes.
    """

    __slots__ = (
        "by_type",
        "field_sample_every",
        "malformed",
        "unknown_fields",
        "unknown_types",
    )

    def __init__(self, field_sample_every: int = 0) -> None:
        self.by_type: dict[str, int] = {}
        self.unknown_types: dict[str, int] = {}
        self.unknown_fields: dict[tuple[str, str], int] = {}
        self.malformed = 0
        self.field_sample_every = field_sample_every

    @property
    def total(self) -> int:
        return sum(self.by_type.values()) + sum(self.unknown_types.values()) + self.malformed

    def _sample_fields(self, type_: str, raw: bytes | str) -> None:
        obj = _GENERIC_DECODER.decode(raw)
        if not isinstance(obj, dict):  # pragma: no cover - already validated
            return
        known = _MSG_FIELDS.get(type_, frozenset())
        names = [k for k in obj if k not in _TOP_FIELDS]
        msg = obj.get("msg")
        if isinstance(msg, dict):
            names += [f"msg.{k}" for k in msg if k not in known]
        for name in names:
            key = (type_, name)
            self.unknown_fields[key] = self.unknown_fields.get(key, 0) + 1


def _require(value: Any, name: str, type_: str) -> Any:
    if value is None or value == "":
        raise ProtocolError(f"{type_} frame without {name}")
    return value


def _absent(raw: msgspec.Raw) -> bool:
    return len(raw) == 0 or bytes(raw).strip() == b"null"


def _head(env: _Env, at: datetime | None) -> dict[str, Any]:
    """The envelope fields every frame carries, as keywords for a frame constructor.

    Only for the rare frames: ``**`` costs a msgspec constructor about 0.6 µs, so the hot
    frames (deltas, trades, tickers, snapshots) spell the four fields out.
    """
    return {"sid": env.sid, "seq": env.seq, "id": env.id, "received_at": at}


def _raw_msg(
    raw: msgspec.Raw, decoder: msgspec.json.Decoder[_M], type_: str
) -> tuple[_M, dict[str, Any]]:
    """A ``msg`` kept as raw JSON: its typed form and the object as received."""
    if _absent(raw):
        raise ProtocolError(f"{type_} frame without msg")
    return decoder.decode(raw), _DICT_DECODER.decode(raw)


def _lifecycle(env: _EnvLifecycle | _EnvMveLifecycle, at: datetime | None) -> MarketLifecycle:
    m, raw = _raw_msg(env.msg, _LIFECYCLE_DECODER, "market_lifecycle_v2")
    meta = None
    if m.additional_metadata is not None:
        a = m.additional_metadata
        meta = LifecycleMetadata(
            name=a.name,
            title=a.title,
            yes_sub_title=a.yes_sub_title,
            no_sub_title=a.no_sub_title,
            rules_primary=a.rules_primary,
            rules_secondary=a.rules_secondary,
            can_close_early=a.can_close_early,
            event_ticker=a.event_ticker,
            expected_expiration_ts=parse_time(a.expected_expiration_ts),
            strike_type=a.strike_type,
            floor_strike=_dec(a.floor_strike),
            cap_strike=_dec(a.cap_strike),
            custom_strike=a.custom_strike,
        )
    ranges = None
    if m.price_ranges is not None:
        ranges = tuple(
            PriceRange(
                _require(_dec(r.start), "price_ranges.start", "market_lifecycle_v2"),
                _require(_dec(r.end), "price_ranges.end", "market_lifecycle_v2"),
                _require(_dec(r.step), "price_ranges.step", "market_lifecycle_v2"),
            )
            for r in m.price_ranges
        )
    return MarketLifecycle(
        **_head(env, at),
        market_ticker=_require(m.market_ticker, "market_ticker", "market_lifecycle_v2"),
        event_type=_require(m.event_type, "event_type", "market_lifecycle_v2"),
        multivariate=isinstance(env, _EnvMveLifecycle),
        exchange_index=m.exchange_index,
        open_ts=parse_time(m.open_ts),
        close_ts=parse_time(m.close_ts),
        determination_ts=parse_time(m.determination_ts),
        settled_ts=parse_time(m.settled_ts),
        result=m.result,
        settlement_value=_legacy_price(m.settlement_value),
        is_deactivated=m.is_deactivated,
        price_level_structure=m.price_level_structure,
        price_ranges=ranges,
        additional_metadata=meta,
        strike_type=m.strike_type,
        floor_strike=_dec(m.floor_strike),
        cap_strike=_dec(m.cap_strike),
        custom_strike=m.custom_strike,
        yes_sub_title=m.yes_sub_title,
        no_sub_title=m.no_sub_title,
        raw=raw,
    )


def _normalize(env: _EnvUnion, at: datetime | None) -> Frame:
    cls = env.__class__
    if cls is _EnvDelta:
        assert isinstance(env, _EnvDelta)
        d = env.msg
        if d is None:
            raise ProtocolError("orderbook_delta frame without msg")
        side: Literal["yes", "no"]
        if d.side == "yes":
            side = "yes"
        elif d.side == "no":
            side = "no"
        else:
            raise ProtocolError(f"orderbook_delta with invalid side {d.side!r}")
        # The hottest path of the feed: a cached decimal text costs one C call; anything else
        # (legacy cents, JSON numbers, a first sight, a zero) takes the full helper.
        hit = _dec_hit
        price = hit(d.price_dollars) or _pick_price(d.price_dollars, d.price)
        delta = hit(d.delta_fp) or _pick_count(d.delta_fp, d.delta)
        if price is None or delta is None:
            raise ProtocolError("orderbook_delta frame without price or delta")
        ticker = d.market_ticker
        if not ticker:
            raise ProtocolError("orderbook_delta frame without market_ticker")
        num = d.ts_ms
        return OrderbookDelta(
            sid=env.sid,
            seq=env.seq,
            id=env.id,
            received_at=at,
            market_ticker=ticker,
            market_id=d.market_id,
            price=price,
            delta=delta,
            side=side,
            ts=_ms_time(num) if num.__class__ is int else _frame_time(num, d.ts),
            client_order_id=d.client_order_id,
            subaccount=d.subaccount,
        )
    if cls is _EnvTicker:
        assert isinstance(env, _EnvTicker)
        t = env.msg
        if t is None:
            raise ProtocolError("ticker frame without msg")
        num = t.ts_ms
        # At most 15 keyword arguments: msgspec's constructor takes a much slower path beyond
        # that (measured 0.25 vs 0.63 us), so seq/id/Clock are added by replace() when sent
        # (production frames carry Clock: 0.30 us in all, still less than a 16th keyword).
        hit = _dec_hit  # as for deltas: hit(text) or helper(...)
        tick = Ticker(
            sid=env.sid,
            received_at=at,
            market_ticker=_require(t.market_ticker, "market_ticker", "ticker"),
            market_id=t.market_id,
            price=hit(t.price_dollars) or _pick_price(t.price_dollars, t.price),
            yes_bid=hit(t.yes_bid_dollars) or _pick_price(t.yes_bid_dollars, t.yes_bid),
            yes_ask=hit(t.yes_ask_dollars) or _pick_price(t.yes_ask_dollars, t.yes_ask),
            volume=hit(t.volume_fp) or _pick_count(t.volume_fp, t.volume),
            open_interest=hit(t.open_interest_fp)
            or _pick_count(t.open_interest_fp, t.open_interest),
            dollar_volume=_dec(t.dollar_volume),
            dollar_open_interest=_dec(t.dollar_open_interest),
            yes_bid_size=hit(t.yes_bid_size_fp) or _dec(t.yes_bid_size_fp),
            yes_ask_size=hit(t.yes_ask_size_fp) or _dec(t.yes_ask_size_fp),
            last_trade_size=hit(t.last_trade_size_fp) or _dec(t.last_trade_size_fp),
            ts=_ms_time(num) if num.__class__ is int else _frame_time(num, t.ts, t.time),
        )
        if env.seq is not None or env.id is not None or t.Clock is not None:
            tick = msgspec.structs.replace(tick, seq=env.seq, id=env.id, clock=t.Clock)
        return tick
    if cls is _EnvTrade:
        assert isinstance(env, _EnvTrade)
        r = env.msg
        if r is None:
            raise ProtocolError("trade frame without msg")
        yes_price = _pick_price(
            r.yes_price_dollars, r.yes_price if r.yes_price is not None else r.price
        )
        no_price = _pick_price(r.no_price_dollars, r.no_price)
        if yes_price is None:
            raise ProtocolError("trade frame without yes price")
        if no_price is None:
            no_price = 1 - yes_price
        count = _pick_count(r.count_fp, r.count)
        if count is None:
            raise ProtocolError("trade frame without count")
        outcome = r.taker_outcome_side or r.taker_side or r.side
        book = r.taker_book_side
        if book is None and outcome is not None:
            book = "bid" if outcome == "yes" else "ask" if outcome == "no" else None
        return Trade(
            sid=env.sid,
            seq=env.seq,
            id=env.id,
            received_at=at,
            trade_id=_require(r.trade_id, "trade_id", "trade"),
            market_ticker=_require(r.market_ticker, "market_ticker", "trade"),
            yes_price=yes_price,
            no_price=no_price,
            count=count,
            taker_outcome_side=outcome,
            taker_book_side=book,
            taker_side=r.taker_side,
            is_block_trade=r.is_block_trade,
            ts=_frame_time(r.ts_ms, r.ts),
        )
    if cls is _EnvSnapshot:
        assert isinstance(env, _EnvSnapshot)
        s = env.msg
        if s is None:
            raise ProtocolError("orderbook_snapshot frame without msg")
        return OrderbookSnapshot(
            sid=env.sid,
            seq=env.seq,
            id=env.id,
            received_at=at,
            market_ticker=_require(s.market_ticker, "market_ticker", "orderbook_snapshot"),
            market_id=s.market_id,
            yes=_side(s.yes_dollars_fp, s.yes_dollars, s.yes),
            no=_side(s.no_dollars_fp, s.no_dollars, s.no),
            ts=_frame_time(s.ts_ms, s.ts),
        )
    if cls is _EnvLifecycle or cls is _EnvMveLifecycle:
        assert isinstance(env, _EnvLifecycle | _EnvMveLifecycle)
        return _lifecycle(env, at)
    if cls is _EnvSubscribed:
        assert isinstance(env, _EnvSubscribed)
        info = env.msg
        sid = env.sid if info is None or info.sid is None else info.sid
        return Subscribed(
            sid=sid,
            seq=env.seq,
            id=env.id,
            received_at=at,
            channel=None if info is None else info.channel,
        )
    if cls is _EnvOk:
        assert isinstance(env, _EnvOk)
        msg = env.msg
        if isinstance(msg, list):
            subs = tuple(
                SubscriptionInfo(_require(i.channel, "channel", "ok"), _require(i.sid, "sid", "ok"))
                for i in msg
            )
            return Ok(**_head(env, at), subscriptions=subs)
        tickers = env.market_tickers
        ids = env.market_ids
        if msg is not None:
            tickers = msg.market_tickers if msg.market_tickers is not None else tickers
            ids = msg.market_ids if msg.market_ids is not None else ids
        return Ok(**_head(env, at), market_tickers=_tuple_str(tickers), market_ids=_tuple_str(ids))
    if cls is _EnvError:
        assert isinstance(env, _EnvError)
        e = env.msg
        if e is None or e.code is None:
            raise ProtocolError("error frame without code")
        tickers_t: tuple[str, ...] = tuple(e.market_tickers or ())
        if e.market_ticker and e.market_ticker not in tickers_t:
            tickers_t = (e.market_ticker, *tickers_t)
        return ErrorFrame(**_head(env, at), code=e.code, msg=e.msg or "", market_tickers=tickers_t)
    if cls is _EnvUnsubscribed:
        return Unsubscribed(**_head(env, at))
    if cls is _EnvEventLifecycle:
        assert isinstance(env, _EnvEventLifecycle)
        v, raw = _raw_msg(env.msg, _EVENT_LIFECYCLE_DECODER, "event_lifecycle")
        return EventLifecycle(
            **_head(env, at),
            event_ticker=_require(v.event_ticker, "event_ticker", "event_lifecycle"),
            exchange_index=v.exchange_index,
            title=v.title,
            subtitle=v.subtitle if v.subtitle is not None else v.sub_title,
            collateral_return_type=v.collateral_return_type,
            series_ticker=v.series_ticker,
            strike_date=parse_time(v.strike_date),
            strike_period=v.strike_period,
            raw=raw,
        )
    if cls is _EnvFee:
        assert isinstance(env, _EnvFee)
        f, raw = _raw_msg(env.msg, _FEE_DECODER, "event_fee_update")
        return EventFeeUpdate(
            **_head(env, at),
            event_ticker=_require(f.event_ticker, "event_ticker", "event_fee_update"),
            fee_type_override=f.fee_type_override,
            fee_multiplier_override=_dec(f.fee_multiplier_override),
            raw=raw,
        )
    raise AssertionError(f"unhandled envelope {cls.__name__}")  # pragma: no cover


def decode_frame(
    raw: bytes | str, stats: DecodeStats | None = None, *, received_at: datetime | None = None
) -> Frame:
    """Decode and normalise one server frame.

    Raises :class:`ProtocolError` for malformed JSON, wrong field types or missing required
    fields; returns :class:`UnknownFrame` for an unknown ``type``.
    """
    try:
        env = _ENV_DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        try:
            anyenv = _ANY_DECODER.decode(raw)
        except msgspec.DecodeError:
            anyenv = None
        if anyenv is not None and anyenv.type not in KNOWN_TYPES:
            if stats is not None:
                stats.unknown_types[anyenv.type] = stats.unknown_types.get(anyenv.type, 0) + 1
            return UnknownFrame(
                sid=anyenv.sid,
                seq=anyenv.seq,
                id=anyenv.id,
                received_at=received_at,
                type=anyenv.type,
                msg=anyenv.msg,
            )
        if stats is not None:
            stats.malformed += 1
        raise ProtocolError(f"invalid Kalshi frame: {exc}") from None
    except msgspec.DecodeError as exc:
        if stats is not None:
            stats.malformed += 1
        raise ProtocolError(f"malformed JSON frame: {exc}") from None
    try:
        frame = _normalize(env, received_at)
    except (ProtocolError, msgspec.DecodeError, OverflowError) as exc:  # overflow: a time past 9999
        if stats is not None:
            stats.malformed += 1
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"invalid Kalshi frame: {exc}") from None
    if stats is not None:  # stats._count, inline: once per frame
        tag = _TAG_OF[env.__class__]
        by_type = stats.by_type
        n = by_type.get(tag, 0)
        by_type[tag] = n + 1
        every = stats.field_sample_every
        if every > 0 and n % every == 0:
            stats._sample_fields(tag, raw)
    return frame


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------

_ENCODER = msgspec.json.Encoder()


def _cmd(cmd_id: int, cmd: str, params: Mapping[str, Any] | None) -> bytes:
    body: dict[str, Any] = {"id": cmd_id, "cmd": cmd}
    if params is not None:
        body["params"] = {k: v for k, v in params.items() if v is not None}
    return _ENCODER.encode(body)


def subscribe_cmd(
    id: int,
    channels: Sequence[str],
    market_tickers: Sequence[str] | None = None,
    **opts: Any,
) -> bytes:
    """``subscribe``; ``opts`` pass through (``send_initial_snapshot``, ``use_yes_price``,
    ``skip_ticker_ack``, ``market_ticker``, ``market_ids``...); ``None`` options are dropped."""
    if not channels:
        raise ValueError("subscribe needs at least one channel")
    params: dict[str, Any] = {"channels": list(channels)}
    if market_tickers is not None:
        params["market_tickers"] = list(market_tickers)
    params.update(opts)
    return _cmd(id, "subscribe", params)


def unsubscribe_cmd(id: int, sids: Sequence[int]) -> bytes:
    return _cmd(id, "unsubscribe", {"sids": list(sids)})


def update_subscription_cmd(
    id: int,
    sid: int,
    action: Literal["add_markets", "delete_markets", "get_snapshot"],
    market_tickers: Sequence[str] | None = None,
    **opts: Any,
) -> bytes:
    """``update_subscription`` in the ``sids: [sid]`` form of Kalshi's examples."""
    params: dict[str, Any] = {"sids": [sid], "action": action}
    if market_tickers is not None:
        params["market_tickers"] = list(market_tickers)
    params.update(opts)
    return _cmd(id, "update_subscription", params)


def list_subscriptions_cmd(id: int) -> bytes:
    return _cmd(id, "list_subscriptions", None)


# --------------------------------------------------------------------------------------------
# REST responses
# --------------------------------------------------------------------------------------------


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


class EventsPage(msgspec.Struct, frozen=True, kw_only=True):
    events: tuple[Event, ...] = ()
    cursor: str | None = None
    milestones: Any = None


class TradesPage(msgspec.Struct, frozen=True, kw_only=True):
    trades: tuple[RestTrade, ...] = ()
    cursor: str | None = None


# Legacy fallbacks: fixed-point field <- legacy field (integers there are cents for prices).
_PRICE, _COUNT = True, False
_MARKET_LEGACY: tuple[tuple[str, str, bool], ...] = (
    ("yes_bid_dollars", "yes_bid", _PRICE),
    ("yes_ask_dollars", "yes_ask", _PRICE),
    ("no_bid_dollars", "no_bid", _PRICE),
    ("no_ask_dollars", "no_ask", _PRICE),
    ("last_price_dollars", "last_price", _PRICE),
    ("previous_yes_bid_dollars", "previous_yes_bid", _PRICE),
    ("previous_yes_ask_dollars", "previous_yes_ask", _PRICE),
    ("previous_price_dollars", "previous_price", _PRICE),
    ("notional_value_dollars", "notional_value", _PRICE),
    ("liquidity_dollars", "liquidity", _PRICE),
    ("settlement_value_dollars", "settlement_value", _PRICE),
    ("volume_fp", "volume", _COUNT),
    ("volume_24h_fp", "volume_24h", _COUNT),
    ("open_interest_fp", "open_interest", _COUNT),
)
_TRADE_LEGACY = (
    ("yes_price_dollars", "yes_price", _PRICE),
    ("no_price_dollars", "no_price", _PRICE),
    ("count_fp", "count", _COUNT),
)
_CANDLE_LEGACY = (("volume_fp", "volume", _COUNT), ("open_interest_fp", "open_interest", _COUNT))
_OHLC_KEYS = ("open", "low", "high", "close", "mean", "previous", "min", "max")
_SERIES_LEGACY = (("volume_fp", "volume", _COUNT),)

_DECIMAL_FIELDS: dict[type, frozenset[str]] = {}
_TIME_FIELDS: dict[type, frozenset[str]] = {}


def _field_sets(cls: type[msgspec.Struct]) -> tuple[frozenset[str], frozenset[str]]:
    if cls not in _DECIMAL_FIELDS:
        decs, times = set(), set()
        for f in msgspec.structs.fields(cls):
            text = repr(f.type)
            if "Decimal" in text and "tuple" not in text:
                decs.add(f.encode_name)
            elif "datetime" in text:
                times.add(f.encode_name)
        _DECIMAL_FIELDS[cls] = frozenset(decs)
        _TIME_FIELDS[cls] = frozenset(times)
    return _DECIMAL_FIELDS[cls], _TIME_FIELDS[cls]


def _prep(
    obj: Any, cls: type[msgspec.Struct], legacy: Iterable[tuple[str, str, bool]] = ()
) -> dict[str, Any]:
    """Normalise one REST object for :func:`msgspec.convert` and attach ``raw``."""
    if not isinstance(obj, dict):
        raise ProtocolError(f"expected a JSON object for {cls.__name__}, got {type(obj).__name__}")
    decs, times = _field_sets(cls)
    out: dict[str, Any] = dict(obj)
    for new, old, is_price in legacy:
        if out.get(new) is None and out.get(old) is not None:
            v = out[old]
            out[new] = _legacy_price(v) if is_price else parse_count(v)
    for k in decs:
        v = out.get(k)
        if v is not None and v.__class__ is not Decimal:
            out[k] = _dec(v)
    for k in times:
        v = out.get(k)
        if v is not None and v.__class__ is not datetime:
            out[k] = parse_time(v)
    out["raw"] = obj
    return out


def _convert(data: Any, cls: type[Any]) -> Any:
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"invalid Kalshi {cls.__name__}: {exc}") from None


def _struct(obj: Any, cls: type[_S], legacy: Iterable[tuple[str, str, bool]] = ()) -> _S:
    """One REST object -> ``cls``: :func:`_prep` then :func:`_convert`."""
    r: _S = _convert(_prep(obj, cls, legacy), cls)
    return r


def _body(body: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(body, Mapping):
        return dict(body)
    try:
        obj = _GENERIC_DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed JSON response: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("expected a JSON object response")
    return obj


def _items(obj: dict[str, Any], key: str) -> list[Any]:
    v = obj.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise ProtocolError(f"expected a list in {key!r}")
    return v


def _market(obj: Any) -> Market:
    return _struct(obj, Market, _MARKET_LEGACY)


def _event(obj: Any, markets: list[Any] | None = None) -> Event:
    data = _prep(obj, Event)
    nested = data.get("markets")
    if nested is None:
        nested = markets
    data["markets"] = None if nested is None else tuple(_market(m) for m in nested)
    e: Event = _convert(data, Event)
    return e


def _ohlc(obj: Any, cls: type[Ohlc]) -> Ohlc | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ProtocolError("candlestick OHLC must be an object")
    out: dict[str, Any] = {}
    for k in _OHLC_KEYS:
        v = obj.get(f"{k}_dollars")
        out[f"{k}_dollars"] = _dec(v) if v is not None else _legacy_price(obj.get(k))
    if cls is Ohlc:
        out = {k: v for k, v in out.items() if k.split("_")[0] in ("open", "low", "high", "close")}
    r: Ohlc = _convert(out, cls)
    return r


def _candle(obj: Any) -> MarketCandlestick:
    data = _prep(obj, MarketCandlestick, _CANDLE_LEGACY)
    data["yes_bid"] = _ohlc(data.get("yes_bid"), Ohlc)
    data["yes_ask"] = _ohlc(data.get("yes_ask"), Ohlc)
    data["price"] = _ohlc(data.get("price"), PriceOhlc)
    c: MarketCandlestick = _convert(data, MarketCandlestick)
    return c


def _candlesticks(obj: dict[str, Any], ticker_key: str) -> MarketCandlesticks:
    return MarketCandlesticks(
        market_ticker=obj.get(ticker_key),
        candlesticks=tuple(_candle(c) for c in _items(obj, "candlesticks")),
    )


def _cursor(obj: dict[str, Any]) -> str | None:
    c = obj.get("cursor")
    return c if isinstance(c, str) and c else None


def decode_markets_page(body: bytes | str | Mapping[str, Any]) -> MarketsPage:
    obj = _body(body)
    return MarketsPage(
        markets=tuple(_market(m) for m in _items(obj, "markets")), cursor=_cursor(obj)
    )


def decode_market(body: bytes | str | Mapping[str, Any]) -> Market:
    """``{"market": {...}}``."""
    obj = _body(body)
    if "market" not in obj:
        raise ProtocolError("market response without 'market'")
    return _market(obj["market"])


def decode_events_page(body: bytes | str | Mapping[str, Any]) -> EventsPage:
    obj = _body(body)
    return EventsPage(
        events=tuple(_event(e) for e in _items(obj, "events")),
        cursor=_cursor(obj),
        milestones=obj.get("milestones"),
    )


def decode_event(body: bytes | str | Mapping[str, Any]) -> Event:
    """``{"event": {...}, "markets": [...]}``; top-level markets go into ``Event.markets`` unless
    the event has nested ones."""
    obj = _body(body)
    if "event" not in obj:
        raise ProtocolError("event response without 'event'")
    markets = obj.get("markets")
    return _event(obj["event"], markets if isinstance(markets, list) else None)


def decode_series_list(
    body: bytes | str | Mapping[str, Any],
) -> tuple[tuple[Series, ...], str | None]:
    """``{"series": [...], "cursor"?}`` -> (series, cursor)."""
    obj = _body(body)
    series = tuple(_struct(s, Series, _SERIES_LEGACY) for s in _items(obj, "series"))
    return series, _cursor(obj)


def decode_series(body: bytes | str | Mapping[str, Any]) -> Series:
    """``{"series": {...}}``."""
    obj = _body(body)
    s = obj.get("series")
    if not isinstance(s, dict):
        raise ProtocolError("series response without a 'series' object")
    return _struct(s, Series, _SERIES_LEGACY)


def _rest_trade(obj: Any) -> RestTrade:
    data = _prep(obj, RestTrade, _TRADE_LEGACY)
    outcome = data.get("taker_outcome_side") or data.get("taker_side")
    data["taker_outcome_side"] = outcome
    if data.get("taker_book_side") is None and outcome in ("yes", "no"):
        data["taker_book_side"] = "bid" if outcome == "yes" else "ask"
    yes = data.get("yes_price_dollars")
    if data.get("no_price_dollars") is None and isinstance(yes, Decimal):
        data["no_price_dollars"] = 1 - yes
    t: RestTrade = _convert(data, RestTrade)
    return t


def decode_trades_page(body: bytes | str | Mapping[str, Any]) -> TradesPage:
    """``{"trades": [...], "cursor"}``; taker sides normalised as for WS :class:`Trade`."""
    obj = _body(body)
    return TradesPage(
        trades=tuple(_rest_trade(t) for t in _items(obj, "trades")), cursor=_cursor(obj)
    )


def decode_orderbook(body: bytes | str | Mapping[str, Any]) -> Orderbook:
    """``{"orderbook_fp": {yes_dollars, no_dollars}}`` or legacy ``{"orderbook": {yes, no,
    yes_dollars, no_dollars}}`` (sides may be null = empty)."""
    obj = _body(body)
    book = obj.get("orderbook_fp")
    if book is None:
        book = obj.get("orderbook")
    if book is None:
        return Orderbook(raw=obj)
    if not isinstance(book, dict):
        raise ProtocolError("orderbook must be an object")

    def rows(key: str) -> Any:
        v = book.get(key)
        if v is not None and not isinstance(v, list):
            raise ProtocolError(f"orderbook {key} must be a list")
        return v

    return Orderbook(
        yes=_side(rows("yes_dollars_fp"), rows("yes_dollars"), rows("yes")),
        no=_side(rows("no_dollars_fp"), rows("no_dollars"), rows("no")),
        raw=obj,
    )


def decode_candlesticks(body: bytes | str | Mapping[str, Any]) -> MarketCandlesticks:
    """Single-market candles: ``{"ticker", "candlesticks": [...]}``."""
    return _candlesticks(_body(body), "ticker")


def decode_batch_candlesticks(
    body: bytes | str | Mapping[str, Any],
) -> tuple[MarketCandlesticks, ...]:
    """``GET /markets/candlesticks``: ``{"markets": [{"market_ticker", "candlesticks"}]}``."""
    obj = _body(body)
    out = []
    for m in _items(obj, "markets"):
        if not isinstance(m, dict):
            raise ProtocolError("batch candlesticks item must be an object")
        out.append(_candlesticks(m, "market_ticker"))
    return tuple(out)


def decode_event_candlesticks(body: bytes | str | Mapping[str, Any]) -> EventCandlesticks:
    obj = _body(body)
    groups = []
    for g in _items(obj, "market_candlesticks"):
        if not isinstance(g, list):
            raise ProtocolError("market_candlesticks must be a list of lists")
        groups.append(tuple(_candle(c) for c in g))
    adjusted = obj.get("adjusted_end_ts")
    return EventCandlesticks(
        market_tickers=tuple(_items(obj, "market_tickers")),
        market_candlesticks=tuple(groups),
        adjusted_end_ts=adjusted if isinstance(adjusted, int) else None,
    )


def decode_historical_cutoff(body: bytes | str | Mapping[str, Any]) -> HistoricalCutoff:
    return _struct(_body(body), HistoricalCutoff)


def decode_exchange_status(body: bytes | str | Mapping[str, Any]) -> ExchangeStatus:
    return _struct(_body(body), ExchangeStatus)


def decode_exchange_schedule(body: bytes | str | Mapping[str, Any]) -> ExchangeSchedule:
    """``{"schedule": {standard_hours, maintenance_windows}}``."""
    obj = _body(body)
    sched = obj.get("schedule")
    if not isinstance(sched, dict):
        raise ProtocolError("exchange schedule response without a 'schedule' object")
    data = {k: v for k, v in sched.items() if v is not None}
    data["raw"] = obj
    r: ExchangeSchedule = _convert(data, ExchangeSchedule)
    return r


def _bench(n: int = 200_000) -> None:  # pragma: no cover - manual measurement
    import time

    delta = (
        b'{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"FED-23DEC-T3.00",'
        b'"market_id":"9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1","price_dollars":"0.9600",'
        b'"delta_fp":"-54.00","side":"yes","ts":"2022-11-22T20:44:01Z","ts_ms":1669149841000}}'
    )
    trade = (
        b'{"type":"trade","sid":11,"seq":2,"msg":{"trade_id":"d91bc706-ee49-470d-82d8-11418bda6fed",'
        b'"market_ticker":"HIGHNY-22DEC23-B53.5","yes_price_dollars":"0.3600",'
        b'"no_price_dollars":"0.6400","count_fp":"136.00","taker_side":"no",'
        b'"taker_outcome_side":"no","taker_book_side":"ask","is_block_trade":false,'
        b'"ts":1669149841,"ts_ms":1669149841000}}'
    )
    stats = DecodeStats()
    for name, raw in (("orderbook_delta", delta), ("trade", trade)):
        t0 = time.perf_counter()
        for _ in range(n):
            decode_frame(raw, stats)
        dt = time.perf_counter() - t0
        print(f"{name}: {n / dt:,.0f} frames/s")


if __name__ == "__main__":  # pragma: no cover
    _bench()
