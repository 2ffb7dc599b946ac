"""Sampled books and trades with the prevailing quote, replayed from snapshots + deltas.

- ``book_samples``: every ``every`` (default 1 s) from the UTC day's midnight, the best ``levels``
  levels of each side (level 0 = best bid) and ``complete`` / ``gap_reason``: the book
  ``GET /v1/markets/{ticker}/orderbook?at=`` returns at that instant. Only for a day holding a
  book event of the market (the days ``kalshibook export`` lists; another day has no rows), and
  never past the present: the day in progress stops at the last instant at or before "now".
- ``trades_bbo``: each trade of the day (exchange order) with the YES bid/ask and sizes of the book
  just before it (events stamped before the trade), like Databento's TBBO.

Both stream: one server-side cursor over the day's events (from the last snapshot before the
day), one over its trades; :class:`kalshibook.domain.book_replay.BookReplay` does the book math.

:func:`source_fingerprint` summarises exactly what a replay reads (the snapshots and deltas of its
window, the gaps it is given, for ``trades_bbo`` the day's trades), so a re-run whose fingerprint
is unchanged skips the replay: row count and latest ``received_at`` of each source (rows are only
ever added; a late row has the latest ``received_at``), the gaps themselves, the sampling (and,
for a day in progress, its last instant so far).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import msgspec
import psycopg

from kalshibook.domain.book_replay import DELTA_SLACK, BookReplay, Gap
from kalshibook.domain.prices import PRICE_SCALE, units_to_price, units_to_size
from kalshibook.export.reads import BATCH_ROWS, day_bounds, has_book_events
from kalshibook.export.tables import Column, TableSpec
from kalshibook.storage.book_reads import book_extent, delta_span, dropped_after

__all__ = ("TBBO", "bbo_batches", "sample_batches", "samples_spec", "source_fingerprint")

AConn = psycopg.AsyncConnection[Any]
_ONE_US: Final = timedelta(microseconds=1)

SNAPSHOT_BEFORE: Final = """
SELECT max(ts) FROM market.orderbook_snapshots
WHERE market_ticker = %(ticker)s AND ts <= %(at)s AND ts >= %(since)s AND ts < %(until)s
"""
"""The last snapshot at or before ``at`` in ``[since, until)``: inside the market's book extent
(migration 0006), the day before ``at`` first, so the planner keeps to the chunks it can be in."""
_DAY: Final = timedelta(days=1)
_HOUR: Final = timedelta(hours=1)
GAPS: Final = """
SELECT from_ts, to_ts, reason FROM market.book_gaps
WHERE market_ticker = %(ticker)s AND from_ts < %(hi)s
  AND (to_ts > %(lo)s OR %(snap)s::timestamptz IS NULL OR from_ts > %(snap)s::timestamptz)
ORDER BY from_ts
"""
EVENTS: Final = """
SELECT ts, epoch, seq, 1 AS kind, NULL::text AS side, NULL::bigint AS price,
       NULL::bigint AS delta, yes_bids::text, no_bids::text
FROM market.orderbook_snapshots
WHERE market_ticker = %(ticker)s AND ts >= %(lo)s AND ts < %(hi)s
UNION ALL
SELECT ts, epoch, seq, 0, side, (price * 1000000)::bigint, (delta * 100)::bigint, NULL, NULL
FROM market.orderbook_deltas
WHERE market_ticker = %(ticker)s AND ts >= %(lo)s AND ts < %(deltas_hi)s
ORDER BY ts, epoch, seq NULLS FIRST, kind
"""
WINDOW_FINGERPRINT: Final = """
SELECT
  (SELECT count(*)::text || '/' || coalesce(max(received_at)::text, '')
   FROM market.orderbook_snapshots
   WHERE market_ticker = %(ticker)s AND ts >= %(lo)s AND ts < %(hi)s),
  (SELECT count(*)::text || '/' || coalesce(max(received_at)::text, '')
   FROM market.orderbook_deltas
   WHERE market_ticker = %(ticker)s AND ts >= %(lo)s AND ts < %(deltas_hi)s),
  CASE WHEN %(trades)s THEN
  (SELECT count(*)::text || '/' || coalesce(max(received_at)::text, '') || '/'
          || coalesce(sum(exchange_seq)::text, '') || '/' || count(*) FILTER (WHERE source = 'rest')
   FROM market.trades
   WHERE market_ticker = %(ticker)s AND ts >= %(start)s AND ts < %(hi)s) END
