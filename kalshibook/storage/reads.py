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

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, LiteralString, NamedTuple, TypeVar, cast

from psycopg import AsyncConnection, pq, sql
from psycopg.rows import args_row

from kalshibook.domain.book import OrderBook
from kalshibook.errors import BookError
from kalshibook.storage.windows import read_windows

__all__ = (
    "BookAt",
    "ChannelRow",
    "CoverageRow",
    "DeltaRow",
    "EventRow",
    "GapRow",
    "MarketRow",
    "SeriesRow",
    "SettlementRow",
    "SnapshotInfo",
    "book_at",
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


class DeltaRow(NamedTuple):
    ts: datetime
    side: str
    price: Decimal
    delta: Decimal
    epoch: int
    sid: int
    seq: int
    received_at: datetime


class GapRow(NamedTuple):
    market_ticker: str
    from_ts: datetime
    to_ts: datetime
    reason: str
    sid: int | None
    detected_at: datetime


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

LIST_MARKETS = """
SELECT m.ticker, m.event_ticker, m.series_ticker, m.market_type, m.title, m.yes_sub_title,
       m.no_sub_title, m.status, m.created_time, m.open_time, m.close_time,
       m.expected_expiration_time, m.latest_expiration_time, m.strike_type, m.floor_strike,
       m.cap_strike, m.functional_strike, m.custom_strike, m.price_level_structure,
       m.price_ranges, m.result, m.settlement_value, m.first_seen_at, m.updated_at
FROM market.markets m
WHERE (%(event)s::text IS NULL OR m.event_ticker = %(event)s::text)
  AND (%(series)s::text IS NULL OR m.series_ticker = %(series)s::text
       OR m.event_ticker IN (SELECT event_ticker FROM market.events
                             WHERE series_ticker = %(series)s::text))
  AND (%(statuses)s::text[] IS NULL OR m.status = ANY(%(statuses)s::text[]))
  AND (%(after)s::text IS NULL OR m.ticker > %(after)s::text)
ORDER BY m.ticker
LIMIT %(limit)s
"""

GET_MARKET = """
SELECT ticker, event_ticker, series_ticker, market_type, title, yes_sub_title, no_sub_title,
       status, created_time, open_time, close_time, expected_expiration_time,
       latest_expiration_time, strike_type, floor_strike, cap_strike, functional_strike,
       custom_strike, price_level_structure, price_ranges, result, settlement_value,
       first_seen_at, updated_at
FROM market.markets
WHERE ticker = %(ticker)s
"""

EVENT_MARKETS = """
SELECT ticker, event_ticker, series_ticker, market_type, title, yes_sub_title, no_sub_title,
       status, created_time, open_time, close_time, expected_expiration_time,
       latest_expiration_time, strike_type, floor_strike, cap_strike, functional_strike,
       custom_strike, price_level_structure, price_ranges, result, settlement_value,
       first_seen_at, updated_at
FROM market.markets
WHERE event_ticker = %(event)s
  AND (%(after)s::text IS NULL OR ticker > %(after)s::text)
ORDER BY ticker
LIMIT %(limit)s
"""

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

# -- order book ----------------------------------------------------------------------------------

_BOOK_BASE = """
WITH snap AS (
    SELECT ts, epoch, sid, seq, source, yes_bids::text AS yes_bids, no_bids::text AS no_bids
    FROM market.orderbook_snapshots
    WHERE market_ticker = %(ticker)s AND ts <= %(at)s AND ts >= %(since)s{until}
    ORDER BY ts DESC, epoch DESC, seq DESC NULLS LAST
    LIMIT 1
)
SELECT snap.ts, snap.epoch, snap.seq, snap.source, snap.yes_bids, snap.no_bids,
       gap.from_ts, gap.to_ts, gap.reason
FROM (SELECT 1) AS one
LEFT JOIN snap ON true
LEFT JOIN LATERAL (
    SELECT g.from_ts, g.to_ts, g.reason
    FROM market.book_gaps g
    WHERE g.market_ticker = %(ticker)s
      AND g.from_ts <= %(at)s
      AND (g.to_ts > %(at)s OR g.from_ts > COALESCE(snap.ts, '-infinity'::timestamptz))
    ORDER BY g.from_ts DESC
    LIMIT 1
) AS gap ON true
"""
BOOK_BASE: Final = _BOOK_BASE.format(until="")
BOOK_BASE_IN_EXTENT: Final = _BOOK_BASE.format(until=" AND ts < %(until)s")
"""The latest snapshot in ``[since, at]`` and the latest gap that makes the book incomplete: one
containing ``at`` (``from_ts <= at < to_ts``) or one that began after that snapshot. ``since``
(and ``until``, the end of the market's snapshots) keep the planner to the chunks where that
snapshot can be; :func:`book_at` widens them when nothing is found. Snapshots
in one millisecond are taken in feed order (epoch, then seq)."""

BOOK_DELTAS = """
SELECT side, (price * 1000000)::bigint, (delta * 100)::bigint, ts, seq
FROM market.orderbook_deltas
WHERE market_ticker = %(ticker)s
  AND epoch = %(epoch)s
  AND ts >= %(from_ts)s AND ts <= %(at)s
  AND seq > %(after_seq)s
ORDER BY seq
LIMIT %(limit)s
"""
"""Deltas of the snapshot's epoch after its seq with ``ts <= at``; ``from_ts`` only bounds the
chunks scanned (a slack before the snapshot time absorbs clock differences). ``limit``: the first
``REPLAY_BATCH`` (the whole replay, usually), or None for all of them, streamed."""

FIRST_SNAPSHOT_AFTER = """
SELECT ts FROM market.orderbook_snapshots
WHERE market_ticker = %(ticker)s AND ts > %(at)s AND ts >= %(since)s AND ts < %(until)s
ORDER BY ts
LIMIT 1
"""
"""The market's first snapshot after ``at`` in ``[since, until)``: asked of the first hour of the
market's book extent, then of the whole extent (the first hour's rows may have been removed:
retention drops chunks, and an extent only ever grows)."""

DELTAS_IN_WINDOW = """
SELECT ts, side, price, delta, epoch, sid, seq, received_at
FROM market.orderbook_deltas
WHERE market_ticker = %(ticker)s
  AND ts >= %(lo)s::timestamptz AND ts < %(hi)s::timestamptz
  AND (%(c_ts)s::timestamptz IS NULL
       OR (ts, epoch, seq) > (%(c_ts)s::timestamptz, %(c_epoch)s::bigint, %(c_seq)s::bigint))
ORDER BY ts, epoch, seq
LIMIT %(limit)s
"""
"""One window of a deltas page (kalshibook.storage.windows): feed order inside a millisecond."""
BOOK_EXTENT = """
SELECT first_hour, end_hour FROM market.book_extents WHERE market_ticker = %(ticker)s
"""
"""The hours holding the market's snapshots (migration 0006): no deltas before its first one."""
_DELTA_EXTENT = """
SELECT {book}s.complete, d.first_hour, d.end_hour
FROM (SELECT 1) AS one
LEFT JOIN market.delta_extents_state AS s ON true
LEFT JOIN market.delta_extents AS d ON d.market_ticker = %(ticker)s{join}
"""
DELTA_EXTENT: Final = _DELTA_EXTENT.format(book="", join="")
"""The hours holding the market's deltas, and whether the extents are complete (migration 0009:
kept by the collector's writer; marked incomplete when anything else writes deltas)."""
DELTAS_BOUNDS: Final = _DELTA_EXTENT.format(
    book="b.first_hour, ",
    join="\nLEFT JOIN market.book_extents AS b ON b.market_ticker = %(ticker)s",
)
"""The market's first snapshot hour and its delta extent, in one round trip."""
DELTAS_HORIZON = timedelta(days=1)
"""How far past the present an open-ended deltas page may look (clock skew margin)."""

LIST_GAPS = """
SELECT market_ticker, from_ts, to_ts, reason, sid, detected_at
FROM market.book_gaps
WHERE market_ticker = %(ticker)s
  AND (%(start)s::timestamptz IS NULL OR to_ts > %(start)s::timestamptz)
  AND (%(end)s::timestamptz IS NULL OR from_ts < %(end)s::timestamptz)
  AND (%(c_from)s::timestamptz IS NULL
       OR (from_ts, detected_at, to_ts, reason)
          > (%(c_from)s::timestamptz, %(c_det)s::timestamptz, %(c_to)s::timestamptz,
             %(c_reason)s::text))
ORDER BY from_ts, detected_at, to_ts, reason
LIMIT %(limit)s
"""
"""Gaps overlapping ``[start, end)``."""

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
chunks emptied by a DELETE, a quiet table) the table is read again over all its chunks
(:func:`status_inexact`)."""
STATUS_CHUNKS: Final = """
SELECT hypertable_name,
       (array_agg(range_start ORDER BY range_start DESC))[LEAST(2, count(*))],
       (array_agg(range_end ORDER BY range_end))[LEAST(2, count(*))],
       count(*)
