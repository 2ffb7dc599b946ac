"""Read queries used by the API: named SQL constants with parameters, typed rows.

No SQL here is built from strings at run time (:data:`STATUS_CHANNELS` is composed once, at
import, from one template and a fixed list of tables, with quoted identifiers). Optional filters
use the pattern ``(%(x)s::type IS NULL OR col = %(x)s)``; the API's connections run with
``plan_cache_mode = force_custom_plan`` so the planner folds the unused branches away and keeps
index and chunk exclusion. Keyset pagination: each listing orders by a unique key and resumes with
a row comparison ``(k1, k2) > (%(c1)s, %(c2)s)``, so a walk returns every row exactly once even
while rows are inserted. Lists fetch ``limit + 1`` rows; the extra row only signals ``has_more``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, NamedTuple, TypeVar

from psycopg import AsyncConnection, sql

from kalshibook.storage.fetch import fetch_all, fetch_one, keyset

__all__ = (
    "ChannelRow",
    "CoverageRow",
    "EventRow",
    "MarketRow",
    "SeriesRow",
    "SettlementRow",
)

Conn = AsyncConnection[Any]
_R = TypeVar("_R")

# -- rows ----------------------------------------------------------------------------------------


class SeriesRow(NamedTuple):
    ticker: str
    title: str | None
    category: str | None
    frequency: str | None
    tags: list[str] | None
    fee_type: str | None
    fee_multiplier: Decimal | None
    first_seen_at: datetime
    updated_at: datetime


class EventRow(NamedTuple):
    event_ticker: str
    series_ticker: str | None
    title: str | None
    sub_title: str | None
    category: str | None
    mutually_exclusive: bool | None
    collateral_return_type: str | None
    strike_date: datetime | None
    strike_period: str | None
    first_seen_at: datetime
    updated_at: datetime


class MarketRow(NamedTuple):
    ticker: str
    event_ticker: str
    series_ticker: str | None
    market_type: str | None
    title: str | None
    yes_sub_title: str | None
    no_sub_title: str | None
    status: str
    created_time: datetime | None
    open_time: datetime | None
    close_time: datetime | None
    expected_expiration_time: datetime | None
    latest_expiration_time: datetime | None
    strike_type: str | None
    floor_strike: Decimal | None
    cap_strike: Decimal | None
    functional_strike: str | None
    custom_strike: Any
    price_level_structure: str | None
    price_ranges: Any
    result: str | None
    settlement_value: Decimal | None
    first_seen_at: datetime
    updated_at: datetime
    settled_at: datetime | None
    """The settlement's ``settled_at`` (``market.settlements``), if settled."""


class SettlementRow(NamedTuple):
    market_ticker: str
    event_ticker: str | None
    series_ticker: str | None
    result: str
    settlement_value: Decimal | None
    determined_at: datetime | None
    settled_at: datetime | None
    source: str
    confirmed: bool


class ChannelRow(NamedTuple):
    table: str
    last_received_at: datetime | None
    last_ts: datetime | None
    first_ts: datetime | None
    approx_rows: int
    newest_rows: int
    """How many of the newest rows (at most 1,000) ``last_received_at`` was taken from."""


class CoverageRow(NamedTuple):
    series: int
    events: int
    markets: int
    settlements: int
    gaps_last_24h: int


# -- reference data ------------------------------------------------------------------------------

LIST_SERIES = """
SELECT ticker, title, category, frequency, tags, fee_type, fee_multiplier, first_seen_at,
       updated_at
FROM market.series
WHERE (%(category)s::text IS NULL OR category = %(category)s::text)
  AND (%(after)s::text IS NULL OR ticker > %(after)s::text)
ORDER BY ticker
LIMIT %(limit)s
"""

GET_SERIES = """
SELECT ticker, title, category, frequency, tags, fee_type, fee_multiplier, first_seen_at,
       updated_at
FROM market.series
WHERE ticker = %(ticker)s
"""

