"""The ``enrichment`` task: the REST view of what lifecycle frames announce, and final books.

Markets and events queued by the router (:meth:`~kalshibook.collector.work.WorkQueues.enrich`)
are fetched in batches of ``BATCH`` (with their unknown events and series) and stored, from
``/historical/markets`` when ``/markets`` no longer has them; one found with a result has its
settlement stored. Markets
unfollowed while their book was inside a gap get their final book over REST, which closes the gap
(:meth:`~kalshibook.collector.router.Router.rest_snapshot`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from kalshibook.backoff import Backoff
from kalshibook.collector.catalog import FINISHED_STATUSES, Catalog
from kalshibook.collector.metrics import Metrics
from kalshibook.collector.reference import settlement_row
from kalshibook.collector.reference_sync import BATCH, ReferenceSync
from kalshibook.collector.router import Router
from kalshibook.collector.work import WorkQueues
from kalshibook.errors import FeedError, ProtocolError
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.kalshi.rest_models import Market

__all__ = ("Enrichment",)

log = logging.getLogger(__name__)


class Enrichment:
    """The enrichment task (:meth:`run`)."""

    def __init__(
        self,
        *,
        rest: KalshiRest,
        refs: ReferenceSync,
        catalog: Catalog,
        router: Router,
        pump_rows: Callable[[], Awaitable[None]],
        work: WorkQueues,
        metrics: Metrics,
        stop: asyncio.Event,
    ) -> None:
        self.rest = rest
        self.refs = refs
        self.catalog = catalog
        self.router = router
        self.pump_rows = pump_rows
        """Hands the router's rows to the writer (the final books' rows)."""
        self.work = work
        self.metrics = metrics
        self.stop = stop

    async def run(self) -> None:
        work = self.work
        backoff = Backoff(0.5, 30.0)
        while not self.stop.is_set():
            await work.enrich_wake.wait()
            work.enrich_wake.clear()
            await asyncio.sleep(0.05)  # let a burst of lifecycle frames coalesce
            markets = list(work.enrich_markets)[:BATCH]
            events = list(work.enrich_events)[:BATCH]
            finals = list(work.final_books)[:BATCH]
            try:
                await self._final_books(finals)
                if markets:
                    found = [m async for m in self.rest.get_markets(tickers=markets)]
                    returned = {m.ticker for m in found}
                    missing = [t for t in markets if t not in returned]
                    if missing:  # settled before Kalshi's historical cutoff
                        found += [
                            m async for m in self.rest.get_historical_markets(tickers=missing)
                        ]
                    needed = [
                        m.event_ticker
                        for m in found
                        if m.event_ticker and m.event_ticker not in self.catalog.events
                    ]
                    await self.refs.fetch_events(list(dict.fromkeys(needed)))
                    await self.refs.store_markets(found)
                    await self._settle_finished(found)
                    self.metrics.rest_requests.inc(1.0, "enrichment")
                if events:
                    await self.refs.store_events(events)
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

    async def _settle_finished(self, found: list[Market]) -> None:
        """A market found with a result (one the outage backfill met: it opened and settled
        while the collector was down) has its settlement stored from the view just fetched; one
        finished without a result yet is queued for confirmation."""
        for m in found:
            info = self.catalog.market(m.ticker)
            status = info.status if info is not None else m.status
            if status not in FINISHED_STATUSES or status == "closed":
                continue
            row = settlement_row(m, self.catalog)
            if row is None:
                self.work.confirm_settlement(m.ticker)
                continue
            await self.refs.writer.upsert_settlement(row)
            self.metrics.settlements_confirmed.inc()

    async def _final_books(self, tickers: list[str]) -> None:
        for t in tickers:
            ob = await self.rest.get_orderbook(t)
            if ob is not None:
                self.router.rest_snapshot(t, ob.yes, ob.no, datetime.now(UTC))
            self.work.final_books.pop(t, None)
        await self.pump_rows()
