"""The ``discovery`` task: REST sweeps of the open markets (and their events and series).

A sweep runs at start, every ``discovery_interval`` and soon after lifecycle frames may have been
lost (:meth:`~kalshibook.collector.work.WorkQueues.rediscover`). It stores every open market,
subscribes the active ones, and looks up the markets believed unfinished that the sweep did not
return (they changed state; closing has no lifecycle frame): finished ones are unfollowed (and
their settlement confirmed), active ones followed. Each REST page's statuses are merged into the
catalog with the time its request was sent, and every decision uses the merged status (a frame
that arrived while the page was in flight is newer than the page).

Every ``series_every`` sweeps (the first one included) the stored series are refreshed: one
``GET /series`` with ``min_updated_ts`` = the previous refresh's request time less
``SERIES_OVERLAP`` (clock skew), or without it (every series) on the first refresh of the process
and every ``SERIES_FULL_EVERY`` refreshes; the changed ones are upserted (fee type, title, ...).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from kalshibook.backoff import Backoff
from kalshibook.collector.catalog import FINISHED_STATUSES, Catalog
from kalshibook.collector.metrics import Metrics
from kalshibook.collector.reference_sync import BATCH, ReferenceSync, chunks
from kalshibook.collector.work import WorkQueues
from kalshibook.errors import FeedError, ProtocolError
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.kalshi.rest_models import Market

__all__ = ("SERIES_EVERY", "SERIES_FULL_EVERY", "SERIES_OVERLAP", "Discovery")

log = logging.getLogger(__name__)

_OPEN_FOR_BOOKS: Final = ("active",)
_PAGE: Final = 1000
"""Markets per ``GET /markets`` page of a sweep (stored and subscribed page by page)."""
SERIES_EVERY: Final = 12
"""Sweeps between two refreshes of the stored series (hourly at the default 300 s interval)."""
SERIES_FULL_EVERY: Final = 24
"""Every this many refreshes, all series are fetched (not only those Kalshi says changed)."""
SERIES_OVERLAP: Final = timedelta(minutes=10)
"""How far before the previous refresh an incremental one looks (our clock against Kalshi's)."""


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
        series_every: int = SERIES_EVERY,
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
        self.series_every = max(1, series_every)
        self._series_wait = 0
        """Sweeps left before the next series refresh (0: this sweep refreshes)."""
        self._series_since: datetime | None = None
        """When the last series refresh's request was sent (None: none yet)."""
        self._series_refreshes = 0

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
        """One sweep of the open markets, then of the unfinished markets it did not return, then
        (when due) the series refresh."""
        rest = self.rest
        refs = self.refs
        cat = self.catalog
        work = self.work
        seen: set[str] = set()
        async for asked_at, page in rest.get_market_pages(status="open", limit=_PAGE):
            events_needed: dict[str, None] = {}
            for m in page:
                seen.add(m.ticker)
                if m.event_ticker and m.event_ticker not in cat.events:
                    events_needed[m.event_ticker] = None
            await refs.fetch_events(list(events_needed))
            active = await refs.store_markets(page, asked_at)
            work.subscribe_markets(active)
        # Markets we believe unfinished that the sweep did not return changed state (lifecycle
        # frames may have been lost; closing has no frame at all): look them up. One settled
        # before Kalshi's historical cutoff (after a long outage) is only in /historical/markets.
        stale = [t for t in cat.unsettled_markets() if t not in seen]
        for chunk in chunks(stale, BATCH):
            returned: set[str] = set()
            async for asked_at, found in rest.get_market_pages(tickers=chunk):
                returned.update(m.ticker for m in found)
                await self._follow(found, asked_at)
            gone = [t for t in chunk if t not in returned]
            if gone:
                asked_at = datetime.now(UTC)
                found = [m async for m in rest.get_historical_markets(tickers=gone)]
                await self._follow(found, asked_at)
        if self._series_wait <= 0:
            try:
                await self._refresh_series()
                self._series_wait = self.series_every
            except (FeedError, ProtocolError) as exc:  # the markets are done: the next sweep
                log.warning("series refresh failed (%s); the next sweep retries it", exc)
                self._series_wait = 1
        self._series_wait -= 1
        self.metrics.rest_requests.inc(1.0, "discovery")
        log.info("discovery done open_markets=%d known_events=%d", len(seen), len(cat.events))

    async def _follow(self, found: Sequence[Market], asked_at: datetime) -> None:
        """Store looked-up markets; stop following the finished ones (their settlement is
        confirmed), follow the open ones."""
        cat = self.catalog
        work = self.work
        await self.refs.store_markets(found, asked_at)
        for m in found:
            info = cat.market(m.ticker)
            status = info.status if info is not None else m.status
            if status in FINISHED_STATUSES:  # no more book activity: stop following it
                work.unsubscribe_markets([m.ticker])
                if status != "closed":
                    work.confirm_settlement(m.ticker)
            elif status in _OPEN_FOR_BOOKS:
                work.subscribe_markets([m.ticker])

    async def _refresh_series(self) -> None:
        full = self._series_since is None or self._series_refreshes % SERIES_FULL_EVERY == 0
        since = None if full or self._series_since is None else self._series_since - SERIES_OVERLAP
        asked = datetime.now(UTC)
        n = await self.refs.refresh_series(since)
        self._series_since = asked
        self._series_refreshes += 1
        log.info("series refreshed full=%s stored=%d", full, n)
