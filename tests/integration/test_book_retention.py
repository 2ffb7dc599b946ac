"""The order book at an instant after deltas were dropped (retention, ``drop_chunks``).

Snapshots are kept at least as long as deltas, but their chunks are a day wide and the deltas'
six hours: a snapshot can outlive the deltas after it. A book replayed from such a snapshot lacks
them, and says so (``deltas_dropped``) instead of answering as complete.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from kalshibook.export.run import ExportRequest, run_export
from kalshibook.storage import book_reads
from kalshibook.storage.book_reads import book_at

pytestmark = [pytest.mark.db, pytest.mark.both_editions]

DAY = datetime(2026, 3, 2, tzinfo=UTC)
SNAPSHOT = """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
VALUES (%(t)s, %(m)s, %(t)s, 'snapshot', 1, 1, 0, '[]', '[]')
"""
DELTAS = """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT %(t)s + k * INTERVAL '1 minute', %(m)s, %(t)s, 'yes', 0.41, 1, 1, 1, k
FROM generate_series(1, %(n)s) k
"""


async def _book(url: str, ticker: str, at: datetime) -> book_reads.BookAt:
    book_reads._floors.clear()  # the floor is cached for a few seconds per database
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await book_at(conn, ticker, at)


@pytest.mark.parametrize("extents", ["complete", "incomplete"])
async def test_a_book_whose_deltas_were_dropped_is_not_complete(db_url: str, extents: str) -> None:
    five, six = DAY + timedelta(hours=5), DAY + timedelta(hours=6)
    with psycopg.connect(db_url, autocommit=True) as conn:
        # DROPPED: a snapshot at 05:00, a delta every minute until 06:09 (+1 at 0.41 each)
        conn.execute(SNAPSHOT, {"t": five, "m": "DROPPED"})
        conn.execute(DELTAS, {"t": five, "m": "DROPPED", "n": 69})
        # QUIET: a snapshot at 05:00, its deltas only from 07:00 (none in the dropped chunk)
        conn.execute(SNAPSHOT, {"t": five, "m": "QUIET"})
        conn.execute(DELTAS, {"t": six + timedelta(minutes=59), "m": "QUIET", "n": 3})
        if extents == "complete":
            conn.execute("SELECT market.rebuild_delta_extents()")
    at = six + timedelta(minutes=30)
    whole = await _book(db_url, "DROPPED", at)
    assert whole.complete
    assert whole.deltas_applied == 69
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "SELECT drop_chunks('market.orderbook_deltas', older_than => %s::timestamptz)", (six,)
        )
    after = await _book(db_url, "DROPPED", at)
    assert after.deltas_applied == 10  # 06:00 .. 06:09
    assert not after.complete
    assert after.gap == (five, six, "deltas_dropped")
    quiet = await _book(db_url, "QUIET", DAY + timedelta(hours=8))
    if extents == "complete":  # its extent starts after the dropped chunk: nothing of it lost
        assert quiet.complete, quiet.gap
        assert quiet.deltas_applied == 3
    else:  # unknown: assumed lost
        assert quiet.gap == (five, six, "deltas_dropped")
    inside = await _book(db_url, "DROPPED", five + timedelta(seconds=90))
    assert inside.gap == (five, six, "deltas_dropped")  # its one delta (05:01) was dropped too


async def test_a_recent_snapshot_reads_no_floor(db_url: str) -> None:
    """Snapshots younger than the shortest retention cannot have lost their deltas: the book
    reads no catalog."""
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SNAPSHOT, {"t": now - timedelta(hours=1), "m": "RECENT"})
        conn.execute(DELTAS, {"t": now - timedelta(hours=1), "m": "RECENT", "n": 5})
    book_reads._floors.clear()
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        result = await book_at(conn, "RECENT", now)
    assert result.complete
    assert result.deltas_applied == 5
    assert book_reads._floors == {}


async def test_book_sample_exports_say_the_deltas_were_dropped(db_url: str, tmp_path: Path) -> None:
    """The export's book samples replay the same way: after the drop, samples from the snapshot
    on are incomplete with ``deltas_dropped`` (until a later snapshot), as /v1 answers."""
    five, six = DAY + timedelta(hours=5), DAY + timedelta(hours=6)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SNAPSHOT, {"t": five, "m": "DROPPED"})
        conn.execute(DELTAS, {"t": five, "m": "DROPPED", "n": 69})
        conn.execute("SELECT market.rebuild_delta_extents()")
        conn.execute(
            "SELECT drop_chunks('market.orderbook_deltas', older_than => %s::timestamptz)", (six,)
        )
    book_reads._floors.clear()
    req = ExportRequest(
        tables=("book_samples",),
        start=DAY,
        end=DAY + timedelta(days=1),
        tickers=("DROPPED",),
        levels=1,
        every=timedelta(minutes=30),
    )
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        await run_export(conn, req, tmp_path)
    rows = pq.read_table(tmp_path / "book_samples" / "DROPPED" / "2026-03-02.parquet").to_pylist()
    by_ts = {r["ts"]: (r["complete"], r["gap_reason"]) for r in rows}
    assert by_ts[DAY + timedelta(hours=4)] == (False, "no_snapshot")
    assert by_ts[five] == (True, None)  # the snapshot's instant: the snapshot itself
    later = (five + timedelta(minutes=30), six + timedelta(minutes=30), DAY + timedelta(hours=20))
    for at in later:
        assert by_ts[at] == (False, "deltas_dropped"), at
        api = await _book(db_url, "DROPPED", at)
        assert api.gap is not None, at
        assert api.gap[2] == "deltas_dropped", at