"""
DAY_TRADES: Final = """
SELECT ts, exchange_seq, trade_id::text, market_ticker, yes_price, count, taker_outcome_side
FROM market.trades
WHERE market_ticker = %(ticker)s AND ts >= %(lo)s AND ts < %(hi)s
ORDER BY exchange_seq, trade_id
"""


def samples_spec(levels: int) -> TableSpec:
    cols = [
        Column("ts", "ts"),
        Column("market_ticker", "text"),
        Column("complete", "bool"),
        Column("gap_reason", "text"),
    ]
    for side in ("yes", "no"):
        for i in range(levels):
            cols += [Column(f"{side}_bid_{i}", "price"), Column(f"{side}_bid_size_{i}", "size")]
    return TableSpec("book_samples", "", "ts", tuple(cols), "ts")


TBBO: Final = TableSpec(
    "trades_bbo",
    "",
    "ts",
    (
        Column("ts", "ts"),
        Column("exchange_seq", "int64"),
        Column("trade_id", "text", distinct=True),
        Column("market_ticker", "text"),
        Column("yes_price", "price"),
        Column("count", "size"),
        Column("taker_outcome_side", "text"),
        Column("yes_bid", "price"),
        Column("yes_bid_size", "size"),
        Column("yes_ask", "price"),
        Column("yes_ask_size", "size"),
        Column("complete", "bool"),
        Column("gap_reason", "text"),
    ),
    "exchange_seq",
)


class _Events:
    """The day's events through a server-side cursor, fed to a replay up to an instant."""

    def __init__(self, cur: psycopg.AsyncServerCursor[Any], replay: BookReplay) -> None:
        self.cur = cur
        self.replay = replay
        self.buf: list[Any] = []
        self.pos = 0
        self.done = False

    async def _peek(self) -> Any | None:
        if self.pos >= len(self.buf):
            if self.done:
                return None
            self.buf, self.pos = await self.cur.fetchmany(BATCH_ROWS), 0
            if not self.buf:
                self.done = True
                return None
        return self.buf[self.pos]

    async def advance(self, until: datetime, inclusive: bool) -> None:
        """Apply every event with ``ts <= until`` (``< until`` when not inclusive)."""
        while (row := await self._peek()) is not None:
            ts = row[0]
            if ts > until or (ts == until and not inclusive):
                return
            self.pos += 1
            if row[3] == 1:
                self.replay.snapshot(ts, row[1], row[2], row[7], row[8])
            else:
                self.replay.delta(ts, row[1], row[2], row[4], row[5], row[6])


async def _window(
    conn: AConn, ticker: str, day: date
) -> tuple[dict[str, Any], list[Gap], datetime | None]:
    """The replay's window (events from the last snapshot at or before the day's start, less
    ``DELTA_SLACK``, to its end; deltas only up to the end of their extent, migration 0009) and
    the gaps that bear on it; and where the stored deltas begin when the window's were dropped
    (retention: :func:`~kalshibook.storage.book_reads.dropped_after`), else None."""
    start, end = day_bounds(day)
    async with conn.cursor() as cur:
        snap = await _snapshot_before(cur, ticker, start)
        lo = (snap if snap is not None else start) - DELTA_SLACK
        await cur.execute(GAPS, {"ticker": ticker, "lo": lo, "hi": end, "snap": snap})
        gaps = [Gap(r[0], r[1], str(r[2])) for r in await cur.fetchall()]
    span = await delta_span(conn, ticker)
    deltas_hi = end if span is None else min(end, span.hi)
    dropped = await dropped_after(conn, ticker, lo, end)
    return {"ticker": ticker, "lo": lo, "hi": end, "deltas_hi": deltas_hi}, gaps, dropped


async def _snapshot_before(
    cur: psycopg.AsyncCursor[Any], ticker: str, at: datetime
) -> datetime | None:
    """The time of the market's last snapshot at or before ``at`` (None: no book before it)."""
    extent = await book_extent(cur.connection, ticker)
    if extent is None or extent[0] > at:
        return None
    first_hour, end_hour = extent
    if at >= end_hour:  # after the market's last snapshot: it is in the extent's last hour
        ranges = [(max(first_hour, end_hour - _HOUR), end_hour), (first_hour, end_hour)]
    else:  # (or anywhere in the extent, when rows were removed since)
        ranges = [(max(first_hour, at - _DAY), end_hour), (first_hour, end_hour)]
    for since, until in ranges:
        await cur.execute(
            SNAPSHOT_BEFORE, {"ticker": ticker, "at": at, "since": since, "until": until}
        )
        row = await cur.fetchone()
        if row is not None and row[0] is not None:
            return row[0]  # type: ignore[no-any-return]
    return None


