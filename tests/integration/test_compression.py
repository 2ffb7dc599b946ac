"""Compression on the Community edition: policies follow the settings, compressed chunks still
take late writes (which reach the candles) and still serve the order book and deltas reads."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cli_support import run_cli
from plan_support import PAUSE_COMPRESSION

from kalshibook.domain.exchange_order import exchange_seq
from kalshibook.errors import ConfigError
from kalshibook.settings import CoreSettings, Settings, StorageSettings, WriterSettings
from kalshibook.storage import book_reads, migrate
from kalshibook.storage.candles import refresh_candles
from kalshibook.storage.policies import POLICIES, apply_policies
from kalshibook.storage.pool import open_pool
from kalshibook.storage.tables import DeltaRow, SnapshotRow, TradeRow
from kalshibook.storage.writer import Writer

pytestmark = pytest.mark.db

D = Decimal
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # far older than every compress-after
TICKER = "KXCOMP-1"

JOBS = """
SELECT j.proc_name, coalesce(a.view_name, j.hypertable_name),
       coalesce(j.config ->> 'compress_after', j.config ->> 'drop_after')
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.continuous_aggregates a
  ON a.materialization_hypertable_name = j.hypertable_name
WHERE j.proc_name IN ('policy_compression', 'policy_retention')
ORDER BY 1, 2
"""
COMPRESS_ALL = """
SELECT count(compress_chunk(c, true)) FROM show_chunks(%s::regclass) c
"""
COMPRESSED_CHUNKS = """
SELECT count(*) FILTER (WHERE is_compressed), count(*) FROM timescaledb_information.chunks
WHERE hypertable_schema = 'market' AND hypertable_name = %s
"""


def jobs(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(JOBS).fetchall()


@pytest.mark.both_editions
def test_policies_follow_the_settings(
    db_url: str, edition: str, caplog: pytest.LogCaptureFixture
) -> None:
    if edition == "apache":  # no compression, no job scheduler: nothing to apply
        with psycopg.connect(db_url, autocommit=True) as conn, caplog.at_level(logging.INFO):
            assert apply_policies(conn, StorageSettings()) == []
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
            # a retention asked for cannot be applied: said as a warning naming the setting
            assert apply_policies(conn, StorageSettings(quotes_retention_days=30)) == []
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 1
        assert "KALSHIBOOK_STORAGE_QUOTES_RETENTION_DAYS" in warned[0]
        assert jobs(db_url) == []
        return
    # `migrate` applied the defaults: one compression job per compressed relation.
    defaults = jobs(db_url)
    assert len(defaults) == sum(1 for p in POLICIES if p.kind == "compression")
    assert ("policy_compression", "trades", "14 days") in defaults
    assert ("policy_compression", "orderbook_deltas", "2 days") in defaults
    assert ("policy_compression", "candles_trades_1m", "30 days") in defaults
    changed = StorageSettings(
        trades_compress_after_days=0, quotes_compress_after_days=21, quotes_retention_days=400
    )
    migrate.upgrade(db_url, storage=changed)
    now = jobs(db_url)
    assert not any(j[:2] == ("policy_compression", "trades") for j in now)
    assert ("policy_compression", "quotes", "21 days") in now
    assert ("policy_retention", "quotes", "400 days") in now
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert apply_policies(conn, changed) == []  # idempotent
        back = apply_policies(conn, StorageSettings())
    assert len(back) == 3
    assert jobs(db_url) == defaults


def test_a_compress_after_inside_the_refresh_window_is_refused() -> None:
    with pytest.raises(ConfigError, match="KALSHIBOOK_STORAGE_TRADES_COMPRESS_AFTER_DAYS"):
        Settings.from_env({"KALSHIBOOK_STORAGE_TRADES_COMPRESS_AFTER_DAYS": "3"})
    for huge in ("inf", "1e12"):  # timedelta would overflow when the policy is applied
        with pytest.raises(ConfigError, match="KALSHIBOOK_STORAGE_TRADES_COMPRESS_AFTER_DAYS"):
            Settings.from_env({"KALSHIBOOK_STORAGE_TRADES_COMPRESS_AFTER_DAYS": huge})
    with pytest.raises(ConfigError, match="KALSHIBOOK_STORAGE_QUOTES_RETENTION_DAYS"):
        Settings.from_env({"KALSHIBOOK_STORAGE_QUOTES_RETENTION_DAYS": "2"})
    with pytest.raises(ConfigError, match="snapshots must be kept at least as long as deltas"):
        Settings.from_env(
            {
                "KALSHIBOOK_STORAGE_ORDERBOOK_DELTAS_RETENTION_DAYS": "90",
                "KALSHIBOOK_STORAGE_ORDERBOOK_SNAPSHOTS_RETENTION_DAYS": "30",
            }
        )
    ok = Settings.from_env({"KALSHIBOOK_STORAGE_ORDERBOOK_DELTAS_RETENTION_DAYS": "365"})
    assert ok.storage.orderbook_deltas_retention_days == 365


def trade(i: int, price: str, ts: datetime, source: str = "ws") -> TradeRow:
    return TradeRow(
        ts=ts,
        trade_id=uuid.UUID(int=i + 1),
        market_ticker=TICKER,
        yes_price=D(price),
        no_price=1 - D(price),
        count=D("2.00"),
        taker_outcome_side="yes",
        taker_book_side="bid",
        is_block_trade=False,
        source=source,
        received_at=ts,
        exchange_seq=exchange_seq(ts, 0),
    )


def book_rows() -> list[Any]:
    snap = SnapshotRow(
        ts=T0,
        market_ticker=TICKER,
        received_at=T0,
        source="snapshot",
        epoch=1,
        sid=1,
        seq=1,
        yes_bids=b"[[0.40, 10.00], [0.41, 5.00]]",
        no_bids=b"[[0.55, 7.00]]",
    )
    deltas = [
        DeltaRow(
            ts=T0 + timedelta(seconds=i + 1),
            market_ticker=TICKER,
            received_at=T0 + timedelta(seconds=i + 1),
            side="yes" if i % 2 else "no",
            price=D("0.41") if i % 2 else D("0.55"),
            delta=D("1.00"),
            epoch=1,
            sid=1,
            seq=i + 2,
        )
        for i in range(50)
    ]
    return [("orderbook_snapshots", snap), *(("orderbook_deltas", d) for d in deltas)]


async def write(url: str, tmp_path: Path, rows: list[tuple[str, Any]]) -> None:
    settings = Settings(
        core=CoreSettings(database_url=url, data_dir=str(tmp_path / "data")),
        writer=WriterSettings(batch_age=0.05),
    )
    async with open_pool(settings, min_size=1, max_size=2) as pool, Writer(settings, pool) as w:
        for table, row in rows:
            await w.put(table, row)
        await w.drain()


async def candle_1m(url: str, bucket: datetime) -> tuple[Any, ...] | None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT open, close, volume, trade_count FROM market.candles_trades_1m "
            "WHERE market_ticker = %s AND bucket = %s",
            (TICKER, bucket),
        )
        return await cur.fetchone()


async def test_compressed_chunks_take_late_writes_and_serve_reads(
    db_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        # the database's compression policy must not compress a chunk between this test's own
        # compress_chunk calls' check and their work (compress_chunk then fails: already done)
        conn.execute(PAUSE_COMPRESSION)
    await write(
        db_url,
        tmp_path,
        [("trades", trade(i, "0.40", T0 + timedelta(seconds=10 * i))) for i in range(6)]
        + book_rows(),
    )
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await refresh_candles(conn, T0, T0 + timedelta(hours=1))
        before_book = await book_reads.book_at(conn, TICKER, T0 + timedelta(seconds=30))
        before_deltas = await book_reads.list_deltas(
            conn, ticker=TICKER, start=T0, end=None, after=None, limit=1000
        )
    assert await candle_1m(db_url, T0) == (D("0.40"), D("0.40"), D("12.00"), 6)

    with psycopg.connect(db_url, autocommit=True) as conn:
        for table in ("trades", "orderbook_deltas", "orderbook_snapshots"):
            conn.execute(COMPRESS_ALL, (f"market.{table}",))
            compressed, total = conn.execute(COMPRESSED_CHUNKS, (table,)).fetchone() or (0, 0)
            assert compressed == total > 0, table

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        after_book = await book_reads.book_at(conn, TICKER, T0 + timedelta(seconds=30))
        after_deltas = await book_reads.list_deltas(
            conn, ticker=TICKER, start=T0, end=None, after=None, limit=1000
        )
    assert after_book == before_book
    assert after_book.deltas_applied == 30
    assert after_deltas == before_deltas
    assert len(after_deltas) == 50

    # A late REST backfill lands in the compressed chunk: a new trade, and a copy of a stored
    # one (µs time, other source) that must still be dropped as a duplicate.
    late = trade(100, "0.70", T0 + timedelta(seconds=59), source="rest")
    copy = trade(0, "0.40", T0 + timedelta(microseconds=271), source="rest")
    await write(db_url, tmp_path, [("trades", late), ("trades", copy)])
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM market.trades WHERE market_ticker = %s", (TICKER,)
        )
        assert await cur.fetchone() == (7,)
        await refresh_candles(conn, T0, T0 + timedelta(hours=1))
    assert await candle_1m(db_url, T0) == (D("0.40"), D("0.70"), D("14.00"), 7)


def test_migrate_command_applies_the_policy_settings(db_url: str) -> None:
    policies = {
        "KALSHIBOOK_STORAGE_ORDERBOOK_DELTAS_COMPRESS_AFTER_DAYS": "5",
        "KALSHIBOOK_STORAGE_ORDERBOOK_DELTAS_RETENTION_DAYS": "90",
    }
    out = run_cli("migrate", url=db_url, timeout=120, **policies)
    assert out.returncode == 0, out.stderr
    now = jobs(db_url)
    assert ("policy_compression", "orderbook_deltas", "5 days") in now
    assert ("policy_retention", "orderbook_deltas", "90 days") in now
    bad = run_cli(
        "migrate",
        url=db_url,
        timeout=120,
        **policies,
        KALSHIBOOK_STORAGE_TRADES_COMPRESS_AFTER_DAYS="1",
    )
    assert bad.returncode != 0
    assert "KALSHIBOOK_STORAGE_TRADES_COMPRESS_AFTER_DAYS=1 is invalid" in bad.stderr
    assert "Traceback" not in bad.stderr


PAGE_PLANS = {
    "trades": "SELECT ts, trade_id FROM market.trades WHERE market_ticker = 'KXORD' "
    "ORDER BY ts, exchange_seq, trade_id LIMIT 1000",
    "orderbook_deltas": "SELECT ts, epoch, seq FROM market.orderbook_deltas "
    "WHERE market_ticker = 'KXORD' ORDER BY ts, epoch, seq LIMIT 1000",
    "trades newest first": "SELECT ts FROM market.trades WHERE market_ticker = 'KXORD' "
    "ORDER BY ts DESC, exchange_seq DESC LIMIT 1",
}


def test_compressed_chunks_serve_pages_in_order_without_sorting(db_url: str) -> None:
    """Compression orders each segment as the API pages through it: a compressed chunk streams
    rows in page order (or its reverse) instead of decompressing and sorting the whole segment
    (1.6 s per 1,000-row trades page with TimescaleDB's default order, bench_api)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, "
            "source, received_at) SELECT %s::timestamptz + k * INTERVAL '10 ms', "
            "gen_random_uuid(), 'KXORD', 0.5, 0.5, 1, 'ws', now() FROM generate_series(1, 20000) k",
            (T0,),
        )
        conn.execute(
            "INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, "
            "delta, epoch, sid, seq) SELECT %s::timestamptz + k * INTERVAL '10 ms', 'KXORD', "
            "now(), 'yes', 0.5, 1, 1, 1, k FROM generate_series(1, 20000) k",
            (T0,),
        )
        for table in ("trades", "orderbook_deltas"):
            conn.execute(COMPRESS_ALL, (f"market.{table}",))
        conn.execute("ANALYZE market.trades, market.orderbook_deltas")
        for name, query in PAGE_PLANS.items():
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query).fetchall())
            assert "DecompressChunk" in plan, (name, plan)
            # sorting the compressed batches by their min/max metadata (a few rows) is fine;
            # sorting the decompressed rows is what must not happen
            row_sorts = [
                line
                for line in plan.splitlines()
                if "Sort Key:" in line and "_ts_meta_" not in line
            ]
            assert not row_sorts, (name, plan)
