"""The book days' totals and the ranges left to count (kalshibook.storage.book_days, pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kalshibook.storage.book_days import BookSpan, day_totals, merge_span

D0 = datetime(2026, 5, 1, tzinfo=UTC)


def day(k: int) -> datetime:
    return D0 + timedelta(days=k)


def row(k: int, n: int, trusted: bool) -> tuple[datetime, int, datetime, datetime, bool]:
    return (day(k), n, day(k) + timedelta(hours=1), day(k) + timedelta(hours=20), trusted)


def test_trusted_days_add_up_and_untrusted_runs_become_ranges() -> None:
    rows = [row(0, 3, False), row(1, 2, False), row(3, 5, True), row(4, 1, False), row(9, 2, True)]
    span, ranges = day_totals(rows)
    assert span == BookSpan(7, day(3) + timedelta(hours=1), day(9) + timedelta(hours=20))
    assert ranges == [(day(0), day(2)), (day(4), day(5))]


def test_untrusted_days_with_only_empty_days_between_are_one_range() -> None:
    span, ranges = day_totals([row(0, 1, False), row(5, 1, False), row(6, 4, False)])
    assert span == BookSpan(0, None, None)
    assert ranges == [(day(0), day(7))]


def test_all_trusted_needs_no_range() -> None:
    span, ranges = day_totals([row(2, 1, True), row(3, 1, True)])
    assert span.snapshots == 2
    assert ranges == []
    assert day_totals([]) == (BookSpan(0, None, None), [])


def test_merging_spans_keeps_the_outer_times() -> None:
    a = BookSpan(2, day(1), day(2))
    assert merge_span(a, BookSpan(0, None, None)) == a
    assert merge_span(BookSpan(1, day(0), day(0)), a) == BookSpan(3, day(0), day(2))
