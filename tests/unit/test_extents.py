"""The writer's delta-extent and delta-day logic (kalshibook.storage.extents): spans, hours,
what to write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from kalshibook.storage.extents import (
    KnownExtents,
    Widen,
    ended_before,
    row_spans,
    widen_params,
)

T = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)
LONG_AGO = T - 30 * 24 * H
"""``ended_before`` of a writer that sees no ended day in these tests' rows."""


def uncovered(known: KnownExtents, spans: dict[str, tuple[datetime, datetime]]) -> dict[str, Widen]:
    return known.uncovered(spans, LONG_AGO)


def test_row_spans_take_each_market_s_earliest_and_latest_time_in_any_order() -> None:
    rows = [
        (T + timedelta(minutes=m), t, "x")
        for m, t in [(5, "A"), (-70, "A"), (3, "B"), (61, "A"), (0, "A")]
    ]
    assert row_spans(rows) == {
        "A": (T - timedelta(minutes=70), T + timedelta(minutes=61)),
        "B": (T + timedelta(minutes=3), T + timedelta(minutes=3)),
    }


def test_unknown_markets_get_the_utc_hours_of_their_rows() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    lo = datetime(2026, 3, 1, 15, 45, tzinfo=ist)  # 10:15Z: its UTC hour is 10:00Z, not 15:00
    known = KnownExtents()
    got = uncovered(known, {"A": (lo, T + timedelta(minutes=59, seconds=59))})
    assert got == {"A": Widen((T, T + H), (T, T + H))}


def test_known_hours_skip_covered_markets_and_merge_the_others() -> None:
    known = KnownExtents()
    known.committed(
        {"A": Widen((T, T + 2 * H), (T, T + 2 * H)), "B": Widen((T, T + H), (T, T + H))}
    )
    spans = {
        "A": (T + timedelta(minutes=1), T + H + timedelta(minutes=59)),  # inside: skipped
        "B": (T + timedelta(minutes=30), T + H),  # reaches the end hour itself: widened
        "C": (T, T),
    }
    expected = {"B": Widen((T, T + 2 * H), (T, T + 2 * H)), "C": Widen((T, T + H), (T, T + H))}
    assert uncovered(known, spans) == expected
    assert widen_params(uncovered(known, spans), LONG_AGO) == {
        "ended_before": LONG_AGO,
        "tickers": ["B", "C"],
        "lo": [T, T],
        "hi": [T + 2 * H, T + H],
        "rows_lo": [T, T],
        "rows_hi": [T + 2 * H, T + H],
    }
    known.committed({"B": Widen((T - H, T + H), (T - H, T + H))})  # merged: never narrower
    assert uncovered(known, {"B": (T - H, T + timedelta(minutes=59))}) == {}


def test_rows_inside_the_extent_but_outside_the_known_day_are_written() -> None:
    """The extent spans a quiet day; late rows from an hour of it that holds no recorded deltas
    must still reach that day's entry (a page would skip them otherwise)."""
    known = KnownExtents()
    day2 = T + 24 * H
    known.committed({"A": Widen((T, T + H), (T, T + H))})
    known.committed({"A": Widen((T, day2 + H), (day2, day2 + H))})  # the extent now spans a day
    late = T + 5 * H + timedelta(minutes=10)
    assert uncovered(known, {"A": (late, late)}) == {
        "A": Widen((T, day2 + H), (T + 5 * H, T + 6 * H))
    }
    # rows inside the last day's known hours are skipped
    assert uncovered(known, {"A": (day2 + timedelta(minutes=5), day2 + timedelta(minutes=6))}) == {}


def test_the_known_day_is_the_rows_last_day_and_merges_only_within_it() -> None:
    known = KnownExtents()
    evening = T.replace(hour=22)
    # rows from 22:xx to 01:xx the next day: the known day is the next day's part
    known.committed({"A": Widen((evening, evening + 4 * H), (evening, evening + 4 * H))})
    midnight = T.replace(hour=0) + 24 * H
    assert uncovered(known, {"A": (midnight, midnight + timedelta(minutes=1))}) == {}
    assert "A" in uncovered(known, {"A": (evening + timedelta(minutes=1), evening + H)})
    # the same day again: merged with what is known of it
    known.committed({"A": Widen((evening, midnight + 6 * H), (midnight + 5 * H, midnight + 6 * H))})
    assert uncovered(known, {"A": (midnight, midnight + 5 * H + timedelta(minutes=1))}) == {}


def test_known_extents_are_bounded() -> None:
    known = KnownExtents(limit=3)
    known.committed({"A": Widen((T, T + H), (T, T + H)), "B": Widen((T, T + H), (T, T + H))})
    known.committed({"C": Widen((T, T + H), (T, T + H)), "D": Widen((T, T + H), (T, T + H))})
    assert len(known) == 2  # over the limit: forgot, then learnt
    assert uncovered(known, {"A": (T, T)}) == {"A": Widen((T, T + H), (T, T + H))}


def test_rows_of_a_day_that_has_ended_are_always_written() -> None:
    """Their day's count (migration 0015) must go, even when its hours are known."""
    known = KnownExtents()
    known.committed({"A": Widen((T, T + H), (T, T + H))})
    inside = {"A": (T + timedelta(minutes=5), T + timedelta(minutes=6))}
    midnight = T.replace(hour=0) + 24 * H  # when the rows' day ends
    assert known.uncovered(inside, ended_before(midnight)) == {}  # it is still on
    assert known.uncovered(inside, ended_before(midnight + timedelta(seconds=1))) == {
        "A": Widen((T, T + H), (T, T + H))
    }
    assert ended_before(T + 24 * H) == T
