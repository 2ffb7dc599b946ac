"""Kalshi scalar values (pure): exact decimals, times and book levels of any API era.

Shared by the WebSocket decoder (:mod:`kalshibook.kalshi.ws_decode`, the collector's per-frame
path) and the REST decoder (:mod:`kalshibook.kalshi.rest_decode`). Prices and sizes become exact
:class:`~decimal.Decimal` dollars/contracts (legacy integers are cents), times aware UTC
datetimes, book sides tuples of ``(price, size)``. Malformed input raises
:class:`~kalshibook.errors.ProtocolError`.

The per-frame helpers keep their caches here as module globals (:data:`dec_hit` is the decimal
cache's own C lookup; :func:`ms_time` remembers the last millisecond).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeAlias

from kalshibook.domain.prices import cents_to_dollars, parse_count, parse_dollars
from kalshibook.errors import ProtocolError

__all__ = (
    "Level",
    "book_side",
    "dec",
    "dec_hit",
    "frame_time",
    "legacy_price",
    "ms_time",
    "parse_time",
    "pick_count",
    "pick_price",
    "tuple_str",
)

Level: TypeAlias = tuple[Decimal, Decimal]
"""One book level: ``(price in dollars, resting size in contracts)``."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_MS_THRESHOLD = 100_000_000_000  # an integer "seconds" value this large is really milliseconds
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"


# Decimal text -> Decimal: the feed repeats a small set of price/size strings, so a dict lookup
# (the str hash is cached) replaces most Decimal constructions, and the shared Decimal objects
# carry a cached hash into the book's unit caches. Decimals are immutable and ``Decimal(s)`` is
# exact, so a cached value is identical to a fresh one. Bounded: cleared when full.
_DEC_CACHE_MAX = 1 << 16
_dec_cache: dict[str, Decimal] = {}
_int_dec_cache: dict[int, Decimal] = {}
dec_hit: Callable[[object], Decimal | None] = _dec_cache.get  # type: ignore[assignment]
"""The cache's own lookup (C): ``dec_hit(v) or helper(v)`` on the per-frame paths."""


def dec(v: Any) -> Decimal | None:
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


def legacy_price(v: Any) -> Decimal | None:
    """A price field of unknown era: integers are cents, strings/floats are dollars."""
    if v.__class__ is int:
        return cents_to_dollars(v)
    return dec(v)


def pick_price(dollars: Any, cents: Any) -> Decimal | None:
    """The ``*_dollars`` value when the key was sent (``""`` = none), else legacy cents."""
    if dollars is not None:
        return dec(dollars)
    if cents is None:
        return None
    return legacy_price(cents)


def pick_count(fp: Any, legacy: Any) -> Decimal | None:
    if fp is not None:
        return dec(fp)
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


def ms_time(v: int) -> datetime:
    global _last_ms
    last = _last_ms
    if last[0] == v:
        return last[1]
    dt = _EPOCH + _ONE_MS * v  # exact; no keyword parsing (timedelta(milliseconds=v) is 2x)
    _last_ms = (v, dt)
    return dt


def frame_time(ts_ms: Any, *fallbacks: Any) -> datetime | None:
    """``ts_ms`` when present, else the finest usable fallback (``ts`` seconds/RFC3339, ``time``).

    Among the fallbacks the first one with a fraction of a second wins, else the first usable
    one: a ticker without ``ts_ms`` has whole seconds in ``ts`` and microseconds in ``time``. A
    malformed fallback raises only when no other one is usable.
    """
    if ts_ms is not None:
        if ts_ms.__class__ is int:
            return ms_time(ts_ms)
        if isinstance(ts_ms, str | float):
            try:
                return ms_time(int(Decimal(str(ts_ms))))
            except (InvalidOperation, ValueError):
                raise ProtocolError(f"invalid ts_ms {ts_ms!r}") from None
    coarse: datetime | None = None
    error: ProtocolError | None = None
    for v in fallbacks:
        if v is not None:
            try:
                t = parse_time(v)
            except ProtocolError as exc:
                error = error or exc
                continue
            if t is not None:
                if t.microsecond:
                    return t
                if coarse is None:
                    coarse = t
    if coarse is None and error is not None:
        raise error
    return coarse


def _level(row: Sequence[Any], legacy_cents: bool) -> Level:
    if len(row) != 2:
        raise ProtocolError(f"book level must be [price, size], got {list(row)[:4]!r}")
    p, n = row
    if legacy_cents:
        if p.__class__ is not int:
            raise ProtocolError(f"legacy book price must be integer cents, got {p!r}")
        price: Decimal | None = cents_to_dollars(p)
    else:
        price = dec(p)
    size = dec(n)
    if price is None or size is None:
        raise ProtocolError(f"empty book level {list(row)!r}")
    return (price, size)


def book_side(fp: Any, dollars: Any, cents: Any) -> tuple[Level, ...]:
    """One book side, preferring ``*_dollars_fp``, then ``*_dollars``, then legacy cents."""
    if fp is not None:
        return tuple([_level(r, False) for r in fp])
    if dollars is not None:
        return tuple([_level(r, False) for r in dollars])
    if cents is not None:
        return tuple([_level(r, True) for r in cents])
    return ()


def tuple_str(v: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if v is None else tuple(v)
