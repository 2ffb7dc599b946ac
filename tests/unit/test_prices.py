"""Exact fixed-point parsing and integer units (kalshibook.domain.prices)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kalshibook.domain.prices import (
    PRICE_SCALE,
    SIZE_SCALE,
    cents_to_dollars,
    fmt_count,
    fmt_dollars,
    parse_count,
    parse_dollars,
    price_to_units,
    size_to_units,
    units_to_price,
    units_to_size,
)
from kalshibook.errors import ProtocolError


def test_parse_dollars_strings_exact() -> None:
    assert parse_dollars("0.3600") == Decimal("0.36")
    assert str(parse_dollars("0.3600")) == "0.3600"
    assert parse_dollars("0.000125") == Decimal("0.000125")
    assert parse_dollars(" 1.0000 ") == Decimal("1")


def test_parse_dollars_json_numbers_go_through_str() -> None:
    assert parse_dollars(0.36) == Decimal("0.36")
    assert parse_dollars(0.1) == Decimal("0.1")  # not 0.1000000000000000055...
    assert parse_dollars(16948) == Decimal(16948)


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_parse_empty_is_none(empty: str | None) -> None:
    assert parse_dollars(empty) is None
    assert parse_count(empty) is None


@pytest.mark.parametrize("bad", ["abc", "NaN", "Infinity", "1,5", True])
def test_parse_rejects_garbage(bad: object) -> None:
    with pytest.raises(ProtocolError):
        parse_dollars(bad)  # type: ignore[arg-type]


def test_parse_count() -> None:
    assert parse_count("12.50") == Decimal("12.50")
    assert parse_count("-54.00") == Decimal("-54")
    assert parse_count(75) == Decimal(75)


def test_cents_to_dollars() -> None:
    assert cents_to_dollars(45) == Decimal("0.45")
    assert cents_to_dollars(100) == Decimal("1")
    assert cents_to_dollars(0) == Decimal(0)
    with pytest.raises(ProtocolError):
        cents_to_dollars(4.5)  # type: ignore[arg-type]


def test_scales_agree_with_the_conversions() -> None:
    # One dollar / one contract is SCALE units; one unit is the finest grid step (micro-dollar,
    # hundredth of a contract), and nothing finer converts.
    assert price_to_units(Decimal(1)) == PRICE_SCALE
    assert size_to_units(Decimal(1)) == SIZE_SCALE
    assert units_to_price(1) == Decimal("0.000001") == Decimal(1) / PRICE_SCALE
    assert units_to_size(1) == Decimal("0.01") == Decimal(1) / SIZE_SCALE
    with pytest.raises(ProtocolError):
        price_to_units(Decimal(1) / PRICE_SCALE / 10)
    with pytest.raises(ProtocolError):
        size_to_units(Decimal(1) / SIZE_SCALE / 10)


def test_price_units_exact() -> None:
    assert price_to_units(Decimal("0.3600")) == 360_000
    assert price_to_units(Decimal("0.000125")) == 125
    assert price_to_units(Decimal("1")) == 1_000_000
    assert units_to_price(360_000) == Decimal("0.36")
    assert str(units_to_price(360_000)) == "0.3600"
    assert str(units_to_price(125)) == "0.000125"


def test_size_units_exact() -> None:
    assert size_to_units(Decimal("12.50")) == 1250
    assert size_to_units(Decimal("-54.00")) == -5400
    assert size_to_units(Decimal("74.77")) == 7477
    assert str(units_to_size(1250)) == "12.50"


def test_off_grid_values_raise() -> None:
    with pytest.raises(ProtocolError):
        size_to_units(Decimal("1.001"))
    with pytest.raises(ProtocolError):
        price_to_units(Decimal("0.0000001"))
    with pytest.raises(ProtocolError):
        price_to_units(Decimal("NaN"))


def test_units_never_round_long_values_and_refuse_huge_ones() -> None:
    # 31 significant digits: the default 28-digit context would round this onto the grid
    with pytest.raises(ProtocolError, match="more than 6 decimal places"):
        price_to_units(Decimal("0.1000000000000000000000000000001"))
    with pytest.raises(ProtocolError, match="more than 2 decimal places"):
        size_to_units(Decimal("12.00000000000000000000000000001"))
    assert size_to_units(Decimal("1" + "0" * 27 + ".50")) == 10**29 + 50
    for huge in ("1E+999999", "Infinity", "NaN", "sNaN"):
        with pytest.raises(ProtocolError):
            size_to_units(Decimal(huge))


def test_formatting() -> None:
    assert fmt_dollars(Decimal("0.36")) == "0.3600"
    assert fmt_dollars(Decimal("0.3600")) == "0.3600"
    assert fmt_dollars(Decimal("0.00125")) == "0.00125"
    assert fmt_dollars(Decimal("1E+2")) == "100.0000"
    assert fmt_dollars(Decimal(0)) == "0.0000"
    assert fmt_count(Decimal("12.5")) == "12.50"
    assert fmt_count(Decimal(3)) == "3.00"
    assert fmt_count(Decimal("-54")) == "-54.00"


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_price_units_roundtrip(units: int) -> None:
    assert price_to_units(units_to_price(units)) == units
    assert parse_dollars(fmt_dollars(units_to_price(units))) == units_to_price(units)


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_size_units_roundtrip(units: int) -> None:
    assert size_to_units(units_to_size(units)) == units
    assert parse_count(fmt_count(units_to_size(units))) == units_to_size(units)