def last_instant(day: date, every: timedelta, now: datetime) -> datetime | None:
    """The day's last sample instant (``midnight + k × every``) at or before ``now``; None when
    the day has not begun."""
    start, end = day_bounds(day)
    if now < start:
        return None
    return start + ((min(now, end - _ONE_US) - start) // every) * every


async def _setup(conn: AConn, ticker: str, day: date) -> tuple[dict[str, Any], BookReplay]:
    params, gaps, dropped = await _window(conn, ticker, day)
    return params, BookReplay(gaps, deltas_from=dropped)


async def source_fingerprint(
    conn: AConn,
    ticker: str,
    day: date,
    table: str,
    levels: int,
    every: timedelta,
    *,
    now: datetime | None = None,
) -> str:
    """What the replay of ``table`` (``book_samples`` or ``trades_bbo``) for the day reads; for
    the samples of a day still in progress at ``now`` (default: the clock), its last instant."""
    params, gaps, dropped = await _window(conn, ticker, day)
    trades = table == "trades_bbo"
    async with conn.cursor() as cur:
        await cur.execute(
            WINDOW_FINGERPRINT, {**params, "start": day_bounds(day)[0], "trades": trades}
        )
        row = await cur.fetchone()
    assert row is not None  # one row always
    sampling = ""
    if table == "book_samples":
        sampling = f"{levels}x{every.total_seconds():g}s"
        now = datetime.now(UTC) if now is None else now
        if now < day_bounds(day)[1]:  # the day's samples so far: a re-run adds the later ones
            last = last_instant(day, every, now)
            sampling += f" until {last.isoformat() if last is not None else '-'}"
    digest = hashlib.sha256(msgspec.msgpack.encode(gaps)).hexdigest()[:16]
    if dropped is not None:  # only then: other files keep the fingerprint they had
        digest += f" deltas from {dropped.isoformat()}"
    return "|".join([*(str(v or "") for v in row), f"gaps {len(gaps)} {digest}", sampling])


def _levels(replay: BookReplay, side: str, n: int) -> list[Any]:
    best_first = replay.book.levels_units(side, n)[::-1]
    out: list[Any] = []
    for i in range(n):
        if i < len(best_first):
            p, s = best_first[i]
            out += [units_to_price(p), units_to_size(s)]
        else:
            out += [None, None]
    return out


async def sample_batches(
    conn: AConn,
    ticker: str,
    day: date,
    levels: int,
    every: timedelta,
    *,
    now: datetime | None = None,
) -> AsyncGenerator[list[tuple[Any, ...]], None]:
    """The day's samples up to :func:`last_instant` of ``now`` (default: the clock); none for a
    day without a book event of the market (not the last book repeated, nor a day of
    ``no_snapshot`` rows)."""
    start, end = day_bounds(day)
    last = last_instant(day, every, datetime.now(UTC) if now is None else now)
    if last is None or not await has_book_events(conn, ticker, start, end):
        return
    params, replay = await _setup(conn, ticker, day)
    async with conn.transaction(), conn.cursor(name="kalshibook_samples") as cur:
        await cur.execute(EVENTS, params)
        events = _Events(cur, replay)
        batch: list[tuple[Any, ...]] = []
        t = start
        while t <= last:
            await events.advance(t, inclusive=True)
            reason = replay.gap_at(t)
            row = (t, ticker, reason is None, reason)
            batch.append(
                row + tuple(_levels(replay, "yes", levels) + _levels(replay, "no", levels))
            )
            if len(batch) >= BATCH_ROWS:
                yield batch
                batch = []
            t += every
        if batch:
            yield batch


async def bbo_batches(
    conn: AConn, ticker: str, day: date
) -> AsyncGenerator[list[tuple[Any, ...]], None]:
    params, replay = await _setup(conn, ticker, day)
    start = day_bounds(day)[0]
    async with (
        conn.transaction(),
        conn.cursor(name="kalshibook_bbo_events") as ecur,
        conn.cursor(name="kalshibook_bbo_trades") as tcur,
    ):
        await ecur.execute(EVENTS, params)
        await tcur.execute(DAY_TRADES, {**params, "lo": start})
        events = _Events(ecur, replay)
        while trades := await tcur.fetchmany(BATCH_ROWS):
            batch: list[tuple[Any, ...]] = []
            for tr in trades:
                ts = tr[0]
                await events.advance(ts, inclusive=False)
                reason = replay.gap_at(ts - _ONE_US)
                yb = replay.book.best_yes_bid_units()
                nb = replay.book.best_no_bid_units()
                batch.append(
                    (
                        *tr,
                        None if yb is None else units_to_price(yb[0]),
                        None if yb is None else units_to_size(yb[1]),
                        None if nb is None else units_to_price(PRICE_SCALE - nb[0]),
                        None if nb is None else units_to_size(nb[1]),
                        reason is None,
                        reason,
                    )
                )
            yield batch
