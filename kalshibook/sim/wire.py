"""Exact Kalshi 2026 text formats for the simulator (pure, integer based, fast).

Prices are integers in :data:`UNIT` (1/10,000 of a dollar: every grid the simulator uses —
``linear_cent``, ``deci_cent``, ``tapered_deci_cent`` — is a multiple of it). Sizes are integers in
hundredths of a contract. Formatting goes through lookup tables because the simulator formats
hundreds of thousands of values a second.
"""

from __future__ import annotations

import datetime as dt

UNIT = 10_000
"""Price units per dollar (a price of 4,200 is ``"0.4200"``)."""
SIZE_UNIT = 100
"""Size units per contract (a size of 1,250 is ``"12.50"``)."""

PRICE_STR: tuple[str, ...] = tuple(f"{p // UNIT}.{p % UNIT:04d}" for p in range(UNIT + 1))
"""``PRICE_STR[p]`` is Kalshi's dollar string for price ``p`` (``0 <= p <= UNIT``)."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def price_str(p: int) -> str:
    """Dollar string of a price in units, ``"0.4200"``."""
    return PRICE_STR[p]


def size_str(s: int) -> str:
    """Count string of a size in hundredths, signed when negative: ``"-54.00"``, ``"12.37"``."""
    if s < 0:
        s = -s
        return f"-{s // 100}.{s % 100:02d}"
    return f"{s // 100}.{s % 100:02d}"


def dollars_str(amount_units: int) -> str:
    """Dollar string for an amount in price units that may exceed one dollar."""
    sign = "-" if amount_units < 0 else ""
    a = abs(amount_units)
    return f"{sign}{a // UNIT}.{a % UNIT:04d}"


def parse_price(text: str) -> int:
    """Inverse of :func:`price_str` (``"0.42"`` and ``"0.4200"`` both give 4,200)."""
    whole, _, frac = text.partition(".")
    if len(frac) > 4 and frac[4:].strip("0"):
        raise ValueError(f"price {text!r} is finer than 0.0001")
    return int(whole or "0") * UNIT + int((frac + "0000")[:4])


def parse_size(text: str) -> int:
    """Inverse of :func:`size_str` (signed)."""
    neg = text.startswith("-")
    body = text[1:] if neg else text
    whole, _, frac = body.partition(".")
    if len(frac) > 2 and frac[2:].strip("0"):
        raise ValueError(f"size {text!r} is finer than 0.01")
    frac = (frac + "00")[:2]
    value = int(whole or "0") * SIZE_UNIT + int(frac)
    return -value if neg else value


def rfc3339_ms(ts_ms: int) -> str:
    """``2026-08-24T15:01:57.667Z`` (millisecond precision, UTC)."""
    d = _EPOCH + dt.timedelta(milliseconds=ts_ms)
    return f"{d:%Y-%m-%dT%H:%M:%S}.{ts_ms % 1000:03d}Z"


def rfc3339_us(ts_ms: int) -> str:
    """``2026-08-24T15:01:57.667000Z`` (Kalshi REST's microsecond form)."""
    d = _EPOCH + dt.timedelta(milliseconds=ts_ms)
    return f"{d:%Y-%m-%dT%H:%M:%S}.{ts_ms % 1000:03d}000Z"


def rfc3339_us_exact(ts_ms: int, us: int) -> str:
    """``2026-08-24T15:01:57.667123Z``: ``us`` microseconds into millisecond ``ts_ms``."""
    d = _EPOCH + dt.timedelta(milliseconds=ts_ms)
    return f"{d:%Y-%m-%dT%H:%M:%S}.{ts_ms % 1000:03d}{us:03d}Z"


def rfc3339_s(ts_ms: int) -> str:
    """``2026-08-24T15:01:53Z`` (second precision, truncated)."""
    d = _EPOCH + dt.timedelta(milliseconds=ts_ms - ts_ms % 1000)
    return f"{d:%Y-%m-%dT%H:%M:%S}Z"


def date_code(ts_ms: int) -> str:
    """Kalshi's event date code, ``26NOV26``."""
    d = _EPOCH + dt.timedelta(milliseconds=ts_ms)
    return f"{d:%y}{d:%b}".upper() + f"{d:%d}"