FROM timescaledb_information.chunks
WHERE hypertable_schema = 'market' AND hypertable_name = ANY(%(tables)s)
GROUP BY hypertable_name
"""
"""Per hypertable with chunks: the start of its second newest chunk, the end of its second oldest
(its only chunk's, when it has one) and its number of chunks. A table without chunks has no rows:
its bounds stay NULL and its branch reads nothing."""
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


async def _fetch_all(
    conn: Conn,
    row: Callable[..., _R],
    query: LiteralString | sql.Composed,
    params: Mapping[str, Any] | None = None,
) -> list[_R]:
    """Every row of one of the constant queries above, built by ``row``."""
    async with conn.cursor(row_factory=args_row(row)) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def _fetch_one(
    conn: Conn,
    row: Callable[..., _R],
    query: LiteralString,
    params: Mapping[str, Any] | None = None,
) -> _R | None:
    """The first row of one of the constant queries above, or ``None``."""
    async with conn.cursor(row_factory=args_row(row)) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


def _keyset(names: tuple[str, ...], after: Sequence[Any] | None) -> dict[str, Any]:
    """The cursor parameters of a keyset listing: ``names`` bound to the parts of ``after`` (all
    ``None`` on the first page)."""
    if not after:
        return dict.fromkeys(names)
    return dict(zip(names, after, strict=True))


async def list_series(
    conn: Conn, *, category: str | None, after: str | None, limit: int
) -> list[SeriesRow]:
    return await _fetch_all(
        conn, SeriesRow, LIST_SERIES, {"category": category, "after": after, "limit": limit}
    )


async def get_series(conn: Conn, ticker: str) -> SeriesRow | None:
    return await _fetch_one(conn, SeriesRow, GET_SERIES, {"ticker": ticker})


async def series_events(
    conn: Conn, series: str, *, after: str | None, limit: int
) -> list[EventRow]:
    params = {"series": series, "after": after, "limit": limit}
    return await _fetch_all(conn, EventRow, SERIES_EVENTS, params)


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
    return await _fetch_all(conn, EventRow, LIST_EVENTS, {**params, "limit": limit})


async def get_event(conn: Conn, event_ticker: str) -> EventRow | None:
    return await _fetch_one(conn, EventRow, GET_EVENT, {"event": event_ticker})


async def event_markets(
    conn: Conn, event_ticker: str, *, after: str | None = None, limit: int | None = None
) -> list[MarketRow]:
    """One page of an event's markets by ticker (``limit=None``: all of them, unbounded)."""
    params = {"event": event_ticker, "after": after, "limit": limit}
    return await _fetch_all(conn, MarketRow, EVENT_MARKETS, params)


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
    return await _fetch_all(conn, MarketRow, LIST_MARKETS, {**params, "limit": limit})


async def get_market(conn: Conn, ticker: str) -> MarketRow | None:
    return await _fetch_one(conn, MarketRow, GET_MARKET, {"ticker": ticker})


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
        **_keyset(("c_ts", "c_tk"), after),
        "limit": limit,
    }
    return await _fetch_all(conn, SettlementRow, LIST_SETTLEMENTS, params)


