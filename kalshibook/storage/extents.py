"""The delta extents and days the collector's writer keeps (migrations 0009, 0015): pure logic.

Each COPY of deltas must leave every market's ``[first_hour, end_hour)`` in
``market.delta_extents`` covering the rows it inserted, and, per UTC day of those rows, the day's
``[first_hour, end_hour)`` in ``market.delta_days``, in the same transaction. Almost every batch
stays inside hours already recorded: a COPY worker remembers, per market, the extent and the
last day's hours it has seen committed (:class:`KnownExtents`; both only ever grow, so a
remembered one is never wider than the stored one) and writes only the markets whose rows fall
outside that day's hours, about once per market and hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, LiteralString, NamedTuple

__all__ = (
    "MAINTAIN_DELTA_EXTENTS",
    "WIDEN_DELTA_EXTENTS",
    "KnownExtents",
    "Span",
    "Widen",
    "ended_before",
    "row_spans",
    "widen_params",
)

MAINTAIN_DELTA_EXTENTS: Final[LiteralString] = (
    "SELECT set_config('kalshibook.delta_extents', 'maintained-days', false)"
)
"""Once per COPY worker connection (a session setting, not one more statement per batch): its
transactions keep the extents and the days themselves, so the statement trigger of migration
0015 leaves them complete. A writer of before 0015 (``'maintained'``: no days) marks them
incomplete."""
WIDEN_DELTA_EXTENTS: Final[LiteralString] = """
WITH days AS (
    INSERT INTO market.delta_days AS e (market_ticker, day, first_hour, end_hour)
    SELECT u.t, d.day, greatest(u.rows_lo, d.day), least(u.rows_hi, d.day + INTERVAL '24 hours')
    FROM unnest(%(tickers)s::text[], %(rows_lo)s::timestamptz[], %(rows_hi)s::timestamptz[])
         AS u(t, rows_lo, rows_hi)
    CROSS JOIN LATERAL generate_series(time_bucket(INTERVAL '1 day', u.rows_lo),
                                       u.rows_hi - INTERVAL '1 hour',
                                       INTERVAL '24 hours') AS d(day)
    ORDER BY u.t, d.day
    ON CONFLICT (market_ticker, day) DO UPDATE
    SET first_hour = least(e.first_hour, EXCLUDED.first_hour),
        end_hour = greatest(e.end_hour, EXCLUDED.end_hour),
        deltas = CASE WHEN EXCLUDED.day < %(ended_before)s THEN NULL ELSE e.deltas END,
        version = e.version + (EXCLUDED.day < %(ended_before)s)::int
    WHERE e.first_hour > EXCLUDED.first_hour OR e.end_hour < EXCLUDED.end_hour
       OR EXCLUDED.day < %(ended_before)s
)
INSERT INTO market.delta_extents AS e (market_ticker, first_hour, end_hour)
SELECT t, lo, hi
FROM unnest(%(tickers)s::text[], %(lo)s::timestamptz[], %(hi)s::timestamptz[]) AS u(t, lo, hi)
ORDER BY t
ON CONFLICT (market_ticker) DO UPDATE
SET first_hour = least(e.first_hour, EXCLUDED.first_hour),
    end_hour = greatest(e.end_hour, EXCLUDED.end_hour)
