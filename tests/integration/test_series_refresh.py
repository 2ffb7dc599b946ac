"""Series rows follow Kalshi's edits: the discovery sweep refreshes the stored series.

The simulator's REST is the exchange, the writer the real one on a test database. Kalshi changes
a series' fee type or title without any WebSocket frame; only ``GET /series`` (with its
``last_updated_ts`` and ``min_updated_ts`` filter) shows it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sim_support import running_sim

from kalshibook.collector.catalog import Catalog
from kalshibook.collector.discovery import Discovery
from kalshibook.collector.metrics import Metrics
from kalshibook.collector.reference_sync import ReferenceSync
from kalshibook.collector.work import WorkQueues
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.settings import CoreSettings, KalshiSettings, Settings
from kalshibook.storage.pool import open_pool
from kalshibook.storage.writer import Writer

pytestmark = pytest.mark.db


def discovery(rest: KalshiRest, writer: Writer, catalog: Catalog, **kw: Any) -> Discovery:
    work = WorkQueues()
    return Discovery(
        rest=rest,
        refs=ReferenceSync(rest, writer, catalog, subscribe=work.subscribe_markets),
        catalog=catalog,
        work=work,
        metrics=Metrics(),
        interval=300.0,
        stop=asyncio.Event(),
        ready=asyncio.Event(),
        **kw,
    )


def stored_series(db_url: str) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT ticker, title, fee_type, updated_at, raw->>'title' FROM market.series"
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


async def test_changed_series_reach_the_series_table(db_url: str, tmp_path: Path) -> None:
    async with running_sim(markets=60, no_auth=True) as sim:
        settings = Settings(
            core=CoreSettings(database_url=db_url, data_dir=str(tmp_path / "data")),
            kalshi=KalshiSettings(rest_url=sim.rest_url, ws_url=sim.ws_url),
        )
        async with (
            open_pool(settings, min_size=1, max_size=2) as pool,
            Writer(settings, pool) as writer,
            KalshiRest(settings.kalshi) as rest,
        ):
            catalog = Catalog()
            d = discovery(rest, writer, catalog, series_every=1)
            await d.sweep()
            await writer.drain()
            before = stored_series(db_url)
            assert len(before) >= 2
            a, b = sorted(before)[:2]
            assert before[a][1] != "flat"

            # Kalshi edits series a: the next refresh (only series changed lately) stores it
            sim.update_series(a, title="Renamed by Kalshi", fee_type="flat")
            await d.sweep()
            await writer.drain()
            after = stored_series(db_url)
            assert after[a][:2] == ("Renamed by Kalshi", "flat")
            assert after[a][3] == "Renamed by Kalshi"  # raw follows too
            # the incremental refresh left the unchanged series alone
            assert all(after[t] == before[t] for t in before if t != a)

            # a restarted collector knows the stored series from the database (it never
            # fetches them as new) and refreshes them all at its first sweep, with the
            # default cadence
            sim.update_series(b, title="Edited while we were down", fee_type="flat")
            restarted = Catalog()
            restarted.series.update(before)
            await discovery(rest, writer, restarted).sweep()
            await writer.drain()
            assert stored_series(db_url)[b][:2] == ("Edited while we were down", "flat")
