"""A trade's REST copy corrects what its WebSocket copy did not know (MERGE_TRADES).

A WS trade frame may lack ``is_block_trade`` (the DEMO capture
``tests/fixtures/kalshi/ws_demo_wire_capture_2026-08-17.json`` has none; the field was added
2026-05-29, KALSHI_API.md §4) or its taker sides. The router stores the unknown flag as ``false``
(the column is NOT NULL); the REST copy of the same trade, stored first or later, in the same
batch or another, at the same millisecond or at another time (a WS frame on a whole second), has
the last word on ``is_block_trade`` and fills taker sides the stored copy lacks; a WS copy fills
what a REST copy stored without them lacks.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kalshibook.collector.router import Router
from kalshibook.domain.exchange_order import exchange_seq
from kalshibook.kalshi.ws_decode import decode_frame
from kalshibook.settings import CoreSettings, Settings, WriterSettings
from kalshibook.storage.pool import open_pool
from kalshibook.storage.tables import TradeRow
from kalshibook.storage.writer import Writer

pytestmark = pytest.mark.db

FIXTURES = Path(__file__).parents[1] / "fixtures" / "kalshi"
T0 = datetime(2026, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
PAUSE_COMPRESSION = (
    "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
    "WHERE proc_name = 'policy_compression'"
)
LICENSE = "SELECT current_setting('timescaledb.license')"
COMPRESS_TRADES = "SELECT count(compress_chunk(c)) FROM show_chunks('market.trades') AS c"


@contextlib.asynccontextmanager
async def writer_on(url: str, tmp_path: Path) -> AsyncIterator[Writer]:
    settings = Settings(
        core=CoreSettings(database_url=url, data_dir=str(tmp_path / "data")),
        writer=WriterSettings(batch_age=0.05, retry_max=0.2, batch_rows=100),
    )
    async with (
        open_pool(settings, min_size=1, max_size=2) as pool,
        Writer(settings, pool) as w,
    ):
        yield w


async def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(sql)
        return await cur.fetchall()


def ws_row_of_demo_frame() -> TradeRow:
    """The router's row for the DEMO capture's trade frame (no ``is_block_trade``)."""
    capture = json.loads((FIXTURES / "ws_demo_wire_capture_2026-08-17.json").read_text())
    msg = capture["trade"]
    assert "is_block_trade" not in msg["msg"]
    router = Router()
    router.handle(decode_frame(json.dumps(msg).encode(), received_at=T0))
    (row,) = [r for t, r in router.drain() if t == "trades"]
    assert isinstance(row, TradeRow)
    assert row.is_block_trade is False  # unknown: stored as false until a REST copy says more
    return row


def rest_copy(ws: TradeRow, ts: datetime, *, block: bool = True) -> TradeRow:
    return ws._replace(ts=ts, is_block_trade=block, source="rest", exchange_seq=exchange_seq(ts, 7))


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "compressed"])
async def test_the_rest_copy_sets_is_block_trade_of_a_ws_trade_without_it(
    db_url: str, tmp_path: Path, compressed: bool
) -> None:
    if compressed and await query(db_url, LICENSE) == [("apache",)]:
        pytest.skip("the Apache edition has no compression")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PAUSE_COMPRESSION)
    demo = ws_row_of_demo_frame()
    ms = demo.ts  # the DEMO frame has ts_ms
    second = ms.replace(microsecond=0)
    cases: dict[str, tuple[TradeRow, TradeRow, list[list[str]]]] = {}
    for how, batches in {
        "ws, then rest": [["ws"], ["rest"]],
        "rest, then ws": [["rest"], ["ws"]],
        "one batch": [["ws", "rest"]],
        "ws, then ws and rest": [["ws"], ["ws", "rest"]],  # the batch's first copy is a WS one
    }.items():
        for grain in ("ms", "whole second"):
            tid = uuid.uuid4()
            ws_ts = ms if grain == "ms" else second
            ws = demo._replace(trade_id=tid, ts=ws_ts, exchange_seq=exchange_seq(ws_ts, 0))
            rest = rest_copy(ws, ms + timedelta(microseconds=123))
            cases[f"{how}, {grain}"] = (ws, rest, batches)
    async with writer_on(db_url, tmp_path) as w:
        for step in range(2):
            for ws, rest, batches in cases.values():
                for source in batches[step] if step < len(batches) else []:
                    await w.put("trades", ws if source == "ws" else rest)
            await w.drain()
            if compressed and step == 0:
                await query(db_url, COMPRESS_TRADES)
    got = await query(db_url, "SELECT trade_id, ts, is_block_trade FROM market.trades")
    by_id: dict[uuid.UUID, list[tuple[Any, ...]]] = {}
    for tid, ts, block in got:
        by_id.setdefault(tid, []).append((ts, block))
    for name, (ws, _, _) in cases.items():
        assert by_id[ws.trade_id] == [(ms, True)], name


async def test_the_rest_copy_fills_missing_taker_sides_and_keeps_known_ones(
    db_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PAUSE_COMPRESSION)
    demo = ws_row_of_demo_frame()
    unknown, known = uuid.uuid4(), uuid.uuid4()
    ws_unknown = demo._replace(trade_id=unknown, taker_outcome_side=None, taker_book_side=None)
    ws_known = demo._replace(trade_id=known)  # "no"/"ask" in the capture
    async with writer_on(db_url, tmp_path) as w:
        await w.put("trades", ws_unknown)
        await w.put("trades", ws_known)
        await w.drain()
        for ws in (ws_unknown, ws_known):
            rest = rest_copy(ws, demo.ts, block=False)._replace(
                taker_outcome_side="yes", taker_book_side="bid"
            )
            await w.put("trades", rest)
        await w.drain()
        stats = w.stats().tables["trades"]
    assert stats.rows_written == 2
    stored = await query(
        db_url,
        "SELECT trade_id, taker_outcome_side, taker_book_side, is_block_trade, count "
        "FROM market.trades",
    )
    got = {r[0]: r[1:] for r in stored}
    assert got[unknown] == ("yes", "bid", False, Decimal("2.00"))
    assert got[known] == ("no", "ask", False, Decimal("2.00"))


async def test_a_later_ws_copy_does_not_undo_the_rest_copy(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PAUSE_COMPRESSION)
    demo = ws_row_of_demo_frame()
    async with writer_on(db_url, tmp_path) as w:
        await w.put("trades", rest_copy(demo, demo.ts, block=True))
        await w.drain()
        await w.put("trades", demo)  # is_block_trade false: unknown on the wire
        await w.drain()
    assert await query(db_url, "SELECT is_block_trade, source FROM market.trades") == [
        (True, "rest")
    ]


async def test_a_copy_without_the_flag_never_clears_a_known_block_trade(
    db_url: str, tmp_path: Path
) -> None:
    """A REST copy lacking ``is_block_trade`` (older responses) reads as false: it must not turn
    a stored true into false."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PAUSE_COMPRESSION)
    demo = ws_row_of_demo_frame()
    ws = demo._replace(trade_id=uuid.uuid4(), is_block_trade=True)
    async with writer_on(db_url, tmp_path) as w:
        await w.put("trades", ws)
        await w.drain()
        await w.put("trades", rest_copy(ws, demo.ts + timedelta(microseconds=5), block=False))
        await w.drain()
    got = await query(db_url, "SELECT is_block_trade, created_time FROM market.trades")
    assert got == [(True, demo.ts + timedelta(microseconds=5))]  # the REST time, the flag kept


