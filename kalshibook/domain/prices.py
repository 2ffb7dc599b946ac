"""Exact parsing and formatting of Kalshi's fixed-point prices and counts (pure).

Kalshi sends prices as dollar strings (``"0.3600"``, up to 6 dp on sub-penny grids) and counts as
2-dp strings (``"12.50"``). Both are parsed into :class:`~decimal.Decimal`, never floats. Book math
uses integers: prices in micro-dollars (:data:`PRICE_SCALE`) and sizes in hundredths of a contract
(:data:`SIZE_SCALE`); the conversions are exact and refuse values off the grid.
"""

from __future__ import annotations

import functools
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, InvalidOperation

from kalshibook.errors import ProtocolError

__all__ = (
    "PRICE_SCALE",
    "SIZE_SCALE",
    "cents_to_dollars",
    "fmt_count",
    "fmt_count_text",
    "fmt_dollars",
    "fmt_dollars_text",
    "fmt_micro_dollars",
    "parse_count",
    "parse_dollars",
    "price_to_units",
    "size_to_units",
    "units_to_price",
    "units_to_size",
)

PRICE_SCALE = 1_000_000
"""Integer price units per dollar (micro-dollars)."""
SIZE_SCALE = 100
"""Integer size units per contract (hundredths)."""

_PRICE_EXP = 6
_SIZE_EXP = 2
_CENT = Decimal("0.01")


def _parse(v: str | int | float | Decimal | None, what: str) -> Decimal | None:
    if v is None:
        return None
    if isinstance(v, Decimal):
        d = v
    elif isinstance(v, str):
        s = v.strip()
        if not s:
            return None
        try:
            d = Decimal(s)
        except InvalidOperation:
            raise ProtocolError(f"invalid {what} {v[:40]!r}") from None
    elif isinstance(v, bool):
        raise ProtocolError(f"invalid {what} {v!r} (boolean)")
    elif isinstance(v, int | float):
        # JSON numbers: str() gives the shortest round-trip text, e.g. 0.36 -> "0.36".
        try:
            d = Decimal(str(v))
        except InvalidOperation:  # pragma: no cover - str(float) is always parseable
            raise ProtocolError(f"invalid {what} {v!r}") from None
    else:
        raise ProtocolError(f"invalid {what} of type {type(v).__name__}")
    if not d.is_finite():
        raise ProtocolError(f"invalid {what} {v!r} (not finite)")
    return d


def parse_dollars(v: str | int | float | Decimal | None) -> Decimal | None:
    """Parse a dollar amount (``"0.3600"``; JSON numbers tolerated); ``None``/``""`` -> ``None``."""
    return _parse(v, "dollar amount")


def parse_count(v: str | int | float | Decimal | None) -> Decimal | None:
    """Parse a contract count (``"12.50"``; JSON numbers tolerated); ``None``/``""`` -> ``None``."""
    return _parse(v, "count")


