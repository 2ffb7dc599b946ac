"""Kalshi REST responses decoded (pure): the ``decode_*`` functions building the Structs of
:mod:`kalshibook.kalshi.rest_models`.

They fall back to the legacy integer fields when the fixed-point ones are missing and keep the
original JSON object in ``raw``. Malformed input
raises :class:`~kalshibook.errors.ProtocolError`.

Markets are decoded tolerantly, as a market sweep must not stall on one odd market: the fields
the collector does not use (``_MARKET_LENIENT``: quotes, ``expiration_value``,
``settlement_timer_seconds``, ``tick_size``, ...) accept the other JSON forms Kalshi may send,
converted exactly (numbers through their text, never binary floats; objects as JSON text), and
become ``None`` when no exact conversion exists (the value stays in ``raw``; the page logs a
warning naming the fields). A page item that still fails (an essential field of the wrong type,
no ticker, not an object) is skipped, logged and counted (``MarketsPage.rejected``,
``EventsPage.rejected``, ``Event.rejected_markets``); the rest of the page is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeVar

import msgspec

from kalshibook.domain.booleans import parse_bool
from kalshibook.domain.prices import parse_count
from kalshibook.errors import ProtocolError
from kalshibook.kalshi.rest_models import (
    Event,
    EventCandlesticks,
    EventsPage,
    ExchangeSchedule,
    ExchangeStatus,
    HistoricalCutoff,
    Market,
    MarketCandlestick,
    MarketCandlesticks,
    MarketsPage,
    MveLeg,
    Ohlc,
    Orderbook,
    PriceOhlc,
    RestTrade,
    Series,
    TradesPage,
)
from kalshibook.kalshi.scalars import book_side, dec, legacy_price, parse_time

__all__ = (
    "decode_batch_candlesticks",
    "decode_candlesticks",
    "decode_event",
    "decode_event_candlesticks",
    "decode_events_page",
    "decode_exchange_schedule",
    "decode_exchange_status",
    "decode_historical_cutoff",
    "decode_market",
    "decode_markets_page",
    "decode_orderbook",
    "decode_series",
    "decode_series_list",
    "decode_trades_page",
)

_S = TypeVar("_S", bound=msgspec.Struct)
_GENERIC_DECODER = msgspec.json.Decoder()
log = logging.getLogger(__name__)


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


# Tolerant conversion of the market fields the collector does not use. Each converter returns the
# field's value, ``None`` for an empty one, or _NO_VALUE when no exact conversion exists.
class _NoValue:
    pass


_NO_VALUE: Final = _NoValue()
_MAX_INT_DIGITS: Final = 18  # an int field bigger than this is no count of seconds or cents


def _lenient_text(v: Any) -> Any:
    """Text as sent; a JSON number as its shortest text (``3462.8`` -> ``"3462.8"``, the float's
    repr), an object, array or boolean as its JSON text."""
    if v.__class__ is str:
        return v
    if v.__class__ is float:
        return repr(v)
    if isinstance(v, Decimal):
        return str(v)
    try:
        return msgspec.json.encode(v).decode()
    except (TypeError, ValueError, msgspec.EncodeError):
        return _NO_VALUE


def _lenient_int(v: Any) -> Any:
    """An integer; a whole number sent as text or JSON number (``"5"``, ``1.0``) as that integer
    (a float through its repr: exact)."""
    if v.__class__ is int:
        return v
    if v.__class__ is str:
        text = v.strip()
        if not text:
            return None
    elif v.__class__ is float:
        text = repr(v)
    elif isinstance(v, Decimal):
        text = str(v)
    else:
        return _NO_VALUE  # bool, object, array
    try:
        d = Decimal(text)
    except InvalidOperation:
        return _NO_VALUE
    if not d.is_finite() or d.adjusted() > _MAX_INT_DIGITS or d != d.to_integral_value():
        return _NO_VALUE
    return int(d)


def _lenient_bool(v: Any) -> Any:
    """A boolean; a boolean word (:func:`~kalshibook.domain.booleans.parse_bool`) and the
    integers 0/1 as one."""
    if v.__class__ is bool:
        return v
    if v.__class__ is int and v in (0, 1):
        return bool(v)
    if v.__class__ is str:
        flag = parse_bool(v)
        return None if not v.strip() else _NO_VALUE if flag is None else flag
    return _NO_VALUE


def _lenient(kind: type, parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A converter: a ``kind`` as it is, else what ``parse`` makes of it (exactly: a time by
    :func:`parse_time`, a decimal by :func:`dec`, a JSON number through its text)."""

    def convert(v: Any) -> Any:
        if v.__class__ is kind:
            return v
        try:
            return parse(v)
        except ProtocolError:
            return _NO_VALUE

    return convert


