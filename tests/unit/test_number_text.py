"""Numbers kept as PostgreSQL's text: formatting and VWAP without Decimal objects give exactly what
the Decimal functions give (kalshibook.domain.prices, kalshibook.domain.candle_rows)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kalshibook.domain.candle_rows import vwap_units
from kalshibook.domain.prices import (
    fmt_count,
    fmt_count_text,
    fmt_dollars,
    fmt_dollars_text,
    fmt_micro_dollars,
    fmt_price_units,
    fmt_size_units,
    units_to_price,
    units_to_size,
)

# Finite decimals as PostgreSQL prints a numeric (trailing zeros kept: scale is part of the text)
# and as str(Decimal) prints them (exponent notation for small/large exponents). At most 28
# significant digits: fmt_dollars' normalize() rounds longer values to the default context's 28
# digits, where the text versions stay exact (no price, count or sum of them comes near).
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: abs(d.adjusted()) < 30 and len(d.as_tuple().digits) <= 28
)


def pg_text(d: Decimal) -> str:
    return f"{d:f}"


@given(decimals, st.integers(min_value=0, max_value=4))
def test_text_formatting_equals_the_decimal_formatting(d: Decimal, zeros: int) -> None:
    for text in (pg_text(d) + ("0" * zeros if "." in pg_text(d) else ""), str(d)):
        assert fmt_dollars_text(text) == fmt_dollars(Decimal(text))
        assert fmt_count_text(text) == fmt_count(Decimal(text))


@pytest.mark.parametrize(
    ("text", "dollars", "count"),
    [
        ("0", "0.0000", "0.00"),
        ("0.410000", "0.4100", "0.41"),
        ("0.00125", "0.00125", "0.00125"),
        ("1234.000", "1234.0000", "1234.00"),
        ("100", "100.0000", "100.00"),
        ("1E+2", "100.0000", "100.00"),
        ("1E-7", "0.0000001", "0.0000001"),
        ("12.00", "12.0000", "12.00"),  # already in a shape: returned as is
        ("0.5600", "0.5600", "0.56"),
        ("-0.50", "-0.5000", "-0.50"),
        ("0.1250", "0.1250", "0.125"),
    ],
)
def test_text_formatting_examples(text: str, dollars: str, count: str) -> None:
    assert (fmt_dollars_text(text), fmt_count_text(text)) == (dollars, count)


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_micro_dollars_format_as_fmt_dollars(units: int) -> None:
    assert fmt_micro_dollars(units) == fmt_dollars(Decimal(units).scaleb(-6))


@given(
    st.decimals(min_value=0, max_value=10**9, places=8, allow_nan=False),
    st.decimals(min_value=Decimal("0.01"), max_value=10**7, places=2, allow_nan=False),
)
def test_vwap_units_is_the_exact_half_even_quotient(notional: Decimal, volume: Decimal) -> None:
    expected = round(Fraction(notional) / Fraction(volume) * 10**6)  # round() is half-even
    assert vwap_units(pg_text(notional), pg_text(volume)) == expected
    assert vwap_units(str(notional), str(volume)) == expected  # exponent notation: same value


def test_vwap_units_ties_go_to_even_and_zero_volume_is_none() -> None:
    assert vwap_units("0.0000005", "1") == 0
    assert vwap_units("0.0000015", "1") == 2
    assert vwap_units("0.0000025", "1.00") == 2
    assert vwap_units("1.00", "3") == 333333
    assert vwap_units("0", "0.00") is None
    assert vwap_units("0", "0E-2") is None


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_book_level_formatting_from_units_is_the_decimal_formatting(units: int) -> None:
    assert fmt_price_units(units) == fmt_dollars(units_to_price(units))
    assert fmt_size_units(units) == fmt_count(units_to_size(units))


def test_book_level_formatting_from_units_on_every_cent_fraction_and_size() -> None:
    for units in range(0, 1_000_001, 7):  # prices 0..1 dollars, every 7 micro-dollars
        assert fmt_price_units(units) == fmt_dollars(units_to_price(units))
    for units in range(-1000, 100_000):
        assert fmt_size_units(units) == fmt_count(units_to_size(units))
