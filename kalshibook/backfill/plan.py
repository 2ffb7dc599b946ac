"""Pure planning of a backfill: which endpoint serves which window, candle chunks, candle rows.

Kalshi splits its history at ``/historical/cutoff``: trades created before ``trades_created_ts``
are served only by ``/historical/trades``, markets settled before ``market_settled_ts`` only by
``/historical/markets`` (and their candles only by ``/historical/markets/{t}/candlesticks``).
Every window here lies on whole seconds, so every millisecond of a window is complete (the REST
ranker needs that to give trades their exchange order).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final, NamedTuple

from kalshibook.kalshi.rest_models import MarketCandlestick, Ohlc
from kalshibook.storage.backfill_store import KalshiCandleRow

__all__ = (
    "CANDLE_PERIODS",
    "MAX_CANDLES_PER_REQUEST",
    "TradeWindow",
    "candle_chunks",
    "candle_row",
    "covered",
    "floor_s",
    "trade_windows",
)

CANDLE_PERIODS: Final = (1440, 60, 1)
"""Kalshi's candle periods, minutes (daily first: the cheapest)."""
MAX_CANDLES_PER_REQUEST: Final = 5000
FINAL_STATUSES: Final = frozenset({"finalized", "settled", "determined", "amended"})


class TradeWindow(NamedTuple):
    historical: bool
    """``/historical/trades`` (else ``/markets/trades``)."""
    start: datetime
    """Inclusive, a whole second."""
    end: datetime
    """Exclusive, a whole second."""


def floor_s(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(microsecond=0)


def trade_windows(
    *,
    start: datetime,
    end: datetime,
    cutoff: datetime,
    historical_market: bool,
) -> list[TradeWindow]:
    """The windows covering ``[start, end)`` (floored to seconds), routed by ``cutoff``."""
    lo, hi, cut = floor_s(start), floor_s(end), floor_s(cutoff)
    if hi <= lo:
        return []
    if historical_market:
        return [TradeWindow(True, lo, hi)]
    out: list[TradeWindow] = []
    if lo < cut:
        out.append(TradeWindow(True, lo, min(hi, cut)))
    if hi > cut:
        out.append(TradeWindow(False, max(lo, cut), hi))
    return out


def covered(
    trades_from: datetime | None, trades_through: datetime | None, now: datetime
) -> tuple[datetime, datetime] | None:
    """The range ``[from, through)`` a progress row says is loaded, never past ``now`` (a row
    saved at a ``--start`` in the future covered nothing); ``None`` when it says nothing."""
    if trades_from is None or trades_through is None:
        return None
    hi = min(trades_through, now)
    return min(trades_from, hi), hi


def trades_complete(status: str | None, close: datetime | None, through: datetime) -> bool:
    """The market can trade no more after ``through``."""
    return status in FINAL_STATUSES or (close is not None and close < through)


def candle_chunks(start: datetime, end: datetime, period_minutes: int) -> Iterator[tuple[int, int]]:
    """``(start_ts, end_ts)`` Unix-second ranges of at most :data:`MAX_CANDLES_PER_REQUEST`
    periods covering candle ends in ``[start, end]``."""
    step = period_minutes * 60 * MAX_CANDLES_PER_REQUEST
    lo = int(start.timestamp())
    hi = int(end.timestamp())
    while lo <= hi:
        top = min(hi, lo + step - 1)
        yield lo, top
        lo = top + 1


def candle_span(
    open_time: datetime | None,
    close_time: datetime | None,
    since: datetime | None,
    now: datetime,
) -> tuple[datetime, datetime] | None:
    """Candle ends to fetch: from the later of the open and ``since`` to a day after the close
    (the last daily candle ends at the New York midnight after it), never past ``now``."""
    lo = max(t for t in (open_time, since) if t is not None) if (open_time or since) else None
    if lo is None:
        return None
    hi = now if close_time is None else min(now, close_time + timedelta(days=1, hours=1))
    return (lo, hi) if lo < hi else None


def _o(v: Ohlc | None, field: str) -> Decimal | None:
    return None if v is None else getattr(v, field)


def candle_row(ticker: str, period_minutes: int, c: MarketCandlestick) -> KalshiCandleRow:
    p, b, a = c.price, c.yes_bid, c.yes_ask
    return KalshiCandleRow(
        ticker,
        period_minutes,
        datetime.fromtimestamp(c.end_period_ts, UTC),
        _o(p, "open_dollars"),
        _o(p, "high_dollars"),
        _o(p, "low_dollars"),
        _o(p, "close_dollars"),
        None if p is None else p.mean_dollars,
        None if p is None else p.previous_dollars,
        _o(b, "open_dollars"),
        _o(b, "high_dollars"),
        _o(b, "low_dollars"),
        _o(b, "close_dollars"),
        _o(a, "open_dollars"),
        _o(a, "high_dollars"),
        _o(a, "low_dollars"),
        _o(a, "close_dollars"),
        c.volume_fp if c.volume_fp is not None else Decimal(0),
        c.open_interest_fp,
    )
