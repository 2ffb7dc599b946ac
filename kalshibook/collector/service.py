"""The collector daemon: supervised tasks around the router, the WebSocket and the writer.

Tasks (named, started by :meth:`Collector.run`, watched by one ``FIRST_COMPLETED`` monitor; any
task ending unexpectedly stops the daemon with its error):

==================  ==============================================================================
``ws``              (re)connects; for each session feeds every item to the :class:`Router` and,
                    per burst, its rows to the writer (``put_table_nowait`` per table, ``await
                    put`` for the rest when a queue is full)
``subscriptions``   subscribes ``market_lifecycle_v2``/``trade``/``ticker`` and the orderbook
                    shards on every new connection; adds/removes markets, ``get_snapshot``,
                    resubscribes after errors 10/25
``discovery``       REST sweep of open markets (+ their events and series) at start, every
                    ``discovery_interval`` and after lifecycle frames may have been lost
``enrichment``      REST view of markets/events/series announced by lifecycle frames
``settlements``     confirms settlements over REST ``GET /markets/{ticker}`` with backoff
``backfill``        REST trades for every outage window (deduplicated by the writer), then the
                    candle refresh
``checkpointer``    time-based checkpoint snapshots; stamps snapshots on a quiet feed
``metrics``         ``GET /metrics`` and ``GET /health``
``writer``          watches the writer's flush task
==================  ==============================================================================

Work between the message loop and the background tasks goes through :class:`WorkQueues`:
coalescing sets keyed by market or sid and merged time windows, so they are bounded by the size
of the exchange, never by the message rate, and the message loop never waits on them.

Shutdown (:meth:`Collector.stop`, SIGTERM/SIGINT): stop reading, checkpoint every clean book,
write the open gaps up to the exchange clock, hand everything to the writer and drain it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
import psycopg

from kalshibook.backoff import Backoff
from kalshibook.collector.catalog import Catalog
from kalshibook.collector.metrics import Histogram, Metrics, MetricsServer
from kalshibook.collector.reference import (
    event_row,
    market_row,
    rest_trade_row,
    series_row,
    settlement_row,
)
from kalshibook.collector.router import Router
from kalshibook.collector.subscriptions import GLOBAL_CHANNELS, ORDERBOOK, SubscriptionPlan
from kalshibook.errors import FeedError, KalshibookError, ProtocolError, WsCommandError
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.kalshi.ws import KalshiWebSocket, WsSession
from kalshibook.settings import Settings
from kalshibook.storage.pool import Pool
from kalshibook.storage.writer import Writer

__all__ = ("Collector", "WorkQueues")

log = logging.getLogger(__name__)

_BATCH: Final = 100
"""Tickers per REST ``tickers=`` request."""
_MAX_WINDOWS: Final = 1024
_MERGE_SLACK: Final = timedelta(seconds=1)
_OPEN_FOR_BOOKS: Final = ("active",)
_FINISHED: Final = frozenset(
    {"closed", "determined", "disputed", "amended", "finalized", "settled"}
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WorkQueues:
    """The router's :class:`~kalshibook.collector.router.Effects`: bounded, coalescing work."""

    def __init__(self) -> None:
        self.snapshots: dict[int, dict[str, None]] = {}
        self.resubscribe_sids: dict[int, tuple[str, str]] = {}
        self.adds: dict[str, None] = {}
        self.removes: dict[str, None] = {}
        self.windows: list[tuple[datetime, datetime]] = []
        self.confirms: dict[str, None] = {}
        self.enrich_markets: dict[str, None] = {}
        self.enrich_events: dict[str, None] = {}
        self.final_books: dict[str, None] = {}
        """Unfollowed markets whose book was inside a gap: fetch their final book over REST."""
        self.rediscover_due = False
        self.sub_wake = asyncio.Event()
        self.backfill_wake = asyncio.Event()
        self.confirm_wake = asyncio.Event()
        self.enrich_wake = asyncio.Event()
        self.discover_wake = asyncio.Event()
        self.windows_merged = 0

    # -- Effects ------------------------------------------------------------------------------

    def request_snapshot(self, sid: int, tickers: list[str]) -> None:
        self.snapshots.setdefault(sid, {}).update(dict.fromkeys(tickers))
        self.sub_wake.set()

    def resubscribe(self, sid: int, channel: str, reason: str) -> None:
        self.resubscribe_sids[sid] = (channel, reason)
        self.snapshots.pop(sid, None)
        self.sub_wake.set()

    def backfill(self, start: datetime, end: datetime) -> None:
        if end < start:
            start, end = end, start
        self.windows.append((start, end))
        self.windows = merge_windows(self.windows)
        while len(self.windows) > _MAX_WINDOWS:  # bound: merge the two closest windows
            w = self.windows
            i = min(range(len(w) - 1), key=lambda k: w[k + 1][0] - w[k][1])
            w[i : i + 2] = [(w[i][0], max(w[i][1], w[i + 1][1]))]
            self.windows_merged += 1
        self.backfill_wake.set()

    def confirm_settlement(self, ticker: str) -> None:
        self.confirms[ticker] = None
        self.confirm_wake.set()

    def subscribe_markets(self, tickers: list[str]) -> None:
        for t in tickers:
            self.removes.pop(t, None)
            self.adds[t] = None
        self.sub_wake.set()

    def unsubscribe_markets(self, tickers: list[str]) -> None:
        for t in tickers:
            self.adds.pop(t, None)
            self.removes[t] = None
        self.sub_wake.set()

    def enrich(self, market: str | None = None, event: str | None = None) -> None:
        if market:
            self.enrich_markets[market] = None
        if event:
            self.enrich_events[event] = None
        self.enrich_wake.set()

    def rediscover(self) -> None:
        self.rediscover_due = True
        self.discover_wake.set()

    def depth(self) -> dict[tuple[str, ...], float]:
        return {
            ("snapshots",): float(sum(len(v) for v in self.snapshots.values())),
            ("resubscribe",): float(len(self.resubscribe_sids)),
            ("subscribe",): float(len(self.adds)),
            ("unsubscribe",): float(len(self.removes)),
            ("backfill",): float(len(self.windows)),
            ("settlements",): float(len(self.confirms)),
            ("enrich",): float(len(self.enrich_markets) + len(self.enrich_events)),
            ("final_books",): float(len(self.final_books)),
        }


