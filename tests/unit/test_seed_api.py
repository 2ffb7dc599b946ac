"""Pure parts of the seed API: exact numbers, event status, error codes, key formats."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kalshibook.api.auth import KeyRateLimited, OutOfCredits
from kalshibook.api.seed.errors import SeedNotFound, code_of
from kalshibook.api.seed.numbers import InexactNumber, cents, exact_number, quantity
from kalshibook.api.seed.reference import event_status
from kalshibook.errors import BadRequest, NotFound, Unauthorized
from kalshibook.storage.api_keys import format_key, parse_key

D = Decimal


def test_whole_values_are_integers_others_exact_decimals() -> None:
    assert cents(D("0.4200")) == 42
    assert isinstance(cents(D("0.4200")), int)
    assert json.dumps(cents(D("0.045"))) == "4.5"
    assert json.dumps(cents(D("0.000001"))) == "0.0001"
    assert json.dumps(quantity(D("12.50"))) == "12.5"
    assert json.dumps(quantity(D("-0.01"))) == "-0.01"
    assert quantity(D("3.00")) == 3
    with pytest.raises(InexactNumber):
        exact_number(D("1234567890.1234567890"))
    with pytest.raises(InexactNumber):
        exact_number(D("NaN"))


@given(
    units=st.integers(min_value=-(10**6), max_value=10**6),
    sizes=st.integers(min_value=-(10**14), max_value=10**14),
)
def test_json_text_is_the_exact_decimal(units: int, sizes: int) -> None:
    price = D(units).scaleb(-6)  # micro-dollars, as stored
    size = D(sizes).scaleb(-2)  # hundredths of a contract, as stored
    for value, want in ((cents(price), price * 100), (quantity(size), size)):
        assert D(json.dumps(value)) == want


def test_event_status_is_the_liveliest_market() -> None:
    assert event_status(["finalized", "active"]) == "open"
    assert event_status(["closed", "settled"]) == "closed"
    assert event_status(["initialized"]) == "unopened"
    assert event_status(["inactive", "determined"]) == "paused"
    assert event_status(["finalized"]) == "settled"
    assert event_status([]) is None
    assert event_status(["something new"]) is None


def test_error_codes() -> None:
    assert code_of(Unauthorized("x")) == (401, "invalid_api_key")
    assert code_of(OutOfCredits("x", credits_remaining=1)) == (429, "credits_exhausted")
    assert code_of(KeyRateLimited("x", retry_after=0.2)) == (429, "rate_limit_exceeded")
    assert code_of(NotFound("x", parameter="ticker")) == (404, "market_not_found")
    assert code_of(NotFound("x", parameter="event_ticker")) == (404, "event_not_found")
    assert code_of(SeedNotFound("x", code="no_data_available")) == (404, "no_data_available")
    assert code_of(BadRequest("x", parameter="timestamp")) == (422, "invalid_timestamp")
    assert code_of(BadRequest("x", parameter="end_time")) == (422, "invalid_timestamp")
    assert code_of(BadRequest("x", parameter="limit")) == (422, "validation_error")


def test_keys_in_both_formats() -> None:
    secret = "Ab-_" * 11
    issued = format_key("0123abcd", secret)
    assert issued.startswith("kb-")  # the SDK refuses anything else
    assert parse_key(issued) == ("0123abcd", secret)
    assert parse_key(f"kb_0123abcd_{secret}") == ("0123abcd", secret)  # keys issued before
    for bad in (
        f"kb-0123abcd_{secret}",  # mixed separators
        f"kb_0123abcd-{secret}",
        f"kb.0123abcd.{secret}",
        f"kb-0123abc-{secret}",
        f"kx-0123abcd-{secret}",
        "kb-0123abcd-short",
        "kb-",
        "",
    ):
        assert parse_key(bad) is None, bad