LIST_EVENTS = """
SELECT e.event_ticker, e.series_ticker, e.title, e.sub_title, e.category, e.mutually_exclusive,
       e.collateral_return_type, e.strike_date, e.strike_period, e.first_seen_at, e.updated_at
FROM market.events e
WHERE (%(series)s::text IS NULL OR e.series_ticker = %(series)s::text)
  AND (%(category)s::text IS NULL OR e.category = %(category)s::text)
  AND (%(statuses)s::text[] IS NULL OR EXISTS (
        SELECT 1 FROM market.markets m
        WHERE m.event_ticker = e.event_ticker AND m.status = ANY(%(statuses)s::text[])))
  AND (%(after)s::text IS NULL OR e.event_ticker > %(after)s::text)
ORDER BY e.event_ticker
LIMIT %(limit)s
"""

GET_EVENT = """
SELECT event_ticker, series_ticker, title, sub_title, category, mutually_exclusive,
       collateral_return_type, strike_date, strike_period, first_seen_at, updated_at
FROM market.events
WHERE event_ticker = %(event)s
"""

SERIES_EVENTS = """
SELECT event_ticker, series_ticker, title, sub_title, category, mutually_exclusive,
       collateral_return_type, strike_date, strike_period, first_seen_at, updated_at
FROM market.events
WHERE series_ticker = %(series)s
  AND (%(after)s::text IS NULL OR event_ticker > %(after)s::text)
ORDER BY event_ticker
LIMIT %(limit)s
"""

_MARKETS: Final = """
SELECT m.ticker, m.event_ticker, m.series_ticker, m.market_type, m.title, m.yes_sub_title,
       m.no_sub_title, m.status, m.created_time, m.open_time, m.close_time,
       m.expected_expiration_time, m.latest_expiration_time, m.strike_type, m.floor_strike,
       m.cap_strike, m.functional_strike, m.custom_strike, m.price_level_structure,
       m.price_ranges, m.result, m.settlement_value, m.first_seen_at, m.updated_at,
       (SELECT s.settled_at FROM market.settlements s WHERE s.market_ticker = m.ticker)
FROM market.markets m
"""
"""The columns of :class:`MarketRow`, in its order; the three market reads add their filter."""
_OF_LISTING: Final = """WHERE (%(event)s::text IS NULL OR m.event_ticker = %(event)s::text)
  AND (%(series)s::text IS NULL OR m.series_ticker = %(series)s::text
       OR m.event_ticker IN (SELECT event_ticker FROM market.events
                             WHERE series_ticker = %(series)s::text))
  AND (%(statuses)s::text[] IS NULL OR m.status = ANY(%(statuses)s::text[]))
  AND (%(after)s::text IS NULL OR m.ticker > %(after)s::text)
ORDER BY m.ticker
LIMIT %(limit)s
"""
_OF_TICKER: Final = "WHERE m.ticker = %(ticker)s\n"
_OF_EVENT: Final = """WHERE m.event_ticker = %(event)s
  AND (%(after)s::text IS NULL OR m.ticker > %(after)s::text)
ORDER BY m.ticker
LIMIT %(limit)s
"""
LIST_MARKETS: Final = _MARKETS + _OF_LISTING
GET_MARKET: Final = _MARKETS + _OF_TICKER
EVENT_MARKETS: Final = _MARKETS + _OF_EVENT

MARKET_KNOWN = """
SELECT EXISTS (SELECT 1 FROM market.markets WHERE ticker = %(ticker)s)
    OR EXISTS (SELECT 1 FROM market.trade_extents WHERE market_ticker = %(ticker)s)
    OR EXISTS (SELECT 1 FROM market.book_extents WHERE market_ticker = %(ticker)s)
"""

# -- trades and settlements ----------------------------------------------------------------------

