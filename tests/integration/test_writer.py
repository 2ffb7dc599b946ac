"""The writer against a real TimescaleDB: exact values, dedupe, flushing, backpressure, outages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import psycopg
import pytest
import pytest_asyncio
from psycopg import sql

from kalshibook.domain.book import OrderBook
from kalshibook.domain.exchange_order import exchange_seq
from kalshibook.errors import StorageError
from kalshibook.settings import CoreSettings, Settings, WriterSettings
from kalshibook.storage.copyworker import CopyWorker
from kalshibook.storage.pool import Pool, connect_kwargs, make_pool, open_pool
from kalshibook.storage.tables import (
    ALL_TABLES,
    BookGapRow,
    DeltaRow,
    EventRow,
    LifecycleRow,
    MarketRow,
    MarketStatsRow,
    QuoteRow,
    SeriesRow,
    SettlementRow,
    SnapshotRow,
    TradeRow,
)
from kalshibook.storage.writer import Writer, WriterClosed, WriterFull

pytestmark = pytest.mark.db

D = Decimal
T0 = datetime(2026, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)


# -- helpers -----------------------------------------------------------------------------------


def make_settings(url: str, tmp_path: Path, **writer: Any) -> Settings:
    return Settings(
        core=CoreSettings(database_url=url, data_dir=str(tmp_path / "data")),
        writer=WriterSettings(**{"batch_age": 0.05, "retry_max": 0.2, **writer}),
    )


PAUSE_COMPRESSION = """
SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs
WHERE proc_name = 'policy_compression'
"""


@pytest.fixture(autouse=True)
def _compression_paused(request: pytest.FixtureRequest) -> None:
    """These tests read commit order from ``xmin``, which rows of a compressed chunk do not have,
    and write rows with old timestamps: the compression policy of the test's database (its job
    scheduler runs) must not compress them mid-test."""
    if "db_url" in request.fixturenames:
        with psycopg.connect(request.getfixturevalue("db_url"), autocommit=True) as conn:
            conn.execute(PAUSE_COMPRESSION)


@contextlib.asynccontextmanager
async def writer_on(settings: Settings, **kw: Any) -> AsyncIterator[Writer]:
    async with (
        open_pool(settings, min_size=1, max_size=2) as pool,
        Writer(settings, pool, **kw) as w,
    ):
        yield w


async def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(sql)
        return await cur.fetchall()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def delta(i: int, *, price: str = "0.5000") -> DeltaRow:
    return DeltaRow(
        ts=T0 + timedelta(milliseconds=i),
        market_ticker="KXTEST-1",
        received_at=T0 + timedelta(milliseconds=i, microseconds=7),
        side="yes" if i % 2 else "no",
        price=D(price),
        delta=D(i + 1).scaleb(-2) * (1 if i % 3 else -1),
        epoch=1,
        sid=3,
        seq=i,
    )


def trade(trade_id: uuid.UUID, ts: datetime, source: str = "ws") -> TradeRow:
    return TradeRow(
        ts=ts,
        trade_id=trade_id,
        market_ticker="KXTEST-1",
        yes_price=D("0.3600"),
        no_price=D("0.6400"),
        count=D("12.50"),
        taker_outcome_side="yes",
        taker_book_side="bid",
        is_block_trade=False,
        source=source,
        received_at=T0,
        exchange_seq=exchange_seq(ts, 0),
    )


class TcpProxy:
    """A local port forwarding to the database that the test can cut and restore."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.target_port = host, port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    def url(self, url: str) -> str:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        netloc_new = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
        return urlunsplit((parts.scheme, netloc_new, parts.path, parts.query, parts.fragment))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._tasks.difference_update(pipes)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


