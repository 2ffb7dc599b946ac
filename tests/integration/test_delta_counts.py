"""Delta counts per market and day (migration 0015, kalshibook.storage.delta_counts): the seed
market detail's delta count from the counted days plus a count of the rest equals counting every
delta, whatever is counted, retained or written late; a count racing a late write is not kept;
a counted market's detail plans its last days' chunks, not its whole history."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from plan_support import PAUSE_COMPRESSION, Recorder, chunks_planned

from kalshibook.api.app import CONNECTION_OPTIONS
from kalshibook.settings import CoreSettings, Settings, WriterSettings
from kalshibook.storage import delta_counts
from kalshibook.storage.market_summary import market_data
from kalshibook.storage.pool import open_pool
from kalshibook.storage.tables import DeltaRow
from kalshibook.storage.writer import Writer

pytestmark = [pytest.mark.db]

NOW = datetime.now(UTC)
START = (NOW - timedelta(days=12)).replace(hour=0, minute=0, second=0, microsecond=0)
HISTORY = [
    PAUSE_COMPRESSION,
    """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
SELECT %(start)s, m, now(), 'snapshot', 1, 1, 0, '[]', '[]' FROM unnest(ARRAY['A', 'B', 'C']) m
""",
    # A: every 7 minutes for 12 days up to now; B: the first 3 days only; C: two deltas 9 days apart
    """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT %(start)s + k * INTERVAL '7 minutes', 'A', now(), 'yes', 0.5, 1, 1, 1, k
FROM generate_series(1, (12 * 24 * 60) / 7) k
WHERE %(start)s + k * INTERVAL '7 minutes' < now()
UNION ALL
SELECT %(start)s + k * INTERVAL '13 minutes', 'B', now(), 'no', 0.4, 2, 1, 1, k
FROM generate_series(1, (3 * 24 * 60) / 13) k
UNION ALL
SELECT %(start)s + INTERVAL '1 minute' + k * INTERVAL '9 days', 'C', now(), 'yes', 0.3, 1, 1, 1, k
FROM generate_series(0, 1) k
""",
    "SELECT market.rebuild_delta_extents()",
]
COUNT_ROWS = "SELECT count(*) FROM market.orderbook_deltas WHERE market_ticker = %s"
COUNTED = "SELECT count(*) FROM market.delta_days WHERE deltas IS NOT NULL"
DAY_OF = "SELECT deltas, version FROM market.delta_days WHERE market_ticker = %s AND day = %s"


def load(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in HISTORY:
            conn.execute(statement, {"start": START})


def detail_counts(url: str) -> dict[str, int]:
    async def read() -> dict[str, int]:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, options=CONNECTION_OPTIONS
        ) as conn:
            return {t: (await market_data(conn, t)).delta_count for t in ("A", "B", "C", "NOPE")}

    return asyncio.run(read())


def true_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        out = {}
        for t in ("A", "B", "C", "NOPE"):
            row = conn.execute(COUNT_ROWS, (t,)).fetchone()
            out[t] = int(row[0]) if row else 0
        return out


def count(url: str, now: datetime = NOW) -> int:
    async def run() -> int:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await delta_counts.count_days(conn, now)

    return asyncio.run(run())


def test_the_detail_count_equals_every_delta_counted(db_url: str) -> None:
    load(db_url)
    expected = true_counts(db_url)
    assert expected["A"] > 2000
    assert expected["B"] > 300
    assert expected["C"] == 2
    assert detail_counts(db_url) == expected  # nothing counted yet: all read row by row
    days = count(db_url)
    assert days >= 9  # every day that ended 3 hours ago or more
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute(COUNTED).fetchone() != (0,)
        # a day in the middle not counted again: the rest of the days after it are read
        conn.execute(
            "UPDATE market.delta_days SET deltas = NULL WHERE day = %s",
            (START + timedelta(days=4),),
        )
    assert detail_counts(db_url) == expected
    assert count(db_url) == 1
    # retention cuts into a day (6-hour chunks): counted days before the floor no longer hold
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "SELECT drop_chunks('market.orderbook_deltas', older_than => %s::timestamptz)",
            (START + timedelta(days=2, hours=12),),
        )
    expected = true_counts(db_url)
    assert expected["B"] > 0  # part of B's third day is left
    assert detail_counts(db_url) == expected


def test_a_counted_market_s_detail_plans_its_last_days(db_url: str) -> None:
    load(db_url)

    def planned() -> int:
        async def read() -> None:
            async with await psycopg.AsyncConnection.connect(
                db_url, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
            ) as conn:
                await market_data(conn, "A")

        Recorder.log = []
        asyncio.run(read())
        return chunks_planned(db_url, Recorder.log, ["orderbook_deltas"])

    before = planned()
    count(db_url)
    after = planned()
    assert before >= 12 * 4, before  # every six-hour chunk of A's 12 days
    assert after <= 3 * 4, after  # the days not counted yet: today and the last one or two


def test_late_rows_from_the_writer_uncount_their_day(db_url: str, tmp_path: Path) -> None:
    """A replayed spool: the writer's rows of a day that has ended set its count back to NULL
    and bump its version, even inside the hours it knows (its worker restarted: it knows none
    here, the unit tests cover the rest)."""
    load(db_url)
    count(db_url)
    day = START + timedelta(days=5)
    with psycopg.connect(db_url, autocommit=True) as conn:
        counted, version = conn.execute(DAY_OF, ("A", day)).fetchone() or (None, None)
    assert counted is not None

    async def write() -> None:
        settings = Settings(
            core=CoreSettings(database_url=db_url, data_dir=str(tmp_path / "data")),
            writer=WriterSettings(batch_age=0.05, retry_max=0.2),
        )
        async with (
            open_pool(settings, min_size=1, max_size=2) as pool,
            Writer(settings, pool) as writer,
        ):
            ts = day + timedelta(hours=5, seconds=1)
            row = DeltaRow(
                ts=ts, market_ticker="A", received_at=ts, side="yes", price=Decimal("0.5"),
                delta=Decimal("1"), epoch=1, sid=1, seq=10**6,
            )  # fmt: skip
            await writer.put("orderbook_deltas", row)
            await writer.drain()

    asyncio.run(write())
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute(DAY_OF, ("A", day)).fetchone() == (None, version + 1)
        assert conn.execute("SELECT complete FROM market.delta_extents_state").fetchone() == (True,)
    assert detail_counts(db_url) == true_counts(db_url)
    assert count(db_url) == 1  # the day is counted again, with the late row
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute(DAY_OF, ("A", day)).fetchone() == (counted + 1, version + 1)


WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
  AND position('UPDATE market.delta_days AS y' IN query) > 0 AND position(%(day)s IN query) > 0
"""


