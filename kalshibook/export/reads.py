"""Reading export rows from the database: server-side cursors, one bounded batch at a time."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import re
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from kalshibook.export.copy_out import copy_blocks
from kalshibook.export.files import BadValue, bad_value
from kalshibook.export.tables import RAW_TABLES, SETTLEMENTS, TableSpec, arrow_schema

__all__ = (
    "BATCH_ROWS",
    "all_markets",
    "day_bounds",
    "day_fingerprints",
    "has_book_events",
    "markets_of",
    "raw_batches",
    "settlement_batches",
    "settlements_fingerprint",
)

AConn = psycopg.AsyncConnection[Any]
BATCH_ROWS: Final = 20_000

MARKETS_OF: Final = """
SELECT m.ticker, m.event_ticker, ARRAY[m.series_ticker, e.series_ticker]
FROM market.markets m LEFT JOIN market.events e ON e.event_ticker = m.event_ticker
WHERE m.event_ticker = ANY(%(events)s::text[]) OR m.series_ticker = ANY(%(series)s::text[])
   OR e.series_ticker = ANY(%(series)s::text[])
ORDER BY m.ticker
"""
"""A series' markets are those with its ``series_ticker`` and those of its events (a market row
may have no series of its own), as the API's ``series_ticker`` filters select them."""
ALL_MARKETS: Final = """
SELECT ticker FROM market.markets
UNION SELECT market_ticker FROM market.trade_extents
WHERE first_hour < %(end)s AND end_hour > %(start)s
UNION SELECT market_ticker FROM market.book_extents
WHERE first_hour < %(end)s AND end_hour > %(start)s
UNION SELECT market_ticker FROM market.delta_extents
WHERE first_hour < %(end)s AND end_hour > %(start)s
ORDER BY 1
"""
"""Every market: its reference row, or trades, snapshots or deltas in ``[start, end)`` (the read
extents, one row per market: no scan of the data). The delta extents may miss deltas written
outside the collector until ``kalshibook rebuild-extents``; such a market is still selected by
its snapshots or trades, or when named."""
# The f-strings below interpolate only the static table specs of export/tables.py.
DAY_FINGERPRINTS: Final = {
    name: f"""
SELECT ({spec.time_column} AT TIME ZONE 'UTC')::date AS day, {spec.fingerprint}
FROM {spec.relation}
WHERE market_ticker = %(ticker)s AND {spec.time_column} >= %(start)s
  AND {spec.time_column} < %(end)s
GROUP BY 1 ORDER BY 1
"""
    for name, spec in RAW_TABLES.items()
}
RAW_ROWS: Final = {
    name: f"""
SELECT {spec.select_list} FROM {spec.relation}
WHERE market_ticker = %(ticker)s AND {spec.time_column} >= %(start)s
  AND {spec.time_column} < %(end)s
ORDER BY {spec.order_by}
"""
    for name, spec in RAW_TABLES.items()
}
RAW_COPY: Final = {
    name: f"COPY ({query.strip()}) TO STDOUT (FORMAT csv)" for name, query in RAW_ROWS.items()
}
BLOCK_BYTES: Final = 8 << 20
SOURCE_DAYS: Final = """
SELECT day FROM (
    SELECT (ts AT TIME ZONE %(tz)s)::date AS day FROM market.trades
    WHERE market_ticker = %(ticker)s AND ts >= %(start)s AND ts < %(end)s
    UNION SELECT (ts AT TIME ZONE %(tz)s)::date FROM market.quotes
    WHERE market_ticker = %(ticker)s AND ts >= %(start)s AND ts < %(end)s
    UNION SELECT (ts AT TIME ZONE %(tz)s)::date FROM market.market_stats
    WHERE market_ticker = %(ticker)s AND ts >= %(start)s AND ts < %(end)s
) d WHERE day >= %(first)s AND day < %(last)s ORDER BY day
"""
"""The days of the candle files of ``[start, end)``: a 1m or 1h period starts in the UTC day of
its rows; a 1d period starts at the New York midnight of its rows' New York date, which lies in
the UTC day of that date (04:00 or 05:00 UTC): ``tz`` is ``UTC`` or ``America/New_York``."""
BOOK_DAYS: Final = {
    "book_samples": """
SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date AS day FROM (
    SELECT ts FROM market.orderbook_snapshots
    WHERE market_ticker = %(ticker)s AND ts >= %(start)s AND ts < %(end)s
    UNION ALL SELECT ts FROM market.orderbook_deltas
    WHERE market_ticker = %(ticker)s AND ts >= %(start)s AND ts < %(end)s
) e ORDER BY day
""",
    "trades_bbo": """
SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date AS day FROM market.trades
WHERE market_ticker = %(ticker)s AND ts >= %(start)s AND ts < %(end)s ORDER BY day
""",
}
BOOK_EVENT_IN: Final = """
SELECT EXISTS (SELECT 1 FROM market.orderbook_snapshots
               WHERE market_ticker = %(ticker)s AND ts >= %(start)s AND ts < %(end)s)
    OR EXISTS (SELECT 1 FROM market.orderbook_deltas
               WHERE market_ticker = %(ticker)s AND ts >= %(start)s AND ts < %(end)s)
"""
"""Whether ``[start, end)`` holds a book event of the market: the rule of ``BOOK_DAYS``."""
SETTLEMENTS_FINGERPRINT: Final = f"""
SELECT {SETTLEMENTS.fingerprint} FROM market.settlements WHERE market_ticker = ANY(%(tickers)s)
"""
SETTLEMENT_ROWS: Final = f"""
SELECT {SETTLEMENTS.select_list} FROM market.settlements
WHERE market_ticker = ANY(%(tickers)s) ORDER BY {SETTLEMENTS.order_by}
"""


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