@pytest_asyncio.fixture(loop_scope="function")
async def proxy(db_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(db_url)
    assert parts.hostname is not None
    assert parts.port is not None
    p = TcpProxy(parts.hostname, parts.port)
    await p.start()
    yield p
    if p._server is not None:
        await p.stop()


def spool_files(settings: Settings) -> list[str]:
    d = settings.spool_dir
    return sorted(p.name for p in d.glob("*.spool")) if d.is_dir() else []


# -- exact values ------------------------------------------------------------------------------


async def test_rows_of_every_table_land_exactly(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path)
    book = OrderBook()
    book.apply_snapshot(
        [(D("0.0125"), D("2.50")), (D("0.36"), D("100"))], [(D("0.999"), D("0.01"))]
    )
    yes_json, no_json = book.to_json_levels()
    tid = uuid.uuid4()
    rows: dict[str, tuple[Any, ...]] = {
        "trades": trade(tid, T0.replace(microsecond=535000)),
        "orderbook_snapshots": SnapshotRow(
            T0, "KXTEST-1", T0, "checkpoint", 7, 3, 99, yes_json, no_json
        ),
        "orderbook_deltas": DeltaRow(
            T0, "KXTEST-1", T0, "no", D("0.001234"), D("-74.77"), 7, 3, 100
        ),
        "quotes": QuoteRow(T0, "KXTEST-1", T0, D("0.3600"), D("100.00"), None, None),
        "market_stats": MarketStatsRow(
            T0,
            "KXTEST-1",
            T0,
            D("0.35"),
            D("0.36"),
            D("0.37"),
            D("1.5"),
            D("2.25"),
            D("0.01"),
            D("123456.78"),
            D("9999.99"),
            123456789012,
            -5,
        ),
        "lifecycle_events": LifecycleRow(
            T0,
            "KXTEST-1",
            "KXTEST",
            T0,
            "market",
            "determined",
            "yes",
            D("1.0000"),
            None,
            None,
            T0 - timedelta(hours=1),
            None,
            4,
            12,
            b'{"event_type":"determined","x":0.10}',
        ),
        "book_gaps": BookGapRow(T0 - timedelta(seconds=5), T0, "KXTEST-1", "seq_gap", 3, T0),
    }
    async with writer_on(settings) as w:
        assert w.stats().last_commit_at is None
        before = time.time()
        for table, row in rows.items():
            await w.put(table, row)
        await w.drain()
        stats = w.stats()
    for table in rows:
        assert stats.tables[table].rows_written == 1
    assert stats.batch_latency.count >= 1
    assert stats.batch_latency_last is not None
    assert stats.last_commit_at is not None
    assert before <= stats.last_commit_at <= time.time()

    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        for table, row in rows.items():
            spec = next(s for s in ALL_TABLES if s.name == table)
            cols = sql.SQL(", ").join(
                sql.SQL("{}::text").format(sql.Identifier(c)) if t == "jsonb" else sql.Identifier(c)
                for c, t in zip(spec.columns, spec.pg_types, strict=True)
            )
            select = sql.SQL("SELECT {} FROM market.{}").format(cols, sql.Identifier(table))
            got = await (await conn.execute(select)).fetchall()
            assert len(got) == 1, table
            for col, pg_type, want, have in zip(
                spec.columns, spec.pg_types, row, got[0], strict=True
            ):
                if pg_type == "jsonb":
                    assert json.loads(have, parse_float=Decimal) == json.loads(
                        want, parse_float=Decimal
                    ), col
                    continue
                assert have == want, (table, col)
                if isinstance(want, Decimal):
                    assert str(have) == str(want), (table, col)  # same scale, exact
                if isinstance(want, datetime):
                    assert have.tzinfo is not None
    (snap,) = await query(
        db_url, "SELECT yes_bids::text, no_bids::text FROM market.orderbook_snapshots"
    )
    assert snap == ("[[0.0125, 2.50], [0.3600, 100.00]]", "[[0.9990, 0.01]]")
    stored = await query(db_url, "SELECT yes_bids, no_bids FROM market.orderbook_snapshots")
    assert (
        OrderBook.from_rows(json.dumps(stored[0][0]).encode(), json.dumps(stored[0][1]).encode())
        == book
    )


async def test_reference_upserts_and_settlement_confirmation(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path)
    series = SeriesRow(
        "KXS", "Series", "Economics", "daily", ["a", "b"], "quadratic", D("1"), b'{"ticker":"KXS"}'
    )
    event = EventRow(
        "KXS-26",
        "KXS",
        "Event",
        "sub",
        None,
        True,
        "MECNET",
        T0,
        "day",
        b'{"event_ticker":"KXS-26"}',
    )
    market = MarketRow(
        "KXS-26-A",
        "KXS-26",
        "KXS",
        "binary",
        "Market",
        "yes",
        "no",
        "active",
        T0,
        T0,
        T0 + timedelta(days=1),
        None,
        None,
        "greater",
        D("3.5"),
        None,
        None,
        None,
        "linear_cent",
        b'[{"start":"0.01","end":"0.99","step":"0.01"}]',
        None,
        None,
        b'{"ticker":"KXS-26-A","status":"active"}',
    )
    determined = SettlementRow(
        "KXS-26-A",
        "KXS-26",
        "KXS",
        "yes",
        D("1.0000"),
        T0,
        None,
        "ws",
        False,
        b'{"event_type":"determined"}',
    )
    settled = SettlementRow(
        "KXS-26-A",
        None,
        None,
        "yes",
        None,
        None,
        T0 + timedelta(hours=1),
        "ws",
        False,
        b'{"settled_ts":1}',
    )
    confirmed = SettlementRow(
        "KXS-26-A",
        "KXS-26",
        "KXS",
        "no",
        D("0.0000"),
        None,
        None,
        "rest",
        True,
        b'{"ticker":"KXS-26-A","result":"no"}',
    )
    late_ws = determined._replace(result="yes", settlement_value=D("1"))
    async with writer_on(settings) as w:
        await w.upsert_series([series])
        await w.upsert_events([event])
        await w.upsert_markets([market])
        await w.upsert_settlement(determined)
        await w.upsert_settlement(settled)
        await w.drain()
        (row,) = await query(
            db_url,
            "SELECT result, settlement_value, determined_at, settled_at, source, confirmed, raw "
            "FROM market.settlements",
        )
        assert row == (
            "yes",
            D("1.0000"),
            T0,
            T0 + timedelta(hours=1),
            "ws",
            False,
            {"event_type": "determined", "settled_ts": 1},
        )
        await w.upsert_settlement(confirmed)
        await w.upsert_settlement(late_ws)  # a late WS event never overrides the confirmation
        # A second sighting with fewer fields fills nothing with NULL and merges raw.
        await w.upsert_markets([market._replace(title=None, status="closed", raw=b'{"x":1}')])
        await w.drain()
    (row,) = await query(
        db_url,
        "SELECT result, settlement_value, determined_at, settled_at, source, confirmed, raw "
        "FROM market.settlements",
    )
    assert row == (
        "no",
        D("0.0000"),
        T0,
        T0 + timedelta(hours=1),
        "rest",
        True,
        {"ticker": "KXS-26-A", "result": "no"},
    )
    (m,) = await query(
        db_url,
        "SELECT title, status, floor_strike, price_ranges, raw, series_ticker FROM market.markets",
    )
    assert m == (
        "Market",
        "closed",
        D("3.5"),
        [{"start": "0.01", "end": "0.99", "step": "0.01"}],
        {"ticker": "KXS-26-A", "status": "active", "x": 1},
        "KXS",
    )
    assert await query(db_url, "SELECT tags, fee_multiplier, raw FROM market.series") == [
        (["a", "b"], D("1"), {"ticker": "KXS"})
    ]
    assert await query(db_url, "SELECT mutually_exclusive, strike_date FROM market.events") == [
        (True, T0)
    ]


# -- dedupe ------------------------------------------------------------------------------------


async def test_trades_dedupe_in_and_across_batches_ms_vs_us(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, batch_rows=100)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ws_ts = T0.replace(microsecond=535000)  # WS: milliseconds
    rest_ts = T0  # REST: microseconds, same trade
    async with writer_on(settings) as w:
        for row in (trade(a, ws_ts), trade(a, ws_ts), trade(b, ws_ts), trade(a, rest_ts, "rest")):
            await w.put("trades", row)
        await w.drain()
        await w.put("trades", trade(b, rest_ts, "rest"))
        await w.put("trades", trade(c, rest_ts, "rest"))
        await w.drain()
        stats = w.stats().tables["trades"]
    assert stats.rows_written == 3
    assert stats.rows_duplicate == 3
    got = await query(
        db_url, "SELECT trade_id, ts, source FROM market.trades ORDER BY source, trade_id"
    )
    assert sorted(got) == sorted([(a, ws_ts, "ws"), (b, ws_ts, "ws"), (c, ws_ts, "rest")])


LICENSE = "SELECT current_setting('timescaledb.license')"
COMPRESS_TRADES = "SELECT count(compress_chunk(c)) FROM show_chunks('market.trades') AS c"


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "compressed"])
async def test_a_ws_trade_without_milliseconds_and_its_rest_copy_are_one_trade(
    db_url: str, tmp_path: Path, compressed: bool
) -> None:
    """A WS trade frame without ``ts_ms`` has whole seconds (the deprecated ``ts``); its REST copy
    has microseconds. Whichever is stored first, in one batch or two, with the trades' chunk
    compressed or not, one row remains, at the REST copy's time and rank."""
    if compressed and await query(db_url, LICENSE) == [("apache",)]:
        pytest.skip("the Apache edition has no compression")
    settings = make_settings(db_url, tmp_path, batch_rows=100)
    second = T0.replace(microsecond=0)  # what the WS frame says: 15:09:26
    cases = {  # trade -> the batches its copies come in
        "ws, then rest": [["ws"], ["rest"]],
        "rest, then ws": [["rest"], ["ws"]],
        "one batch": [["ws", "rest"]],
        "one batch, rest first": [["rest", "ws"]],
    }
    ids = {name: uuid.uuid4() for name in cases}
    rank = {name: k + 1 for k, name in enumerate(cases)}

    def copy(name: str, source: str) -> TradeRow:
        ts = second if source == "ws" else T0 + timedelta(microseconds=rank[name])
        seq = exchange_seq(ts, 0 if source == "ws" else rank[name])
        return trade(ids[name], ts, source)._replace(exchange_seq=seq)

    async with writer_on(settings) as w:
        for step in range(2):
            for name, batches in cases.items():
                for source in batches[step] if step < len(batches) else []:
                    await w.put("trades", copy(name, source))
            await w.drain()
            if compressed and step == 0:
                await query(db_url, COMPRESS_TRADES)
    got = await query(
        db_url, "SELECT trade_id, ts, created_time, exchange_seq, source FROM market.trades"
    )
    by_id = {r[0]: r[1:] for r in got}
    assert len(got) == len(cases), got
    for name, first in ((n, b[0][0]) for n, b in cases.items()):
        ts, created, seq, source = by_id[ids[name]]
        rest_time = T0 + timedelta(microseconds=rank[name])
        assert (ts, created) == (T0.replace(microsecond=535000), rest_time), name
        assert seq == exchange_seq(rest_time, rank[name]), name
        assert source == first, name  # the first copy's source is kept, as for ms copies