def waits_on_the_day(url: str, day: datetime, within: float = 20.0) -> bool:
    """Whether the count of ``day`` comes to wait for a lock within ``within`` seconds."""
    deadline = time.monotonic() + within
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(WAITING, {"day": f"{day:%Y-%m-%d}"}).fetchone()
            if row is not None and row[0] > 0:
                return True
            time.sleep(0.02)
    return False


def test_a_count_racing_a_late_write_is_not_kept(db_url: str) -> None:
    """The writer's transaction inserts a delta into an ended day and bumps the day's version; a
    count that began before it commits waits for its row lock and must not store the count its
    snapshot saw (one delta short): the day stays uncounted, and the next pass counts it with the
    late delta."""
    load(db_url)
    day = START + timedelta(days=6)
    with psycopg.connect(db_url) as writer:
        writer.execute("SELECT set_config('kalshibook.delta_extents', 'maintained-days', false)")
        writer.execute(
            "INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, "
            "delta, epoch, sid, seq) VALUES (%s, 'A', now(), 'yes', 0.5, 1, 1, 1, 10000000)",
            (day + timedelta(hours=3),),
        )
        writer.execute(
            "UPDATE market.delta_days SET deltas = NULL, version = version + 1 "
            "WHERE market_ticker = 'A' AND day = %s",
            (day,),
        )
        counted: list[int] = []
        thread = threading.Thread(target=lambda: counted.append(count(db_url, NOW)))
        thread.start()
        assert waits_on_the_day(db_url, day)  # the count of that day waits for the day's row
        writer.commit()
        thread.join(timeout=60)
    with psycopg.connect(db_url, autocommit=True) as conn:
        days = conn.execute("SELECT count(DISTINCT day) FROM market.delta_days").fetchone()
        rows = conn.execute(
            "SELECT count(*) FROM market.orderbook_deltas WHERE market_ticker = 'A' "
            "AND ts >= %s AND ts < %s",
            (day, day + timedelta(days=1)),
        ).fetchone()
        stored = conn.execute(DAY_OF, ("A", day)).fetchone()
        state = conn.execute("SELECT complete FROM market.delta_extents_state").fetchone()
    assert state == (True,)
    assert days is not None
    assert counted == [days[0] + 1]  # every day once, and that day again once unlocked
    assert rows is not None
    assert stored == (rows[0], 1)