async def get_settlement(conn: Conn, ticker: str) -> SettlementRow | None:
    return await _fetch_one(conn, SettlementRow, GET_SETTLEMENT, {"ticker": ticker})


class DeltaSpan(NamedTuple):
    """Every delta of the market has ``lo <= ts < hi`` (``lo == hi``: it has none)."""

    lo: datetime
    hi: datetime


_NO_DELTAS: Final = DeltaSpan(datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC))


def delta_span_of(row: Sequence[Any]) -> DeltaSpan | None:
    """``(complete, first_hour, end_hour)`` of :data:`DELTA_EXTENT` as a span in UTC; None when
    the extents are incomplete (or their state row is missing: ``complete`` NULL), i.e. the
    deltas' times are unknown (pure)."""
    complete, first_hour, end_hour = row
    if not complete:
        return None
    if first_hour is None:
        return _NO_DELTAS  # complete extents and none for the market: it has no deltas
    return DeltaSpan(first_hour.astimezone(UTC), end_hour.astimezone(UTC))


async def delta_span(conn: Conn, ticker: str) -> DeltaSpan | None:
    """Where the market's deltas lie (see :func:`delta_span_of`)."""
    cur = await conn.execute(DELTA_EXTENT, {"ticker": ticker})
    row = await cur.fetchone()
    assert row is not None  # one row, always
    return delta_span_of(row)


