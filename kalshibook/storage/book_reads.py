"""Order-book reads used by the API: the book of a market at an instant (the latest snapshot
before it, then its deltas replayed), a market's raw deltas and its gaps. Named SQL constants with
parameters, typed rows, as in :mod:`kalshibook.storage.reads`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, NamedTuple, cast

from psycopg import AsyncConnection, pq

from kalshibook.domain.book import OrderBook
from kalshibook.errors import BookError
from kalshibook.storage.fetch import fetch_all, first_chunk_start, keyset
from kalshibook.storage.windows import day_skipper, read_windows

__all__ = (
    "BookAt",
    "DeltaRow",
    "DeltaSpan",
    "GapRow",
    "LastEvent",
    "SnapshotInfo",
    "book_at",
    "book_extent",
    "delta_span",
    "delta_span_of",
    "dropped_after",
    "list_deltas",
    "list_gaps",
)

Conn = AsyncConnection[Any]

# -- rows ----------------------------------------------------------------------------------------


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
NEXT_DELTA_HOUR: Final = """
SELECT CASE WHEN s.complete THEN n.hour ELSE %(t)s END
FROM (SELECT 1) AS one
LEFT JOIN market.delta_extents_state AS s ON true
LEFT JOIN LATERAL (
    SELECT greatest(d.first_hour, %(t)s) AS hour FROM market.delta_days AS d
    WHERE d.market_ticker = %(ticker)s AND d.day >= %(day)s AND d.end_hour > %(t)s
    ORDER BY d.day
    LIMIT 1
) AS n ON true
"""
"""Where the market's next deltas may be from ``t`` on: the first hour holding any at or after
``t`` (``t`` itself when its hour does), from its days with deltas (migration 0015: valid only
while the extents are complete: read with them, as they are now, so a write from outside the
collector since the page began turns the jump off); NULL: none."""
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
    skip = None
    if span is not None:  # complete extents: the days say where the deltas are
        lo, hi = max(lo, span.lo), min(hi, span.hi)
        skip = day_skipper(conn, NEXT_DELTA_HOUR, {"ticker": ticker})
    params = {"ticker": ticker, **keyset(("c_ts", "c_epoch", "c_seq"), after)}
    return await read_windows(conn, DeltaRow, DELTAS_IN_WINDOW, params, lo, hi, limit, skip=skip)


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
        **keyset(("c_from", "c_det", "c_to", "c_reason"), after),
        "limit": limit,
    }
    return await fetch_all(conn, GapRow, LIST_GAPS, params)


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


FLOOR_CHECK_AGE: Final = timedelta(days=1)
"""Only a snapshot older than this may have lost the deltas after it: the shortest delta
retention the settings accept is a day (kalshibook.settings.StorageSettings)."""
_FLOOR_TTL: Final = 5.0
_floors: dict[tuple[bytes | None, bytes, bytes], tuple[float, datetime | None]] = {}
"""Per database (libpq's host, port and database name of the connection): when the floor was read,
and the floor. At most :data:`_MAX_FLOORS` entries. Not ``conn.info.dsn``, which parses the
connection string again on every call (~0.1 ms, a tenth of the book endpoint's CPU under load)."""
_MAX_FLOORS: Final = 64


async def deltas_floor(conn: Conn) -> datetime | None:
    """Where the stored deltas begin (None: none stored), read at most every ``_FLOOR_TTL`` s."""
    pgconn = conn.pgconn
    key = (pgconn.host, pgconn.port, pgconn.db)
    now = time.monotonic()
    cached = _floors.get(key)
    if cached is not None and now - cached[0] < _FLOOR_TTL:
        return cached[1]
    floor = await first_chunk_start(conn, "orderbook_deltas")
    if len(_floors) >= _MAX_FLOORS:
        _floors.clear()
    _floors[key] = (now, floor)
    return floor


async def dropped_after(
    conn: Conn, ticker: str, snap_ts: datetime, until: datetime
) -> datetime | None:
    """Where the stored deltas begin when deltas the replay from the snapshot at ``snap_ts`` up
    to ``until`` needs may have been dropped (retention keeps a snapshot's chunk longer than its
    deltas' chunks: 1-day against 6-hour chunks), else None. Known from the deltas' first chunk
    lying after the snapshot while the market's delta extent (migration 0009) began before it
    (extents incomplete: assumed so)."""
    if snap_ts >= datetime.now(UTC) - FLOOR_CHECK_AGE or until <= snap_ts:
        return None
    floor = await deltas_floor(conn)
    if floor is None or floor <= snap_ts:
        return None
    span = await delta_span(conn, ticker)
    return floor if span is None or span.lo < floor else None


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
    dropped = await dropped_after(conn, ticker, snap_ts, until)
    if dropped is not None:
        gap = gap or (snap_ts, dropped, "deltas_dropped")
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