def test_counted_days_whose_chunks_were_dropped_in_the_middle_are_read_again(db_url: str) -> None:
    """``drop_chunks`` with ``newer_than`` removes deltas of counted days after the deltas' first
    chunk, and a late delta makes one of those chunks again: no trigger fires, and the detail
    must not count the deltas that are gone (migration 0016: a count holds while the day's chunks
    are the ones it counted)."""
    load(db_url)
    count(db_url)
    before = true_counts(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(  # two days in the middle of A's history (A only: B ended by then)
            "SELECT drop_chunks('market.orderbook_deltas', older_than => %s::timestamptz, "
            "newer_than => %s::timestamptz)",
            (START + timedelta(days=7), START + timedelta(days=5) - timedelta(hours=1)),
        )
        dropped = true_counts(db_url)
        assert dropped["A"] < before["A"] - 400  # two days of a delta every 7 minutes
        assert detail_counts(db_url) == dropped
        conn.execute(
            "SELECT set_config('kalshibook.delta_extents', 'maintained-days', false)"
        )  # as the writer's late row: the extents stay complete
        conn.execute(
            "INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, "
            "delta, epoch, sid, seq) VALUES (%s, 'A', now(), 'yes', 0.5, 1, 1, 1, 10000000)",
            (START + timedelta(days=5, hours=13),),
        )
        assert conn.execute("SELECT complete FROM market.delta_extents_state").fetchone() == (True,)
    expected = true_counts(db_url)
    assert expected["A"] == dropped["A"] + 1
    assert detail_counts(db_url) == expected


def test_days_counted_without_their_chunks_are_counted_again(db_url: str) -> None:
    """A collector of before migration 0016 still running stores counts without the chunks: the
    reads do not use them, and the next counting round counts those days again."""
    load(db_url)
    days = count(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE market.delta_days SET chunks = NULL WHERE deltas IS NOT NULL")
    assert detail_counts(db_url) == true_counts(db_url)  # read row by row meanwhile
    assert count(db_url) == days
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute(
            "SELECT count(*) FROM market.delta_days WHERE deltas IS NOT NULL AND chunks IS NULL"
        ).fetchone() == (0,)
    assert detail_counts(db_url) == true_counts(db_url)


def test_the_last_delta_is_found_when_its_hour_was_dropped(db_url: str) -> None:
    """The detail looks for a market's last delta in the last hour of its delta extent; once
    ``drop_chunks`` removed that hour (an extent only grows), over the rest of its span."""
    load(db_url)
    count(db_url)
    end = START + timedelta(days=3)  # B's deltas end in its third day
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "SELECT drop_chunks('market.orderbook_deltas', older_than => %s::timestamptz, "
            "newer_than => %s::timestamptz)",
            (end, end - timedelta(hours=6)),
        )
        row = conn.execute(
            "SELECT max(ts) FROM market.orderbook_deltas WHERE market_ticker = 'B'"
        ).fetchone()
    assert row is not None
    assert row[0] is not None
    assert row[0] < end - timedelta(hours=6)

    async def read() -> Any:
        async with await psycopg.AsyncConnection.connect(
            db_url, autocommit=True, options=CONNECTION_OPTIONS
        ) as conn:
            return await market_data(conn, "B")

    detail = asyncio.run(read())
    assert detail.last_data_at == row[0]
    assert detail.delta_count == true_counts(db_url)["B"]
