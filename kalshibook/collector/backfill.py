"""The ``backfill`` task: REST trades for every outage window, then the candle refresh.

Windows come from the router (:meth:`~kalshibook.collector.work.WorkQueues.backfill`: trade
sequence gaps, disconnects, daemon restarts), oldest first. Every trade of a window is handed to
the writer (which drops the ones already stored); then the candles around the window are
refreshed, after the writer has drained.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg

from kalshibook.backoff import Backoff
from kalshibook.collector.catalog import Catalog
from kalshibook.collector.metrics import Metrics
from kalshibook.collector.reference import rest_trade_row
from kalshibook.collector.work import WorkQueues
from kalshibook.domain.exchange_order import RestRanker
from kalshibook.errors import FeedError, KalshibookError, ProtocolError
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.kalshi.rest_models import RestTrade
from kalshibook.storage.candle_refresh import RefreshDenied, refresh, refresh_command
from kalshibook.storage.candles import TRADES_ONLY
from kalshibook.storage.pool import Pool
from kalshibook.storage.writer import Writer

__all__ = ("Backfill",)

log = logging.getLogger(__name__)

PROGRESS_EVERY = 30.0
"""Seconds between two progress lines of one long trade listing."""


class Backfill:
    """The trade backfill task (:meth:`run`)."""

    def __init__(
        self,
        *,
        rest: KalshiRest,
        writer: Writer,
        pool: Pool,
        work: WorkQueues,
        catalog: Catalog,
        metrics: Metrics,
        stop: asyncio.Event,
    ) -> None:
        self.rest = rest
        self.catalog = catalog
        self.progress_every = PROGRESS_EVERY
        self.writer = writer
        self.pool = pool
        self.work = work
        self.metrics = metrics
        self.stop = stop

    async def run(self) -> None:
        work = self.work
        backoff = Backoff(1.0, 60.0)
        while not self.stop.is_set():
            if not work.windows:
                work.backfill_wake.clear()
                await work.backfill_wake.wait()
                continue
            start, end = work.windows[0]
            try:
                n = await self.backfill(start, end)
            except (FeedError, ProtocolError) as exc:
                delay = backoff.next()
                log.warning(
                    "trade backfill failed from=%s to=%s (%s); retrying in %.1f s",
                    start.isoformat(),
                    end.isoformat(),
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            if work.windows and work.windows[0] == (start, end):
                work.windows.pop(0)
            else:
                work.windows = [w for w in work.windows if w != (start, end)]
            log.info(
                "trades backfilled from=%s to=%s trades=%d", start.isoformat(), end.isoformat(), n
            )
            await self.refresh_candles(start, end)

    async def backfill(self, start: datetime, end: datetime) -> int:
        """Hand the REST trades of ``[start, end]`` to the writer; returns how many.

        The window is routed by the exchange's historical cutoff (``trades_created_ts``): trades
        created before it are served only by ``GET /historical/trades`` (KALSHI_API.md §3.7), so
        the part of an outage older than the cutoff (a collector down for months) is listed
        there, the rest from ``GET /markets/trades``. Kalshi moves the cutoff forward while it
        runs: the live part is listed first, from the cutoff read before it, and the historical
        part then up to the cutoff read after it, so trades that moved meanwhile are listed
        there (the band listed twice: the writer drops the copies). Each trade gets its
        exchange rank inside its millisecond (``RestRanker``: a listing is newest first and its
        bounds are whole seconds, the cutoff too, so every millisecond is complete).
        """
        now = datetime.now(UTC)
        min_ts = int(start.timestamp())
        max_ts = int(end.timestamp()) + 1  # inclusive, as Kalshi's max_ts
        n = 0
        traded: set[str] = set()  # the markets of the trades handed over
        cut = await self._cutoff(min_ts)
        if max_ts >= cut:
            live = self.rest.get_trades(None, max(min_ts, cut), max_ts)
            n += await self._listing(live, now, traded)
            self.metrics.rest_requests.inc(1.0, "backfill")
            cut = max(cut, await self._cutoff(min_ts))
        if cut > min_ts:  # the part before the cutoff (as read after the live part)
            old = self.rest.get_historical_trades(None, min_ts, min(max_ts, cut - 1))
            n += await self._listing(old, now, traded)
            self.metrics.rest_requests.inc(1.0, "backfill")
        self.metrics.backfilled_trades.inc(n)
        # markets that opened and settled while the collector was down: never seen, so no market,
        # event or settlement row; the enrichment task looks them up
        for ticker in sorted(t for t in traded if self.catalog.market(t) is None):
            self.work.enrich(market=ticker)
        return n

    async def _cutoff(self, floor: int) -> int:
        """Kalshi's ``trades_created_ts`` in Unix seconds (``floor`` when it has none)."""
        cutoff = (await self.rest.get_historical_cutoff()).trades_created_ts
        return floor if cutoff is None else int(cutoff.timestamp())

    async def _listing(
        self, trades: AsyncIterator[RestTrade], now: datetime, traded: set[str]
    ) -> int:
        """Rank and hand over one listing's trades (their markets added to ``traded``); how
        many. A long listing (an outage of months: millions of trades) logs its progress every
        ``progress_every`` seconds."""
        n = 0
        ranker: RestRanker[RestTrade] = RestRanker()
        shown = time.monotonic()
        async for t in trades:
            if t.created_time is None:
                continue
            for trade, seq in ranker.push(t.ticker, t.created_time, t):
                n += await self._put(trade, seq, now, traded)
            if time.monotonic() - shown >= self.progress_every:
                shown = time.monotonic()
                log.info(
                    "trade backfill in progress: %d trades so far, back to %s (newest first)",
                    n,
                    t.created_time.isoformat(),
                )
        for trade, seq in ranker.finish():
            n += await self._put(trade, seq, now, traded)
        if ranker.out_of_order:
            log.warning(
                "REST trades were not listed newest first (%d times): the order inside a "
                "millisecond may be inexact for those trades",
                ranker.out_of_order,
            )
        return n

    async def _put(self, trade: RestTrade, seq: int, now: datetime, traded: set[str]) -> int:
        row = rest_trade_row(trade, now, seq)
        if row is None:
            return 0
        await self.writer.put("trades", row)
        traded.add(trade.ticker)
        return 1

    async def refresh_candles(self, start: datetime, end: datetime) -> None:
        """Refresh the candles around ``[start, end]`` once the writer has drained.

        Only the aggregates' owner may: on the collector's own login (``service-user create
        collector``) this fails, and the warning says what to run as the owner. The refresh
        policies fold the trades in by themselves when they are recent (1m: the last 3 hours)."""
        lo = start - timedelta(minutes=1)
        hi = end + timedelta(minutes=1)
        try:
            async with asyncio.timeout(30.0):
                await self.writer.drain()
            async with self.pool.connection() as conn:
                await conn.set_autocommit(True)
                try:
                    await refresh(conn, lo, hi, TRADES_ONLY)  # what it wrote
                finally:
                    await conn.set_autocommit(False)
        except RefreshDenied as exc:
            log.warning(
                "candles not refreshed after the trade backfill from=%s to=%s: %s; the refresh "
                "policies fold in the trades of the last 3 hours by themselves, older ones reach "
                "the candles once the database owner runs: %s",
                start.isoformat(),
                end.isoformat(),
                exc,
                refresh_command(lo, hi, TRADES_ONLY),
            )
        except (psycopg.Error, KalshibookError, TimeoutError) as exc:
            log.warning(
                "candle refresh failed: %r; to fold the backfilled trades into the candles, run "
                "as the database owner: %s",
                exc,
                refresh_command(lo, hi, TRADES_ONLY),
            )