# -- flushing and backpressure -----------------------------------------------------------------


async def test_flush_by_size(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, batch_rows=10, batch_age=60.0)
    async with writer_on(settings) as w:
        for i in range(9):
            await w.put("orderbook_deltas", delta(i))
        await asyncio.sleep(0.2)
        assert await query(db_url, "SELECT count(*) FROM market.orderbook_deltas") == [(0,)]
        await w.put("orderbook_deltas", delta(9))

        async def ten() -> bool:
            return await query(db_url, "SELECT count(*) FROM market.orderbook_deltas") == [(10,)]

        await eventually(ten, within=5)
        assert w.stats().batches_written == 1


async def test_flush_by_age(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, batch_rows=10_000, batch_age=0.5)
    async with writer_on(settings) as w:
        started = time.monotonic()
        for i in range(3):
            await w.put("orderbook_deltas", delta(i))
        assert await query(db_url, "SELECT count(*) FROM market.orderbook_deltas") == [(0,)]

        async def three() -> bool:
            return await query(db_url, "SELECT count(*) FROM market.orderbook_deltas") == [(3,)]

        await eventually(three, within=5)
        assert time.monotonic() - started >= 0.5


async def test_backpressure_blocks_producer_and_loses_nothing(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, batch_rows=5, queue_rows=10, batch_age=0.01)
    rows = [
        QuoteRow(T0 + timedelta(seconds=i), "KXTEST-1", T0, D(i % 99 + 1) / 100, D(i), None, None)
        for i in range(100)
    ]
    async with await psycopg.AsyncConnection.connect(db_url) as locker, writer_on(settings) as w:
        await locker.execute("LOCK TABLE market.quotes IN ACCESS EXCLUSIVE MODE")

        async def produce() -> None:
            for row in rows:
                await w.put("quotes", row)

        producer = asyncio.create_task(produce())
        await asyncio.sleep(0.5)
        assert not producer.done()
        stats = w.stats().tables["quotes"]
        assert stats.queue_depth == 10
        assert stats.producer_waits >= 1
        assert stats.rows_held == 5  # the one batch in flight, stuck on the lock
        with pytest.raises(WriterFull, match="quotes is full"):
            w.put_nowait("quotes", rows[0])
        await locker.rollback()  # release the lock
        await asyncio.wait_for(producer, 10)
        await w.drain()
        stats = w.stats().tables["quotes"]
        assert stats.producer_blocked_seconds > 0.3
    got = await query(db_url, "SELECT ts, yes_bid, yes_bid_size FROM market.quotes ORDER BY ts")
    assert got == [(r.ts, r.yes_bid, r.yes_bid_size) for r in rows]


