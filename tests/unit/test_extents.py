"""The writer's delta-extent logic (kalshibook.storage.extents): spans, hours, what to write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from kalshibook.storage.extents import KnownExtents, row_spans, widen_params

T = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)


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
    assert known.uncovered({"A": (lo, T + timedelta(minutes=59, seconds=59))}) == {"A": (T, T + H)}


def test_known_extents_skip_covered_markets_and_merge_the_others() -> None:
    known = KnownExtents()
    known.committed({"A": (T, T + 2 * H), "B": (T, T + H)})
    spans = {
        "A": (T + timedelta(minutes=1), T + H + timedelta(minutes=59)),  # inside: skipped
        "B": (T + timedelta(minutes=30), T + H),  # reaches the end hour itself: widened
        "C": (T, T),
    }
    assert known.uncovered(spans) == {"B": (T, T + 2 * H), "C": (T, T + H)}
    assert widen_params(known.uncovered(spans)) == {
        "tickers": ["B", "C"],
        "lo": [T, T],
        "hi": [T + 2 * H, T + H],
    }
    known.committed({"B": (T - H, T + H)})  # merged with what is known: never narrower
    assert known.uncovered({"B": (T - H, T + timedelta(minutes=59))}) == {}


def test_known_extents_are_bounded() -> None:
    known = KnownExtents(limit=3)
    known.committed({"A": (T, T + H), "B": (T, T + H)})
    known.committed({"C": (T, T + H), "D": (T, T + H)})  # over the limit: forgets, then learns
    assert len(known) == 2
    assert known.uncovered({"A": (T, T)}) == {"A": (T, T + H)}