async def list_deltas(
    conn: Conn,
    *,
    ticker: str,
    start: datetime | None,
    end: datetime | None,
    after: tuple[datetime, int, int] | None,
    limit: int,
) -> list[DeltaRow]:
    """A page of the market's deltas in feed order, read in windows from its first snapshot to
    the end of its delta extent (or the present, when the extents are incomplete)."""
    cur = await conn.execute(DELTAS_BOUNDS, {"ticker": ticker})
    bounds = await cur.fetchone()
    assert bounds is not None  # one row, always
    if bounds[0] is None:
        return []  # no snapshot, no book: deltas are recorded only after one
    # deltas follow the first snapshot, stamped at most DELTA_SLACK before it (they may outlast
    # the last one)
    lo = bounds[0].astimezone(UTC) - DELTA_SLACK
    if start is not None:
        lo = max(lo, start)
    if after is not None:
        lo = max(lo, after[0])
    hi = end if end is not None else datetime.now(UTC) + DELTAS_HORIZON
    span = delta_span_of(bounds[1:])
    if span is not None:
        lo, hi = max(lo, span.lo), min(hi, span.hi)
    params = {"ticker": ticker, **_keyset(("c_ts", "c_epoch", "c_seq"), after)}
    return await read_windows(conn, DeltaRow, DELTAS_IN_WINDOW, params, lo, hi, limit)


async def list_gaps(
    conn: Conn,
    *,
    ticker: str,
    start: datetime | None,
    end: datetime | None,
    after: tuple[datetime, datetime, datetime, str] | None,
    limit: int,
) -> list[GapRow]:
    params = {
        "ticker": ticker,
        "start": start,
        "end": end,
        **_keyset(("c_from", "c_det", "c_to", "c_reason"), after),
        "limit": limit,
    }
    return await _fetch_all(conn, GapRow, LIST_GAPS, params)


STATUS_TABLES: Final = [t for t, _, _ in _CHANNEL_TABLES]
"""The ``tables`` parameter of :data:`STATUS_CHUNKS`."""


def status_channel_params(
    chunk_rows: Iterable[Sequence[Any]], whole: Iterable[str] = ()
) -> dict[str, Any]:
    """:data:`STATUS_CHANNELS`' parameters from the rows of :data:`STATUS_CHUNKS`, the tables in
    ``whole`` read over all their chunks (pure)."""
    params: dict[str, Any] = {f"{t}_{k}": None for t in STATUS_TABLES for k in ("recent", "early")}
    for table, recent, early, _chunks in chunk_rows:
        params.update({f"{table}_recent": recent, f"{table}_early": early})
    for table in whole:
        params.update({f"{table}_recent": _WHOLE_TABLE[0], f"{table}_early": _WHOLE_TABLE[1]})
    return params


def status_inexact(rows: Iterable[ChannelRow], chunk_rows: Iterable[Sequence[Any]]) -> list[str]:
    """The tables whose bounded reading may differ from the whole table's (pure): more than two
    chunks, and fewer than 1,000 newest rows or no first or last time in the end chunks."""
    chunks = {str(r[0]): int(r[3]) for r in chunk_rows}
    return [
        r.table
        for r in rows
        if chunks.get(r.table, 0) > 2
        and (r.newest_rows < 1000 or r.last_ts is None or r.first_ts is None)
    ]


async def status_channels(conn: Conn) -> list[ChannelRow]:
    cur = await conn.execute(STATUS_CHUNKS, {"tables": STATUS_TABLES})
    chunk_rows = await cur.fetchall()
    rows = await _fetch_all(conn, ChannelRow, STATUS_CHANNELS, status_channel_params(chunk_rows))
    whole = status_inexact(rows, chunk_rows)
    if whole:
        params = status_channel_params(chunk_rows, whole)
        rows = await _fetch_all(conn, ChannelRow, STATUS_CHANNELS, params)
    return rows