async def test_put_table_nowait_queues_what_goes_straight_in(db_url: str, tmp_path: Path) -> None:
    """The collector's per-burst call: rows of a table go in, in order, until one would wait
    (queue full) or fail (wrong width); that one and the rest are left to put()."""
    settings = make_settings(db_url, tmp_path, batch_rows=100_000, batch_age=60.0, queue_rows=4)
    async with writer_on(settings) as w:
        assert w.put_table_nowait("nope", [(1,)]) == 0
        assert w.put_table_nowait("orderbook_deltas", []) == 0
        assert w.put_table_nowait("orderbook_deltas", [delta(0), delta(1)]) == 2
        assert w.put_table_nowait("orderbook_deltas", [delta(2), (1, 2), delta(3)]) == 1
        assert w.put_table_nowait("orderbook_deltas", [delta(3), delta(4), delta(5)]) == 1
        assert w.stats().tables["orderbook_deltas"].queue_depth == 4  # full: the bound holds
        assert w.put_table_nowait("orderbook_deltas", [delta(4)]) == 0
        await w.drain()
        assert w.put_table_nowait("orderbook_deltas", [delta(4), delta(5)]) == 2
        await w.drain()
        got = await query(db_url, "SELECT seq FROM market.orderbook_deltas ORDER BY seq")
        assert got == [(i,) for i in range(6)]
        assert w.stats().tables["orderbook_deltas"].rows_put == 6
    assert w.put_table_nowait("orderbook_deltas", [delta(6)]) == 0  # closed


async def test_runs_encoded_at_put_time_make_the_same_batches(db_url: str, tmp_path: Path) -> None:
    """put_table_nowait encodes each run at once; a batch is sent as those bytes plus the rows
    put one by one, encoded when it is cut (a run the cut splits is re-encoded for its head).
    Every row is written once, in order."""
    settings = make_settings(db_url, tmp_path, batch_rows=7, batch_age=60.0, queue_rows=1000)
    async with writer_on(settings) as w:
        sent_encoded: list[bool] = []
        write_rows = w._write_rows

        async def spy(
            worker: Any, spec: Any, rows: Any, mark: Any = None, body: bytes | None = None
        ) -> tuple[int, int]:
            sent_encoded.append(body is not None)
            return await write_rows(worker, spec, rows, mark, body)

        w._write_rows = spy  # type: ignore[method-assign]
        seq = iter(range(1000))
        expected: list[int] = []
        for size in (1, 1, 3, 1, 4, 20, 1, 2, 2, 16, 5):
            rows = [delta(next(seq)) for _ in range(size)]
            expected += [r.seq for r in rows]
            if size == 1:
                await w.put("orderbook_deltas", rows[0])
            else:
                assert w.put_table_nowait("orderbook_deltas", rows) == size
        await w.drain()
        got = await query(db_url, "SELECT seq FROM market.orderbook_deltas ORDER BY seq")
        assert [r[0] for r in got] == expected
        assert w.stats().tables["orderbook_deltas"].rows_written == len(expected)
        assert sent_encoded
        assert all(sent_encoded)  # every batch, mixed or split, went as the bytes cut with it


