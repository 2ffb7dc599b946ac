"""The collector's hand-over of rows to the writer survives its task being cancelled.

The shutdown cancels the tasks that pump rows (checkpointer, enrichment, and the feed's after a
grace period). A pump waiting for room in a full writer queue (the database slow) held rows it had
taken from the router; they must reach the database with the shutdown's own pump, in order.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from kalshibook.collector.service import Collector
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.kalshi.ws import KalshiWebSocket
from kalshibook.settings import CoreSettings, KalshiSettings, Settings, WriterSettings
from kalshibook.storage.pool import open_pool
from kalshibook.storage.tables import DeltaRow
from kalshibook.storage.writer import Writer

pytestmark = pytest.mark.db

T0 = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
ROWS = 40
QUEUE = 8


def delta(i: int) -> DeltaRow:
    return DeltaRow(
        ts=T0 + timedelta(milliseconds=i),
        market_ticker="KXPUMP-1",
        received_at=T0 + timedelta(milliseconds=i),
        side="yes",
        price=Decimal("0.5000"),
        delta=Decimal(i + 1),
        epoch=1,
        sid=1,
        seq=i,
    )


async def test_rows_taken_by_a_cancelled_pump_reach_the_database(
    db_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        core=CoreSettings(database_url=db_url, data_dir=str(tmp_path / "data")),
        kalshi=KalshiSettings(rest_url="http://127.0.0.1:9", ws_url="ws://127.0.0.1:9"),
        writer=WriterSettings(batch_rows=4, batch_age=0.05, queue_rows=QUEUE, retry_max=0.2),
    )
    with psycopg.connect(db_url, autocommit=True) as locker:
        async with (
            open_pool(settings, min_size=1, max_size=2) as pool,
            Writer(settings, pool) as writer,
            KalshiRest(settings.kalshi) as rest,
        ):
            collector = Collector(
                settings, pool, writer, rest=rest, ws=KalshiWebSocket(settings.kalshi)
            )
            # the database is slow: the deltas table is locked, so the writer's queue fills up
            locker.execute("BEGIN")
            locker.execute("LOCK TABLE market.orderbook_deltas IN ACCESS EXCLUSIVE MODE")
            for i in range(ROWS):
                collector.router._emit("orderbook_deltas", delta(i))
            pump = asyncio.create_task(collector._pump_rows())
            await asyncio.sleep(0.5)
            assert not pump.done(), "the pump should be waiting for room in the writer's queue"
            pump.cancel()  # what the shutdown does to the tasks that pump
            await asyncio.gather(pump, return_exceptions=True)
            locker.execute("COMMIT")
            await collector._pump_rows()  # the shutdown's own pump
            async with asyncio.timeout(30):
                await writer.drain()
    with psycopg.connect(db_url) as conn:
        seqs = [
            r[0]
            for r in conn.execute(
                "SELECT seq FROM market.orderbook_deltas WHERE market_ticker = 'KXPUMP-1' "
                "ORDER BY ts"
            ).fetchall()
        ]
    assert seqs == list(range(ROWS))