_lenient_time = _lenient(datetime, parse_time)
_lenient_decimal = _lenient(Decimal, dec)


def _lenient_legs(v: Any) -> Any:
    try:
        return msgspec.convert(v, tuple[MveLeg, ...])
    except msgspec.ValidationError:
        return _NO_VALUE


_Lenient = Mapping[str, Callable[[Any], Any]]
_MARKET_LENIENT: Final[_Lenient] = {
    **dict.fromkeys(
        (
            "expiration_value",
            "early_close_condition",
            "primary_participant_key",
            "response_price_units",
            "settlement_bounds_type",
        ),
        _lenient_text,
    ),
    **dict.fromkeys(("settlement_timer_seconds", "tick_size", "exchange_index"), _lenient_int),
    **dict.fromkeys(("can_close_early", "is_provisional"), _lenient_bool),
    **dict.fromkeys(
        ("updated_time", "expiration_time", "occurrence_datetime", "fee_waiver_expiration_time"),
        _lenient_time,
    ),
    **dict.fromkeys(
        (
            "yes_bid_dollars",
            "yes_ask_dollars",
            "no_bid_dollars",
            "no_ask_dollars",
            "yes_bid_size_fp",
            "yes_ask_size_fp",
            "last_price_dollars",
            "previous_yes_bid_dollars",
            "previous_yes_ask_dollars",
            "previous_price_dollars",
            "volume_fp",
            "volume_24h_fp",
            "open_interest_fp",
            "notional_value_dollars",
            "liquidity_dollars",
            "settlement_floor_dollars",
        ),
        _lenient_decimal,
    ),
    "mve_selected_legs": _lenient_legs,
}
"""Market fields the collector does not use (reference.market_row, settlement_row, the catalog):
converted tolerantly. Everything else of a market is essential and decoded strictly."""

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
    obj: Any,
    cls: type[msgspec.Struct],
    legacy: Iterable[tuple[str, str, bool]] = (),
    lenient: _Lenient | None = None,
    nulled: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Normalise one REST object for :func:`msgspec.convert` and attach ``raw``.

    ``lenient`` fields are converted by their converter; a value it cannot convert exactly
    becomes ``None`` and is counted in ``nulled["field (type)"]``."""
    if not isinstance(obj, dict):
        raise ProtocolError(f"expected a JSON object for {cls.__name__}, got {type(obj).__name__}")
    decs, times = _field_sets(cls)
    out: dict[str, Any] = dict(obj)
    for new, old, is_price in legacy:
        if out.get(new) is None and out.get(old) is not None:
            v = out[old]
            try:
                out[new] = legacy_price(v) if is_price else parse_count(v)
            except ProtocolError:
                if lenient is None or new not in lenient:
                    raise
                out[new] = _NO_VALUE  # counted below
    if lenient is not None:
        for k, convert in lenient.items():
            v = out.get(k)
            if v is None:
                continue
            got = v if v is _NO_VALUE else convert(v)
            if got is _NO_VALUE:
                if nulled is not None:
                    sent = obj.get(k)
                    kind = "legacy field" if sent is None else type(sent).__name__
                    key = f"{k} ({kind})"
                    nulled[key] = nulled.get(key, 0) + 1
                got = None
            out[k] = got
    for k in decs:
        v = out.get(k)
        if v is not None and v.__class__ is not Decimal:
            out[k] = dec(v)
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


def _market(obj: Any, nulled: dict[str, int] | None = None) -> Market:
    """One market; its non-essential fields tolerant (``_MARKET_LENIENT``). Without ``nulled``
    the fields set to null are logged here."""
    own: dict[str, int] = {} if nulled is None else nulled
    r: Market = _convert(_prep(obj, Market, _MARKET_LEGACY, _MARKET_LENIENT, own), Market)
    if nulled is None and own:
        _log_nulled(own, f"market {r.ticker}")
    return r


def _log_nulled(nulled: Mapping[str, int], where: str) -> None:
    fields = ", ".join(f"{k} x{n}" for k, n in sorted(nulled.items()))
    log.warning(
        "%s: non-essential fields without an exact value, stored as null (raw keeps them): %s",
        where,
        fields,
    )


_ITEM_ERRORS: Final = (ProtocolError, ValueError, TypeError, OverflowError, msgspec.MsgspecError)
"""What decoding one page item may raise (anything else is a bug, not a Kalshi payload)."""


def _page_items(
    items: Iterable[Any], decode: Callable[[Any, dict[str, int]], _S], what: str, key: str
) -> tuple[tuple[_S, ...], int]:
    """Decode a page's items one by one: an item that fails is logged and counted (second
    value), the others are kept. Fields set to null are logged once for the page."""
    out: list[_S] = []
    rejected = 0
    nulled: dict[str, int] = {}
    for item in items:
        try:
            out.append(decode(item, nulled))
        except _ITEM_ERRORS as exc:
            rejected += 1
            name = item.get(key) if isinstance(item, dict) else None
            log.warning("undecodable %s %r left out of its page: %s", what, name, exc)
    if nulled:
        _log_nulled(nulled, f"{what}s page")
    return tuple(out), rejected


def _event(obj: Any, markets: list[Any] | None = None) -> Event:
    """One event; its nested markets (else ``markets``) decoded one by one (:func:`_page_items`)."""
    data = _prep(obj, Event)
    nested = data.get("markets")
    if nested is None:
        nested = markets
    if nested is None:
        data["markets"] = None
    else:
        if not isinstance(nested, list):
            raise ProtocolError("event markets must be a list")
        data["markets"], data["rejected_markets"] = _page_items(nested, _market, "market", "ticker")
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
        out[f"{k}_dollars"] = dec(v) if v is not None else legacy_price(obj.get(k))
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


def _page_event(obj: Any, nulled: dict[str, int]) -> Event:
    return _event(obj)


def decode_markets_page(body: bytes | str | Mapping[str, Any]) -> MarketsPage:
    """``{"markets": [...], "cursor"}``; an item that cannot be decoded is logged and counted in
    ``rejected``, the rest of the page is kept (a sweep goes on)."""
    obj = _body(body)
    markets, rejected = _page_items(_items(obj, "markets"), _market, "market", "ticker")
    return MarketsPage(markets=markets, cursor=_cursor(obj), rejected=rejected)


def decode_market(body: bytes | str | Mapping[str, Any]) -> Market:
    """``{"market": {...}}``."""
    obj = _body(body)
    if "market" not in obj:
        raise ProtocolError("market response without 'market'")
    return _market(obj["market"])


def decode_events_page(body: bytes | str | Mapping[str, Any]) -> EventsPage:
    """``{"events": [...], "cursor"}``; items that cannot be decoded are logged and counted in
    ``rejected``, as for markets."""
    obj = _body(body)
    events, rejected = _page_items(_items(obj, "events"), _page_event, "event", "event_ticker")
    return EventsPage(
        events=events, cursor=_cursor(obj), milestones=obj.get("milestones"), rejected=rejected
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
    book = data.get("taker_book_side")
    if outcome is None and book in ("bid", "ask"):  # bid ≡ yes (KALSHI_API.md §2.3)
        outcome = "yes" if book == "bid" else "no"
    data["taker_outcome_side"] = outcome
    if book is None and outcome in ("yes", "no"):
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
        yes=book_side(rows("yes_dollars_fp"), rows("yes_dollars"), rows("yes")),
        no=book_side(rows("no_dollars_fp"), rows("no_dollars"), rows("no")),
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