async def test_drain_and_close_write_everything(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, batch_rows=100_000, batch_age=60.0)
    async with writer_on(settings) as w:
        for i in range(250):
            w.put_nowait("orderbook_deltas", delta(i))
        await w.put("book_gaps", BookGapRow(T0, T0, "KXTEST-1", "disconnect", None, T0))
        await w.drain()
        assert await query(db_url, "SELECT count(*) FROM market.orderbook_deltas") == [(250,)]
        for i in range(250, 300):
            await w.put("orderbook_deltas", delta(i))
    # close() drains too
    assert await query(db_url, "SELECT count(*) FROM market.orderbook_deltas") == [(300,)]
    assert await query(db_url, "SELECT count(*) FROM market.book_gaps") == [(1,)]
    assert spool_files(settings) == []


async def test_put_validation_and_closed_writer(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path)
    async with writer_on(settings) as w:
        with pytest.raises(StorageError, match="no table"):
            await w.put("nope", (1,))
        with pytest.raises(StorageError, match="has 9 values"):
            await w.put("orderbook_deltas", (1, 2))
        with pytest.raises(StorageError, match="has 9 values"):
            w.put_nowait("orderbook_deltas", (1, 2))
    with pytest.raises(WriterClosed):
        await w.put("orderbook_deltas", delta(0))
    with pytest.raises(WriterClosed):
        await w.drain()


async def test_invalid_rows_are_set_aside_not_wedging(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, batch_rows=1000)
    async with writer_on(settings) as w:
        for i in range(20):
            await w.put("orderbook_deltas", delta(i, price="1.5000" if i == 13 else "0.5000"))
        await w.drain()
        stats = w.stats().tables["orderbook_deltas"]
    assert (stats.rows_written, stats.rows_rejected) == (19, 1)
    got = await query(db_url, "SELECT seq FROM market.orderbook_deltas ORDER BY seq")
    assert [s for (s,) in got] == [i for i in range(20) if i != 13]
    rejected = settings.spool_dir / "rejected" / "orderbook_deltas.jsonl"
    (line,) = rejected.read_text().splitlines()
    record = json.loads(line)
    assert record["row"][8] == 13
    assert "CheckViolation" in record["error"]


async def test_a_row_psycopg_itself_refuses_is_set_aside_not_retried(
    db_url: str, tmp_path: Path
) -> None:
    """A NUL in a text parameter of an upsert fails in psycopg, before the server (a DataError
    without SQLSTATE): the row is at fault, so it is rejected like a server data error, not
    retried as if the connection were."""
    settings = make_settings(db_url, tmp_path)
    bad = SeriesRow("KXBAD", "Bad\x00title", None, None, None, None, None, b"{}")
    good = SeriesRow("KXGOOD", "Good", None, None, None, None, None, b"{}")
    async with writer_on(settings) as w:
        await w.upsert_series([bad, good])
        await asyncio.wait_for(w.drain(), 30)
        stats = w.stats()
    assert (stats.tables["series"].rows_written, stats.tables["series"].rows_rejected) == (1, 1)
    assert stats.retries == 0
    assert await query(db_url, "SELECT ticker FROM market.series") == [("KXGOOD",)]