LIST_SETTLEMENTS = """
SELECT s.market_ticker, s.event_ticker, s.series_ticker, s.result, s.settlement_value,
       s.determined_at, s.settled_at, s.source, s.confirmed
FROM market.settlements s
WHERE (%(event)s::text IS NULL OR s.event_ticker = %(event)s::text)
  AND (%(series)s::text IS NULL OR s.series_ticker = %(series)s::text)
  AND (%(result)s::text IS NULL OR s.result = %(result)s::text)
  AND (%(start)s::timestamptz IS NULL OR s.settled_at >= %(start)s::timestamptz)
  AND (%(end)s::timestamptz IS NULL OR s.settled_at < %(end)s::timestamptz)
  AND (%(c_tk)s::text IS NULL
       OR (%(c_ts)s::timestamptz IS NULL AND s.settled_at IS NULL
           AND s.market_ticker > %(c_tk)s::text)
       OR (%(c_ts)s::timestamptz IS NOT NULL
           AND (s.settled_at IS NULL
                OR (s.settled_at, s.market_ticker) > (%(c_ts)s::timestamptz, %(c_tk)s::text))))
ORDER BY s.settled_at NULLS LAST, s.market_ticker
LIMIT %(limit)s
"""

GET_SETTLEMENT = """
SELECT market_ticker, event_ticker, series_ticker, result, settlement_value, determined_at,
       settled_at, source, confirmed
FROM market.settlements
WHERE market_ticker = %(ticker)s
"""

# -- data quality --------------------------------------------------------------------------------

_CHANNEL: Final = """
SELECT {name} AS "table", newest.last_received_at,
       (SELECT max({ts}) FROM {relation} WHERE {ts} >= {recent}) AS last_ts,
       (SELECT min({ts}) FROM {relation} WHERE {ts} < {early}) AS first_ts,
       approximate_row_count({regclass}) AS approx_rows, newest.rows AS newest_rows
FROM (SELECT max({received}) AS last_received_at, count(*) AS rows
      FROM (SELECT {received} FROM {relation} WHERE {ts} >= {recent}
            ORDER BY {ts} DESC LIMIT 1000) r) AS newest
"""
_CHANNEL_TABLES: Final = (
    ("trades", "received_at", "ts"),
    ("orderbook_snapshots", "received_at", "ts"),
    ("orderbook_deltas", "received_at", "ts"),
    ("quotes", "received_at", "ts"),
    ("market_stats", "received_at", "ts"),
    ("lifecycle_events", "received_at", "ts"),
    ("book_gaps", "detected_at", "from_ts"),
)
"""``(table, arrival column, time column)`` of every table :data:`STATUS_CHANNELS` reports."""
STATUS_CHANNELS: Final = sql.SQL("UNION ALL").join(
    sql.SQL(_CHANNEL).format(
        name=sql.Literal(table),
        received=sql.Identifier(received),
        ts=sql.Identifier(ts),
        relation=sql.Identifier("market", table),
        regclass=sql.Literal(f"market.{table}"),
        recent=sql.Placeholder(f"{table}_recent"),
        early=sql.Placeholder(f"{table}_early"),
    )
    for table, received, ts in _CHANNEL_TABLES
)
"""Freshness per table: the newest ``received_at`` among the 1,000 newest rows by exchange time
(an index scan, never a full scan), the time span and TimescaleDB's approximate row count; one
``UNION ALL`` branch per table, composed once from :data:`_CHANNEL`. The newest rows and the
latest time are read from the table's two newest chunks (``<table>_recent``: the older one's
start), the earliest time from its two oldest (``<table>_early``: the newer one's end), as
:data:`STATUS_CHUNKS` gives them: over the whole table every reading planned every chunk (~1 s
after a year: the deltas have four chunks a day). That is the whole table's answer when those
chunks hold 1,000 rows and a first and last time (chunks partition time); otherwise (future rows,
chunks emptied by a DELETE, a quiet table) the table is read again over its
:data:`STATUS_WIDER` newest and oldest chunks, and only if those are not enough either over all
of them (:func:`status_inexact`): a quiet table's status planned every one of its chunks."""
STATUS_CHUNKS: Final = """
SELECT hypertable_name,
       (array_agg(range_start ORDER BY range_start DESC))[LEAST(%(k)s, count(*))],
       (array_agg(range_end ORDER BY range_end))[LEAST(%(k)s, count(*))],
       count(*)
FROM timescaledb_information.chunks
WHERE hypertable_schema = 'market' AND hypertable_name = ANY(%(tables)s)
GROUP BY hypertable_name
"""
"""Per hypertable with chunks: the start of its ``k``-th newest chunk, the end of its ``k``-th
oldest (its last's and first's, when it has fewer) and its number of chunks. A table without
chunks has no rows: its bounds stay NULL and its branch reads nothing."""
STATUS_FIRST: Final = 2
STATUS_WIDER: Final = 32
"""Chunks at each end read first, then for a table they were not enough for."""
_WHOLE_TABLE: Final = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))

