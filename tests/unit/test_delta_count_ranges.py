"""The pure parts of the delta counts (kalshibook.storage.delta_counts): which ranges a market's
count must read row by row, around its counted days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from kalshibook.storage.delta_counts import live_ranges, untrusted_runs, whole_days_from

D = datetime(2026, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)
DAY = timedelta(days=1)


def test_whole_days_start_at_the_floor_s_midnight_or_the_next() -> None:
    assert whole_days_from(D) == D
    assert whole_days_from(D + 6 * H) == D + DAY  # retention cut into that day
    ist = timezone(timedelta(hours=5, minutes=30))
    assert whole_days_from(datetime(2026, 3, 1, 5, 30, tzinfo=ist)) == D  # 00:00Z


def test_live_ranges_are_the_cut_day_and_the_untrusted_runs() -> None:
    end = D + 10 * DAY + 5 * H
    assert live_ranges(D, D, [], end) == []  # every day counted
    assert live_ranges(D, D, [(D + 8 * DAY, D + 11 * DAY)], end) == [(D + 8 * DAY, end)]
    cut = D + 6 * H
    runs = [(D + 2 * DAY, D + 3 * DAY), (D + 8 * DAY, D + 11 * DAY)]
    assert live_ranges(cut, D + DAY, runs, end) == [(cut, D + DAY), *runs[:1], (D + 8 * DAY, end)]
    # the market's deltas ended before the floor's day did: nothing past its end
    assert live_ranges(cut, D + DAY, [], D + 3 * H) == []
    assert live_ranges(cut, D + DAY, [], D + 9 * H) == [(cut, D + 9 * H)]


def test_untrusted_runs_join_across_days_without_rows_not_across_trusted_days() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    days = [
        (D, False),
        (D + DAY, False),
        (D + 4 * DAY, False),  # days 2 and 3 hold no deltas: the same run
        (D + 5 * DAY, True),
        (datetime(2026, 3, 7, 5, 30, tzinfo=ist), False),  # 00:00Z on the 7th
        (D + 9 * DAY, True),
    ]
    assert untrusted_runs(days) == [(D, D + 5 * DAY), (D + 6 * DAY, D + 7 * DAY)]
    assert untrusted_runs([(D, True)]) == []
    assert untrusted_runs([]) == []