async def test_flush_task_failure_surfaces(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(db_url, tmp_path)

    async def boom(*_: Any) -> None:
        raise RuntimeError("bug in the writer")

    failed: list[BaseException] = []
    try:
        async with writer_on(settings) as w:
            monkeypatch.setattr(w, "_write_batch", boom)
            await w.put("orderbook_deltas", delta(0))
            with pytest.raises(WriterClosed, match="bug in the writer"):
                await asyncio.wait_for(w.drain(), 5)
            with pytest.raises(WriterClosed):
                await w.put("orderbook_deltas", delta(1))
    except WriterClosed as exc:  # close() raises it too
        failed.append(exc)
    assert len(failed) == 1
    assert isinstance(failed[0].__cause__, RuntimeError)
    # the row that could not be written is on disk, not lost
    assert len(spool_files(settings)) == 1


# -- outages -----------------------------------------------------------------------------------


async def commit_order(url: str) -> list[int]:
    """Delta seqs in commit order (transaction id, then seq within one batch)."""
    rows = await query(
        url, "SELECT seq FROM market.orderbook_deltas ORDER BY xmin::text::bigint, seq"
    )
    return [s for (s,) in rows]


async def test_outage_rows_held_in_memory_are_committed_after_recovery(
    db_url: str, tmp_path: Path, proxy: TcpProxy
) -> None:
    settings = make_settings(proxy.url(db_url), tmp_path, batch_rows=7, memory_rows=10_000)
    async with writer_on(settings) as w:
        for i in range(20):
            await w.put("orderbook_deltas", delta(i))
        await w.drain()
        await proxy.stop()
        for i in range(20, 120):
            await w.put("orderbook_deltas", delta(i))
            if i % 10 == 0:
                await asyncio.sleep(0.02)

        async def down() -> bool:
            s = w.stats()
            return (
                not s.database_up
                and s.retries >= 2
                and s.tables["orderbook_deltas"].queue_depth == 0  # every row cut by now
            )

        await eventually(down)
        stats = w.stats()
        assert stats.held_rows == 100
        assert stats.spool_files_pending == 0
        await proxy.start()
        await asyncio.wait_for(w.drain(), 30)
        assert w.stats().database_up
    assert await commit_order(db_url) == list(range(120))
    assert spool_files(settings) == []


async def test_outage_beyond_memory_spools_and_replays_in_order(
    db_url: str, tmp_path: Path, proxy: TcpProxy
) -> None:
    settings = make_settings(proxy.url(db_url), tmp_path, batch_rows=5, memory_rows=10)
    async with writer_on(settings) as w:
        await proxy.stop()
        for i in range(60):
            await w.put("orderbook_deltas", delta(i))
            ts = T0 + timedelta(seconds=i)
            await w.put("quotes", QuoteRow(ts, "KXTEST-1", T0, None, None, D("0.5"), D(i + 1)))
            if i % 5 == 4:
                await asyncio.sleep(0.06)  # let batches age out one by one

        async def spooled() -> bool:
            s = w.stats()
            return (
                s.tables["orderbook_deltas"].queue_depth == 0
                and s.tables["quotes"].queue_depth == 0
                and s.spool_files_pending == len(spool_files(settings))
                and s.held_rows + 5 * s.spool_files_pending == 120
            )

        await eventually(spooled)
        stats = w.stats()
        assert stats.held_rows <= 10
        assert stats.spool_files_pending >= 22
        names = spool_files(settings)
        assert names == sorted(names)
        assert {n.split("-", 1)[1] for n in names} == {"orderbook_deltas.spool", "quotes.spool"}
        await proxy.start()
        await asyncio.wait_for(w.drain(), 30)
        stats = w.stats()
        assert stats.spool_files_pending == 0
        assert stats.replayed_batches_total == stats.spooled_batches_total >= 15
    assert spool_files(settings) == []
    assert await commit_order(db_url) == list(range(60))
    got = await query(
        db_url, "SELECT yes_ask_size FROM market.quotes ORDER BY xmin::text::bigint, ts"
    )
    assert [s for (s,) in got] == [D(i + 1) for i in range(60)]


async def test_leftover_spool_is_replayed_on_startup(
    db_url: str, tmp_path: Path, proxy: TcpProxy
) -> None:
    # A writer that cannot reach the database and is stopped: everything ends up spooled.
    dead = make_settings(proxy.url(db_url), tmp_path, batch_rows=4, memory_rows=0)
    await proxy.stop()
    pool = make_pool(dead, min_size=0, max_size=1, timeout=0.5)
    await pool.open()
    try:
        w = Writer(dead, pool, close_timeout=0.5)
        async with w:
            for i in range(30):
                await w.put("orderbook_deltas", delta(i))
            await w.put("trades", trade(uuid.uuid4(), T0))
            await asyncio.sleep(0.2)
    finally:
        await pool.close()
    left = spool_files(dead)
    assert len(left) >= 8
    (dead.spool_dir / f"{'9' * 16}-orderbook_deltas.spool.tmp").write_bytes(b"partial")

    # The next writer (database reachable again) replays them first, then its own rows.
    settings = make_settings(db_url, tmp_path, batch_rows=100)
    assert settings.spool_dir == dead.spool_dir
    async with writer_on(settings) as w:
        for i in range(30, 40):
            await w.put("orderbook_deltas", delta(i))
        await asyncio.wait_for(w.drain(), 30)
        assert w.stats().replayed_batches_total == len(left)
    assert list(settings.spool_dir.glob("*.spool*")) == []
    assert await commit_order(db_url) == list(range(40))
    assert await query(db_url, "SELECT count(*) FROM market.trades") == [(1,)]


async def test_spool_file_format_is_msgpack_rows(tmp_path: Path, db_url: str) -> None:
    """Spool files are self-describing msgpack; version 1 files, (1, table, rows) without a
    commit mark, are still replayed (at least once)."""
    settings = make_settings(db_url, tmp_path)
    settings.spool_dir.mkdir(parents=True)
    row = delta(5)
    data = msgspec.msgpack.encode((1, "orderbook_deltas", [row]))
    (settings.spool_dir / "0000000000000001-orderbook_deltas.spool").write_bytes(data)
    (settings.spool_dir / "0000000000000002-orderbook_deltas.spool").write_bytes(b"garbage")
    async with writer_on(settings) as w:
        await asyncio.wait_for(w.drain(), 10)
        assert w.stats().spool_errors == 1
    assert await commit_order(db_url) == [5]
    assert [p.name for p in (settings.spool_dir / "rejected").iterdir()] == [
        "0000000000000002-orderbook_deltas.spool"
    ]


async def test_a_spool_file_that_outlived_its_commit_is_not_written_twice(
    db_url: str, tmp_path: Path, proxy: TcpProxy
) -> None:
    """A crash between a replayed batch's commit and the deletion of its spool file leaves the
    file behind; the next writer recognises it by its commit mark and skips it."""
    dead = make_settings(proxy.url(db_url), tmp_path, batch_rows=4, memory_rows=0)
    await proxy.stop()
    pool = make_pool(dead, min_size=0, max_size=1, timeout=0.5)
    await pool.open()
    try:
        async with Writer(dead, pool, close_timeout=0.5) as w:
            for i in range(30):
                await w.put("orderbook_deltas", delta(i))
            await asyncio.sleep(0.2)
    finally:
        await pool.close()
    files = {p.name: p.read_bytes() for p in dead.spool_dir.glob("*.spool")}
    assert len(files) >= 8
    settings = make_settings(db_url, tmp_path)
    async with writer_on(settings) as w:
        await asyncio.wait_for(w.drain(), 30)
    assert await commit_order(db_url) == list(range(30))
    for name, data in files.items():  # "crashed before deleting them"
        (settings.spool_dir / name).write_bytes(data)
    async with writer_on(settings) as w:
        await asyncio.wait_for(w.drain(), 30)
        stats = w.stats()
        assert stats.replayed_batches_total == len(files)
        assert stats.tables["orderbook_deltas"].rows_duplicate == 30
        assert stats.tables["orderbook_deltas"].rows_written == 0
    assert spool_files(settings) == []
    assert await commit_order(db_url) == list(range(30))  # once each


async def test_a_commit_acknowledged_too_late_is_not_written_twice(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection fails after the server committed (the client never sees the reply): the
    writer retries the batch, finds its commit mark moved and writes nothing again."""
    settings = make_settings(db_url, tmp_path, batch_rows=10)
    async with writer_on(settings) as w:
        original = w._write_rows
        lost = 0

        async def commit_then_lose_the_reply(*args: Any) -> tuple[int, int]:
            nonlocal lost
            n = await original(*args)
            if lost < 2:
                lost += 1
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            return n

        monkeypatch.setattr(w, "_write_rows", commit_then_lose_the_reply)
        for i in range(25):
            await w.put("orderbook_deltas", delta(i))
        await asyncio.wait_for(w.drain(), 30)
        stats = w.stats()
        assert lost == 2
        assert stats.retries == 2
        assert stats.tables["orderbook_deltas"].rows_written == 25
        assert stats.tables["orderbook_deltas"].rows_duplicate == 0
    assert await commit_order(db_url) == list(range(25))
    marks = await query(db_url, "SELECT batch_seq, rows_done FROM private.writer_progress")
    assert len(marks) == 1


async def test_open_pool_never_closes_an_injected_pool(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path)
    pool: Pool = make_pool(settings, min_size=1, max_size=1)
    await pool.open(wait=True)
    try:
        async with open_pool(settings, pool=pool) as got:
            assert got is pool
        async with pool.connection() as conn:
            assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)
    finally:
        await pool.close()


# -- concurrency -------------------------------------------------------------------------------


@pytest.mark.parametrize("connections", [1, 2])
async def test_a_blocked_table_holds_up_the_others_only_with_one_connection(
    db_url: str, tmp_path: Path, connections: int
) -> None:
    """``connections`` flushers write different tables at once: a table the server blocks (here
    a lock) delays only itself when there are two; with one, everything queues behind it."""
    settings = make_settings(db_url, tmp_path, connections=connections)
    async with quotes_blocked(db_url, settings) as (locker, w):
        await w.put("orderbook_deltas", delta(0))

        async def deltas_written() -> bool:
            return w.stats().tables["orderbook_deltas"].rows_written == 1

        if connections == 2:
            await eventually(deltas_written, within=30)  # a worker process may be starting
        else:
            await asyncio.sleep(1.0)
            assert not await deltas_written()  # queued behind the blocked table
        assert w.stats().tables["quotes"].rows_written == 0
        await locker.rollback()  # release the lock: everything commits
        await asyncio.wait_for(w.drain(), 10)
        assert w.stats().tables["quotes"].rows_written == 1
        assert w.stats().tables["orderbook_deltas"].rows_written == 1


async def test_rows_gather_while_every_flusher_is_busy(db_url: str, tmp_path: Path) -> None:
    """Group commit: rows that come due while the only flusher is busy are not cut into a
    batch of their own; when it is free, everything gathered so far goes in one transaction."""
    settings = make_settings(db_url, tmp_path, connections=1, batch_rows=1000, batch_age=0.05)
    async with quotes_blocked(db_url, settings) as (locker, w):
        for i in range(3):
            await w.put("orderbook_deltas", delta(i))
        await asyncio.sleep(0.3)  # due by age, but no flusher is free: not cut
        deltas = w.stats().tables["orderbook_deltas"]
        assert (deltas.batches_pending, deltas.queue_depth) == (0, 3)
        for i in range(3, 6):
            await w.put("orderbook_deltas", delta(i))
        before = w.stats().batches_written
        await locker.rollback()
        await asyncio.wait_for(w.drain(), 10)
        assert w.stats().tables["orderbook_deltas"].rows_written == 6
        assert w.stats().batches_written - before == 2  # the quote, then six deltas at once


@contextlib.asynccontextmanager
async def quotes_blocked(
    db_url: str, settings: Settings
) -> AsyncIterator[tuple[psycopg.AsyncConnection[Any], Writer]]:
    """A writer whose one ``quotes`` batch is in flight and stuck on a table lock held by the
    yielded connection (``rollback()`` releases it)."""
    quote = QuoteRow(T0, "KXTEST-1", T0, D("0.4000"), D("10.00"), D("0.4100"), D("5.00"))
    async with await psycopg.AsyncConnection.connect(db_url) as locker:
        await locker.execute("LOCK TABLE market.quotes IN ACCESS EXCLUSIVE MODE")
        async with writer_on(settings) as w:
            await w.put("quotes", quote)
            await eventually(lambda: _inflight(w, "quotes"))
            yield locker, w


async def _inflight(w: Writer, table: str) -> bool:
    return w.stats().tables[table].batches_pending == 1 and not w.stats().tables[table].queue_depth


# -- copy worker processes ---------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_killed_copy_worker_is_replaced_and_nothing_is_lost_or_doubled(
    db_url: str, tmp_path: Path
) -> None:
    settings = make_settings(db_url, tmp_path, batch_rows=50, connections=1)
    async with writer_on(settings) as w:
        for i in range(200):
            await w.put("orderbook_deltas", delta(i))
        await asyncio.wait_for(w.drain(), 30)
        worker = w._workers[0]
        first = worker.pid
        assert first is not None
        assert _alive(first)
        os.kill(first, signal.SIGKILL)
        for i in range(200, 400):
            await w.put("orderbook_deltas", delta(i))
        await asyncio.wait_for(w.drain(), 30)
        assert worker.spawned == 2
        assert w.stats().worker_starts == 2
        assert worker.pid not in (None, first)
        assert w.stats().tables["orderbook_deltas"].rows_written == 400
        pids = [p.pid for p in w._workers if p.pid is not None]
    assert await commit_order(db_url) == list(range(400))
    assert not any(_alive(p) for p in pids)  # closing the writer ends its workers


@pytest_asyncio.fixture(loop_scope="function")
async def copy_worker(db_url: str) -> AsyncIterator[CopyWorker]:
    """A COPY worker on the test database, always closed (its process never outlives a test)."""
    worker = CopyWorker(db_url, connect_kwargs("kalshibook-test"), "t")
    try:
        yield worker
    finally:
        await worker.close()


async def test_copy_worker_ignores_the_collectors_signals_and_ends_with_its_pipe(
    db_url: str, copy_worker: CopyWorker
) -> None:
    """Ctrl-C / systemd signal the whole group: the worker keeps serving (the collector drains
    through it) and ends when the collector closes the pipe."""
    worker = copy_worker
    body = msgspec.msgpack.encode([delta(0)])
    assert await worker.write("orderbook_deltas", None, body) == (1, 0)
    pid = worker.pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    await asyncio.sleep(0.2)
    body = msgspec.msgpack.encode([delta(1)])
    assert await worker.write("orderbook_deltas", None, body) == (1, 0)
    assert worker.pid == pid
    assert worker.spawned == 1
    await worker.close()
    assert not _alive(pid)
    assert await commit_order(db_url) == [0, 1]


async def test_a_copy_worker_that_cannot_start_fails_the_writer_with_a_clear_error(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken installation is not retried forever: the writer fails with the reason (the
    collector then exits with it) and the rows it held are spooled, not lost."""
    from kalshibook.storage import copyworker

    monkeypatch.setattr(copyworker.sys, "executable", "/bin/false")
    settings = make_settings(db_url, tmp_path)
    failed: list[BaseException] = []
    try:
        async with writer_on(settings) as w:
            await w.put("orderbook_deltas", delta(0))
            with pytest.raises(WriterClosed, match="could not start"):
                await asyncio.wait_for(w.drain(), 30)
    except WriterClosed as exc:
        failed.append(exc)
    assert len(failed) == 1
    assert "COPY worker process" in str(failed[0])
    assert len(spool_files(settings)) == 1


async def test_a_part_of_a_split_batch_committed_before_is_not_written_again(
    db_url: str, copy_worker: CopyWorker
) -> None:
    """The commit mark is checked inside the transaction, part by part: a retry that starts
    inside rows already committed (a split batch whose first half's acknowledgement was lost)
    writes only the rest."""
    worker = copy_worker
    rows = [delta(i) for i in range(20)]
    mark = {"writer_id": str(uuid.uuid4()), "table": "orderbook_deltas", "seq": 3}
    first = msgspec.msgpack.encode(rows[:10])
    assert await worker.write("orderbook_deltas", {**mark, "start": 0, "done": 10}, first) == (
        10,
        0,
    )
    retry = msgspec.msgpack.encode(rows[5:])
    assert await worker.write("orderbook_deltas", {**mark, "start": 5, "done": 20}, retry) == (
        10,
        5,
    )
    again = msgspec.msgpack.encode(rows[:20])
    assert await worker.write("orderbook_deltas", {**mark, "start": 0, "done": 20}, again) == (
        0,
        20,
    )
    older = {**mark, "seq": 2, "start": 0, "done": 10}
    assert await worker.write("orderbook_deltas", older, first) == (0, 10)
    assert await commit_order(db_url) == list(range(20))