def merge_windows(windows: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Sort and merge overlapping (or nearly touching) windows."""
    out: list[tuple[datetime, datetime]] = []
    for start, end in sorted(windows):
        if out and start <= out[-1][1] + _MERGE_SLACK:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


class _CachedStats:
    """``writer.stats()`` computed at most once per scrape (many gauges read it)."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._at = 0.0
        self._stats: Any = None

    def stats(self) -> Any:
        now = time.monotonic()
        if self._stats is None or now - self._at > 0.05:
            self._stats = self._writer.stats()
            self._at = now
        return self._stats


def _closed(session: WsSession) -> bool:
    return session.closed


def _chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class Collector:
    """The daemon. ``await Collector(...).run()`` until :meth:`stop` (or a task fails)."""

    def __init__(
        self,
        settings: Settings,
        pool: Pool,
        writer: Writer,
        *,
        rest: KalshiRest,
        ws: KalshiWebSocket,
        metrics: Metrics | None = None,
    ) -> None:
        cs = settings.collector
        self.settings = settings
        self.pool = pool
        self.writer = writer
        self.rest = rest
        self.ws = ws
        self.metrics = metrics or Metrics()
        self.catalog = Catalog()
        self.plan = SubscriptionPlan(cs.orderbook_sub_size)
        self.work = WorkQueues()
        self.router = Router(
            effects=self.work,
            metrics=self.metrics,
            catalog=self.catalog,
            checkpoint_deltas=cs.checkpoint_deltas,
            checkpoint_seconds=cs.checkpoint_seconds,
        )
        self.stop_event = asyncio.Event()
        self.ready = asyncio.Event()
        """Set once the first discovery sweep is done and its markets are subscribed."""
        self.metrics_server: MetricsServer | None = None
        self._session: WsSession | None = None
        self._subscribed_session: WsSession | None = None
        self._last_frame_wall = 0.0
        self._pump_lock = asyncio.Lock()
        """Held while the router's rows are handed to the writer (per-table order across tasks)."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._discovered_once = False
        self.discoveries = 0
        """Completed discovery sweeps."""
        self._candles_available = importlib.util.find_spec("kalshibook.storage.candles") is not None
        self._register_gauges()

    # ------------------------------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the daemon to stop (idempotent, callable from a signal handler)."""
        self.stop_event.set()

    async def run(self) -> None:
        """Run until :meth:`stop`; raises when a task fails (after a graceful shutdown)."""
        await self._recover_restart_state()
        cs = self.settings.collector
        if cs.metrics_port >= 0 and cs.metrics_host and cs.metrics_port != 0:
            self.metrics_server = MetricsServer(
                cs.metrics_host, cs.metrics_port, self.metrics.render, self._health
            )
            await self.metrics_server.start()
        starters: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "ws": self._ws_task,
            "subscriptions": self._subscriptions_task,
            "discovery": self._discovery_task,
            "enrichment": self._enrichment_task,
            "settlements": self._settlements_task,
            "backfill": self._backfill_task,
            "checkpointer": self._checkpoint_task,
        }
        if self.metrics_server is not None:
            server = self.metrics_server
            starters["metrics"] = lambda: server.serve(self.stop_event)
        if self.writer.task is not None:
            writer_task = self.writer.task
            starters["writer"] = lambda: self._watch_writer(writer_task)
        for name, start in starters.items():
            self._tasks[name] = asyncio.create_task(start(), name=f"collector-{name}")
        stopper = asyncio.create_task(self.stop_event.wait(), name="collector-stop")
        failure: BaseException | None = None
        try:
            done, _ = await asyncio.wait(
                [*self._tasks.values(), stopper], return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task is stopper:
                    continue
                name = task.get_name()
                if task.cancelled():
                    failure = KalshibookError(f"{name} was cancelled")
                elif task.exception() is not None:
                    failure = task.exception()
                    log.error("task failed task=%s error=%r", name, failure)
                elif not self.stop_event.is_set():
                    failure = KalshibookError(f"{name} ended unexpectedly")
                    log.error("task ended unexpectedly task=%s", name)
                break
        finally:
            stopper.cancel()
            await asyncio.gather(stopper, return_exceptions=True)
            await self._shutdown()
        if failure is not None:
            raise failure

    async def _shutdown(self) -> None:
        log.info("collector stopping")
        self.stop_event.set()
        self.router.stopping = True
        ws_task = self._tasks.get("ws")
        session = self._session
        if session is not None:
            await session.close()  # the loop handles what was buffered, then the disconnect
        elif ws_task is not None:
            ws_task.cancel()  # between connections: nothing to finish
        if ws_task is not None and not ws_task.done():
            try:
                async with asyncio.timeout(5.0):
                    await asyncio.shield(ws_task)
            except TimeoutError:
                log.warning("ws task did not finish within 5 s of the stop; cancelling it")
                ws_task.cancel()
            except Exception as exc:  # noqa: BLE001 - reported here, the shutdown goes on
                log.error("ws task failed while stopping error=%r", exc)
        for task in self._tasks.values():
            if not task.done():
                task.cancel()
        results = await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for task, result in zip(self._tasks.values(), results, strict=True):
            if isinstance(result, Exception):
                log.warning("task ended with an error task=%s error=%r", task.get_name(), result)
        now = _utcnow()
        router = self.router
        router.flush_unstamped(now)
        n = router.checkpoint_all(now)
        router.close_gaps(router.open_gap_tickers(), now)
        drained = False
        try:
            await self._pump_rows()
            async with asyncio.timeout(30.0):
                await self.writer.drain()
            drained = True
        except TimeoutError:
            log.warning("writer not drained within 30 s at shutdown (rows stay queued/spooled)")
        except KalshibookError as exc:
            log.error("writer unavailable at shutdown: %s", exc)
        if self.metrics_server is not None:
            await self.metrics_server.close()
        log.info("collector stopped checkpoints=%d drained=%s", n, drained)

    async def _watch_writer(self, task: asyncio.Task[None]) -> None:
        await asyncio.shield(task)
        if not self.stop_event.is_set():
            raise KalshibookError("the writer stopped")

    # ------------------------------------------------------------------------------------------
    # startup state
    # ------------------------------------------------------------------------------------------

    async def _recover_restart_state(self) -> None:
        """Gaps and trade backfill for the time the daemon was not running."""
        try:
            async with self.pool.connection() as conn:
                last: dict[str, datetime | None] = {}
                for sql in (_LAST_DELTA, _LAST_SNAPSHOT, _LAST_TRADE):
                    cur = await conn.execute(sql)
                    row = await cur.fetchone()
                    last[sql] = row[0] if row is not None else None
                last_trade = last[_LAST_TRADE]
                known = [t for t in last.values() if t is not None]
                last_data = max(known) if known else None
                tickers: list[str] = []
                if last_data is not None:
                    cur = await conn.execute(_BOOK_MARKETS)
                    tickers = [r[0] for r in await cur.fetchall()]
                cur = await conn.execute(_KNOWN)
                for ticker, event, series, status in await cur.fetchall():
                    self.catalog.note_market(ticker, event, series, status)
                    if event:
                        self.catalog.events.setdefault(event, series)
                    if series:
                        self.catalog.series.add(series)
        except psycopg.Error as exc:
            log.warning("cannot read the previous run's state (%s); no restart gaps written", exc)
            return
        if last_data is not None and tickers:
            self.router.open_restart_gaps(tickers, last_data)
            log.info(
                "daemon restart: books of %d markets unknown since %s",
                len(tickers),
                last_data.isoformat(),
            )
        if last_trade is not None:
            self.router.open_trade_outage(last_trade)
            log.info("daemon restart: trades since %s will be backfilled", last_trade.isoformat())

    # ------------------------------------------------------------------------------------------
    # the message loop
    # ------------------------------------------------------------------------------------------

    async def _pump_rows(self) -> None:
        """Hand the router's rows to the writer: per table, at once while there is room, the
        rest waiting for it (backpressure). Per-table order is what the writer keeps."""
        writer = self.writer
        async with self._pump_lock:  # one taker at a time: a later take waits for the rest
            for table, rows in self.router.take():
                done = writer.put_table_nowait(table, rows)
                for row in rows[done:]:
                    await writer.put(table, row)

    async def _ws_task(self) -> None:
        sessions_iter = self.ws.connect_forever()
        assert isinstance(sessions_iter, AsyncGenerator)
        async with contextlib.aclosing(sessions_iter) as sessions:
            async for session in sessions:
                if self.stop_event.is_set():
                    return
                if self.ws.stats.connects > 1:
                    self.metrics.reconnects.inc()
                self._session = session
                self.router.sid_channels = session.subscriptions
                self.plan.unbind_all()
                self.work.sub_wake.set()
                try:
                    await self._consume(session)
                finally:
                    self._session = None
                if self.stop_event.is_set():
                    return

    async def _consume(self, session: WsSession) -> None:
        """The hot loop: items -> router -> writer. Buffered items are taken in bulk (one await
        per burst, not per frame); rows go to the writer without awaiting unless its queue is
        full (backpressure)."""
        handle_all = self.router.handle_all
        take = session.take_nowait
        clock = time.monotonic
        while True:
            items = take(512)
            if not items:
                self._last_frame_wall = clock()
                try:
                    items = [await anext(session)]
                except StopAsyncIteration:
                    break
            handle_all(items, self._router_failed)
            await self._pump_rows()  # the rows of the whole burst
        self._last_frame_wall = clock()

    def _router_failed(self, item: Any) -> None:
        """One item the router raised on (called inside its ``except``): counted and logged."""
        self.metrics.router_errors.inc()
        log.exception("router failed on item type=%s", type(item).__name__)

    # ------------------------------------------------------------------------------------------
    # subscriptions
    # ------------------------------------------------------------------------------------------

    async def _subscriptions_task(self) -> None:
        work = self.work
        while not self.stop_event.is_set():
            await work.sub_wake.wait()
            work.sub_wake.clear()
            session = self._session
            if session is None or session.closed:
                continue
            try:
                await self._sync_subscriptions(session)
            except FeedError as exc:
                if self._session is not session or _closed(session):
                    continue  # the next session subscribes everything again
                log.warning("subscription command failed: %s", exc)
                await asyncio.sleep(0.5)
                work.sub_wake.set()

    def _forget(self, tickers: list[str]) -> None:
        """Drop the books of markets no longer followed; one unfollowed inside a gap gets its
        final book over REST."""
        now = _utcnow()
        for t in tickers:
            if self.router.forget(t, now):
                self.work.final_books[t] = None
                self.work.enrich_wake.set()

    async def _sync_subscriptions(self, session: WsSession) -> None:
        work = self.work
        plan = self.plan
        if session is not self._subscribed_session:
            # A new connection: every subscription (and every pending request) starts over.
            work.snapshots.clear()
            work.resubscribe_sids.clear()
            plan.unbind_all()
            if work.removes:
                gone = list(work.removes)
                plan.remove(gone)  # nothing is subscribed on this connection yet
                work.removes.clear()
                self._forget(gone)
            if work.adds:
                plan.add(list(work.adds))
                work.adds.clear()
            sids = await session.subscribe(list(GLOBAL_CHANNELS))
            plan.global_sids.update(sids)
            log.info("subscribed channels=%s", ",".join(f"{c}:{s}" for c, s in sids.items()))
            self._subscribed_session = session
            for shard in plan.unsubscribed_shards():
                await self._subscribe_shard(session, shard)
        # terminal errors 10/25: subscribe again (new sid)
        while work.resubscribe_sids:
            sid, (channel, reason) = next(iter(work.resubscribe_sids.items()))
            del work.resubscribe_sids[sid]
            failed = plan.shard_by_sid(sid)
            if failed is not None:
                plan.unbind(failed)
                await self._subscribe_shard(session, failed)
            else:
                ch = channel or plan.channel_of_global_sid(sid)
                if ch and ch != ORDERBOOK:
                    sids = await session.subscribe([ch])
                    plan.global_sids.update(sids)
            log.info("resubscribed sid=%d channel=%s reason=%s", sid, channel, reason)
        # shrink
        if work.removes:
            gone = list(work.removes)
            removed = plan.remove(gone)
            work.removes.clear()
            self._forget(gone)
            for shard, tickers in removed.items():
                if shard.sid is None:
                    continue
                if not shard.markets:
                    sid = shard.sid
                    plan.unbind(shard)
                    await session.unsubscribe([sid])
                else:
                    await self._update(session, shard.sid, "delete_markets", tickers)
        # grow
        if work.adds:
            added = plan.add(list(work.adds))
            work.adds.clear()
            for shard, tickers in added.items():
                if shard.sid is None:
                    await self._subscribe_shard(session, shard)
                else:
                    await self._update(session, shard.sid, "add_markets", tickers)
        # resync after sequence gaps
        while work.snapshots:
            sid, tickers_set = next(iter(work.snapshots.items()))
            del work.snapshots[sid]
            target = plan.shard_by_sid(sid)
            if target is None:
                continue  # the sid is gone; its resubscription sends snapshots anyway
            tickers = [t for t in tickers_set if t in target.markets]
            if not tickers:
                continue
            self.metrics.snapshots_requested.inc(len(tickers))
            try:
                await session.update_subscription(sid, "get_snapshot", tickers)
            except WsCommandError as exc:
                log.warning("get_snapshot failed sid=%d code=%d; resubscribing", sid, exc.code)
                plan.unbind(target)
                await self._subscribe_shard(session, target)

    async def _subscribe_shard(self, session: WsSession, shard: Any) -> None:
        if not shard.markets:
            return
        try:
            sids = await session.subscribe([ORDERBOOK], list(shard.markets))
        except WsCommandError as exc:
            log.warning(
                "orderbook subscribe failed shard=%d code=%d: %s", shard.index, exc.code, exc.msg
            )
            bad = set(exc.market_tickers) & set(shard.markets)
            if not bad:
                # Nothing to drop: leave the shard unsubscribed on this connection (the next
                # connection retries it) and let discovery re-check the markets' states.
                log.error("orderbook shard left unsubscribed shard=%d", shard.index)
                self.work.rediscover()
                return
            self.plan.remove(bad)
            log.warning("markets refused by the exchange dropped: %s", ",".join(sorted(bad)))
            if not shard.markets:
                return
            sids = await session.subscribe([ORDERBOOK], list(shard.markets))
        sid = sids.get(ORDERBOOK)
        if sid is None and len(sids) == 1:
            sid = next(iter(sids.values()))
        if sid is not None:
            self.plan.bind(shard, sid)
            log.info(
                "orderbook shard subscribed shard=%d sid=%d markets=%d",
                shard.index,
                sid,
                len(shard.markets),
            )

    async def _update(self, session: WsSession, sid: int, action: Any, tickers: list[str]) -> None:
        log.debug("update_subscription sid=%d action=%s markets=%d", sid, action, len(tickers))
        try:
            await session.update_subscription(sid, action, tickers)
        except WsCommandError as exc:
            log.warning(
                "update_subscription %s failed sid=%d code=%d: %s", action, sid, exc.code, exc.msg
            )
            if action == "add_markets":
                shard = self.plan.shard_by_sid(sid)
                if shard is not None:
                    self.plan.remove(tickers)

    # ------------------------------------------------------------------------------------------
    # discovery and enrichment
    # ------------------------------------------------------------------------------------------

    async def _discovery_task(self) -> None:
        interval = max(1.0, self.settings.collector.discovery_interval)
        backoff = Backoff(1.0, 60.0)
        work = self.work
        while not self.stop_event.is_set():
            work.rediscover_due = False
            try:
                await self._discover()
            except (FeedError, ProtocolError) as exc:
                delay = backoff.next()
                log.warning("discovery failed (%s); retrying in %.1f s", exc, delay)
                await self._sleep_or_wake(work.discover_wake, delay)
                continue
            backoff.reset()
            self.discoveries += 1
            if not self._discovered_once:
                self._discovered_once = True
                self.ready.set()
            await self._sleep_or_wake(work.discover_wake, interval)
            if work.rediscover_due:
                await asyncio.sleep(1.0)  # debounce bursts of lost-lifecycle signals

    async def _sleep_or_wake(self, event: asyncio.Event, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            pass
        event.clear()

    async def _discover(self) -> None:
        rest = self.rest
        cat = self.catalog
        seen: set[str] = set()
        events_needed: dict[str, None] = {}
        page: list[Any] = []

        async def flush_page() -> None:
            if not page:
                return
            await self._store_markets(page)
            opened = [m.ticker for m in page if m.status in _OPEN_FOR_BOOKS]
            self.work.subscribe_markets(opened)
            page.clear()

        async for m in rest.get_markets(status="open"):
            seen.add(m.ticker)
            if m.event_ticker and m.event_ticker not in cat.events:
                events_needed[m.event_ticker] = None
            page.append(m)
            if len(page) >= 1000:
                await self._fetch_events(list(events_needed))
                events_needed.clear()
                await flush_page()
        await self._fetch_events(list(events_needed))
        await flush_page()
        # Markets we believe unfinished that the sweep did not return changed state (lifecycle
        # frames may have been lost; closing has no frame at all): look them up.
        stale = [t for t in cat.unsettled_markets() if t not in seen]
        for chunk in _chunks(stale, _BATCH):
            found = [m async for m in rest.get_markets(tickers=chunk)]
            await self._store_markets(found)
            for m in found:
                if m.status in _FINISHED:  # no more book activity: stop following it
                    self.work.unsubscribe_markets([m.ticker])
                    if m.status != "closed":
                        self.work.confirm_settlement(m.ticker)
                elif m.status in _OPEN_FOR_BOOKS:
                    self.work.subscribe_markets([m.ticker])
        self.metrics.rest_requests.inc(1.0, "discovery")
        log.info("discovery done open_markets=%d known_events=%d", len(seen), len(cat.events))

    async def _fetch_events(self, tickers: list[str]) -> None:
        """Store events (and their series) not stored yet."""
        await self._store_events([t for t in tickers if t not in self.catalog.events])

    async def _store_events(self, tickers: list[str]) -> None:
        """Fetch these events over REST, store them and their unknown series, and let every
        market we know under them learn its series."""
        if not tickers:
            return
        cat = self.catalog
        series_needed: dict[str, None] = {}
        for chunk in _chunks(tickers, _BATCH):
            rows = []
            async for e in self.rest.get_events(tickers=chunk, with_nested_markets=False):
                cat.events[e.event_ticker] = e.series_ticker or None
                rows.append(event_row(e))
                if e.series_ticker and e.series_ticker not in cat.series:
                    series_needed[e.series_ticker] = None
            await self.writer.upsert_events(rows)
        for info in cat.markets.values():
            if info.series_ticker is None and info.event_ticker is not None:
                info.series_ticker = cat.events.get(info.event_ticker)
        await self._fetch_series(list(series_needed))

    async def _fetch_series(self, tickers: list[str]) -> None:
        cat = self.catalog
        todo = [t for t in tickers if t not in cat.series]
        if not todo:
            return
        rows = []
        if len(todo) > 20:
            wanted = set(todo)
            for listed in await self.rest.get_series_list():
                if listed.ticker in wanted:
                    rows.append(series_row(listed))
                    cat.series.add(listed.ticker)
        else:
            for t in todo:
                one = await self.rest.get_series(t)
                if one is not None:
                    rows.append(series_row(one))
                    cat.series.add(t)
        await self.writer.upsert_series(rows)

    async def _store_markets(self, markets: list[Any]) -> None:
        rows = []
        for m in markets:
            row = market_row(m, self.catalog)
            if row is not None:
                rows.append(row)
        await self.writer.upsert_markets(rows)

    async def _enrichment_task(self) -> None:
        work = self.work
        backoff = Backoff(0.5, 30.0)
        while not self.stop_event.is_set():
            await work.enrich_wake.wait()
            work.enrich_wake.clear()
            await asyncio.sleep(0.05)  # let a burst of lifecycle frames coalesce
            markets = list(work.enrich_markets)[:_BATCH]
            events = list(work.enrich_events)[:_BATCH]
            finals = list(work.final_books)[:_BATCH]
            try:
                for t in finals:
                    ob = await self.rest.get_orderbook(t)
                    if ob is not None:
                        self.router.rest_snapshot(t, ob.yes, ob.no, _utcnow())
                    work.final_books.pop(t, None)
                await self._pump_rows()
                if markets:
                    found = [m async for m in self.rest.get_markets(tickers=markets)]
                    needed = [
                        m.event_ticker
                        for m in found
                        if m.event_ticker and m.event_ticker not in self.catalog.events
                    ]
                    await self._fetch_events(list(dict.fromkeys(needed)))
                    await self._store_markets(found)
                    self.metrics.rest_requests.inc(1.0, "enrichment")
                if events:
                    await self._store_events(events)
            except (FeedError, ProtocolError) as exc:
                delay = backoff.next()
                log.warning("enrichment failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                work.enrich_wake.set()
                continue
            backoff.reset()
            for t in markets:
                work.enrich_markets.pop(t, None)
            for e in events:
                work.enrich_events.pop(e, None)
            if work.enrich_markets or work.enrich_events or work.final_books:
                work.enrich_wake.set()

    # ------------------------------------------------------------------------------------------
    # settlements
    # ------------------------------------------------------------------------------------------

    async def _settlements_task(self) -> None:
        work = self.work
        retries = max(1, self.settings.collector.settlement_confirm_retries)
        attempts: dict[str, int] = {}
        due: dict[str, float] = {}
        backoff = Backoff(1.0, 60.0, jitter=0.0)
        while not self.stop_event.is_set():
            now = time.monotonic()
            ready = [t for t in work.confirms if due.get(t, 0.0) <= now]
            if not ready:
                wait = min((due[t] for t in work.confirms if t in due), default=None)
                timeout = None if wait is None else max(0.01, wait - now)
                work.confirm_wake.clear()
                try:
                    async with asyncio.timeout(timeout):
                        await work.confirm_wake.wait()
                except TimeoutError:
                    pass
                continue
            for ticker in ready:
                try:
                    m = await self.rest.get_market(ticker)
                except (FeedError, ProtocolError) as exc:
                    log.warning("settlement lookup failed ticker=%s: %s", ticker, exc)
                    m = None
                row = settlement_row(m, self.catalog) if m is not None else None
                if m is not None and row is not None:
                    await self.writer.upsert_settlement(row)
                    await self._store_markets([m])
                    self.metrics.settlements_confirmed.inc()
                    work.confirms.pop(ticker, None)
                    attempts.pop(ticker, None)
                    due.pop(ticker, None)
                    continue
                n = attempts.get(ticker, 0) + 1
                if n > retries:
                    log.warning(
                        "settlement not confirmed after %d attempts ticker=%s", n - 1, ticker
                    )
                    work.confirms.pop(ticker, None)
                    attempts.pop(ticker, None)
                    due.pop(ticker, None)
                    continue
                attempts[ticker] = n
                due[ticker] = time.monotonic() + backoff.base(n - 1)

    # ------------------------------------------------------------------------------------------
    # trade backfill
    # ------------------------------------------------------------------------------------------

    async def _backfill_task(self) -> None:
        work = self.work
        backoff = Backoff(1.0, 60.0)
        while not self.stop_event.is_set():
            if not work.windows:
                work.backfill_wake.clear()
                await work.backfill_wake.wait()
                continue
            start, end = work.windows[0]
            try:
                n = await self._backfill(start, end)
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
            await self._refresh_candles(start, end)

    async def _backfill(self, start: datetime, end: datetime) -> int:
        now = _utcnow()
        n = 0
        writer = self.writer
        min_ts = int(start.timestamp())
        max_ts = int(end.timestamp()) + 1
        async for t in self.rest.get_trades(None, min_ts, max_ts):
            row = rest_trade_row(t, now)
            if row is None:
                continue
            await writer.put("trades", row)
            n += 1
        self.metrics.backfilled_trades.inc(n)
        self.metrics.rest_requests.inc(1.0, "backfill")
        return n

    async def _refresh_candles(self, start: datetime, end: datetime) -> None:
        if not self._candles_available:
            return
        try:
            from kalshibook.storage import candles
        except ImportError:  # pragma: no cover - checked at start
            self._candles_available = False
            return
        refresh = getattr(candles, "refresh_candles", None)
        if refresh is None:
            return
        try:
            async with asyncio.timeout(30.0):
                await self.writer.drain()
            lo = start - timedelta(minutes=1)
            hi = end + timedelta(minutes=1)
            async with self.pool.connection() as conn:
                await conn.set_autocommit(True)
                try:
                    await refresh(conn, lo, hi)
                finally:
                    await conn.set_autocommit(False)
        except (psycopg.Error, KalshibookError, TimeoutError) as exc:
            log.warning("candle refresh failed: %r", exc)

    # ------------------------------------------------------------------------------------------
    # checkpoints
    # ------------------------------------------------------------------------------------------

    async def _checkpoint_task(self) -> None:
        router = self.router
        while not self.stop_event.is_set():
            await asyncio.sleep(1.0)
            now = _utcnow()
            router.checkpoint_due(now)
            if router.has_unstamped and time.monotonic() - self._last_frame_wall > 1.0:
                router.flush_unstamped(now)
            await self._pump_rows()

    # ------------------------------------------------------------------------------------------
    # observability
    # ------------------------------------------------------------------------------------------

    def _health(self) -> tuple[bool, str]:
        session = self._session
        connected = session is not None and not session.closed
        writer_ok = self.writer.task is not None and not self.writer.task.done()
        stats = self.writer.stats()
        ok = writer_ok and (connected or not self._discovered_once)
        body = {
            "status": "ok" if ok else "unhealthy",
            "ws_connected": connected,
            "writer_running": writer_ok,
            "database_up": stats.database_up,
            "books": self.router.book_count,
            "spool_files": stats.spool_files_pending,
        }
        return ok, msgspec.json.encode(body).decode()

    def _register_gauges(self) -> None:
        m = self.metrics
        ws = self.ws
        rest = self.rest
        router = self.router
        writer = _CachedStats(self.writer)

        def frames() -> dict[tuple[str, ...], float]:
            d = ws.stats.decode
            out: dict[tuple[str, ...], float] = {(k,): float(v) for k, v in d.by_type.items()}
            for k, v in d.unknown_types.items():
                out[(f"unknown:{k}",)] = float(v)
            return out

        m.add_gauge("ws_frames_by_type_total", "frames decoded, by type", frames, ["type"])
        m.add_gauge(
            "ws_frames_received_total",
            "WebSocket messages received",
            lambda: float(ws.stats.frames),
        )
        m.add_gauge(
            "ws_decode_errors_total",
            "frames that failed to decode (skipped)",
            lambda: float(ws.stats.decode_errors),
        )
        m.add_gauge(
            "ws_stale_frames_total", "duplicate/old frames dropped", lambda: float(ws.stats.stale)
        )
        m.add_gauge(
            "ws_connects_total", "WebSocket connections made", lambda: float(ws.stats.connects)
        )
        m.add_gauge(
            "ws_silence_timeouts_total",
            "connections closed by the silence watchdog",
            lambda: float(ws.stats.silence_timeouts),
        )
        m.add_gauge(
            "ws_queue_high_water",
            "highest decoded-frame buffer depth",
            lambda: float(ws.stats.queue_high_water),
        )
        m.add_gauge(
            "ws_read_pauses_total",
            "times the socket was not read because the frame buffer was full (backpressure)",
            lambda: float(ws.stats.read_pauses),
        )
        m.add_gauge(
            "ws_queue_depth",
            "decoded frames waiting for the router",
            lambda: float(self._session.queue_depth) if self._session else 0.0,
        )
        m.add_gauge(
            "rest_requests_sent_total",
            "REST requests sent (incl. retries)",
            lambda: float(rest.stats.requests),
        )
        m.add_gauge("rest_retries_sent_total", "REST retries", lambda: float(rest.stats.retries))
        m.add_gauge("rest_http_429_total", "REST 429 answers", lambda: float(rest.stats.http_429))
        m.add_gauge(
            "rest_throttled_seconds_total",
            "seconds waited for the REST token bucket",
            lambda: rest.stats.throttled_s,
        )

        def table_stat(attr: str) -> Callable[[], dict[tuple[str, ...], float]]:
            def read() -> dict[tuple[str, ...], float]:
                return {(k,): float(getattr(v, attr)) for k, v in writer.stats().tables.items()}

            return read

        m.add_gauge(
            "writer_queue_depth", "rows queued per table", table_stat("queue_depth"), ["table"]
        )
        m.add_gauge(
            "writer_rows_put_total", "rows handed to the writer", table_stat("rows_put"), ["table"]
        )
        m.add_gauge(
            "writer_rows_written_total", "rows committed", table_stat("rows_written"), ["table"]
        )
        m.add_gauge(
            "writer_rows_duplicate_total",
            "rows skipped as duplicates",
            table_stat("rows_duplicate"),
            ["table"],
        )
        m.add_gauge(
            "writer_rows_rejected_total",
            "rows refused by the database",
            table_stat("rows_rejected"),
            ["table"],
        )
        m.add_gauge(
            "writer_producer_waits_total",
            "times a producer waited on a full queue",
            table_stat("producer_waits"),
            ["table"],
        )
        m.add_gauge(
            "writer_held_rows",
            "rows held in memory (not committed)",
            lambda: float(writer.stats().held_rows),
        )
        m.add_gauge(
            "writer_spool_files",
            "spool files waiting for replay",
            lambda: float(writer.stats().spool_files_pending),
        )
        m.add_gauge(
            "writer_database_up",
            "1 when the last write succeeded",
            lambda: 1.0 if writer.stats().database_up else 0.0,
        )
        m.add_gauge(
            "writer_batches_total",
            "batches committed",
            lambda: float(writer.stats().batches_written),
        )
        m.add_gauge(
            "writer_last_commit_timestamp_seconds",
            "Unix time the last batch committed (0 before the first): write freshness",
            lambda: writer.stats().last_commit_at or 0.0,
        )

        def latency() -> tuple[tuple[float, ...], tuple[int, ...], int, float]:
            h = writer.stats().batch_latency
            return h.bounds, h.counts, h.count, h.sum

        m.add(
            Histogram(
                "kalshibook_collector_writer_batch_latency_seconds",
                "time to write and commit one batch",
                latency,
            )
        )
        m.add_gauge(
            "writer_batch_latency_seconds_last",
            "latency of the last batch",
            lambda: writer.stats().batch_latency_last or 0.0,
        )
        m.add_gauge(
            "writer_retries_total",
            "failed batch writes retried",
            lambda: float(writer.stats().retries),
        )
        m.add_gauge(
            "writer_worker_starts_total",
            "COPY worker processes started (beyond one per writer connection: replaced)",
            lambda: float(writer.stats().worker_starts),
        )
        m.add_gauge("books", "live order books", lambda: float(router.book_count))
        m.add_gauge(
            "books_dirty",
            "books waiting for a snapshot after a gap",
            lambda: float(router.dirty_count()),
        )
        m.add_gauge(
            "deltas_dropped_total",
            "deltas not applied (no snapshot yet / dirty)",
            lambda: float(router.dropped_deltas),
        )
        m.add_gauge(
            "router_unknown_items_total",
            "decoded frames of a type the router does not record (skipped)",
            lambda: float(router.unknown_frames),
        )
        m.add_gauge(
            "router_control_errors_total",
            "error frames that end no subscription (logged)",
            lambda: float(router.control_errors),
        )
        m.add_gauge("work_queue_depth", "pending background work", self.work.depth, ["queue"])


_LAST_DELTA: Final = "SELECT ts FROM market.orderbook_deltas ORDER BY ts DESC LIMIT 1"
_LAST_SNAPSHOT: Final = "SELECT ts FROM market.orderbook_snapshots ORDER BY ts DESC LIMIT 1"
_LAST_TRADE: Final = "SELECT ts FROM market.trades ORDER BY ts DESC LIMIT 1"
_BOOK_MARKETS: Final = """
SELECT m.ticker FROM market.markets m
WHERE m.status NOT IN ('determined', 'finalized', 'settled')
  AND EXISTS (SELECT 1 FROM market.orderbook_snapshots s WHERE s.market_ticker = m.ticker)
"""
_KNOWN: Final = "SELECT ticker, event_ticker, series_ticker, status FROM market.markets"