WHERE e.first_hour > EXCLUDED.first_hour OR e.end_hour < EXCLUDED.end_hour
"""
"""In the deltas' transaction, after their COPY: widen the given markets' extents to cover the
given hours, and each UTC day of the rows' own hours to cover its part of them. A day that had
ended when the batch was formed (``ended_before``: a day starting before it ended more than 24
hours before) loses its count and gets a new version (migration 0015: the count may miss these
rows; kalshibook.storage.delta_counts counts it again). Every statement
takes its rows in ticker (and day) order, all the extents before all the days, so concurrent
batches cannot deadlock."""

HOUR: Final = timedelta(hours=1)
DAY: Final = timedelta(days=1)
MAX_KNOWN: Final = 200_000
"""Markets a worker remembers; past that it forgets them all (and relearns by writing)."""

Span = tuple[datetime, datetime]
"""``(first_hour, end_hour)``."""


class Widen(NamedTuple):
    """What one market's batch writes: its extent, and its rows' own hours (split into days)."""

    extent: Span
    rows: Span


def _hour(ts: datetime) -> datetime:
    utc = ts.astimezone(UTC)
    return utc.replace(minute=0, second=0, microsecond=0)


def row_spans(rows: Sequence[Sequence[Any]]) -> dict[str, Span]:
    """Per market, the earliest and the latest ``ts`` of the rows (``ts``, ``market_ticker``
    first in each row)."""
    spans: dict[str, list[datetime]] = {}
    for row in rows:
        ts = row[0]
        pair = spans.get(row[1])
        if pair is None:
            spans[row[1]] = [ts, ts]
        elif ts < pair[0]:
            pair[0] = ts
        elif ts > pair[1]:
            pair[1] = ts
    return {t: (lo, hi) for t, (lo, hi) in spans.items()}


def widen_params(widened: dict[str, Widen], ended_before: datetime) -> dict[str, Any]:
    """:data:`WIDEN_DELTA_EXTENTS`' parameters for ``widened`` (in ticker order); days starting
    before ``ended_before`` have ended (see :func:`ended_before`)."""
    tickers = sorted(widened)
    return {
        "ended_before": ended_before,
        "tickers": tickers,
        "lo": [widened[t].extent[0] for t in tickers],
        "hi": [widened[t].extent[1] for t in tickers],
        "rows_lo": [widened[t].rows[0] for t in tickers],
        "rows_hi": [widened[t].rows[1] for t in tickers],
    }


def ended_before(now: datetime) -> datetime:
    """Days starting before this had ended at ``now``: a write into one makes its count stale."""
    return now.astimezone(UTC) - DAY


def _merge(a: Span, b: Span) -> Span:
    return min(a[0], b[0]), max(a[1], b[1])


class KnownExtents:
    """Per market, the extent and the last day's hours one COPY worker has seen committed (never
    wider than the stored ones)."""

    def __init__(self, limit: int = MAX_KNOWN) -> None:
        self._known: dict[str, tuple[Span, Span]] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._known)

    def uncovered(self, spans: dict[str, Span], ended: datetime) -> dict[str, Widen]:
        """Of the rows' ``(earliest, latest)`` times per market, the markets not inside the
        known hours of a day, or with rows in a day that had ended (starting before ``ended``:
        its count must go), with what to write: the extent (the rows' hours merged with the
        known extent) and the rows' own hours."""
        out: dict[str, Widen] = {}
        for ticker, (lo, hi) in spans.items():
            known = self._known.get(ticker)
            if (
                known is not None
                and known[1][0] <= lo
                and hi < known[1][1]
                and _hour(lo).replace(hour=0) >= ended
            ):
                continue
            hours = (_hour(lo), _hour(hi) + HOUR)
            out[ticker] = Widen(hours if known is None else _merge(hours, known[0]), hours)
        return out

    def committed(self, widened: dict[str, Widen]) -> None:
        """``widened`` is stored and committed: its extents and its rows' last day cover at
        least these hours from now on."""
        if len(self._known) + len(widened) > self._limit:
            self._known.clear()
        for ticker, (extent, (rows_lo, rows_hi)) in widened.items():
            last_day = (rows_hi - HOUR).replace(hour=0)
            day = (max(rows_lo, last_day), rows_hi)
            known = self._known.get(ticker)
            if known is not None:
                extent = _merge(extent, known[0])
                if known[1][0].replace(hour=0) == last_day:
                    day = _merge(day, known[1])
            self._known[ticker] = (extent, day)
