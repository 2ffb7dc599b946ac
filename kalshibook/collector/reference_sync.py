"""REST reference data -> catalog and writer: markets, events and series, fetched in batches.

Shared by the discovery, enrichment and settlement tasks. Events are fetched once and new series
once (the :class:`~kalshibook.collector.catalog.Catalog` remembers what is stored); stored series
are refreshed by :meth:`ReferenceSync.refresh_series` (the discovery task calls it every few
sweeps); markets are upserted every time they are seen, and a market that becomes active in the
catalog is handed to ``subscribe``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Final

from kalshibook.collector.catalog import Catalog
from kalshibook.collector.reference import event_row, market_row, series_row
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.storage.writer import Writer

__all__ = ("BATCH", "ReferenceSync", "chunks")

BATCH: Final = 100
"""Tickers per REST ``tickers=`` request."""


def chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class ReferenceSync:
    """Stores the REST view of markets, events and series (and notes them in the catalog)."""

    def __init__(
        self,
        rest: KalshiRest,
        writer: Writer,
        catalog: Catalog,
        *,
        subscribe: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.rest = rest
        self.writer = writer
        self.catalog = catalog
        self.subscribe = subscribe
        """Called with the markets a REST answer moved into ``active`` (their books must be
        followed: an unpause whose frame was lost, a market first seen active)."""

    async def fetch_events(self, tickers: list[str]) -> None:
        """Store events (and their series) not stored yet."""
        await self.store_events([t for t in tickers if t not in self.catalog.events])

    async def store_events(self, tickers: list[str]) -> None:
        """Fetch these events over REST, store them and their unknown series, and let every
        market we know under them learn its series."""
        if not tickers:
            return
        cat = self.catalog
        series_needed: dict[str, None] = {}
        for chunk in chunks(tickers, BATCH):
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
        await self.fetch_series(list(series_needed))

    async def fetch_series(self, tickers: list[str]) -> None:
        """Store the series not stored yet (one list request when there are many)."""
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

    async def refresh_series(self, since: datetime | None) -> int:
        """Fetch again the stored series Kalshi changed since ``since`` (``GET /series``
        with ``min_updated_ts``; every one when ``None``) and upsert their current values (fee
        type, title, ...). One request; returns the number of series stored."""
        cat = self.catalog
        if not cat.series:
            return 0
        rows = [
            series_row(s)
            for s in await self.rest.get_series_list(min_updated_ts=since)
            if s.ticker in cat.series
        ]
        await self.writer.upsert_series(rows)
        return len(rows)

    async def store_markets(
        self, markets: Iterable[Any], asked_at: datetime | None = None
    ) -> list[str]:
        """Upsert the REST view of these markets, as Kalshi reported it in a request sent at
        ``asked_at`` (``None``: unknown). Returns the tickers whose status is ``active`` in the
        catalog afterwards; those that were not active before go to ``subscribe``."""
        cat = self.catalog
        rows = []
        active: list[str] = []
        became: list[str] = []
        for m in markets:
            info = cat.market(m.ticker)
            before = info.status if info is not None else None
            row = market_row(m, cat, asked_at)
            if row is None:
                continue
            rows.append(row)
            if row.status == "active":
                active.append(m.ticker)
                if before != "active":
                    became.append(m.ticker)
        if became and self.subscribe is not None:
            self.subscribe(became)
        await self.writer.upsert_markets(rows)
        return active