async def all_markets(conn: AConn, start: datetime, end: datetime) -> list[str]:
    """Every market of ``market.markets`` and every market with trades, snapshots or deltas in
    ``[start, end)`` (``ALL_MARKETS``), with or without a reference row."""
    async with conn.cursor() as cur:
        await cur.execute(ALL_MARKETS, {"start": start, "end": end})
        return [str(r[0]) for r in await cur.fetchall()]


async def markets_of(
    conn: AConn, events: Sequence[str], series: Sequence[str]
) -> list[tuple[str, str | None, tuple[str, ...]]]:
    """``(ticker, event, its series)`` of the markets (``market.markets``) of the named events and
    series (:data:`MARKETS_OF`), in one query: the caller also learns which names matched none."""
    params = {"events": list(events), "series": list(series)}
    async with conn.cursor() as cur:
        await cur.execute(MARKETS_OF, params)
        return [
            (str(r[0]), r[1], tuple(s for s in r[2] if s is not None)) for r in await cur.fetchall()
        ]


async def day_fingerprints(
    conn: AConn, spec: TableSpec, ticker: str, start: datetime, end: datetime
) -> list[tuple[date, str]]:
    """The UTC days of ``[start, end)`` holding rows of the market, each with its fingerprint."""
    params = {"ticker": ticker, "start": start, "end": end}
    async with conn.cursor() as cur:
        await cur.execute(DAY_FINGERPRINTS[spec.name], params)
        return [(r[0], str(r[1])) for r in await cur.fetchall()]


async def source_days(
    conn: AConn, ticker: str, start: datetime, end: datetime, interval: str = "1m"
) -> list[date]:
    """The UTC days of ``[start, end)`` in which a candle period of ``interval`` with a trade,
    quote or stats row starts (the days a candle file can have rows, each candle in one file).

    A 1d period starts at New York midnight, on the UTC day of its New York date: rows up to
    05:00 UTC of the day after ``end``'s last day still belong to a period starting before
    ``end``, and rows before 04:00 UTC of ``start`` to a period starting before ``start``."""
    daily = interval == "1d"
    params = {
        "ticker": ticker,
        "start": start,
        "end": end + timedelta(days=1) if daily else end,
        "tz": "America/New_York" if daily else "UTC",
        "first": start.astimezone(UTC).date(),
        "last": end.astimezone(UTC).date(),
    }
    async with conn.cursor() as cur:
        await cur.execute(SOURCE_DAYS, params)
        return [r[0] for r in await cur.fetchall()]


async def book_days(
    conn: AConn, ticker: str, start: datetime, end: datetime, table: str
) -> list[date]:
    """Days with book events (``book_samples``) or trades (``trades_bbo``)."""
    async with conn.cursor() as cur:
        await cur.execute(BOOK_DAYS[table], {"ticker": ticker, "start": start, "end": end})
        return [r[0] for r in await cur.fetchall()]


async def has_book_events(conn: AConn, ticker: str, start: datetime, end: datetime) -> bool:
    """Whether the market has a snapshot or delta in ``[start, end)`` (a day :func:`book_days`
    lists for ``book_samples``), without reading them all."""
    async with conn.cursor() as cur:
        await cur.execute(BOOK_EVENT_IN, {"ticker": ticker, "start": start, "end": end})
        row = await cur.fetchone()
    return bool(row and row[0])


