"""User-given instants (kalshibook.domain.times): both forms name the same microsecond."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kalshibook.domain.times import parse_time
from kalshibook.errors import InvalidInput

T = datetime(2026, 3, 8, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("unix", "rfc3339"),
    [
        ("1772974800", "2026-03-08T13:00:00Z"),
        ("1772974800.5", "2026-03-08T13:00:00.5Z"),
        ("1772974800.123456", "2026-03-08T13:00:00.123456Z"),
        # finer than a microsecond: truncated, never rounded up past an event at .001
        ("1772974800.0009996", "2026-03-08T13:00:00.0009996Z"),
        ("1772974799.9999996", "2026-03-08T12:59:59.9999996Z"),
    ],
)
def test_unix_seconds_and_rfc3339_agree(unix: str, rfc3339: str) -> None:
    assert parse_time(unix, "at") == parse_time(rfc3339, "at")


def test_sub_microsecond_unix_seconds_are_truncated() -> None:
    assert parse_time("1772974800.0009996", "at") == T.replace(microsecond=999)
    assert parse_time("1772974799.9999996", "at") == T.replace(second=0).replace(
        hour=12, minute=59, second=59, microsecond=999999
    )


@pytest.mark.parametrize("bad", ["99999999999999999999999", "-1", "1.5e9", "12:00"])
def test_out_of_range_or_malformed_unix_seconds(bad: str) -> None:
    with pytest.raises(InvalidInput):
        parse_time(bad, "at")