STATUS_COVERAGE = """
SELECT (SELECT count(*) FROM market.series) AS series,
       (SELECT count(*) FROM market.events) AS events,
       (SELECT count(*) FROM market.markets) AS markets,
       (SELECT count(*) FROM market.settlements) AS settlements,
       (SELECT count(*) FROM market.book_gaps
        WHERE from_ts > now() - interval '24 hours') AS gaps_last_24h
"""

MARKETS_BY_STATUS = """
SELECT status, count(*) FROM market.markets GROUP BY status ORDER BY status
"""

HEALTH_PROBE = "SELECT 1"


# -- functions -----------------------------------------------------------------------------------


async def list_series(
    conn: Conn, *, category: str | None, after: str | None, limit: int
) -> list[SeriesRow]:
    return await fetch_all(
        conn, SeriesRow, LIST_SERIES, {"category": category, "after": after, "limit": limit}
    )


async def get_series(conn: Conn, ticker: str) -> SeriesRow | None:
    return await fetch_one(conn, SeriesRow, GET_SERIES, {"ticker": ticker})


async def series_events(
    conn: Conn, series: str, *, after: str | None, limit: int
) -> list[EventRow]:
    params = {"series": series, "after": after, "limit": limit}
    return await fetch_all(conn, EventRow, SERIES_EVENTS, params)


async def list_events(
    conn: Conn,
    *,
    series: str | None,
    statuses: list[str] | None,
    after: str | None,
    limit: int,
    category: str | None = None,
) -> list[EventRow]:
    params = {"series": series, "category": category, "statuses": statuses, "after": after}
    return await fetch_all(conn, EventRow, LIST_EVENTS, {**params, "limit": limit})


async def get_event(conn: Conn, event_ticker: str) -> EventRow | None:
    return await fetch_one(conn, EventRow, GET_EVENT, {"event": event_ticker})


async def event_markets(
    conn: Conn, event_ticker: str, *, after: str | None = None, limit: int | None = None
) -> list[MarketRow]:
    """One page of an event's markets by ticker (``limit=None``: all of them, unbounded)."""
    params = {"event": event_ticker, "after": after, "limit": limit}
    return await fetch_all(conn, MarketRow, EVENT_MARKETS, params)


async def list_markets(
    conn: Conn,
    *,
    event: str | None,
    series: str | None,
    statuses: list[str] | None,
    after: str | None,
    limit: int,
) -> list[MarketRow]:
    params = {"event": event, "series": series, "statuses": statuses, "after": after}
    return await fetch_all(conn, MarketRow, LIST_MARKETS, {**params, "limit": limit})


async def get_market(conn: Conn, ticker: str) -> MarketRow | None:
    return await fetch_one(conn, MarketRow, GET_MARKET, {"ticker": ticker})


async def market_known(conn: Conn, ticker: str) -> bool:
    """True when the market is in ``market.markets`` or has any book or trade data (read
    extents, migration 0006: no hypertable is read)."""
    cur = await conn.execute(MARKET_KNOWN, {"ticker": ticker})
    row = await cur.fetchone()
    return bool(row and row[0])


