"""The pure parts of the delta counts (kalshibook.storage.delta_counts): which ranges a market's
count must read row by row, around its counted days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from kalshibook.storage.delta_counts import live_ranges, untrusted_runs

D = datetime(2026, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)
DAY = timedelta(days=1)


def test_live_ranges_are_the_untrusted_runs_cut_at_the_end() -> None:
    end = D + 10 * DAY + 5 * H
    assert live_ranges([], end) == []  # every day counted and trusted
    runs = [(D + 2 * DAY, D + 3 * DAY), (D + 8 * DAY, D + 11 * DAY)]
    assert live_ranges(runs, end) == [runs[0], (D + 8 * DAY, end)]
    # the market's deltas ended before a run's day did: nothing past its end
    assert live_ranges(runs, D + 2 * DAY) == []
    assert live_ranges(runs, D + 2 * DAY + 9 * H) == [(D + 2 * DAY, D + 2 * DAY + 9 * H)]


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
