"""`kalshibook rebuild-extents`: recompute the delta extents and days (migrations 0009, 0015), and
the snapshots' book days when they are incomplete (0016).

The collector's writer keeps ``market.delta_extents`` itself; anything else that writes deltas
(plain SQL, a loader's COPY, a repair) marks them incomplete, and the reads of deltas then ignore
them and read up to the present (correct, but planned over every delta chunk after a market's
last snapshot). ``kalshibook status`` says when. This scans ``market.orderbook_deltas`` once
(minutes on a large history; the collector may keep running, no lock is held over the scan) and
marks the extents complete, unless deltas were written outside the collector during the scan:
then it says so and exits 1, to be run again. The rebuild sets every day's delta count back to
unknown (migration 0015); the command then counts the days that have ended, one day at a time
(the collector would, a few days every ten minutes), printing its progress.

The book days (``market.book_days``: each market's snapshots per day, kept by a trigger on every
insert) are made incomplete by an ``UPDATE``, ``DELETE`` or ``TRUNCATE`` of snapshots; the
command then recomputes them first, in one scan of ``market.orderbook_snapshots`` during which
writes of snapshots wait (the collector's writer holds them and retries).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime

import psycopg

from kalshibook.cli.common import failure_line, open_checked
from kalshibook.errors import StorageError
from kalshibook.settings import Settings
from kalshibook.storage import book_days
from kalshibook.storage.delta_counts import count_days
from kalshibook.storage.migrate import REBUILD_DELTA_EXTENTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


async def _rebuild(url: str) -> tuple[int, bool]:
    async with await open_checked(url) as conn:  # 0009 made the extents
        try:
            row = await (await conn.execute(REBUILD_DELTA_EXTENTS)).fetchone()
        except psycopg.Error as exc:
            raise StorageError(
                f"rebuilding the delta extents failed: {failure_line(exc)}"
            ) from None
    return (int(row[0]), bool(row[1])) if row else (0, False)


async def _rebuild_book_days(url: str) -> tuple[int, int] | None:
    """Recompute the book days if they are incomplete: (markets, days), or None if complete."""
    async with await open_checked(url) as conn:
        try:
            state = await (await conn.execute(book_days.DAYS_STATE)).fetchone()
            if state is not None and state[0]:
                return None
            print(
                "scanning market.orderbook_snapshots for every market's book days ...", flush=True
            )
            row = await (await conn.execute(book_days.REBUILD)).fetchone()
        except psycopg.Error as exc:
            raise StorageError(f"rebuilding the book days failed: {failure_line(exc)}") from None
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def _count(url: str) -> int:
    started = time.monotonic()

    def progress(day: datetime, markets: int) -> None:
        print(
            f"  counted {day:%Y-%m-%d}: {markets} markets ({time.monotonic() - started:.0f} s)",
            flush=True,
        )

    async with await open_checked(url) as conn:  # autocommit: a transaction per day
        try:
            return await count_days(conn, datetime.now(UTC), progress=progress)
        except psycopg.Error as exc:
            raise StorageError(f"counting the delta days failed: {failure_line(exc)}") from None


def run(args: argparse.Namespace, settings: Settings) -> int:
    del args
    url = settings.require_database()
    started = time.monotonic()
    rebuilt = asyncio.run(_rebuild_book_days(url))
    if rebuilt is None:
        print("book days complete: not rebuilt")
    else:
        took = time.monotonic() - started
        print(f"book days rebuilt: {rebuilt[1]} days of {rebuilt[0]} markets, in {took:.1f} s")
    print("scanning market.orderbook_deltas for every market's delta extent ...", flush=True)
    started = time.monotonic()
    markets, complete = asyncio.run(_rebuild(url))
    took = time.monotonic() - started
    print(f"delta extents rebuilt: {markets} markets with deltas, in {took:.1f} s")
    if not complete:
        print(
            "still incomplete: deltas were written outside the collector during the scan "
            "(plain SQL, a loader): run `kalshibook rebuild-extents` again once that is over",
            file=sys.stderr,
        )
        return 1
    print("delta extents complete: reads of deltas end at each market's last delta hour")
    print("counting the deltas of each day that has ended ...", flush=True)
    days = asyncio.run(_count(url))
    print(f"delta days counted: {days}")
    return 0
