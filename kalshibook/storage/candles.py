"""The refresh of candle aggregates after late trades (and, re-exported, the candle reads).

Reads: :mod:`kalshibook.storage.candle_reads`. Assembly is pure: kalshibook.domain.candle_rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Literal, LiteralString

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
from kalshibook.storage.fetch import first_chunk_start

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
_RAW_TABLE: Final[dict[CandleSource, str]] = {
    "trades": "trades",
    "quotes": "quotes",
    "stats": "market_stats",
}
_CANDLES_BEFORE: Final[dict[CandleSource, LiteralString]] = {
    "trades": "SELECT EXISTS (SELECT FROM market.candles_trades_1m WHERE bucket < %(lo)s)",
    "quotes": "SELECT EXISTS (SELECT FROM market.candles_quotes_1m WHERE bucket < %(lo)s)",
    "stats": "SELECT EXISTS (SELECT FROM market.candles_stats_1m WHERE bucket < %(lo)s)",
}
"""Whether a source's 1m candles reach before its raw hypertable's first chunk: raw rows there
were dropped (a retention policy, ``drop_chunks``) and the candles outlive them."""


_ALL_DROPPED: Final = datetime.max.replace(tzinfo=UTC)


async def _retained_from(conn: AConn, source: CandleSource) -> datetime | None:
    """Where ``source``'s raw rows begin when some before were dropped while their candles were
    kept (None: nothing dropped under candles; :data:`_ALL_DROPPED`: no raw chunk is left). A
    refresh must not reach before it: it would recompute those candles from no rows and delete
    them (the drop marks the range changed)."""
    first = await first_chunk_start(conn, _RAW_TABLE[source]) or _ALL_DROPPED
    kept = await (await conn.execute(_CANDLES_BEFORE[source], {"lo": first})).fetchone()
    return first if kept is not None and kept[0] else None


TRADES_ONLY: Final[tuple[CandleSource, ...]] = ("trades",)
"""What a trade backfill refreshes: the aggregates of what it wrote."""


async def refresh_candles(
    conn: AConn,
    start: datetime,
    end: datetime,
    sources: tuple[CandleSource, ...] = ALL_SOURCES,
    progress: Callable[[str, datetime, datetime, float | None], None] | None = None,
) -> list[str]:
    """Re-materialise the candle continuous aggregates of ``sources`` over ``[start, end)``, in
    chain order.

    Only what was written needs a refresh: a trade backfill passes ``("trades",)``. A source some
    of whose raw rows were dropped (retention, ``drop_chunks``) while their candles were kept is
    refreshed only from where its rows begin, each level from its first whole bucket there: over
    the dropped range a refresh would recompute those candles from no rows and delete them (the
    drop marks the range changed); they, and a bucket partly in it, stay as they are.

    Windows are aligned as :func:`refresh_window` says (a refresh only recomputes buckets lying
    entirely inside its window, and never the bucket in progress: real-time aggregation serves
    that one). On the Apache edition the candle relations are plain views, always current:
    nothing to do. ``conn`` must be in autocommit mode (``refresh_continuous_aggregate`` runs
    several transactions and refuses a transaction block). Returns the relations refreshed (a
    level whose window lies inside its bucket in progress is skipped). ``progress(name, lo, hi,
    seconds)`` is called as each relation's refresh begins (``seconds`` None) and ends (a year of
    a busy source takes minutes).
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
        retained = {source: await _retained_from(conn, source) for source in sources}
        for name, level in CANDLE_CHAIN:
            source = next((s for s in sources if name.startswith(f"market.candles_{s}_")), None)
            if name not in caggs or source is None:
                continue
            window = refresh_window(start, end, level, now)
            floor = retained[source]
            if window is not None and floor is not None and window[0] < floor:
                lo = window[1] if floor == _ALL_DROPPED else period_ceil(floor, level)
                window = (lo, window[1]) if lo < window[1] else None
            if window is None:
                continue
            if progress is not None:
                progress(name, *window, None)
            began = time.monotonic()
            await cur.execute(REFRESH, (name, *window))
            done.append(name)
            if progress is not None:
                progress(name, *window, time.monotonic() - began)
    return done
