"""Chunk intervals of the 1h and 1d candle materialisations (Community only).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

A continuous aggregate's materialisation hypertable gets ten times its source's chunk interval by
default: 10 days at every level here (1-day raw chunks). That suits the 1m level (a day of one
market's 1m candles lies in one or two chunks, ~14,000 rows per market and chunk), not the levels
above it, whose rows are 60 and 1,440 times fewer: a year of 1d candles spans 37-38 chunks per
source, and the API's read of one market's year (366 rows per source) planned and scanned 3 x 38
chunks. At 10M trades over 1,000 markets (bench/bench_candles.py, no parallel workers, warm):
3.4 ms planning + 5.3 ms execution with 10-day chunks, 0.5 + 2.2 ms with these; a month of 1h
candles 1.2 + 2.8 ms, 0.8 + 2.5 ms.

- 1d: 365 days (a year of 1d candles spans one or two chunks; a chunk holds at most one row per
  market and day: 3.65M rows at 10,000 markets a day; the 1d level is not compressed, 0004).
- 1h: 30 days (a month of 1h candles spans one or two chunks instead of three or four; a
  compressed segment holds 720 hourly rows of a market, not 240). The 1h compress-after (90 days
  by default) then compresses a chunk 90 to 120 days after its first hour.

``set_chunk_time_interval`` applies to chunks created from now on: on an existing database the
history keeps its 10-day chunks, new buckets go to chunks of the new size. A migration that
recreates one of these aggregates (as 0005 did for the trade aggregates) must set it again. The
Apache-2 edition has plain views (no materialisation): nothing to do.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COMMUNITY = "timescale"

# (continuous aggregate, chunk interval); the default before this revision was 10 days.
INTERVALS: tuple[tuple[str, str], ...] = tuple(
    (f"candles_{source}_{level}", interval)
    for level, interval in (("1h", "30 days"), ("1d", "365 days"))
    for source in ("trades", "quotes", "stats")
)
PREVIOUS = "10 days"
"""The interval 0002 gave them. Like the upgrade, a downgrade changes the interval of chunks
created afterwards only: chunks already made keep their size (both sizes read the same)."""

MAT_HYPERTABLE = """
SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)
FROM timescaledb_information.continuous_aggregates
WHERE view_schema = 'market' AND view_name = :name
"""
SET_INTERVAL = "SELECT set_chunk_time_interval(CAST(:hypertable AS regclass), CAST(:i AS interval))"


def _set(new: bool) -> None:
    bind = op.get_bind()
    edition = bind.execute(text("SELECT current_setting('timescaledb.license')")).scalar()
    if edition != COMMUNITY:
        return
    for name, interval in INTERVALS:
        hypertable = bind.execute(text(MAT_HYPERTABLE), {"name": name}).scalar()
        if hypertable is None:  # pragma: no cover - 0002/0005 create every one on Community
            continue
        bind.execute(
            text(SET_INTERVAL), {"hypertable": hypertable, "i": interval if new else PREVIOUS}
        )


def upgrade() -> None:
    _set(new=True)


def downgrade() -> None:
    _set(new=False)
