"""The ``discovery`` task: REST sweeps of the open markets (and their events and series).

A sweep runs at start, every ``discovery_interval`` and soon after lifecycle frames may have been
lost (:meth:`~kalshibook.collector.work.WorkQueues.rediscover`). It stores every open market,
subscribes the active ones, and looks up the markets believed unfinished that the sweep did not
return (they changed state; closing has no lifecycle frame): finished ones are unfollowed (and
their settlement confirmed), active ones followed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from kalshibook.backoff import Backoff
from kalshibook.collector.catalog import Catalog
from kalshibook.collector.metrics import Metrics
from kalshibook.collector.reference_sync import BATCH, ReferenceSync, chunks
from kalshibook.collector.work import WorkQueues
from kalshibook.errors import FeedError, ProtocolError
from kalshibook.kalshi.rest import KalshiRest

__all__ = ("Discovery",)

log = logging.getLogger(__name__)

_OPEN_FOR_BOOKS: Final = ("active",)
_FINISHED: Final = frozenset(
    {"closed", "determined", "disputed", "amended", "finalized", "settled"}
)
_PAGE: Final = 1000
"""Markets stored (and subscribed) per batch of a sweep."""


async def sleep_or_wake(event: asyncio.Event, seconds: float) -> None:
    """Wait for ``event`` at most ``seconds``; clear it."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass
    event.clear()


class Discovery:
    """The discovery task (:meth:`run`); ``ready`` is set after the first completed sweep."""

    def __init__(
        self,
        *,
        rest: KalshiRest,
        refs: ReferenceSync,
        catalog: Catalog,
        work: WorkQueues,
        metrics: Metrics,
        interval: float,
        stop: asyncio.Event,
        ready: asyncio.Event,
    ) -> None:
        self.rest = rest
        self.refs = refs
        self.catalog = catalog
        self.work = work
        self.metrics = metrics
        self.interval = max(1.0, interval)
        self.stop = stop
        self.ready = ready
        self.sweeps = 0
        """Completed discovery sweeps."""

    async def run(self) -> None:
        backoff = Backoff(1.0, 60.0)
        work = self.work
        while not self.stop.is_set():
            work.rediscover_due = False
            try:
                await self.sweep()
            except (FeedError, ProtocolError) as exc:
                delay = backoff.next()
                log.warning("discovery failed (%s); retrying in %.1f s", exc, delay)
                await sleep_or_wake(work.discover_wake, delay)
                continue
            backoff.reset()
            self.sweeps += 1
            self.ready.set()
            await sleep_or_wake(work.discover_wake, self.interval)
            if work.rediscover_due:
                await asyncio.sleep(1.0)  # debounce bursts of lost-lifecycle signals

    async def sweep(self) -> None:
        """One sweep of the open markets, then of the unfinished markets it did not return."""
        rest = self.rest
        refs = self.refs
        cat = self.catalog
        work = self.work
        seen: set[str] = set()
        events_needed: dict[str, None] = {}
        page: list[Any] = []

        async def flush_page() -> None:
            if not page:
                return
            await refs.store_markets(page)
            work.subscribe_markets([m.ticker for m in page if m.status in _OPEN_FOR_BOOKS])
            page.clear()

        async for m in rest.get_markets(status="open"):
            seen.add(m.ticker)
            if m.event_ticker and m.event_ticker not in cat.events:
                events_needed[m.event_ticker] = None
            page.append(m)
            if len(page) >= _PAGE:
                await refs.fetch_events(list(events_needed))
                events_needed.clear()
                await flush_page()
        await refs.fetch_events(list(events_needed))
        await flush_page()
        # Markets we believe unfinished that the sweep did not return changed state (lifecycle
        # frames may have been lost; closing has no frame at all): look them up.
        stale = [t for t in cat.unsettled_markets() if t not in seen]
        for chunk in chunks(stale, BATCH):
            found = [m async for m in rest.get_markets(tickers=chunk)]
            await refs.store_markets(found)
            for m in found:
                if m.status in _FINISHED:  # no more book activity: stop following it
                    work.unsubscribe_markets([m.ticker])
                    if m.status != "closed":
                        work.confirm_settlement(m.ticker)
                elif m.status in _OPEN_FOR_BOOKS:
                    work.subscribe_markets([m.ticker])
        self.metrics.rest_requests.inc(1.0, "discovery")
        log.info("discovery done open_markets=%d known_events=%d", len(seen), len(cat.events))
