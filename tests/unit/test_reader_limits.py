"""Reading a role's timeout settings as PostgreSQL does (kalshibook.storage.reader_limits)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kalshibook.storage.reader_limits import parse_timeout


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("1500", timedelta(milliseconds=1500)),  # no unit: milliseconds
        ("1e3", timedelta(seconds=1)),  # accepted by PostgreSQL, no interval
        ("1.5s", timedelta(milliseconds=1500)),
        ("2 min", timedelta(minutes=2)),
        ("10min", timedelta(minutes=10)),
        ("100h", timedelta(hours=100)),
        ("1d", timedelta(days=1)),
        ("2600us", timedelta(milliseconds=3)),  # rounded to the unit, as PostgreSQL does
        ("0x10", timedelta(milliseconds=16)),  # strtol(…, 0)
        ("010", timedelta(milliseconds=8)),
        (" 5s ", timedelta(seconds=5)),
    ],
)
def test_parse_timeout_reads_what_postgresql_accepts(setting: str, expected: timedelta) -> None:
    assert parse_timeout(setting) == expected


@pytest.mark.parametrize(
    "setting",
    [None, "", "0", "0ms", "-1", "100us", "30 seconds", "1 day", "5S", "abc", "30s; x", "25d"],
)
def test_parse_timeout_gives_none_for_no_limit_or_an_unknown_form(setting: str | None) -> None:
    assert parse_timeout(setting) is None
