"""Book days (migration 0016, kalshibook.storage.book_days): the seed market detail's snapshot
count, first and last snapshot from the per-day rows the snapshots' trigger keeps equal counting
every snapshot, whoever writes them, whatever retention or ``drop_chunks`` removed (from the
start or the middle, a dropped day written again), and after a DELETE, UPDATE or TRUNCATE until
``kalshibook rebuild-extents``; a market's detail plans no snapshot chunk of its history."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cli_support import run_cli
from plan_support import PAUSE_COMPRESSION, Recorder, chunks_planned

from kalshibook.api.app import CONNECTION_OPTIONS
from kalshibook.settings import CoreSettings, Settings, WriterSettings
from kalshibook.storage import migrate, status_reads
from kalshibook.storage.market_summary import market_data
from kalshibook.storage.pool import open_pool
from kalshibook.storage.tables import SnapshotRow
from kalshibook.storage.writer import Writer

pytestmark = [pytest.mark.db]

START = datetime(2026, 3, 1, tzinfo=UTC)
SNAPSHOTS = """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
SELECT %(start)s + k * %(every)s::interval, %(ticker)s, now(), 'checkpoint', 1, 1, k, '[]', '[]'
FROM generate_series(0, %(n)s - 1) k
"""
SNAPSHOT_AT = """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
VALUES (%s, %s, now(), 'snapshot', 1, 1, 0, '[]', '[]')
"""
DAYS = """
SELECT market_ticker, day, snapshots, first_ts, last_ts FROM market.book_days ORDER BY 1, 2
"""
GROUPED = """
SELECT market_ticker, time_bucket(INTERVAL '1 day', ts), count(*), min(ts), max(ts)
FROM market.orderbook_snapshots GROUP BY 1, 2 ORDER BY 1, 2
"""
TRUTH = """
SELECT count(*), min(ts), max(ts) FROM market.orderbook_snapshots WHERE market_ticker = %s
"""
STATE = "SELECT complete FROM market.book_days_state"


def snapshots(
    conn: psycopg.Connection[Any], ticker: str, start: datetime, every: str, n: int
) -> None:
    conn.execute(SNAPSHOTS, {"start": start, "every": every, "ticker": ticker, "n": n})


def details(url: str, tickers: list[str]) -> dict[str, tuple[Any, ...]]:
    """The detail's snapshot count, first and last book or trade time (no trades or deltas here:
    the snapshots')."""

    async def read() -> dict[str, tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, options=CONNECTION_OPTIONS
        ) as conn:
            out = {}
            for t in tickers:
                d = await market_data(conn, t)
                out[t] = (d.snapshot_count, d.first_data_at, d.last_data_at)
            return out

    return asyncio.run(read())


def truths(url: str, tickers: list[str]) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {t: tuple(conn.execute(TRUTH, (t,)).fetchone() or ()) for t in tickers}


def planned_detail(url: str, ticker: str) -> tuple[tuple[Any, ...], int]:
    """:func:`details` of one market, and the snapshot chunks its statements planned."""
    Recorder.log = []

    async def read() -> tuple[Any, ...]:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
        ) as conn:
            d = await market_data(conn, ticker)
            return (d.snapshot_count, d.first_data_at, d.last_data_at)

    got = asyncio.run(read())
    return got, chunks_planned(url, Recorder.log, ["orderbook_snapshots"])


