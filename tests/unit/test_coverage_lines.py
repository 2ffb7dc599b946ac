"""``kalshibook status --market``'s coverage lines (pure rendering)."""

from __future__ import annotations

from datetime import UTC, datetime

from kalshibook.ops.coverage import coverage_lines
from kalshibook.storage.coverage import Coverage, CoverageGap, SourceSpan

T = datetime(2026, 1, 12, 14, tzinfo=UTC)


def test_lines() -> None:
    cov = Coverage(
        ticker="X",
        trades_from=T,
        trades_to=T,
        trade_sources=[SourceSpan(source="live", first=T, last=T)],
        backfill_from=None,
        backfill_through=None,
        backfill_complete=False,
        books_from=T,
        kalshi_candles_from=None,
        kalshi_candles_to=None,
        gaps=[CoverageGap(start=T, end=T, reason="disconnect")],
    )
    lines = list(coverage_lines("X", cov))
    assert lines == [
        "coverage X:",
        "  trades 2026-01-12T14:00:00Z .. 2026-01-12T14:00:00Z",
        "    live: 2026-01-12T14:00:00Z .. 2026-01-12T14:00:00Z",
        "  backfill: never run for this market",
        "  books from 2026-01-12T14:00:00Z (live capture only: order books cannot be backfilled, "
        "Kalshi keeps none)",
        "  gaps: 1 (most recent first)",
        "    2026-01-12T14:00:00Z .. 2026-01-12T14:00:00Z disconnect",
    ]
    done = cov.__class__(
        **{
            **{f: getattr(cov, f) for f in cov.__struct_fields__},
            "backfill_through": T,
            "backfill_complete": True,
            "gaps": [],
        }
    )
    text = "\n".join(coverage_lines("X", done))
    assert "complete; Kalshi candles - .. -" in text
    assert "gaps: none" in text
    assert list(coverage_lines("Y", None)) == ["coverage Y: unknown market"]