@pytest.mark.parametrize(
    ("order", "grain", "compressed"),
    [
        *((o, g, False) for o in ("ws first", "rest first") for g in ("ms", "whole second")),
        *(
            ("rest, then ws in a later batch", g, c)
            for g in ("ms", "whole second")
            for c in (False, True)
        ),
    ],
)
async def test_copies_keep_what_either_knew(
    db_url: str, tmp_path: Path, order: str, grain: str, compressed: bool
) -> None:
    """A WS copy with taker sides and the block flag, and a REST copy of the same trade without
    them (older responses): the REST copy's time and rank, the WS copy's sides and flag, in one
    batch or when the REST copy was stored first, also in a compressed chunk (a whole-second WS
    copy of a stored REST copy is dropped before the merge, once the stored copy has its sides
    and flag: DROP_STAGED_TRADE_COPIES)."""
    if compressed and await query(db_url, LICENSE) == [("apache",)]:
        pytest.skip("the Apache edition has no compression")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PAUSE_COMPRESSION)
    demo = ws_row_of_demo_frame()  # "no"/"ask" in the capture
    ws_ts = demo.ts if grain == "ms" else demo.ts.replace(microsecond=0)
    ws = demo._replace(
        trade_id=uuid.uuid4(), ts=ws_ts, exchange_seq=exchange_seq(ws_ts, 0), is_block_trade=True
    )
    rest_ts = demo.ts + timedelta(microseconds=123)
    rest = rest_copy(ws, rest_ts, block=False)._replace(
        taker_outcome_side=None, taker_book_side=None
    )
    batches = {
        "ws first": [[ws, rest]],
        "rest first": [[rest, ws]],
        "rest, then ws in a later batch": [[rest], [ws]],
    }[order]
    async with writer_on(db_url, tmp_path) as w:
        for batch in batches:
            for row in batch:
                await w.put("trades", row)
            await w.drain()
            if compressed:
                await query(db_url, COMPRESS_TRADES)
    got = await query(
        db_url,
        "SELECT created_time, exchange_seq, taker_outcome_side, taker_book_side, "
        "is_block_trade, source FROM market.trades",
    )
    source = "ws" if order == "ws first" else "rest"
    assert got == [(rest_ts, rest.exchange_seq, "no", "ask", True, source)]
