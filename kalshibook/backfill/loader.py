"""The backfill's I/O: REST -> writer (trades, hierarchy, settlements) and Kalshi's candles.

Markets are worked by a fixed number of workers (``concurrency``) over one shared list, so the REST
client's token bucket is what limits the pace. Per market: its settlement, its trades (one
:class:`~kalshibook.domain.exchange_order.RestRanker` per window, windows on whole seconds), a
writer drain (the trades are committed), the progress row; then Kalshi's candles and the progress
row again. The progress row is the range ``[trades_from, trades_through)`` covered: a run whose
start is before ``trades_from`` first loads the part before it (trades and candles), then the
part after ``trades_through``. A killed run redoes at most the markets it was in: the writer drops
the trades it already stored and candles are upserts. The summary counts a market's trades and
candles when their progress is saved, and its settlement once (not again when a failed attempt is
retried); the progress line drops the trades of an attempt that failed before its save.

At the end the candle aggregates are refreshed over the loaded trades; only their owner may do
that, so a run on another login (the collector's) records why it could not
(``Summary.refresh_problem``) and the window to refresh (``Summary.refresh_window``): the command
line prints the ``kalshibook refresh-candles`` command to run as the owner. Series, events and
markets named in the selection that the exchange does not list are in ``Summary.unknown``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import psycopg

from kalshibook.backfill import plan
from kalshibook.backfill.progress import ProgressReport
from kalshibook.collector.catalog import Catalog
from kalshibook.collector.reference import rest_trade_row, series_row, settlement_row
from kalshibook.collector.reference_sync import BATCH, ReferenceSync, chunks
from kalshibook.domain.exchange_order import RestRanker
from kalshibook.errors import FeedError, KalshibookError
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.kalshi.rest_models import Market, RestTrade
from kalshibook.storage.backfill_store import Progress, read_progress, save_candles, save_progress
from kalshibook.storage.candle_refresh import refresh
from kalshibook.storage.candles import TRADES_ONLY
from kalshibook.storage.pool import Pool
from kalshibook.storage.urls import scrub
from kalshibook.storage.writer import Writer

__all__ = ("Backfill", "Selection", "Summary")

log = logging.getLogger(__name__)

EARLIEST = datetime(2021, 1, 1, tzinfo=UTC)
"""Kalshi opened in 2021: no trade is older."""
MARKET_ATTEMPTS = 5


class Selection(msgspec.Struct, frozen=True, kw_only=True):
    """What to backfill: everything, or these series / events / markets, from ``start``."""

    all: bool = False
    series: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    markets: tuple[str, ...] = ()
    start: datetime | None = None
    candles: bool = True


class Summary(msgspec.Struct, kw_only=True):
    markets: int = 0
    markets_failed: int = 0
    trades_fetched: int = 0
    candles_fetched: int = 0
    settlements: int = 0
    first_trade: datetime | None = None
    last_trade: datetime | None = None
    unknown: list[str] = msgspec.field(default_factory=list)
    """Named series / events / markets the exchange lists no market of, e.g. ``market 'X'``."""
    refresh_window: tuple[datetime, datetime] | None = None
    """The candle aggregates' refresh over the loaded trades, when there were any."""
    refreshed: list[str] = msgspec.field(default_factory=list)
    refresh_problem: str | None = None
    """Why that refresh failed (then ``refresh_window`` is still to be refreshed)."""


