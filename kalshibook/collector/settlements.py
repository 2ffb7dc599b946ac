"""The ``settlements`` task: confirms settlements over REST ``GET /markets/{ticker}``.

Markets queued by the router or discovery
(:meth:`~kalshibook.collector.work.WorkQueues.confirm_settlement`) are looked up until the REST
view carries a result (then the settlement and the market are upserted), each retried with
exponential backoff at most ``settlement_confirm_retries`` times.
"""

from __future__ import annotations

import asyncio
import logging
import time

from kalshibook.backoff import Backoff
from kalshibook.collector.catalog import Catalog
from kalshibook.collector.metrics import Metrics
from kalshibook.collector.reference import settlement_row
from kalshibook.collector.reference_sync import ReferenceSync
from kalshibook.collector.work import WorkQueues
from kalshibook.errors import FeedError, ProtocolError
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.storage.writer import Writer

__all__ = ("Settlements",)

log = logging.getLogger(__name__)


class Settlements:
    """The settlement confirmation task (:meth:`run`)."""

    def __init__(
        self,
        *,
        rest: KalshiRest,
        writer: Writer,
        refs: ReferenceSync,
        catalog: Catalog,
        work: WorkQueues,
        metrics: Metrics,
        retries: int,
        stop: asyncio.Event,
    ) -> None:
        self.rest = rest
        self.writer = writer
        self.refs = refs
        self.catalog = catalog
        self.work = work
        self.metrics = metrics
        self.retries = max(1, retries)
        self.stop = stop

    async def run(self) -> None:
        work = self.work
        attempts: dict[str, int] = {}
        due: dict[str, float] = {}
        backoff = Backoff(1.0, 60.0, jitter=0.0)
        while not self.stop.is_set():
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
                if await self._confirm(ticker):
                    done = True
                else:
                    n = attempts.get(ticker, 0) + 1
                    done = n > self.retries
                    if done:
                        log.warning(
                            "settlement not confirmed after %d attempts ticker=%s", n - 1, ticker
                        )
                    else:
                        attempts[ticker] = n
                        due[ticker] = time.monotonic() + backoff.base(n - 1)
                if done:
                    work.confirms.pop(ticker, None)
                    attempts.pop(ticker, None)
                    due.pop(ticker, None)

    async def _confirm(self, ticker: str) -> bool:
        """Look the market up; store its settlement if it has one (True). A market settled before
        Kalshi's historical cutoff is only served by ``GET /historical/markets/{ticker}``
        (KALSHI_API.md §3.7: a collector back from a long outage confirms those too)."""
        try:
            m = await self.rest.get_market(ticker)
            if m is None:
                m = await self.rest.get_historical_market(ticker)
        except (FeedError, ProtocolError) as exc:
            log.warning("settlement lookup failed ticker=%s: %s", ticker, exc)
            return False
        if m is None:
            return False
        row = settlement_row(m, self.catalog)
        if row is None:
            return False
        await self.writer.upsert_settlement(row)
        await self.refs.store_markets([m])
        self.metrics.settlements_confirmed.inc()
        return True
