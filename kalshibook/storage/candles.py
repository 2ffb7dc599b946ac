"""The refresh of candle aggregates after late trades (and, re-exported, the candle reads).

Reads: :mod:`kalshibook.storage.candle_reads`. Assembly is pure: kalshibook.domain.candle_rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from psycopg import AsyncConnection

from kalshibook.domain.periods import Interval, period_ceil, period_floor
from kalshibook.errors import StorageError
from kalshibook.storage.candle_reads import (
    CandleData,
    fetch_candle_data,
    market_exists,
    read_candle_rows,
    read_candles,
)

__all__ = (
    "ALL_SOURCES",
    "CANDLE_CHAIN",
    "TRADES_ONLY",
    "CandleData",
    "CandleSource",
    "fetch_candle_data",
    "market_exists",
    "read_candle_rows",
    "read_candles",
    "refresh_candles",
    "refresh_window",
)

AConn = AsyncConnection[Any]

# --- refresh ------------------------------------------------------------------------------------

# Chain order: each level after the one it is built from (1d reads 1h reads 1m).
CANDLE_CHAIN: Final[tuple[tuple[str, Interval], ...]] = (
    ("market.candles_trades_1m", "1m"),
    ("market.candles_quotes_1m", "1m"),
    ("market.candles_stats_1m", "1m"),
    ("market.candles_trades_1h", "1h"),
    ("market.candles_quotes_1h", "1h"),
    ("market.candles_stats_1h", "1h"),
    ("market.candles_trades_1d", "1d"),
    ("market.candles_quotes_1d", "1d"),
    ("market.candles_stats_1d", "1d"),
)

CONTINUOUS_AGGREGATES: Final = """
SELECT view_schema || '.' || view_name FROM timescaledb_information.continuous_aggregates
WHERE view_schema = 'market'
"""
# The database's clock, the one the refresh policies use.
DB_NOW: Final = "SELECT now()"
REFRESH: Final = "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)"


def refresh_window(
    start: datetime, end: datetime, level: Interval, now: datetime
) -> tuple[datetime, datetime] | None:
    """The window ``refresh_candles`` gives the ``level`` aggregates, or None when there is none.

    - Every level gets the same window, ``[start, end)`` widened to New York midnights (which are
      also whole UTC hours and minutes): the 1h level then only reads 1m rows that were refreshed
      just before it, and the 1d level 1h rows, even for hours/days only partly inside
      ``[start, end)``. A refresh only recomputes what changed since the last refresh (docs:
      Refresh continuous aggregates, "Manually refresh"), so the wider windows cost little.
    - The window never reaches into the bucket still in progress at ``now``: materialising it
      would move the cagg's watermark to that bucket's end, and real-time aggregation only adds
      raw data *after* the watermark, so the bucket would then show the rows of the refresh time
      until a policy re-materialises it (up to a day for 1d). TimescaleDB docs, "Troubleshoot
      continuous aggregates: watermark is in the future"; timescale/timescaledb#3877.
    """
    lo = period_floor(start, "1d")
    hi = min(period_ceil(end, "1d"), period_floor(now, level))
    return (lo, hi) if lo < hi else None


CandleSource = Literal["trades", "quotes", "stats"]
ALL_SOURCES: Final[tuple[CandleSource, ...]] = ("trades", "quotes", "stats")
TRADES_ONLY: Final[tuple[CandleSource, ...]] = ("trades",)
"""What a trade backfill refreshes: the aggregates of what it wrote."""


async def refresh_candles(
    conn: AConn,
    start: datetime,
    end: datetime,
    sources: tuple[CandleSource, ...] = ALL_SOURCES,
) -> list[str]:
    """Re-materialise the candle continuous aggregates of ``sources`` over ``[start, end)``, in
    chain order.

    Only what was written needs a refresh: a trade backfill passes ``("trades",)``. Refreshing the
    quotes or stats aggregates over a range whose raw rows a retention policy dropped would
    recompute those candles from nothing and delete them (the drop marks the range changed).

    Windows are aligned as :func:`refresh_window` says (a refresh only recomputes buckets lying
    entirely inside its window, and never the bucket in progress: real-time aggregation serves
    that one). On the Apache edition the candle relations are plain views, always current:
    nothing to do. ``conn`` must be in autocommit mode (``refresh_continuous_aggregate`` runs
    several transactions and refuses a transaction block). Returns the relations refreshed (a
    level whose window lies inside its bucket in progress is skipped).
    """
    if end <= start:
        raise ValueError("refresh window is empty: end must be after start")
    if not conn.autocommit:
        raise StorageError("refresh_candles needs an autocommit connection")
    async with conn.cursor() as cur:
        await cur.execute(CONTINUOUS_AGGREGATES)
        caggs = {str(r[0]) for r in await cur.fetchall()}
        done: list[str] = []
        if not caggs:
            return done
        await cur.execute(DB_NOW)
        row = await cur.fetchone()
        assert row is not None
        now: datetime = row[0]
        wanted = tuple(f"market.candles_{source}_" for source in sources)
        for name, level in CANDLE_CHAIN:
            if name not in caggs or not name.startswith(wanted):
                continue
            window = refresh_window(start, end, level, now)
            if window is None:
                continue
            await cur.execute(REFRESH, (name, *window))
            done.append(name)
    return done