async def status_coverage(conn: Conn) -> tuple[CoverageRow, dict[str, int]]:
    coverage = await _fetch_one(conn, CoverageRow, STATUS_COVERAGE)
    assert coverage is not None
    cur2 = await conn.execute(MARKETS_BY_STATUS)
    by_status = {str(status): int(n) for status, n in await cur2.fetchall()}
    return coverage, by_status


async def probe(conn: Conn) -> None:
    await conn.execute(HEALTH_PROBE)


# -- order book at an instant --------------------------------------------------------------------

DELTA_SLACK = timedelta(minutes=1)
"""How far before a snapshot's time its first deltas may be stamped (exchange vs local clock)."""
SNAPSHOT_WINDOW = timedelta(days=1)
"""Look for the latest snapshot in this window first (checkpoints come every few minutes while a
book moves), then over the market's recorded book (from its extent's first hour): planning stays
independent of the history's length, and a ticker without a book reads no snapshot chunk."""
REPLAY_BATCH: Final = 20_000
"""The deltas of a book replay read at once. A replay of more (a book without a recent snapshot:
millions of deltas) is streamed, this many rows at a time, with a turn of the event loop after
each batch: it neither holds millions of rows in memory nor stalls the API process's other
requests for seconds, and its request deadline (noticed only when the loop turns) stops it. With
checkpoints (500 deltas apart) the whole replay is one batch of one statement."""
_STREAM_ROWS: Final = REPLAY_BATCH if pq.version() >= 170000 else 1
"""Rows per network chunk of the stream: libpq 17 reads them in chunks (psycopg's binary
package bundles a newer libpq than Debian's 15, which streams row by row: the same rows)."""
_HOUR = timedelta(hours=1)
_MIN_SEQ = -(2**63)
_ONE_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    ts: datetime
    source: str
    epoch: int
    seq: int | None


@dataclass(frozen=True, slots=True)
class LastEvent:
    kind: str
    ts: datetime
    epoch: int
    seq: int | None


@dataclass(frozen=True, slots=True)
class BookAt:
    """The book of one market at an instant, and how much to trust it."""

    ticker: str
    at: datetime
    book: OrderBook
    snapshot: SnapshotInfo | None
    last_event: LastEvent | None
    deltas_applied: int
    gap: tuple[datetime | None, datetime | None, str] | None
    """``(from_ts, to_ts, reason)`` when the book is incomplete."""

    @property
    def complete(self) -> bool:
        return self.gap is None


async def book_extent(conn: Conn, ticker: str) -> tuple[datetime, datetime] | None:
    """The market's book extent ``(first_hour, end_hour)`` in UTC (arithmetic on it is then
    absolute time: a session in another time zone returns local datetimes), or None."""
    cur = await conn.execute(BOOK_EXTENT, {"ticker": ticker})
    row = await cur.fetchone()
    if row is None:
        return None
    return row[0].astimezone(UTC), row[1].astimezone(UTC)


def _snapshot_book(yes_json: Any, no_json: Any) -> OrderBook | None:
    """The snapshot's book, or None when its levels are not a valid book."""
    try:
        return OrderBook.from_rows(yes_json, no_json)
    except BookError:
        return None


class _Replay:
    """Deltas applied to a book in order: how many, the last one, and the first that did not fit
    (a level going negative: skipped, the book left unchanged, and the result flagged instead of
    guessed)."""

    __slots__ = ("applied", "book", "gap", "last")

    def __init__(self, book: OrderBook, gap: tuple[Any, Any, str] | None) -> None:
        self.book = book
        self.gap = gap
        self.applied = 0
        self.last: tuple[Any, ...] | None = None

    def apply(self, rows: list[tuple[Any, ...]]) -> None:
        apply = self.book.apply_delta_units
        for side, price, delta, ts, _seq in rows:
            try:
                apply(side, price, delta)
            except BookError:
                self.gap = self.gap or (ts, None, "inconsistent_deltas")
        if rows:
            self.applied += len(rows)
            self.last = rows[-1]