class Backfill:
    def __init__(
        self,
        *,
        rest: KalshiRest,
        writer: Writer,
        pool: Pool,
        report: ProgressReport,
        concurrency: int = 4,
    ) -> None:
        self.rest = rest
        self.writer = writer
        self.pool = pool
        self.report = report
        self.concurrency = max(1, concurrency)
        self.catalog = Catalog()
        self.sync = ReferenceSync(rest, writer, self.catalog)
        self.summary = Summary()
        self._settled: set[str] = set()
        """Markets whose settlement was stored (``Summary.settlements``: once per market)."""
        self._cutoff = EARLIEST
        self._now = datetime.now(UTC)

    async def run(self, sel: Selection) -> Summary:
        ticker = asyncio.create_task(self.report.tick(lambda: self.rest.stats.requests))
        try:
            return await self._run(sel)
        finally:
            ticker.cancel()
            await asyncio.wait([ticker])  # never raises its CancelledError; ours still propagates

    async def _run(self, sel: Selection) -> Summary:
        for attempt in range(MARKET_ATTEMPTS):
            try:
                self.report.listed = 0
                cut = await self.rest.get_historical_cutoff()
                self._cutoff = cut.trades_created_ts or EARLIEST
                self._now = plan.floor_s(datetime.now(UTC))
                markets = await self._hierarchy(sel)
                break
            except FeedError as exc:
                if attempt + 1 == MARKET_ATTEMPTS:
                    raise
                log.warning("loading the market list failed (%s); retrying", exc)
                await asyncio.sleep(min(30.0, 2.0**attempt))
        async with self.pool.connection() as conn:
            done = await read_progress(conn, [m.ticker for m, _ in markets])
        self.report.start(len(markets))
        todo = list(markets)
        self.summary.markets = len(todo)

        async def worker() -> None:
            while todo:
                m, historical = todo.pop(0)
                await self._market(sel, m, historical, done.get(m.ticker))
                self.report.market_done(self.rest.stats.requests)

        async with asyncio.TaskGroup() as tg:
            for _ in range(min(self.concurrency, len(todo)) or 0):
                tg.create_task(worker())
        await self.writer.drain()
        await self._refresh()
        self.report.finish(self.rest.stats.requests)
        return self.summary

    # -- hierarchy -------------------------------------------------------------------------

    async def _hierarchy(self, sel: Selection) -> list[tuple[Market, bool]]:
        found: dict[str, tuple[Market, bool]] = {}

        async def add(it: AsyncIterator[Market], historical: bool) -> int:
            n = 0
            async for m in it:
                n += 1
                self.report.listing(1)
                if historical or m.ticker not in found:
                    found[m.ticker] = (m, historical)
            return n

        rest = self.rest
        if sel.all:
            await add(rest.get_markets(), False)
            await add(rest.get_historical_markets(), True)
            rows = [series_row(s) for s in await rest.get_series_list()]
            await self.writer.upsert_series(rows)
            self.catalog.series.update(r[0] for r in rows)
        unknown: list[str] = []
        for s in dict.fromkeys(sel.series):
            n = await add(rest.get_markets(series_ticker=s), False)
            n += await add(rest.get_historical_markets(series_ticker=s), True)
            if not n:
                unknown.append(f"series {s!r}")
        for e in dict.fromkeys(sel.events):
            n = await add(rest.get_markets(event_ticker=e), False)
            n += await add(rest.get_historical_markets(event_ticker=e), True)
            if not n:
                unknown.append(f"event {e!r}")
        named = list(dict.fromkeys(sel.markets))
        for chunk in chunks(named, BATCH):
            await add(rest.get_markets(tickers=chunk), False)
            await add(rest.get_historical_markets(tickers=chunk), True)
        unknown += [f"market {t!r}" for t in named if t not in found]
        self.summary.unknown = unknown
        chosen = [
            (m, h)
            for m, h in found.values()
            if sel.start is None or m.close_time is None or m.close_time >= sel.start
        ]
        events = list(dict.fromkeys(m.event_ticker for m, _ in chosen if m.event_ticker))
        await self.sync.store_events(events)
        await self.sync.fetch_series(list(sel.series))
        await self.sync.store_markets([m for m, _ in chosen])
        log.info(
            "backfill: %d markets (%d historical), %d events, cutoff %s",
            len(chosen),
            sum(h for _, h in chosen),
            len(events),
            self._cutoff.isoformat(),
        )
        return chosen

    # -- one market ------------------------------------------------------------------------

    async def _market(
        self, sel: Selection, m: Market, historical: bool, p: Progress | None
    ) -> None:
        for attempt in range(MARKET_ATTEMPTS):
            try:
                await self._market_once(sel, m, historical, p)
                return
            except FeedError as exc:
                if attempt + 1 == MARKET_ATTEMPTS:
                    self.summary.markets_failed += 1
                    log.error("backfill of %s failed: %s", m.ticker, exc)
                    return
                log.warning("backfill of %s failed (%s); retrying", m.ticker, exc)
                self.report.retrying += 1
                try:
                    await asyncio.sleep(min(30.0, 2.0**attempt))
                finally:
                    self.report.retrying -= 1
                async with self.pool.connection() as conn:
                    p = (await read_progress(conn, [m.ticker])).get(m.ticker)

    async def _market_once(
        self, sel: Selection, m: Market, historical: bool, p: Progress | None
    ) -> None:
        """Load what ``[first, now)`` misses of ``m``: the progress row says which range
        ``[trades_from, trades_through)`` its trades (and, to ``candles_through``, its candles)
        cover, so an earlier start than a former run's loads the part before it."""
        row = settlement_row(m, self.catalog)
        if row is not None:
            await self.writer.upsert_settlement(row)
            self._settled.add(m.ticker)  # once per market, whatever its attempts
            self.summary.settlements = len(self._settled)
        end = self._now
        first = plan.floor_s(
            max(t for t in (sel.start, m.open_time or m.created_time, EARLIEST) if t)
        )
        if first >= end:
            return  # nothing of the requested range has happened yet
        covered = plan.covered(
            None if p is None else p.trades_from, None if p is None else p.trades_through, end
        )
        if p is None or covered is None:
            p = Progress(m.ticker, first, first, 0, False, None)
        else:
            lo, hi = covered
            p = p._replace(trades_from=lo, trades_through=hi)
            if first < lo:  # the part before the range covered so far
                n = await self._trades(m, historical, first, lo)
                candles_through, earlier = p.candles_through, 0
                try:
                    if candles_through is not None:
                        if sel.candles:  # their earlier part
                            earlier = (await self._candles(m, historical, first, lo))[1]
                        else:
                            candles_through = None  # Kalshi's candles cover [from, ...) no more
                    p = p._replace(
                        trades_from=first,
                        trades_loaded=p.trades_loaded + n,
                        candles_through=candles_through,
                    )
                    await self._save(p, n, earlier)
                except BaseException:
                    self.report.discard(n)  # not saved: fetched again by the retry
                    raise
        if not p.trades_complete:
            n = await self._trades(m, historical, p.trades_through or first, end)
            p = p._replace(
                trades_through=end,
                trades_loaded=p.trades_loaded + n,
                trades_complete=plan.trades_complete(m.status, m.close_time, end),
            )
            try:
                await self._save(p, n)
            except BaseException:
                self.report.discard(n)
                raise
        if sel.candles:
            through, got = await self._candles(
                m, historical, p.candles_through or p.trades_from, end
            )
            if through is not None:
                await self._save(p._replace(candles_through=through), 0, got)

    async def _save(self, p: Progress, trades: int, candles: int = 0) -> None:
        """Save the progress row; the ``trades`` and ``candles`` loaded for it count from now on
        (once: a retried market loads again what its failed attempt had not saved)."""
        async with self.pool.connection() as conn:
            await save_progress(conn, p)
        self.summary.trades_fetched += trades
        self.summary.candles_fetched += candles
        self.report.commit(trades)

    async def _trades(self, m: Market, historical: bool, start: datetime, end: datetime) -> int:
        """Fetch and commit the trades of ``[start, end)``: how many (listed: trades listed twice
        count twice, the writer stores them once).

        The live window goes first; then the cutoff is read again, and the historical window
        reaches it: trades Kalshi moved behind the cutoff while the live window was listed are
        listed there (a run over all of Kalshi takes hours; the cutoff moves meanwhile)."""
        n = 0
        try:
            windows = plan.trade_windows(
                start=start, end=end, cutoff=self._cutoff, historical_market=historical
            )
            live = [w for w in windows if not w.historical]
            for w in live:
                n += await self._window(m.ticker, w)
            if live:  # one more request per market with a live window
                await self._refresh_cutoff()
                windows = plan.trade_windows(
                    start=start, end=end, cutoff=self._cutoff, historical_market=historical
                )
            for w in windows:
                if w.historical:
                    n += await self._window(m.ticker, w)
            await self.writer.drain()
        except BaseException:
            self.report.discard(n)  # fetched again by the retry
            raise
        return n

    async def _refresh_cutoff(self) -> None:
        """Kalshi's cutoff read again (the workers share it; it only moves forward)."""
        cut = (await self.rest.get_historical_cutoff()).trades_created_ts
        if cut is not None and cut > self._cutoff:
            self._cutoff = cut

    async def _window(self, ticker: str, w: plan.TradeWindow) -> int:
        last = w.end - timedelta(seconds=1)
        it = (
            self.rest.get_historical_trades(ticker, w.start, last)
            if w.historical
            else self.rest.get_trades(ticker, w.start, last)
        )
        ranker: RestRanker[RestTrade] = RestRanker()
        n = 0
        try:
            async for t in it:
                if t.created_time is None:
                    continue
                for trade, seq in ranker.push(t.ticker, t.created_time, t):
                    n += await self._put(trade, seq)
            for trade, seq in ranker.finish():
                n += await self._put(trade, seq)
        except BaseException:
            self.report.discard(n)
            raise
        if ranker.out_of_order:
            log.warning(
                "REST trades of %s not listed newest first (%d)", ticker, ranker.out_of_order
            )
        return n

    async def _put(self, t: RestTrade, seq: int) -> int:
        row = rest_trade_row(t, self._now, seq)
        if row is None:
            return 0
        await self.writer.put("trades", row)
        s = self.summary  # trades_fetched: counted once their progress row is saved
        if s.first_trade is None or row[0] < s.first_trade:
            s.first_trade = row[0]
        if s.last_trade is None or row[0] > s.last_trade:
            s.last_trade = row[0]
        self.report.trades(1)
        return 1

    async def _candles(
        self, m: Market, historical: bool, since: datetime | None, until: datetime
    ) -> tuple[datetime | None, int]:
        """Store Kalshi's candles ending in ``[since, until]``: the end of the span fetched
        (``None``: no span) and how many candles were stored (counted by :meth:`_save`)."""
        span = plan.candle_span(m.open_time or m.created_time, m.close_time, since, until)
        if span is None:
            return None, 0
        n = 0
        series = self.catalog.events.get(m.event_ticker or "") or m.event_ticker or ""
        for period in plan.CANDLE_PERIODS:
            for lo, hi in plan.candle_chunks(span[0], span[1], period):
                got = (
                    None
                    if historical
                    else await self.rest.get_candlesticks(series, m.ticker, lo, hi, period)
                )
                if got is None:  # settled before the cutoff, or since moved behind it
                    got = await self.rest.get_historical_candlesticks(m.ticker, lo, hi, period)
                if got is None:
                    continue
                rows = [plan.candle_row(m.ticker, period, c) for c in got.candlesticks]
                async with self.pool.connection() as conn:
                    await save_candles(conn, rows)
                n += len(rows)
        return span[1], n

    async def _refresh(self) -> None:
        s = self.summary
        if s.first_trade is None or s.last_trade is None:
            return
        lo = s.first_trade - timedelta(minutes=1)
        hi = s.last_trade + timedelta(minutes=1)
        s.refresh_window = (lo, hi)
        try:
            async with self.pool.connection() as conn:
                await conn.set_autocommit(True)
                try:
                    s.refreshed = await refresh(conn, lo, hi, TRADES_ONLY)  # what it wrote
                finally:
                    await conn.set_autocommit(False)
        except (psycopg.Error, KalshibookError) as exc:
            text = str(exc).strip()
            s.refresh_problem = scrub(text.splitlines()[0]) if text else type(exc).__name__
            return
        log.info("candles refreshed over [%s, %s): %s", lo.isoformat(), hi.isoformat(), s.refreshed)


def describe(sel: Selection) -> str:
    parts: Sequence[str] = (
        ["all"]
        if sel.all
        else [*(f"series={s}" for s in sel.series), *(f"event={e}" for e in sel.events)]
        + [f"market={m}" for m in sel.markets]
    )
    return " ".join(parts) + (f" from {sel.start.isoformat()}" if sel.start else "")
