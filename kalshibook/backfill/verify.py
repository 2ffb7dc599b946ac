"""``kalshibook verify``'s comparison: kalshibook's candles (from its trades) against Kalshi's.

Pure: one period of one market from each side (:class:`CandleValues`), compared field by field.
Kalshi labels a candle by the end of its period (``end_period_ts``; daily candles end at New York
midnight); kalshibook by its start. Kalshi's volume-weighted mean is rounded to 1/10,000 of a
dollar, so a mean within :data:`MEAN_TOLERANCE` matches. Open interest is compared only where
kalshibook recorded it (it comes from the live ticker channel, never from a backfill).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final, NamedTuple
from zoneinfo import ZoneInfo

__all__ = (
    "FIELDS",
    "MEAN_TOLERANCE",
    "CandleValues",
    "Mismatch",
    "VerifyReport",
    "consistency_problems",
    "differences",
    "period_start",
)

NEW_YORK: Final = ZoneInfo("America/New_York")
MEAN_TOLERANCE: Final = Decimal("0.0001")
FIELDS: Final = ("volume", "open", "high", "low", "close", "mean", "open_interest")
_ZERO: Final = Decimal(0)


class CandleValues(NamedTuple):
    volume: Decimal
    open: Decimal | None
    high: Decimal | None
    low: Decimal | None
    close: Decimal | None
    mean: Decimal | None
    open_interest: Decimal | None = None


EMPTY: Final = CandleValues(_ZERO, None, None, None, None, None, None)


def period_start(end: datetime, period_minutes: int) -> datetime:
    """The start of the Kalshi period ending at ``end`` (New York days for 1440)."""
    if period_minutes != 1440:
        return end - timedelta(minutes=period_minutes)
    local = end.astimezone(NEW_YORK) - timedelta(hours=12)
    return datetime(local.year, local.month, local.day, tzinfo=NEW_YORK).astimezone(end.tzinfo)


def differences(kalshi: CandleValues, ours: CandleValues | None) -> dict[str, Decimal]:
    """Field -> absolute difference, for the fields that differ (empty: an exact match).
    A price present on one side only differs by that price."""
    mine = ours or EMPTY
    out: dict[str, Decimal] = {}
    if kalshi.volume != mine.volume:
        out["volume"] = abs(kalshi.volume - mine.volume)
    for f in ("open", "high", "low", "close", "mean"):
        a, b = getattr(kalshi, f), getattr(mine, f)
        if a is None and b is None:
            continue
        diff = abs((a if a is not None else _ZERO) - (b if b is not None else _ZERO))
        if a is None or b is None:
            diff = a if a is not None else b
        if diff > (MEAN_TOLERANCE if f == "mean" and a is not None and b is not None else _ZERO):
            out[f] = diff
    oi_k, oi_m = kalshi.open_interest, mine.open_interest
    if oi_k is not None and oi_m is not None and oi_k != oi_m:
        out["open_interest"] = abs(oi_k - oi_m)
    return out


def consistency_problems(kalshi: CandleValues, part: CandleValues) -> list[str]:
    """What is wrong with ``part`` (some of a period's trades) against Kalshi's full candle:
    its volume must not exceed Kalshi's, its prices and mean must lie inside Kalshi's low/high,
    and Kalshi's mean inside its own low/high."""
    out: list[str] = []
    if part.volume > kalshi.volume:
        out.append(f"volume {part.volume} > Kalshi's {kalshi.volume}")
    lo, hi = kalshi.low, kalshi.high
    if part.volume and (lo is None or hi is None):
        out.append("trades in a period Kalshi reports without trades")
        return out
    if lo is None or hi is None:
        return out
    for name in ("open", "high", "low", "close", "mean"):
        v = getattr(part, name)
        if v is not None and not lo - MEAN_TOLERANCE <= v <= hi + MEAN_TOLERANCE:
            out.append(f"{name} {v} outside Kalshi's [{lo}, {hi}]")
    if kalshi.mean is not None and not lo <= kalshi.mean <= hi:
        out.append(f"Kalshi's mean {kalshi.mean} outside its own [{lo}, {hi}]")
    return out


class Mismatch(NamedTuple):
    ticker: str
    period_minutes: int
    end: datetime
    field: str
    kalshi: Decimal | None
    ours: Decimal | None
    diff: Decimal


class VerifyReport:
    """Accumulates comparisons; :meth:`largest` orders mismatches by size (volume first)."""

    def __init__(self) -> None:
        self.markets: set[str] = set()
        self.periods = 0
        self.exact = 0
        self.mismatched_periods = 0
        self.mismatches: list[Mismatch] = []

    def add(
        self,
        ticker: str,
        period_minutes: int,
        end: datetime,
        kalshi: CandleValues,
        ours: CandleValues | None,
    ) -> None:
        self.markets.add(ticker)
        self.periods += 1
        diffs = differences(kalshi, ours)
        if not diffs:
            self.exact += 1
            return
        self.mismatched_periods += 1
        mine = ours or EMPTY
        for f, d in diffs.items():
            self.mismatches.append(
                Mismatch(ticker, period_minutes, end, f, getattr(kalshi, f), getattr(mine, f), d)
            )

    def largest(self, n: int) -> list[Mismatch]:
        return sorted(self.mismatches, key=lambda m: (m.field != "volume", -m.diff))[:n]

    def summary_lines(self, n: int = 10) -> Iterable[str]:
        yield (
            f"verify: markets={len(self.markets)} periods={self.periods} exact={self.exact} "
            f"mismatched={self.mismatched_periods}"
        )
        for m in self.largest(n):
            yield (
                f"  {m.ticker} {m.period_minutes}m ending {m.end.isoformat()} {m.field}: "
                f"kalshi={m.kalshi} kalshibook={m.ours} diff={m.diff}"
            )
