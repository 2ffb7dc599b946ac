"""The delta extents the collector's writer keeps (migration 0009): pure logic, no I/O.

Each COPY of deltas must leave every market's ``[first_hour, end_hour)`` in
``market.delta_extents`` covering the rows it inserted, in the same transaction. Almost every
batch stays inside hours already recorded: a COPY worker remembers the extents it has seen
committed (:class:`KnownExtents`; extents only ever grow, so a remembered one is never wider than
the stored one) and writes only the markets whose rows fall outside them, about once per market
and hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, LiteralString

__all__ = (
    "MAINTAIN_DELTA_EXTENTS",
    "WIDEN_DELTA_EXTENTS",
    "KnownExtents",
    "Span",
    "row_spans",
    "widen_params",
)

MAINTAIN_DELTA_EXTENTS: Final[LiteralString] = (
    "SELECT set_config('kalshibook.delta_extents', 'maintained', false)"
)
"""Once per COPY worker connection (a session setting, not one more statement per batch): its
transactions keep the extents themselves, so the statement trigger of migration 0009 leaves them
complete."""
WIDEN_DELTA_EXTENTS: Final[LiteralString] = """
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
given hours. Rows are taken in ticker order, so concurrent batches cannot deadlock."""

HOUR: Final = timedelta(hours=1)
MAX_KNOWN: Final = 200_000
"""Markets a worker remembers; past that it forgets them all (and relearns by writing)."""

Span = tuple[datetime, datetime]
"""``(first_hour, end_hour)``."""


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


def widen_params(spans: dict[str, Span]) -> dict[str, list[Any]]:
    """:data:`WIDEN_DELTA_EXTENTS`' parameters for ``spans`` (in ticker order)."""
    tickers = sorted(spans)
    return {
        "tickers": tickers,
        "lo": [spans[t][0] for t in tickers],
        "hi": [spans[t][1] for t in tickers],
    }


class KnownExtents:
    """The extents one COPY worker has seen committed (never wider than the stored ones)."""

    def __init__(self, limit: int = MAX_KNOWN) -> None:
        self._known: dict[str, Span] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._known)

    def uncovered(self, spans: dict[str, Span]) -> dict[str, Span]:
        """Of the rows' ``(earliest, latest)`` times per market, the markets not inside a known
        extent, with the hours to write: the rows' hours merged with the known extent."""
        out: dict[str, Span] = {}
        for ticker, (lo, hi) in spans.items():
            known = self._known.get(ticker)
            if known is not None and known[0] <= lo and hi < known[1]:
                continue
            hours = (_hour(lo), _hour(hi) + HOUR)
            out[ticker] = (
                hours if known is None else (min(hours[0], known[0]), max(hours[1], known[1]))
            )
        return out

    def committed(self, spans: dict[str, Span]) -> None:
        """``spans`` are stored and committed: they cover at least these hours from now on."""
        if len(self._known) + len(spans) > self._limit:
            self._known.clear()
        for ticker, (lo, hi) in spans.items():
            known = self._known.get(ticker)
            self._known[ticker] = (
                (lo, hi) if known is None else (min(lo, known[0]), max(hi, known[1]))
            )