@pytest.mark.both_editions
def test_the_trigger_counts_every_snapshot_the_writer_or_sql_inserts(
    db_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PAUSE_COMPRESSION)
        snapshots(conn, "SQL", START, "5 hours", 30)  # about 6 days, several a day
        snapshots(conn, "BOTH", START + timedelta(days=2), "1 day", 3)

    async def write() -> None:
        settings = Settings(
            core=CoreSettings(database_url=db_url, data_dir=str(tmp_path / "data")),
            writer=WriterSettings(batch_age=0.05, retry_max=0.2),
        )
        async with (
            open_pool(settings, min_size=1, max_size=2) as pool,
            Writer(settings, pool) as writer,
        ):
            for k in range(40):  # two markets interleaved in the same COPYs, across days
                ts = START + timedelta(hours=3 * k, microseconds=k)
                for ticker in ("COPY", "BOTH"):
                    await writer.put(
                        "orderbook_snapshots",
                        SnapshotRow(ts, ticker, ts, "checkpoint", 1, 1, k, b"[]", b"[]"),
                    )
            await writer.drain()

    asyncio.run(write())
    tickers = ["SQL", "COPY", "BOTH", "NOPE"]
    with psycopg.connect(db_url, autocommit=True) as conn:
        grouped = conn.execute(GROUPED).fetchall()
        assert len(grouped) > 15
        assert conn.execute(DAYS).fetchall() == grouped
        assert conn.execute(STATE).fetchone() == (True,)
    expected = truths(db_url, tickers)
    assert expected["BOTH"][0] == 43
    assert expected["NOPE"] == (0, None, None)
    assert details(db_url, tickers) == expected