async def book_at(conn: Conn, ticker: str, at: datetime, *, inclusive: bool = True) -> BookAt:
    """Rebuild the book at ``at``: latest snapshot at/before it, then its epoch's later deltas.

    ``inclusive=False`` gives the book just before ``at`` (events with ``ts < at`` only).
    """
    upper = at if inclusive else at - _ONE_US
    window = upper - SNAPSHOT_WINDOW
    params = {"ticker": ticker, "at": upper, "since": window}
    cur = await conn.execute(BOOK_BASE, params)
    row = await cur.fetchone()
    assert row is not None  # the query always returns exactly one row
    extent = None
    if row[0] is None:  # no snapshot in the window: search the market's recorded snapshots
        extent = await book_extent(conn, ticker)
        if extent is not None:
            first_hour, end_hour = extent
            # after the market's last snapshot it is in that snapshot's hour (unless rows were
            # removed since); else anywhere in the extent up to ``at``
            ranges = [(first_hour, end_hour)]
            if upper >= end_hour:
                ranges.insert(0, (max(first_hour, end_hour - _HOUR), end_hour))
            for since, until in ranges:
                if since >= window:
                    continue  # the window has searched it
                in_extent = {**params, "since": since, "until": until}
                cur = await conn.execute(BOOK_BASE_IN_EXTENT, in_extent)
                row = await cur.fetchone()
                assert row is not None
                if row[0] is not None:
                    break
    snap_ts, epoch, seq, source, yes_json, no_json, gap_from, gap_to, gap_reason = row
    gap = None if gap_reason is None else (gap_from, gap_to, str(gap_reason))
    if snap_ts is None:
        first = None
        if extent is not None:  # no snapshot up to ``at``: the first one comes after it
            first_hour, end_hour = extent
            for since, until in ((first_hour, first_hour + _HOUR), (first_hour, end_hour)):
                bounds = {"ticker": ticker, "at": upper, "since": since, "until": until}
                cur = await conn.execute(FIRST_SNAPSHOT_AFTER, bounds)
                first = await cur.fetchone()
                if first is not None:
                    break
        return BookAt(
            ticker=ticker,
            at=at,
            book=OrderBook(),
            snapshot=None,
            last_event=None,
            deltas_applied=0,
            gap=gap or (None, None if first is None else first[0], "no_snapshot"),
        )
    book = _snapshot_book(yes_json, no_json)
    if book is None:
        book = OrderBook()
        gap = gap or (snap_ts, None, "invalid_snapshot")
    snapshot = SnapshotInfo(ts=snap_ts, source=str(source), epoch=int(epoch), seq=seq)
    from_ts = snap_ts - DELTA_SLACK if seq is not None else snap_ts + _ONE_US
    until = upper
    if upper - from_ts > SNAPSHOT_WINDOW:
        # long after the snapshot: the market's deltas may have ended long before ``at``
        span = await delta_span(conn, ticker)
        if span is not None:
            until = min(upper, span.hi - _ONE_US)
    params = {
        "ticker": ticker,
        "epoch": epoch,
        "at": until,
        "from_ts": from_ts,
        "after_seq": seq if seq is not None else _MIN_SEQ,
    }
    replay = _Replay(book, gap)
    if until >= from_ts:
        cur = await conn.execute(BOOK_DELTAS, {**params, "limit": REPLAY_BATCH})
        first = await cur.fetchall()
        if len(first) < REPLAY_BATCH:  # the usual case: checkpoints keep it to a few hundred
            replay.apply(first)
        else:  # a long replay, streamed in one statement from the snapshot again
            del first
            again = _snapshot_book(yes_json, no_json)
            replay = _Replay(OrderBook() if again is None else again, gap)
            async with (
                conn.cursor() as stream_cur,
                # closed on any exit: a stream left open keeps the connection busy
                aclosing(
                    cast(  # an async generator, typed by psycopg as an iterator
                        "AsyncGenerator[Any, None]",
                        stream_cur.stream(
                            BOOK_DELTAS, {**params, "limit": None}, size=_STREAM_ROWS
                        ),
                    )
                ) as rows,
            ):
                batch: list[tuple[Any, ...]] = []
                async for row in rows:
                    batch.append(row)
                    if len(batch) == REPLAY_BATCH:
                        replay.apply(batch)
                        batch = []
                        await asyncio.sleep(0)  # other requests, and the deadline, get a turn
                replay.apply(batch)
    book, gap, last = replay.book, replay.gap, replay.last
    if last is not None:
        last_event = LastEvent(kind="delta", ts=last[3], epoch=int(epoch), seq=int(last[4]))
    else:
        last_event = LastEvent(kind="snapshot", ts=snap_ts, epoch=int(epoch), seq=seq)
    return BookAt(
        ticker=ticker,
        at=at,
        book=book,
        snapshot=snapshot,
        last_event=last_event,
        deltas_applied=replay.applied,
        gap=gap,
    )
