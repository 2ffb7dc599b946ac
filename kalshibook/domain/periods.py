"""Candle periods (pure): UTC minutes and hours, New York days.

``1m`` and ``1h`` periods are UTC minutes/hours; ``1d`` periods run from New York midnight to the
next New York midnight (23 h or 25 h on DST days), as Kalshi's daily candles do. A period is
labelled by its ``start``; ``end = period_end(start)``. Semantics: :mod:`kalshibook.domain.candles`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Final, Literal, get_args
from zoneinfo import ZoneInfo

__all__ = (
    "INTERVALS",
    "NEW_YORK",
    "Interval",
    "count_periods",
    "iter_periods",
    "period_ceil",
    "period_end",
    "period_floor",
    "period_width",
)

Interval = Literal["1m", "1h", "1d"]
INTERVALS: Final[tuple[Interval, ...]] = get_args(Interval)
NEW_YORK: Final = ZoneInfo("America/New_York")
_FIXED: Final[dict[str, timedelta]] = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1)}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=16_384)  # about 45 years of days; a day's midnight never changes
def _ny_midnight(day: date) -> datetime:
    # New York changes clocks at 02:00, so local midnight always exists and is unambiguous.
    return datetime.combine(day, time(0), tzinfo=NEW_YORK).astimezone(UTC)


def period_floor(ts: datetime, interval: Interval) -> datetime:
    """Start of the period containing ``ts`` (aware UTC datetime)."""
    if ts.tzinfo is None:
        raise ValueError("period_floor needs an aware datetime")
    if interval == "1d":
        return _ny_midnight(ts.astimezone(NEW_YORK).date())
    width = _FIXED[interval]
    return _EPOCH + ((ts - _EPOCH) // width) * width


def period_end(start: datetime, interval: Interval) -> datetime:
    """End of the period starting at ``start`` (exclusive; the next period's start)."""
    if interval == "1d":
        return _ny_midnight(start.astimezone(NEW_YORK).date() + timedelta(days=1))
    return start + _FIXED[interval]


def period_ceil(ts: datetime, interval: Interval) -> datetime:
    """The smallest period boundary at or after ``ts``."""
    floor = period_floor(ts, interval)
    return floor if floor == ts else period_end(floor, interval)


def iter_periods(start: datetime, end: datetime, interval: Interval) -> Iterator[datetime]:
    """Starts of the periods whose start lies in ``[period_floor(start), end)``."""
    current = period_floor(start, interval)
    while current < end:
        yield current
        current = period_end(current, interval)


def count_periods(start: datetime, end: datetime, interval: Interval) -> int:
    """``len(list(iter_periods(start, end, interval)))`` without iterating."""
    first = period_floor(start, interval)
    if end <= first:
        return 0
    if interval == "1d":
        last = period_floor(end - timedelta(microseconds=1), interval)
        return (last.astimezone(NEW_YORK).date() - first.astimezone(NEW_YORK).date()).days + 1
    width = _FIXED[interval]
    return -(-(end - first) // width)


def period_width(interval: Interval) -> timedelta | None:
    """The fixed width of ``1m``/``1h`` periods; None for ``1d`` (New York days vary)."""
    return _FIXED.get(interval)