def test_a_market_s_detail_plans_no_snapshot_chunk_of_its_history(db_url: str) -> None:
    """60 days of snapshots every two hours: the count, first and last snapshot came from every
    snapshot, 60 chunks planned; the days now."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PAUSE_COMPRESSION)
        snapshots(conn, "OLD", START, "2 hours", 60 * 12)
    got, planned = planned_detail(db_url, "OLD")
    assert got == truths(db_url, ["OLD"])["OLD"]
    assert got[0] == 720
    assert planned == 0


def test_days_whose_chunks_were_dropped_are_counted_from_what_is_left(db_url: str) -> None:
    """Retention drops the first chunks, ``drop_chunks`` with ``newer_than`` some in the middle,
    and a late snapshot makes a dropped day's chunk again: no trigger fires for the drops, and
    the rows of those days must not count snapshots that are gone."""
    tickers = ["M", "N"]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PAUSE_COMPRESSION)
        snapshots(conn, "M", START, "3 hours", 8 * 10)  # 10 days, 8 a day
        snapshots(conn, "N", START + timedelta(days=4, hours=1), "1 day", 3)
        assert details(db_url, tickers) == truths(db_url, tickers)
        conn.execute(  # days 4 and 5 (N's first two)
            "SELECT drop_chunks('market.orderbook_snapshots', older_than => %s::timestamptz, "
            "newer_than => %s::timestamptz)",
            (START + timedelta(days=6), START + timedelta(days=3, hours=12)),
        )
        expected = truths(db_url, tickers)
        assert expected["M"][0] == 64
        assert details(db_url, tickers) == expected
        conn.execute(SNAPSHOT_AT, (START + timedelta(days=4, hours=5), "M"))  # day 4 again
        conn.execute(SNAPSHOT_AT, (START + timedelta(days=4, hours=7), "N"))
        conn.execute(  # retention: days 0 and 1
            "SELECT drop_chunks('market.orderbook_snapshots', older_than => %s::timestamptz)",
            (START + timedelta(days=2),),
        )
        expected = truths(db_url, tickers)
        assert expected["M"][0] == 49
        assert expected["N"][0] == 2
        assert details(db_url, tickers) == expected
        assert conn.execute(STATE).fetchone() == (True,)  # no write marked them incomplete


def test_deletes_updates_and_truncates_count_every_snapshot_until_rebuilt(db_url: str) -> None:
    tickers = ["A", "B"]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PAUSE_COMPRESSION)
        snapshots(conn, "A", START, "7 hours", 20)
        snapshots(conn, "B", START, "11 hours", 9)
        conn.execute("UPDATE market.orderbook_snapshots SET source = 'resync' WHERE seq = 3")
        assert conn.execute(STATE).fetchone() == (True,)  # neither time nor market changed
        conn.execute("DELETE FROM market.orderbook_snapshots WHERE market_ticker = 'A' AND seq < 4")
        assert conn.execute(STATE).fetchone() == (False,)
        expected = truths(db_url, tickers)
        assert expected["A"][0] == 16
        assert details(db_url, tickers) == expected
        shown = status_reads.read_database(conn, url="x", gap_window=timedelta(hours=1))
        assert (shown.database.book_days or "").startswith("incomplete since 20")

        proc = run_cli("rebuild-extents", url=db_url, timeout=120)
        assert proc.returncode == 0, proc.stderr
        days = len(conn.execute(GROUPED).fetchall())
        assert f"book days rebuilt: {days} days of 2 markets" in proc.stdout
        assert conn.execute(STATE).fetchone() == (True,)
        assert conn.execute(DAYS).fetchall() == conn.execute(GROUPED).fetchall()
        assert details(db_url, tickers) == expected
        shown = status_reads.read_database(conn, url="x", gap_window=timedelta(hours=1))
        assert shown.database.book_days == "complete"
        again = run_cli("rebuild-extents", url=db_url, timeout=120)
        assert "book days complete: not rebuilt" in again.stdout

        conn.execute(
            "UPDATE market.orderbook_snapshots SET market_ticker = 'C', "
            "ts = ts + INTERVAL '1 minute' WHERE market_ticker = 'B' AND seq > 4"
        )
        assert conn.execute(STATE).fetchone() == (False,)
        # (C has no book extent: 0006's extents grow on insert only)
        assert details(db_url, tickers) == truths(db_url, tickers)
        conn.execute("SELECT market.rebuild_book_days()")
        assert conn.execute(DAYS).fetchall() == conn.execute(GROUPED).fetchall()

        conn.execute("TRUNCATE market.orderbook_snapshots")
        assert conn.execute(STATE).fetchone() == (False,)
        # (C has no book extent: 0006's extents grow on insert only)
        assert details(db_url, tickers) == truths(db_url, tickers)
        conn.execute("SELECT market.rebuild_book_days()")
        assert conn.execute(DAYS).fetchall() == []
        assert conn.execute(STATE).fetchone() == (True,)


def test_the_revision_fills_the_days_from_the_stored_snapshots(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "0015")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        snapshots(conn, "OLDER", START, "5 hours", 12)
    migrate.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        grouped = conn.execute(GROUPED).fetchall()
        assert len(grouped) == 3
        assert conn.execute(DAYS).fetchall() == grouped
        assert conn.execute(STATE).fetchone() == (True,)
    assert details(empty_db_url, ["OLDER"]) == truths(empty_db_url, ["OLDER"])
    migrate.downgrade(empty_db_url, "0015")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('market.book_days')").fetchone() == (None,)
        conn.execute(SNAPSHOT_AT, (START, "AFTER"))  # 0006's trigger again


def test_days_across_chunk_bounds_off_midnight_are_trusted_until_a_chunk_goes(
    db_url: str,
) -> None:
    """36-hour snapshot chunks: a day's snapshots go to two chunks (every other day); the detail
    still reads no snapshot chunk, and once one of a day's chunks is dropped, counts what is
    left."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PAUSE_COMPRESSION)
        conn.execute(
            "SELECT set_chunk_time_interval('market.orderbook_snapshots', INTERVAL '36 hours')"
        )
        snapshots(conn, "W", START, "2 hours", 12 * 9)  # 9 days
        split = conn.execute(
            "SELECT count(*) FROM market.book_days WHERE cardinality(chunks) = 2"
        ).fetchone()
        assert split is not None
        assert split[0] >= 3
    assert planned_detail(db_url, "W") == (truths(db_url, ["W"])["W"], 0)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(  # the chunks wholly inside days 3-5: parts of days 2 and 5 go with them
            "SELECT drop_chunks('market.orderbook_snapshots', older_than => %s::timestamptz, "
            "newer_than => %s::timestamptz)",
            (START + timedelta(days=5, hours=12), START + timedelta(days=2)),
        )
    expected = truths(db_url, ["W"])
    assert expected["W"][0] < 12 * 9 - 24
    assert details(db_url, ["W"]) == expected