async def list_settlements(
    conn: Conn,
    *,
    event: str | None,
    series: str | None,
    result: str | None,
    start: datetime | None,
    end: datetime | None,
    after: tuple[datetime | None, str] | None,
    limit: int,
) -> list[SettlementRow]:
    params = {
        "event": event,
        "series": series,
        "result": result,
        "start": start,
        "end": end,
        **keyset(("c_ts", "c_tk"), after),
        "limit": limit,
    }
    return await fetch_all(conn, SettlementRow, LIST_SETTLEMENTS, params)


async def get_settlement(conn: Conn, ticker: str) -> SettlementRow | None:
    return await fetch_one(conn, SettlementRow, GET_SETTLEMENT, {"ticker": ticker})


STATUS_TABLES: Final = [t for t, _, _ in _CHANNEL_TABLES]
"""The ``tables`` parameter of :data:`STATUS_CHUNKS`."""


def status_channel_params(
    chunk_rows: Iterable[Sequence[Any]],
    whole: Iterable[str] = (),
    wider: Iterable[Sequence[Any]] = (),
) -> dict[str, Any]:
    """:data:`STATUS_CHANNELS`' parameters from the rows of :data:`STATUS_CHUNKS`, the rows in
    ``wider`` (of more chunks) replacing their tables', the tables in ``whole`` read over all
    their chunks (pure)."""
    params: dict[str, Any] = {f"{t}_{k}": None for t in STATUS_TABLES for k in ("recent", "early")}
    for table, recent, early, _chunks in (*chunk_rows, *wider):
        params.update({f"{table}_recent": recent, f"{table}_early": early})
    for table in whole:
        params.update({f"{table}_recent": _WHOLE_TABLE[0], f"{table}_early": _WHOLE_TABLE[1]})
    return params


def status_inexact(
    rows: Iterable[ChannelRow], chunk_rows: Iterable[Sequence[Any]], k: int = STATUS_FIRST
) -> list[str]:
    """The tables whose reading over their ``k`` newest and oldest chunks may differ from the
    whole table's (pure): more than ``k`` chunks, and fewer than 1,000 newest rows or no first or
    last time in those chunks."""
    chunks = {str(r[0]): int(r[3]) for r in chunk_rows}
    return [
        r.table
        for r in rows
        if chunks.get(r.table, 0) > k
        and (r.newest_rows < 1000 or r.last_ts is None or r.first_ts is None)
    ]


async def status_channels(conn: Conn) -> list[ChannelRow]:
    cur = await conn.execute(STATUS_CHUNKS, {"tables": STATUS_TABLES, "k": STATUS_FIRST})
    first = await cur.fetchall()
    rows = await fetch_all(conn, ChannelRow, STATUS_CHANNELS, status_channel_params(first))
    flagged = status_inexact(rows, first)
    if not flagged:
        return rows
    cur = await conn.execute(STATUS_CHUNKS, {"tables": flagged, "k": STATUS_WIDER})
    wider = await cur.fetchall()
    params = status_channel_params(first, wider=wider)
    rows = await fetch_all(conn, ChannelRow, STATUS_CHANNELS, params)
    whole = status_inexact(rows, wider, STATUS_WIDER)
    if whole:
        params = status_channel_params(first, whole, wider)
        rows = await fetch_all(conn, ChannelRow, STATUS_CHANNELS, params)
    return rows


async def status_coverage(conn: Conn) -> tuple[CoverageRow, dict[str, int]]:
    coverage = await fetch_one(conn, CoverageRow, STATUS_COVERAGE)
    assert coverage is not None
    cur2 = await conn.execute(MARKETS_BY_STATUS)
    by_status = {str(status): int(n) for status, n in await cur2.fetchall()}
    return coverage, by_status


async def probe(conn: Conn) -> None:
    await conn.execute(HEALTH_PROBE)