def cents_to_dollars(cents: int) -> Decimal:
    """Legacy integer cents (pre-2026 frames) to dollars: ``45`` -> ``Decimal("0.45")``."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise ProtocolError(f"invalid integer cents {cents!r}")
    return Decimal(cents) * _CENT


# scaleb rounds to the context's precision (28 digits by default): this one never rounds.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
_MAX_ADJUSTED = 30
"""Largest decimal exponent accepted (about 10^30): keeps int() of a hostile value bounded."""


def _to_units(d: Decimal, exp: int, what: str) -> int:
    if not isinstance(d, Decimal):
        raise ProtocolError(f"invalid {what} {d!r}")
    try:
        if d.adjusted() > _MAX_ADJUSTED:
            raise ProtocolError(f"{what} {d} out of range")
        scaled = d.scaleb(exp, _EXACT)  # only the exponent moves
        units = int(scaled)  # truncates; NaN -> ValueError, infinity -> OverflowError
    except (ValueError, ArithmeticError):
        raise ProtocolError(f"invalid {what} {d!r}") from None
    if units != scaled:
        raise ProtocolError(f"{what} {d} has more than {exp} decimal places")
    return units


def price_to_units(price: Decimal) -> int:
    """Dollars to integer micro-dollars, exactly (``0.36`` -> ``360000``)."""
    return _to_units(price, _PRICE_EXP, "price")


def units_to_price(units: int) -> Decimal:
    """Integer micro-dollars to dollars with at least 4 dp (``360000`` -> ``Decimal("0.3600")``)."""
    if units % 100 == 0:
        return Decimal(units // 100).scaleb(-4)
    return Decimal(units).scaleb(-_PRICE_EXP)


def size_to_units(size: Decimal) -> int:
    """Contracts to integer hundredths, exactly (``12.5`` -> ``1250``)."""
    return _to_units(size, _SIZE_EXP, "size")


def units_to_size(units: int) -> Decimal:
    """Integer hundredths to contracts with 2 dp (``1250`` -> ``Decimal("12.50")``)."""
    return Decimal(units).scaleb(-_SIZE_EXP)


def _fmt(d: Decimal, min_dp: int) -> str:
    if not isinstance(d, Decimal) or not d.is_finite():
        raise ProtocolError(f"cannot format {d!r}")
    exp = d.normalize().as_tuple().exponent
    assert isinstance(exp, int)
    return f"{d:.{max(min_dp, -exp)}f}"


def fmt_dollars(d: Decimal) -> str:
    """Kalshi-style dollar string: at least 4 dp, more if needed (``"0.3600"``, ``"0.00125"``)."""
    return _fmt(d, 4)


def fmt_count(d: Decimal) -> str:
    """Kalshi-style count string: at least 2 dp (``"12.50"``)."""
    return _fmt(d, 2)


# --- the same formatting from a number's text (PostgreSQL's numeric output), without Decimal ---


def _fmt_text(text: str, min_dp: int) -> str:
    whole, dot, frac = text.partition(".")
    # A plain decimal as PostgreSQL prints a finite numeric: ASCII digits, an optional leading
    # '-', and digits after a '.' if there is one. Checked with str methods, not a regex: this
    # runs for several fields of every candle of a request.
    if not (
        text.isascii()
        and (whole.isdigit() or (whole[:1] == "-" and whole[1:].isdigit()))
        and (frac.isdigit() or not dot)
    ):
        return _fmt(Decimal(text), min_dp)  # exponent, NaN, ...: the Decimal way
    if len(frac) == min_dp:  # already in shape (the collector's "12.00", "0.5600"): as is
        return text
    frac = frac.rstrip("0")
    if len(frac) < min_dp:
        frac = frac.ljust(min_dp, "0")
    return whole + "." + frac


def fmt_dollars_text(text: str) -> str:
    """``fmt_dollars(Decimal(text))`` without building the Decimal (same string, exactly)."""
    return _fmt_text(text, 4)


def fmt_count_text(text: str) -> str:
    """``fmt_count(Decimal(text))`` without building the Decimal (same string, exactly)."""
    return _fmt_text(text, 2)


@functools.lru_cache(maxsize=1 << 16)
def fmt_price_units(units: int) -> str:
    """:func:`fmt_micro_dollars`, memoised: a book's level prices (a few hundred distinct values
    in a market's life; ~0.1 us each instead of ~3 us through Decimal)."""
    return fmt_micro_dollars(units)


def fmt_size_units(units: int) -> str:
    """``fmt_count(units_to_size(units))`` from integer hundredths: exactly 2 dp."""
    whole, frac = divmod(-units if units < 0 else units, SIZE_SCALE)
    return f"{'-' if units < 0 else ''}{whole}.{frac:02d}"


def fmt_micro_dollars(units: int) -> str:
    """``fmt_dollars(Decimal(units).scaleb(-6))``: integer micro-dollars as a dollar string."""
    if units >= 0:
        whole, frac = divmod(units, PRICE_SCALE)
        if frac % 100 == 0:  # a whole hundredth of a cent: exactly 4 dp
            return f"{whole}.{frac // 100:04d}"
        return f"{whole}.{frac:06d}".rstrip("0")  # 5 or 6 dp: at most one zero goes
    return "-" + fmt_micro_dollars(-units)