async def _named(
    conn: AConn, query: str, params: dict[str, Any], batch_rows: int
) -> AsyncGenerator[list[tuple[Any, ...]], None]:
    async with conn.transaction(), conn.cursor(name="kalshibook_export") as cur:
        await cur.execute(query, params)
        while rows := await cur.fetchmany(batch_rows):
            yield rows


async def raw_batches(
    conn: AConn,
    spec: TableSpec,
    ticker: str,
    start: datetime,
    end: datetime,
    block_bytes: int = BLOCK_BYTES,
) -> AsyncGenerator[pa.Table, None]:
    """The market's rows of ``[start, end)`` in the table's order, as Arrow tables of about
    ``block_bytes`` of COPY text each.

    PostgreSQL streams them with ``COPY (SELECT ...) TO STDOUT (FORMAT csv)`` (times in UTC),
    read in blocks of whole rows (:func:`~kalshibook.export.copy_out.copy_blocks`); each block is
    parsed by pyarrow's CSV reader straight into the exact column types (a value off its decimal
    scale raises, never rounds). CSV rather than text or binary COPY: pyarrow parses it natively.
    No exported text column can hold a line break (tickers, enums, uuids, jsonb text); CSV
    quoting would carry one anyway.
    """
    query = RAW_COPY[spec.name]
    params = {"ticker": ticker, "start": start, "end": end}
    schema = arrow_schema(spec)
    read = pacsv.ReadOptions(column_names=[c.name for c in spec.columns], use_threads=False)
    convert = pacsv.ConvertOptions(
        column_types=schema,
        true_values=["t"],
        false_values=["f"],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )

    def parse(block: bytearray) -> pa.Table:  # pa.BufferReader: read in place, no copy
        try:
            return pacsv.read_csv(
                pa.BufferReader(block), read_options=read, convert_options=convert
            )
        except pa.ArrowInvalid as exc:
            raise _csv_bad_value(block, schema, exc) from None

    # Each block is parsed in a worker thread (pyarrow releases the GIL) while the next one is
    # read and the previous one written: at most two parsed blocks and one raw block in memory.
    parsing: asyncio.Future[pa.Table] | None = None
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL TimeZone = 'UTC'")
            # closed on any exit (an error, a cancel): the COPY is cancelled and drained before
            # the transaction ends, not left running on the connection
            async with aclosing(copy_blocks(conn, query, params, block_bytes)) as blocks:
                async for block in blocks:
                    ready, parsing = parsing, asyncio.ensure_future(asyncio.to_thread(parse, block))
                    if ready is not None:
                        yield await ready
        if parsing is not None:
            ready, parsing = parsing, None
            yield await ready
    finally:
        if parsing is not None:  # closed early: the thread ends on its own, its table dropped
            parsing.cancel()
            await asyncio.gather(parsing, return_exceptions=True)


_CSV_ERROR: Final = re.compile(r"In CSV column #(\d+): Row #(\d+): (.*)", re.DOTALL)


def _csv_bad_value(block: bytearray, schema: pa.Schema, exc: pa.ArrowInvalid) -> BadValue:
    """The column and value pyarrow's CSV reader refused (it names only their positions)."""
    found = _CSV_ERROR.search(str(exc))
    if found is None:
        return BadValue(f"a stored value cannot be converted to its export type: {exc}")
    col, row, reason = int(found[1]), int(found[2]), found[3].strip()
    field = schema.field(col)
    lines = csv.reader(io.StringIO(block.decode("utf-8", "replace")))
    value = next(itertools.islice(lines, row - 1, None), [])  # rows count from 1, no header
    text = value[col] if col < len(value) else "?"
    return bad_value(field.name, text, field.type, reason)


async def settlements_fingerprint(conn: AConn, tickers: Sequence[str]) -> str:
    async with conn.cursor() as cur:
        await cur.execute(SETTLEMENTS_FINGERPRINT, {"tickers": list(tickers)})
        row = await cur.fetchone()
    return str(row[0]) if row else ""


def settlement_batches(
    conn: AConn, tickers: Sequence[str], batch_rows: int = BATCH_ROWS
) -> AsyncGenerator[list[tuple[Any, ...]], None]:
    return _named(conn, SETTLEMENT_ROWS, {"tickers": list(tickers)}, batch_rows)
