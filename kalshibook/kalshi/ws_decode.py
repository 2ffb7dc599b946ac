"""Kalshi WebSocket frame decoding (pure): the collector's per-frame hot path.

A frame is decoded in one msgspec pass into a tagged union of raw Structs whose fields are all
optional and loosely typed (a price may be a string, a JSON number or legacy integer cents), then
normalised into the frozen frames of :mod:`kalshibook.kalshi.ws_frames`. Unknown frame types
become :class:`~kalshibook.kalshi.ws_frames.UnknownFrame`; unknown fields are ignored (and
counted when sampled, see :class:`DecodeStats`). Malformed input raises
:class:`~kalshibook.errors.ProtocolError`.

Throughput (CPython 3.11, one core, ``python bench/decode_only.py``): about 420k
orderbook_delta frames/s and 400k trade frames/s including normalisation, far above the
collector's 50k frames/s budget. The hot helpers are module globals imported from
:mod:`kalshibook.kalshi.scalars` (one global lookup each, as before the split).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeAlias, TypeVar

import msgspec

from kalshibook.errors import ProtocolError
from kalshibook.kalshi.scalars import (
    book_side,
    dec,
    dec_hit,
    frame_time,
    legacy_price,
    ms_time,
    parse_time,
    pick_count,
    pick_price,
    tuple_str,
)
from kalshibook.kalshi.ws_frames import (
    ErrorFrame,
    EventFeeUpdate,
    EventLifecycle,
    Frame,
    LifecycleMetadata,
    MarketLifecycle,
    Ok,
    OrderbookDelta,
    OrderbookSnapshot,
    PriceRange,
    Subscribed,
    SubscriptionInfo,
    Ticker,
    Trade,
    UnknownFrame,
    Unsubscribed,
)

__all__ = ("KNOWN_TYPES", "DecodeStats", "decode_frame")

_Num: TypeAlias = str | int | float | None
_M = TypeVar("_M")

# Raw wire layer: all fields optional and loosely typed, decoded in one msgspec pass.

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


# Normalisation: raw envelope -> frozen frame (ws_frames).


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
            floor_strike=dec(a.floor_strike),
            cap_strike=dec(a.cap_strike),
            custom_strike=a.custom_strike,
        )
    ranges = None
    if m.price_ranges is not None:
        ranges = tuple(
            PriceRange(
                _require(dec(r.start), "price_ranges.start", "market_lifecycle_v2"),
                _require(dec(r.end), "price_ranges.end", "market_lifecycle_v2"),
                _require(dec(r.step), "price_ranges.step", "market_lifecycle_v2"),
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
        settlement_value=legacy_price(m.settlement_value),
        is_deactivated=m.is_deactivated,
        price_level_structure=m.price_level_structure,
        price_ranges=ranges,
        additional_metadata=meta,
        strike_type=m.strike_type,
        floor_strike=dec(m.floor_strike),
        cap_strike=dec(m.cap_strike),
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
        hit = dec_hit
        price = hit(d.price_dollars) or pick_price(d.price_dollars, d.price)
        delta = hit(d.delta_fp) or pick_count(d.delta_fp, d.delta)
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
            ts=ms_time(num) if num.__class__ is int else frame_time(num, d.ts),
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
        hit = dec_hit  # as for deltas: hit(text) or helper(...)
        tick = Ticker(
            sid=env.sid,
            received_at=at,
            market_ticker=_require(t.market_ticker, "market_ticker", "ticker"),
            market_id=t.market_id,
            price=hit(t.price_dollars) or pick_price(t.price_dollars, t.price),
            yes_bid=hit(t.yes_bid_dollars) or pick_price(t.yes_bid_dollars, t.yes_bid),
            yes_ask=hit(t.yes_ask_dollars) or pick_price(t.yes_ask_dollars, t.yes_ask),
            volume=hit(t.volume_fp) or pick_count(t.volume_fp, t.volume),
            open_interest=hit(t.open_interest_fp)
            or pick_count(t.open_interest_fp, t.open_interest),
            dollar_volume=dec(t.dollar_volume),
            dollar_open_interest=dec(t.dollar_open_interest),
            yes_bid_size=hit(t.yes_bid_size_fp) or dec(t.yes_bid_size_fp),
            yes_ask_size=hit(t.yes_ask_size_fp) or dec(t.yes_ask_size_fp),
            last_trade_size=hit(t.last_trade_size_fp) or dec(t.last_trade_size_fp),
            # without ts_ms: the RFC 3339 ``time`` when finer than the whole-second ``ts``
            ts=ms_time(num) if num.__class__ is int else frame_time(num, t.ts, t.time),
        )
        if env.seq is not None or env.id is not None or t.Clock is not None:
            tick = msgspec.structs.replace(tick, seq=env.seq, id=env.id, clock=t.Clock)
        return tick
    if cls is _EnvTrade:
        assert isinstance(env, _EnvTrade)
        r = env.msg
        if r is None:
            raise ProtocolError("trade frame without msg")
        yes_price = pick_price(
            r.yes_price_dollars, r.yes_price if r.yes_price is not None else r.price
        )
        no_price = pick_price(r.no_price_dollars, r.no_price)
        if yes_price is None:
            raise ProtocolError("trade frame without yes price")
        if no_price is None:
            no_price = 1 - yes_price
        count = pick_count(r.count_fp, r.count)
        if count is None:
            raise ProtocolError("trade frame without count")
        # KALSHI_API.md §2.3: taker_book_side bid ≡ taker_outcome_side yes (ask ≡ no); either
        # may be missing (older frames have no book side, some only the book side).
        outcome = r.taker_outcome_side or r.taker_side or r.side
        book = r.taker_book_side
        if book is None and outcome is not None:
            book = "bid" if outcome == "yes" else "ask" if outcome == "no" else None
        elif outcome is None and book is not None:
            outcome = "yes" if book == "bid" else "no" if book == "ask" else None
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
            ts=frame_time(r.ts_ms, r.ts),
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
            yes=book_side(s.yes_dollars_fp, s.yes_dollars, s.yes),
            no=book_side(s.no_dollars_fp, s.no_dollars, s.no),
            ts=frame_time(s.ts_ms, s.ts),
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
        return Ok(**_head(env, at), market_tickers=tuple_str(tickers), market_ids=tuple_str(ids))
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
            fee_multiplier_override=dec(f.fee_multiplier_override),
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
