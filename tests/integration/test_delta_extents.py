"""Delta extents (migration 0009): kept by the collector's writer, marked incomplete by any other
write, rebuilt on demand; the reads of deltas after a market's last snapshot end with them.

A market whose book ended 40 days ago, read "now", planned every delta chunk since (four a day):
with complete extents its deltas are read only up to their last hour, with the same answers as
over the whole history.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cli_support import run_cli
from plan_support import PAUSE_COMPRESSION, Recorder, chunks_planned

from kalshibook.api.app import CONNECTION_OPTIONS
from kalshibook.cli.collect import _check_schema
from kalshibook.errors import SchemaError
from kalshibook.export import sampled
from kalshibook.settings import CoreSettings, Settings, WriterSettings
from kalshibook.storage import book_reads, migrate, status_reads
from kalshibook.storage.market_summary import market_data
from kalshibook.storage.pool import open_pool
from kalshibook.storage.tables import DeltaRow
from kalshibook.storage.writer import Writer

pytestmark = [pytest.mark.db]

STATE = "SELECT complete FROM market.delta_extents_state"
REBUILD = "SELECT markets, complete FROM market.rebuild_delta_extents()"
EXTENTS = "SELECT market_ticker, first_hour, end_hour FROM market.delta_extents ORDER BY 1"
TIGHT = """
SELECT market_ticker, time_bucket(INTERVAL '1 hour', min(ts)),
       time_bucket(INTERVAL '1 hour', max(ts)) + INTERVAL '1 hour'
FROM market.orderbook_deltas GROUP BY market_ticker ORDER BY 1
"""
DAYS_UNCOVERED = """
SELECT count(*) FROM market.orderbook_deltas d
LEFT JOIN market.delta_days y
       ON y.market_ticker = d.market_ticker AND y.day = time_bucket(INTERVAL '1 day', d.ts)
WHERE y.market_ticker IS NULL OR d.ts < y.first_hour OR d.ts >= y.end_hour
"""
"""Deltas outside their market's entry for their UTC day (0015): a page could skip them."""
DAYS_OUTSIDE_EXTENTS = """
SELECT count(*) FROM market.delta_days y
LEFT JOIN market.delta_extents e USING (market_ticker)
WHERE e.market_ticker IS NULL OR y.first_hour < e.first_hour OR y.end_hour > e.end_hour
"""
TIGHT_DAYS = """
SELECT market_ticker, time_bucket(INTERVAL '1 day', ts), time_bucket(INTERVAL '1 hour', min(ts)),
       time_bucket(INTERVAL '1 hour', max(ts)) + INTERVAL '1 hour'
FROM market.orderbook_deltas GROUP BY 1, 2 ORDER BY 1, 2
"""
SNAPSHOT_AT = """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
VALUES (%s, %s, now(), 'snapshot', 1, 7, NULL, '[]', '[]')
"""
DAYS = "SELECT market_ticker, day, first_hour, end_hour FROM market.delta_days ORDER BY 1, 2"
UNCOVERED = """
SELECT count(*) FROM market.orderbook_deltas d
LEFT JOIN market.delta_extents e USING (market_ticker)
WHERE e.market_ticker IS NULL OR d.ts < e.first_hour OR d.ts >= e.end_hour
"""
DELTA_AT = """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
VALUES (%s, %s, now(), 'yes', 0.45, 1, 1, 9, %s)
"""


