"""refresh_window: the window refresh_candles gives each candle level (Community edition).

Two rules (kalshibook.storage.candles.refresh_window): every level gets the same window widened to
New York midnights, and no window reaches into the bucket in progress, whose materialisation
would move the watermark past it and stop real-time aggregation there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kalshibook.domain.candles import INTERVALS, Interval, period_floor
from kalshibook.storage.candles import CANDLE_CHAIN, refresh_window

NOW = datetime(2026, 11, 26, 15, 42, 17, tzinfo=UTC)  # 10:42:17 in New York


def test_a_past_window_is_widened_to_new_york_midnights_for_every_level() -> None:
    start = datetime(2026, 3, 8, 3, 30, tzinfo=UTC)  # 2026-03-07 22:30 in New York
    end = start + timedelta(seconds=1)
    expected = (datetime(2026, 3, 7, 5, tzinfo=UTC), datetime(2026, 3, 8, 5, tzinfo=UTC))
    for level in INTERVALS:
        assert refresh_window(start, end, level, NOW) == expected


def test_dst_day_is_one_23_hour_window() -> None:
    start = datetime(2026, 3, 8, 12, tzinfo=UTC)  # the spring-forward day in New York
    window = refresh_window(start, start + timedelta(minutes=5), "1h", NOW)
    assert window == (datetime(2026, 3, 8, 5, tzinfo=UTC), datetime(2026, 3, 9, 4, tzinfo=UTC))


def test_window_stops_at_the_bucket_in_progress_of_each_level() -> None:
    start = NOW - timedelta(hours=2)
    end = NOW + timedelta(minutes=1)
    midnight = datetime(2026, 11, 26, 5, tzinfo=UTC)
    minute = datetime(2026, 11, 26, 15, 42, tzinfo=UTC)
    hour = datetime(2026, 11, 26, 15, tzinfo=UTC)
    assert refresh_window(start, end, "1m", NOW) == (midnight, minute)
    assert refresh_window(start, end, "1h", NOW) == (midnight, hour)
    assert refresh_window(start, end, "1d", NOW) is None  # today is in progress: real time


def test_nothing_to_refresh_when_the_day_started_in_the_current_minute() -> None:
    now = datetime(2026, 11, 26, 5, 0, 30, tzinfo=UTC)  # 00:00:30 in New York
    for level in INTERVALS:
        assert refresh_window(now - timedelta(seconds=20), now, level, now) is None


@pytest.mark.parametrize("offset_s", [0, 1, 59, 3600, 86399, 3 * 86400 + 7])
def test_windows_are_aligned_nested_and_never_past_the_current_bucket(offset_s: int) -> None:
    start = datetime(2026, 11, 1, 4, 59, 59, tzinfo=UTC) + timedelta(seconds=offset_s)
    end = NOW + timedelta(hours=30)
    below: dict[str, tuple[Interval, ...]] = {
        "1m": ("1m",),
        "1h": ("1m", "1h"),
        "1d": ("1m", "1h", "1d"),
    }
    ends = {}
    for _name, level in CANDLE_CHAIN:
        window = refresh_window(start, end, level, NOW)
        assert window is not None
        lo, hi = window
        assert lo == period_floor(start, "1d") <= start
        assert hi <= period_floor(NOW, level)  # the bucket in progress is left out
        # on bucket boundaries of the level and of every level it is built from
        for boundary in (lo, hi):
            assert all(period_floor(boundary, lvl) == boundary for lvl in below[level])
        ends[level] = hi
    # a level never reaches further than the level it is built from
    assert ends["1d"] <= ends["1h"] <= ends["1m"]
