"""Coverage lines of ``kalshibook status --market T`` (pure rendering)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from kalshibook.storage.coverage import Coverage

__all__ = ("coverage_lines",)


def _t(v: datetime | None) -> str:
    return "-" if v is None else v.isoformat().replace("+00:00", "Z")


def coverage_lines(ticker: str, cov: Coverage | None) -> Iterator[str]:
    if cov is None:
        yield f"coverage {ticker}: unknown market"
        return
    yield f"coverage {ticker}:"
    yield f"  trades {_t(cov.trades_from)} .. {_t(cov.trades_to)}"
    for s in cov.trade_sources:
        yield f"    {s.source}: {_t(s.first)} .. {_t(s.last)}"
    if cov.backfill_through is not None:
        state = "complete" if cov.backfill_complete else "open (a new run continues from here)"
        yield (
            f"  backfill {_t(cov.backfill_from)} .. {_t(cov.backfill_through)} {state}; "
            f"Kalshi candles {_t(cov.kalshi_candles_from)} .. {_t(cov.kalshi_candles_to)}"
        )
    else:
        yield "  backfill: never run for this market"
    yield (
        f"  books from {_t(cov.books_from)} (live capture only: order books cannot be "
        "backfilled, Kalshi keeps none)"
    )
    if cov.gaps:
        yield f"  gaps: {len(cov.gaps)} (most recent first)"
        for g in cov.gaps[:10]:
            yield f"    {_t(g.start)} .. {_t(g.end)} {g.reason}"
    else:
        yield "  gaps: none"