LOCK_WAITS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
"""


def wait_for_a_lock_wait(url: str, within: float = 20.0) -> bool:
    """Whether a backend of the database comes to wait for a lock within ``within`` seconds."""
    deadline = time.monotonic() + within
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(LOCK_WAITS).fetchone()
            if row is not None and row[0] > 0:
                return True
            time.sleep(0.02)
    return False


def state(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(STATE).fetchone()
    assert row is not None
    return bool(row[0])


def row(ticker: str, ts: datetime, seq: int) -> DeltaRow:
    return DeltaRow(
        ts=ts,
        market_ticker=ticker,
        received_at=ts + timedelta(microseconds=5),
        side="yes" if seq % 2 else "no",
        price=Decimal("0.4500"),
        delta=Decimal("1.00") if seq % 3 else Decimal("-1.00"),
        epoch=1,
        sid=7,
        seq=seq,
    )


async def test_the_writer_keeps_the_extents_complete_and_tight(db_url: str, tmp_path: Path) -> None:
    """Batches of three markets, out of order, across hour boundaries: the extents are exactly
    the hours of the rows, and still complete."""
    t0 = datetime(2026, 3, 1, 9, 59, 59, 999000, tzinfo=UTC)
    offsets = [0, 1, -3600, 7200, 5, 3599, 86400 * 3, -1, 2, 60]
    settings = Settings(
        core=CoreSettings(database_url=db_url, data_dir=str(tmp_path / "data")),
        writer=WriterSettings(batch_age=0.05, retry_max=0.2),
    )
    async with (
        open_pool(settings, min_size=1, max_size=2) as pool,
        Writer(settings, pool) as writer,
    ):
        for batch in range(3):
            for i, seconds in enumerate(offsets):
                ticker = f"KX-{(i + batch) % 3}"
                ts = t0 + timedelta(seconds=seconds * (batch + 1))
                await writer.put("orderbook_deltas", row(ticker, ts, batch * 100 + i))
            await writer.drain()
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM market.orderbook_deltas").fetchone() == (30,)
        assert state(conn)
        assert conn.execute(EXTENTS).fetchall() == conn.execute(TIGHT).fetchall()
        assert conn.execute(UNCOVERED).fetchone() == (0,)
        # the days (0015): every delta inside its day's hours, every day inside the extent
        assert conn.execute(DAYS_UNCOVERED).fetchone() == (0,)
        assert conn.execute(DAYS_OUTSIDE_EXTENTS).fetchone() == (0,)
        days = conn.execute(DAYS).fetchall()
        assert len(days) >= len(conn.execute(TIGHT_DAYS).fetchall())


async def test_the_writer_s_days_take_late_rows_of_a_quiet_day(db_url: str, tmp_path: Path) -> None:
    """A market writes one day, then the day after next, then late rows of the quiet day between
    (inside its extent): that day must get an entry, or a page would skip the late rows."""
    t0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    settings = Settings(
        core=CoreSettings(database_url=db_url, data_dir=str(tmp_path / "data")),
        writer=WriterSettings(batch_age=0.05, retry_max=0.2),
    )
    async with (
        open_pool(settings, min_size=1, max_size=2) as pool,
        Writer(settings, pool) as writer,
    ):
        for seq, ts in enumerate((t0, t0 + timedelta(days=2), t0 + timedelta(days=1, hours=5))):
            await writer.put("orderbook_deltas", row("KX-QUIET", ts, seq))
            await writer.drain()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SNAPSHOT_AT, (t0 - timedelta(minutes=1), "KX-QUIET"))
        assert state(conn)
        assert conn.execute(DAYS_UNCOVERED).fetchone() == (0,)
        assert conn.execute(DAYS).fetchall() == conn.execute(TIGHT_DAYS).fetchall()
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as aconn:
            page = await book_reads.list_deltas(
                aconn, ticker="KX-QUIET", start=t0, end=None, after=None, limit=10
            )
        assert [r.seq for r in page] == [0, 2, 1]


def test_other_writes_mark_them_incomplete_and_rebuild_extents_restores(db_url: str) -> None:
    at = datetime(2026, 4, 2, 12, 30, tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert state(conn)  # a fresh database: complete (no deltas)
        conn.execute(DELTA_AT, (at, "PLAIN", 1))
        assert not state(conn)
        shown = status_reads.read_database(conn, url="x", gap_window=timedelta(hours=1))
        assert (shown.database.delta_extents or "").startswith("incomplete since 20")
        proc = run_cli("rebuild-extents", url=db_url, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "1 markets with deltas" in proc.stdout
        assert "delta extents complete" in proc.stdout
        # then the days that have ended are counted (0015), with a line each
        assert "counted 2026-04-02: 1 markets" in proc.stdout
        assert "delta days counted: 1" in proc.stdout
        assert conn.execute("SELECT deltas FROM market.delta_days").fetchall() == [(1,)]
        assert state(conn)
        shown = status_reads.read_database(conn, url="x", gap_window=timedelta(hours=1))
        assert shown.database.delta_extents == "complete"
        assert conn.execute(EXTENTS).fetchall() == conn.execute(TIGHT).fetchall()
        with conn.cursor() as cur, cur.copy("COPY market.orderbook_deltas FROM STDIN") as copy:
            copy.write_row((at, "COPIED", at, "no", "0.5", "2", 1, 9, 3))
        assert not state(conn)
        conn.execute("SELECT market.rebuild_delta_extents()")
        assert state(conn)
        conn.execute("UPDATE market.orderbook_deltas SET ts = ts + INTERVAL '2 hours'")
        assert not state(conn)
        assert conn.execute(UNCOVERED).fetchone() == (2,)  # ignored while incomplete
        conn.execute("SELECT market.rebuild_delta_extents()")
        assert conn.execute(UNCOVERED).fetchone() == (0,)


def test_an_insert_during_a_rebuild_is_never_lost(db_url: str) -> None:
    """A plain insert that commits while a rebuild runs, after its scan: the rebuild must not
    leave the extents complete without that row."""
    at = datetime(2026, 4, 2, 12, 30, tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(DELTA_AT, (at, "FIRST", 1))
        assert not state(conn)
    done = threading.Event()
    with psycopg.connect(db_url) as rebuilding:
        rebuilding.execute("SELECT market.rebuild_delta_extents()")  # its transaction stays open

        def insert() -> None:
            with psycopg.connect(db_url, autocommit=True) as other:
                other.execute(DELTA_AT, (at + timedelta(days=3), "LATE", 2))
            done.set()

        thread = threading.Thread(target=insert)
        thread.start()
        blocked = wait_for_a_lock_wait(db_url)  # its trigger waits for the rebuild's update
        inserted_first = done.is_set()
        rebuilding.commit()
        thread.join(timeout=30)
    assert blocked
    assert not inserted_first
    assert done.is_set()
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert not state(conn)  # the late row came after the rebuild's scan


def test_a_rebuild_that_could_not_see_an_insert_stays_incomplete(db_url: str) -> None:
    """A plain insert not yet committed when the rebuild scans: the rebuild must not mark the
    extents complete (it waits for the insert's commit, then sees the generation moved)."""
    at = datetime(2026, 4, 2, 12, 30, tzinfo=UTC)
    result: list[Any] = []
    with psycopg.connect(db_url) as writer:
        writer.execute(DELTA_AT, (at, "UNSEEN", 1))  # uncommitted: invisible to the scan

        def rebuild() -> None:
            with psycopg.connect(db_url, autocommit=True) as other:
                result.append(other.execute(REBUILD).fetchone())

        thread = threading.Thread(target=rebuild)
        thread.start()
        waiting = wait_for_a_lock_wait(db_url)  # its final update waits for the insert's commit
        finished_first = bool(result)
        writer.commit()
        thread.join(timeout=30)
    assert waiting
    assert not finished_first
    assert result == [(0, False)]
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert not state(conn)
        assert conn.execute(REBUILD).fetchone() == (1, True)
        assert conn.execute(UNCOVERED).fetchone() == (0,)


def test_the_collector_refuses_a_schema_without_delta_extents(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "0008")
    with pytest.raises(SchemaError, match="older than this version"):
        asyncio.run(_check_schema(empty_db_url))
    migrate.upgrade(empty_db_url, "0014")  # extents, no days (0015): refused too
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert state(conn)
    with pytest.raises(SchemaError, match="older than this version"):
        asyncio.run(_check_schema(empty_db_url))
    migrate.upgrade(empty_db_url, "0015")  # no book days (0016): refused too
    with pytest.raises(SchemaError, match="older than this version"):
        asyncio.run(_check_schema(empty_db_url))
    migrate.upgrade(empty_db_url)  # and the rebuild comes with the upgrade
    asyncio.run(_check_schema(empty_db_url))
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert state(conn)


# -- reads ---------------------------------------------------------------------------------------

HISTORY = [
    # ENDED: a snapshot and a day of deltas 40 days ago, then nothing
    """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
VALUES (date_trunc('hour', now()) - INTERVAL '40 days', 'ENDED', now(), 'snapshot', 1, 1, 0,
        '[[0.4, 50]]', '[[0.5, 50]]')
""",
    """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT date_trunc('hour', now()) - INTERVAL '40 days' + k * INTERVAL '10 minutes', 'ENDED', now(),
       CASE WHEN k % 2 = 0 THEN 'yes' ELSE 'no' END, 0.3 + (k % 5) * 0.01, 1, 1, 1, k
FROM generate_series(1, 144) k
""",
    # NODELTA: a snapshot 40 days ago, never a delta
    """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
VALUES (date_trunc('hour', now()) - INTERVAL '40 days', 'NODELTA', now(), 'snapshot', 1, 2, 0,
        '[[0.2, 5]]', '[]')
""",
    # BUSY: deltas every hour since, so the delta chunks of the 40 days exist
    """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
VALUES (now() - INTERVAL '41 days', 'BUSY', now(), 'snapshot', 1, 3, 0, '[]', '[]')
""",
    """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT now() - INTERVAL '41 days' + k * INTERVAL '1 hour', 'BUSY', now(), 'yes', 0.5, 1, 1, 3, k
FROM generate_series(1, 41 * 24 - 1) k
""",
    # SPARSE: a snapshot 41 days ago, a delta a minute after it and one 40 days later
    """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
VALUES (date_trunc('hour', now()) - INTERVAL '41 days', 'SPARSE', now(), 'snapshot', 1, 4, 0,
        '[[0.2, 5]]', '[]')
""",
    """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT date_trunc('hour', now()) - INTERVAL '41 days' + INTERVAL '1 minute'
       + k * INTERVAL '40 days', 'SPARSE', now(), 'yes', 0.2, 1, 1, 4, k + 1
FROM generate_series(0, 1) k
""",
    "ANALYZE market.orderbook_deltas",
    "SELECT market.rebuild_delta_extents()",
]
INCOMPLETE = "UPDATE market.delta_extents_state SET complete = false"
COMPLETE = "UPDATE market.delta_extents_state SET complete = true"


@pytest.fixture(scope="module")
def history(databases: Any) -> Iterator[str]:
    with databases.database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(PAUSE_COMPRESSION)
            for statement in HISTORY:
                conn.execute(statement)
        yield url


async def _reads(url: str, now: datetime) -> tuple[dict[str, Any], dict[str, int]]:
    """Every read of deltas, on ENDED, NODELTA and an unknown ticker; and the delta chunks their
    plans hold."""
    answers: dict[str, Any] = {}
    logs: dict[str, list[tuple[Any, Any]]] = {}
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
    ) as conn:
        for ticker in ("ENDED", "NODELTA", "NOPE"):
            Recorder.log = []
            answers[f"book {ticker}"] = await book_reads.book_at(conn, ticker, now)
            logs[f"book {ticker}"] = list(Recorder.log)
            Recorder.log = []
            answers[f"detail {ticker}"] = await market_data(conn, ticker)
            logs[f"detail {ticker}"] = list(Recorder.log)
        walk: list[book_reads.DeltaRow] = []
        after = None
        while True:  # the whole walk, 50 a page; its last page is the empty one
            Recorder.log = []
            page = await book_reads.list_deltas(
                conn, ticker="ENDED", start=None, end=None, after=after, limit=50
            )
            if not page:
                break
            walk += page
            after = (page[-1].ts, page[-1].epoch, page[-1].seq)
        answers["walk"] = walk
        logs["last page"] = list(Recorder.log)
        Recorder.log = []
        answers["export day"] = await _export_day(conn, "ENDED", now)
        logs["export day"] = list(Recorder.log)
    planned = {name: chunks_planned(url, log, ["orderbook_deltas"]) for name, log in logs.items()}
    return answers, planned


