"""The pure parts of the delta counts (kalshibook.storage.delta_counts): which ranges a market's
count must read row by row, around its counted days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from kalshibook.storage.delta_counts import day_counts_of, live_ranges, whole_days_from

D = datetime(2026, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)
DAY = timedelta(days=1)


def test_whole_days_start_at_the_floor_s_midnight_or_the_next() -> None:
    assert whole_days_from(D) == D
    assert whole_days_from(D + 6 * H) == D + DAY  # retention cut into that day
    ist = timezone(timedelta(hours=5, minutes=30))
    assert whole_days_from(datetime(2026, 3, 1, 5, 30, tzinfo=ist)) == D  # 00:00Z


def test_live_ranges_are_the_cut_day_and_the_uncounted_tail() -> None:
    end = D + 10 * DAY + 5 * H
    assert live_ranges(D, D, None, end) == []  # every day counted
    assert live_ranges(D, D, D + 8 * DAY, end) == [(D + 8 * DAY, end)]
    cut = D + 6 * H
    assert live_ranges(cut, D + DAY, D + 8 * DAY, end) == [(cut, D + DAY), (D + 8 * DAY, end)]
    # the market's deltas ended before the floor's day did: nothing past its end
    assert live_ranges(cut, D + DAY, None, D + 3 * H) == []
    assert live_ranges(cut, D + DAY, None, D + 9 * H) == [(cut, D + 9 * H)]


def test_day_counts_rows() -> None:
    assert day_counts_of(None) == (0, None)
    assert day_counts_of((7, None)) == (7, None)
    ist = timezone(timedelta(hours=5, minutes=30))
    assert day_counts_of((3, datetime(2026, 3, 2, 5, 30, tzinfo=ist))) == (3, D + DAY)
