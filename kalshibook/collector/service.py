"""The collector daemon: supervises and wires the tasks around the router, WebSocket and writer.

Tasks (named, started by :meth:`Collector.run`, watched by one ``FIRST_COMPLETED`` monitor; any
task ending unexpectedly stops the daemon with its error). Every long-lived task of the daemon is
one of these: none is started elsewhere, so none can fail unnoticed.

==================  ==============================================================================
``ws``              (re)connects; for each session feeds every item to the :class:`Router` and,
                    per burst, its rows to the writer (``put_table_nowait`` per table, ``await
                    put`` for the rest when a queue is full)
``subscriptions``   :class:`~kalshibook.collector.subscriber.Subscriber`: channels and orderbook
                    shards on every new connection, market adds/removes, ``get_snapshot``,
                    resubscriptions after errors 10/25
``discovery``       :class:`~kalshibook.collector.discovery.Discovery`: REST sweeps of the open
                    markets (+ their events and series)
``enrichment``      :class:`~kalshibook.collector.enrichment.Enrichment`: REST view of what
                    lifecycle frames announce; final books of markets unfollowed inside a gap
``settlements``     :class:`~kalshibook.collector.settlements.Settlements`: REST confirmation
``backfill``        :class:`~kalshibook.collector.backfill.Backfill`: REST trades for every outage
                    window, then the candle refresh
``checkpointer``    time-based checkpoint snapshots; stamps snapshots on a quiet feed
``metrics``         ``GET /metrics`` and ``GET /health``
``writer``          watches the writer's flush task
==================  ==============================================================================

Work between the message loop and the background tasks goes through
:class:`~kalshibook.collector.work.WorkQueues` (bounded, coalescing; the message loop never waits
on them). At start the previous run's state (:mod:`kalshibook.storage.restart`) opens the restart
gaps and trade backfill.

Shutdown (:meth:`Collector.stop`, SIGTERM/SIGINT): stop reading, checkpoint every clean book,
write the open gaps up to the exchange clock, hand everything to the writer and drain it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg

from kalshibook.collector.backfill import Backfill
from kalshibook.collector.catalog import Catalog
from kalshibook.collector.discovery import Discovery
from kalshibook.collector.enrichment import Enrichment
from kalshibook.collector.gauges import register_gauges
from kalshibook.collector.metrics import Metrics, MetricsServer
from kalshibook.collector.reference_sync import ReferenceSync
from kalshibook.collector.router import Router
from kalshibook.collector.settlements import Settlements
from kalshibook.collector.subscriber import Subscriber
from kalshibook.collector.subscriptions import SubscriptionPlan
from kalshibook.collector.work import WorkQueues
from kalshibook.errors import KalshibookError
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.kalshi.ws import KalshiWebSocket, WsSession
from kalshibook.settings import Settings
from kalshibook.storage.delta_counts import COUNT_EVERY, count_days
from kalshibook.storage.pool import Pool
from kalshibook.storage.restart import book_markets, known_markets, last_stored
from kalshibook.storage.writer import Writer

__all__ = ("Collector",)

log = logging.getLogger(__name__)

COUNT_DAYS = 24
"""Days of deltas the collector counts per round (every ``COUNT_EVERY`` seconds): a year's
backlog is counted in about 2.5 hours, one day's scan at a time."""


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
        self.metrics = metrics = metrics or Metrics()
        self.catalog = catalog = Catalog()
        self.plan = SubscriptionPlan(cs.orderbook_sub_size)
        self.work = work = WorkQueues()
        self.router = router = Router(
            effects=work,
            metrics=metrics,
            catalog=catalog,
            checkpoint_deltas=cs.checkpoint_deltas,
            checkpoint_seconds=cs.checkpoint_seconds,
        )
        self.stop_event = stop = asyncio.Event()
        self.ready = asyncio.Event()
        """Set once the first discovery sweep is done and its markets are subscribed."""
        self.metrics_server: MetricsServer | None = None
        self._session: WsSession | None = None
        self._last_frame_wall = 0.0
        self._pump_lock = asyncio.Lock()
        """Held while the router's rows are handed to the writer (per-table order across tasks)."""
        self._unsent: deque[tuple[str, list[Any]]] = deque()
        """Rows taken from the router and not yet in the writer's queues (a pump waiting for room
        when its task was cancelled): the next pump, the shutdown's at the latest, sends them
        first. At most one burst's rows (the router's output between two pumps)."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        refs = ReferenceSync(rest, writer, catalog, subscribe=work.subscribe_markets)
        self.subscriber = Subscriber(
            plan=self.plan,
            router=router,
            work=work,
            metrics=metrics,
            current_session=lambda: self._session,
            stop=stop,
        )
        self.discovery = Discovery(
            rest=rest,
            refs=refs,
            catalog=catalog,
            work=work,
            metrics=metrics,
            interval=cs.discovery_interval,
            stop=stop,
            ready=self.ready,
        )
        self.enrichment = Enrichment(
            rest=rest,
            refs=refs,
            catalog=catalog,
            router=router,
            pump_rows=self._pump_rows,
            work=work,
            metrics=metrics,
            stop=stop,
        )
        self.settlements = Settlements(
            rest=rest,
            writer=writer,
            refs=refs,
            catalog=catalog,
            work=work,
            metrics=metrics,
            retries=cs.settlement_confirm_retries,
            stop=stop,
        )
        self.backfill = Backfill(
            rest=rest, writer=writer, pool=pool, work=work, catalog=catalog, metrics=metrics,
            stop=stop,
        )  # fmt: skip
        register_gauges(
            metrics,
            ws=ws,
            rest=rest,
            router=router,
            writer=writer,
            work=work,
            ws_queue_depth=lambda: float(self._session.queue_depth) if self._session else 0.0,
        )

    # -- lifecycle -----------------------------------------------------------------------------

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
            "subscriptions": self.subscriber.run,
            "discovery": self.discovery.run,
            "enrichment": self.enrichment.run,
            "settlements": self.settlements.run,
            "backfill": self.backfill.run,
            "checkpointer": self._checkpoint_task,
            "delta-counts": self._count_task,
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
        now = datetime.now(UTC)
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

    # -- startup state -------------------------------------------------------------------------

    async def _recover_restart_state(self) -> None:
        """Gaps and trade backfill for the time the daemon was not running."""
        try:
            async with self.pool.connection() as conn:
                last = await last_stored(conn)
                tickers = await book_markets(conn) if last.data is not None else []
                known = await known_markets(conn)
        except psycopg.Error as exc:
            log.warning("cannot read the previous run's state (%s); no restart gaps written", exc)
            return
        cat = self.catalog
        for m in known:
            cat.note_market(m.ticker, m.event_ticker, m.series_ticker, m.status)
            if m.event_ticker:
                cat.events.setdefault(m.event_ticker, m.series_ticker)
            if m.series_ticker:
                cat.series.add(m.series_ticker)
        if last.data is not None and tickers:
            self.router.open_restart_gaps(tickers, last.data)
            log.info(
                "daemon restart: books of %d markets unknown since %s",
                len(tickers),
                last.data.isoformat(),
            )
        if last.trade is not None:
            self.router.open_trade_outage(last.trade)
            log.info("daemon restart: trades since %s will be backfilled", last.trade.isoformat())

    # -- the message loop ----------------------------------------------------------------------

    async def _pump_rows(self) -> None:
        """Hand the router's rows to the writer: per table, at once while there is room, the
        rest waiting for it (backpressure). Per-table order is what the writer keeps.

        Rows taken from the router stay in ``_unsent`` until the writer has them: a pump
        cancelled while it waits for room (the shutdown cancels the tasks that pump) loses
        nothing; the next pump sends them before anything newer."""
        writer = self.writer
        unsent = self._unsent
        async with self._pump_lock:  # one taker at a time: a later take waits for the rest
            unsent.extend(self.router.take())
            while unsent:
                table, rows = unsent[0]
                done = writer.put_table_nowait(table, rows)
                if done == len(rows):
                    unsent.popleft()
                    continue
                rows = rows[done:]
                unsent[0] = (table, rows)
                try:
                    await writer.put(table, rows[0])  # cancelled while waiting: not queued, kept
                except Exception:
                    unsent[0] = (table, rows[1:])  # a row the writer refuses is not retried
                    raise
                unsent[0] = (table, rows[1:])

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

    # -- checkpoints ---------------------------------------------------------------------------

    async def _checkpoint_task(self) -> None:
        router = self.router
        while not self.stop_event.is_set():
            await asyncio.sleep(1.0)
            now = datetime.now(UTC)
            router.checkpoint_due(now)
            if router.has_unstamped and time.monotonic() - self._last_frame_wall > 1.0:
                router.flush_unstamped(now)
            await self._pump_rows()

    async def _count_task(self) -> None:
        """Count the order-book deltas of the days that have ended (kalshibook.storage
        .delta_counts), a few days a round: the seed market detail's delta count reads them."""
        while not self.stop_event.is_set():
            try:
                async with self.pool.connection() as conn:
                    await conn.set_autocommit(True)
                    try:
                        days = await count_days(conn, datetime.now(UTC), limit=COUNT_DAYS)
                    finally:
                        await conn.set_autocommit(False)
                if days:
                    log.info("delta counts: %d days counted", days)
            except psycopg.Error as exc:
                log.warning("counting the deltas of ended days failed (%s); retried later", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), COUNT_EVERY)

    # -- observability -------------------------------------------------------------------------

    def _health(self) -> tuple[bool, str]:
        session = self._session
        connected = session is not None and not session.closed
        writer_ok = self.writer.task is not None and not self.writer.task.done()
        stats = self.writer.stats()
        ok = writer_ok and (connected or not self.ready.is_set())
        body = {
            "status": "ok" if ok else "unhealthy",
            "ws_connected": connected,
            "writer_running": writer_ok,
            "database_up": stats.database_up,
            "books": self.router.book_count,
            "spool_files": stats.spool_files_pending,
        }
        return ok, msgspec.json.encode(body).decode()