async def _export_day(conn: psycopg.AsyncConnection[Any], ticker: str, now: datetime) -> Any:
    """Today's samples as of ``now`` (the same instants on every call)."""
    day = now.date()
    fingerprint = await sampled.source_fingerprint(
        conn, ticker, day, "book_samples", 5, timedelta(minutes=1), now=now
    )
    samples = sampled.sample_batches(conn, ticker, day, 5, timedelta(hours=6), now=now)
    batches = [b async for b in samples]
    return fingerprint, batches


def test_reads_after_a_book_ended_stop_at_its_last_delta(history: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(history, autocommit=True) as conn:
        conn.execute(INCOMPLETE)
        whole, whole_planned = asyncio.run(_reads(history, now))
        conn.execute(COMPLETE)
        bounded, planned = asyncio.run(_reads(history, now))
    assert bounded == whole
    ended = bounded["book ENDED"]
    assert ended.deltas_applied == 144
    assert ended.gap is None
    assert bounded["detail ENDED"].delta_count == 144
    assert len(bounded["walk"]) == 144
    assert bounded["book NODELTA"].deltas_applied == 0
    # over the whole history: the ~160 delta chunks since the book ended, per read
    assert whole_planned["book ENDED"] >= 100, whole_planned
    assert whole_planned["last page"] >= 100, whole_planned
    # with the extents: the day of the market's deltas (four six-hour chunks, and the next)
    assert planned["book ENDED"] <= 6, planned
    assert planned["detail ENDED"] <= 2 * 6, planned
    assert planned["last page"] <= 6, planned
    assert planned["export day"] <= 2 * 6, planned
    assert planned["book NODELTA"] == 0, planned
    assert planned["detail NODELTA"] == 0, planned
    assert planned["detail NOPE"] == 0, planned
    assert planned["book NOPE"] == 0, planned


async def test_a_missing_state_row_means_incomplete(db_url: str) -> None:
    """Someone deleted the state row: reads treat the extents as unknown (never as "no deltas"),
    and a rebuild puts the row back."""
    at = datetime(2026, 4, 2, 12, 30, tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(HISTORY[0].replace("'ENDED'", "'GONE'"))
        conn.execute(HISTORY[1].replace("'ENDED'", "'GONE'"))
        conn.execute("SELECT market.rebuild_delta_extents()")
        conn.execute("DELETE FROM market.delta_extents_state")
        conn.execute("DELETE FROM market.delta_extents")  # and the extents with it
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as aconn:
        assert await book_reads.delta_span(aconn, "GONE") is None
        page = await book_reads.list_deltas(
            aconn, ticker="GONE", start=None, end=None, after=None, limit=500
        )
        book = await book_reads.book_at(aconn, "GONE", datetime.now(UTC))
        detail = await market_data(aconn, "GONE")
    assert len(page) == 144
    assert book.deltas_applied == 144
    assert detail.delta_count == 144
    with psycopg.connect(db_url, autocommit=True) as conn:
        shown = status_reads.read_database(conn, url="x", gap_window=timedelta(hours=1))
        assert shown.database.delta_extents == "incomplete (its state row is missing)"
        conn.execute(DELTA_AT, (at, "GONE", 1000))  # the trigger has no row to update
        conn.execute("SELECT market.rebuild_delta_extents()")
        assert state(conn)
        assert conn.execute(UNCOVERED).fetchone() == (0,)


async def _sparse_page(url: str) -> tuple[list[int], int]:
    """SPARSE's first deltas page, and the delta chunks its statements plan."""
    Recorder.log = []
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
    ) as conn:
        page = await book_reads.list_deltas(
            conn, ticker="SPARSE", start=None, end=None, after=None, limit=10
        )
    return [r.seq for r in page], chunks_planned(url, Recorder.log, ["orderbook_deltas"])


def test_a_sparse_market_s_deltas_page_plans_its_rows_not_the_gap(history: str) -> None:
    """Two deltas 40 days apart (migration 0015): after an empty window the page jumps to the next
    hour holding the market's deltas, from the days the rebuild computed. Walking the gap in
    widening windows planned its ~160 six-hour chunks, for two rows (as it still does while the
    extents are incomplete, with the same answer)."""
    with psycopg.connect(history, autocommit=True) as conn:
        assert conn.execute(DAYS_UNCOVERED).fetchone() == (0,)
        assert conn.execute(DAYS).fetchall() == conn.execute(TIGHT_DAYS).fetchall()
        conn.execute(INCOMPLETE)
        try:
            whole, whole_planned = asyncio.run(_sparse_page(history))
        finally:
            conn.execute(COMPLETE)
        rows, planned = asyncio.run(_sparse_page(history))
    assert rows == whole == [1, 2]
    assert whole_planned >= 100, whole_planned
    assert planned <= 8, planned  # the two rows' chunks, and the empty windows beside them


def test_a_writer_of_before_the_days_marks_the_extents_incomplete(db_url: str) -> None:
    """Migration 0015: a collector still running the version before it keeps the extents but
    not the days; its writes must not leave the extents complete (a page would skip its rows)."""
    at = datetime(2026, 4, 2, 12, 30, tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT market.rebuild_delta_extents()")
        conn.execute("SELECT set_config('kalshibook.delta_extents', 'maintained-days', false)")
        conn.execute(DELTA_AT, (at, "NEW", 1))  # today's writer: left complete
        assert state(conn)
        conn.execute("SELECT set_config('kalshibook.delta_extents', 'maintained', false)")
        conn.execute(DELTA_AT, (at, "OLD", 2))
        assert not state(conn)
