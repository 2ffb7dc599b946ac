"""Re-runs of `kalshibook export` compute only what changed: candle and replayed files whose
sources are unchanged are neither recomputed nor touched; a late row rewrites exactly its files."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pyarrow.parquet as pq
import pytest
from api_support import B45, B47, T0

from kalshibook.export import reads
from kalshibook.export import run as export_run
from kalshibook.export.candles import CandleDay
from kalshibook.export.run import ExportRequest, run_export
from kalshibook.storage.candle_refresh import refresh

pytestmark = [
    pytest.mark.db,
    pytest.mark.both_editions,
    pytest.mark.asyncio(loop_scope="session"),
]

DAY = T0.date().isoformat()
TABLES = ("book_samples", "trades_bbo", "candles_1m", "trades")
REQ = ExportRequest(
    tables=TABLES,
    start=datetime(2026, 1, 15, tzinfo=UTC),
    end=datetime(2026, 1, 17, tzinfo=UTC),
    tickers=(B45, B47),
    levels=3,
    every=timedelta(minutes=1),
)


def _files(ticker: str, *tables: str) -> set[str]:
    return {f"{t}/{ticker}/{DAY}.parquet" for t in tables}


def _stat(out: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in out.rglob("*.parquet")
    }


def _spy(monkeypatch: Any) -> list[tuple[str, str]]:
    """Record each file whose rows are computed: (table, ticker)."""
    computed: list[tuple[str, str]] = []

    def wrap(table: str, fn: Callable[..., AsyncIterator[Any]], at: int) -> Any:
        def spied(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            computed.append((table, args[at]))
            return fn(*args, **kwargs)

        return spied

    monkeypatch.setattr(
        export_run, "sample_batches", wrap("book_samples", export_run.sample_batches, 1)
    )
    monkeypatch.setattr(export_run, "bbo_batches", wrap("trades_bbo", export_run.bbo_batches, 1))
    monkeypatch.setattr(reads, "raw_batches", wrap("raw", reads.raw_batches, 2))
    batches = CandleDay.batches

    def candle_batches(self: CandleDay) -> AsyncIterator[Any]:
        computed.append(("candles", self.ticker))
        return batches(self)

    monkeypatch.setattr(CandleDay, "batches", candle_batches)
    return computed


async def test_rerun_computes_only_files_whose_sources_changed(
    seeded_rw_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    out = tmp_path / "export"
    computed = _spy(monkeypatch)
    async with await psycopg.AsyncConnection.connect(seeded_rw_url, autocommit=True) as conn:
        first = await run_export(conn, REQ, out)
        every_file = _files(B45, *TABLES) | _files(B47, "trades_bbo", "candles_1m", "trades")
        assert set(first.written) == every_file
        assert len(computed) == len(every_file)
        before = _stat(out)

        # nothing new: no file computed, none touched
        computed.clear()
        again = await run_export(conn, REQ, out)
        assert (again.written, set(again.skipped), computed) == ([], every_file, [])
        assert _stat(out) == before

        # a late delta on the day, after the last trade: the book samples change; the BBO is
        # recomputed (its sources changed) to the same bytes and left as it was
        computed.clear()
        await conn.execute(
            "INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price,"
            " delta, epoch, sid, seq) VALUES (%s, %s, now(), 'yes', 0.33, 5, 2, 1, 900)",
            (T0 + timedelta(hours=3), B45),
        )
        third = await run_export(conn, REQ, out)
        assert third.written == [f"book_samples/{B45}/{DAY}.parquet"]
        assert sorted(computed) == [("book_samples", B45), ("trades_bbo", B45)]
        after = _stat(out)
        bbo = f"trades_bbo/{B45}/{DAY}.parquet"
        assert after[bbo] == before[bbo]
        assert {k for k in after if after[k] != before[k]} == set(third.written)

        # a late trade of B47: its trades, BBO and candles, nothing of B45
        computed.clear()
        await conn.execute(
            "INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count,"
            " source, received_at) VALUES (%s, gen_random_uuid(), %s, 0.5, 0.5, 3, 'rest', now())",
            (T0 + timedelta(hours=2), B47),
        )
        fourth = await run_export(conn, REQ, out)
        assert set(fourth.written) == _files(B47, "trades_bbo", "candles_1m", "trades")
        assert sorted(computed) == [("candles", B47), ("raw", B47), ("trades_bbo", B47)]

        # other sampling parameters are other columns or instants: the samples are redone
        computed.clear()
        fifth = await run_export(conn, msgspec.structs.replace(REQ, levels=2), out)
        assert fifth.written == [f"book_samples/{B45}/{DAY}.parquet"]
        assert computed == [("book_samples", B45)]


async def test_a_rerun_extends_the_book_samples_of_the_day_in_progress(
    seeded_rw_url: str, tmp_path: Path
) -> None:
    """Today's samples stop at the run's present; a later run, even with no new book event,
    computes them again up to its own present (the fingerprint holds the day's last instant)."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    req = ExportRequest(
        tables=("book_samples",),
        start=midnight,
        end=midnight + timedelta(days=1),
        tickers=(B45,),
        levels=1,
    )
    rel = f"book_samples/{B45}/{midnight.date().isoformat()}.parquet"
    out = tmp_path / "export"
    async with await psycopg.AsyncConnection.connect(seeded_rw_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source,"
            " epoch, sid, seq, yes_bids, no_bids)"
            " VALUES (%s, %s, %s, 'snapshot', 9, 9, 1, '[[0.4, 50]]', '[[0.5, 20]]')",
            (midnight, B45, midnight),
        )
        runs = []
        for _ in range(2):
            summary = await run_export(conn, req, out)
            done = datetime.now(UTC)
            ts = pq.read_table(out / rel).column("ts").to_pylist()
            runs.append((summary.written, len(ts), ts[-1], done))
            await asyncio.sleep(1.1)
    if done >= midnight + timedelta(days=1):
        pytest.skip("the UTC day ended during the test")
    (written1, n1, last1, done1), (written2, n2, last2, done2) = runs
    assert written1 == written2 == [rel]
    assert last1 == midnight + timedelta(seconds=n1 - 1)
    assert last1 <= done1
    assert last2 == midnight + timedelta(seconds=n2 - 1)
    assert last2 <= done2
    assert n2 > n1


async def test_a_refresh_of_the_candles_leaves_the_candle_files_as_they_are(
    seeded_rw_url: str, tmp_path: Path
) -> None:
    """A refresh (the policies', or `kalshibook refresh-candles`) moves buckets from the real-time
    aggregates to their materialisations: the same candles, so no candle file is rewritten. The
    seed's trades share timestamps in pairs, with distinct exchange_seq as the collector stores
    them; ties in exchange_seq would leave each bucket's open and close to the scan order, and the
    two paths disagreed (the flake this test pins down)."""
    out = tmp_path / "export"
    req = msgspec.structs.replace(REQ, tables=("candles_1m",))
    async with await psycopg.AsyncConnection.connect(seeded_rw_url, autocommit=True) as conn:
        before = {t: await CandleDay(conn, t, "1m", T0.date()).fingerprint() for t in (B45, B47)}
        first = await run_export(conn, req, out)
        assert set(first.written) == _files(B45, "candles_1m") | _files(B47, "candles_1m")
        await refresh(conn, T0 - timedelta(days=1), T0 + timedelta(days=2))
        after = {t: await CandleDay(conn, t, "1m", T0.date()).fingerprint() for t in (B45, B47)}
        again = await run_export(conn, req, out)
    assert after == before
    assert again.written == []
