"""`kalshibook dedupe-trades [--start …] [--end …] [--dry-run]`: merge trades stored twice.

Databases recorded before the writer reconciled a trade's copies can hold a trade twice: the live
feed's copy on a whole second (a WS frame without ``ts_ms``) and its REST backfill copy with
microseconds, so that trade's volume counts twice in the candles. This merges each such pair the
way the writer merges them now (kalshibook.domain.trade_copies), UTC day by UTC day (one
transaction each; interrupted, it resumes by running again), then refreshes the trades candle
aggregates over the days it changed (Community edition; only the aggregates' owner may: another
login gets the ``kalshibook refresh-candles`` command to run, exit 5). The collector may keep
running. Without ``--start``/``--end``: every day with recorded trades.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta

import psycopg

from kalshibook.cli.common import EXIT_NOT_REFRESHED, failure_line, open_checked, parse_instant
from kalshibook.errors import ConfigError, InvalidInput, StorageError
from kalshibook.settings import Settings
from kalshibook.storage.candle_refresh import RefreshDenied, refresh, refresh_command
from kalshibook.storage.candles import TRADES_ONLY
from kalshibook.storage.trade_copies import find_copies, merge_copies, trade_days

DAY = timedelta(days=1)
PROGRESS_EVERY = 30
"""Days between progress lines (a day that merged something always says so)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    when = "a UTC day YYYY-MM-DD, RFC 3339 or Unix seconds (its UTC day)"
    parser.add_argument("--start", default=None, help=f"first day: {when}; default: the first")
    parser.add_argument(
        "--end", default=None, help=f"end (exclusive): {when}; default: after the last"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="count the trades stored twice, change nothing"
    )


def _midnight(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _bound(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return _midnight(parse_instant(value, name))
    except InvalidInput as exc:
        raise ConfigError(exc.message) from None


def _windows(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The changed days' spans (a day, from its earliest changed row if that lies before
    midnight), those that touch merged: one refresh each."""
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(spans):
        if out and out[-1][1] >= lo:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


async def _dedupe(url: str, args: argparse.Namespace) -> int:
    async with await open_checked(url) as conn:
        extent = await trade_days(conn)
        if extent is None:
            print("no trades recorded: nothing to merge")
            return 0
        first = _bound(args.start, "--start") or extent[0]
        end = _bound(args.end, "--end") or _midnight(extent[1]) + DAY
        if end <= first:
            raise ConfigError("--end must be after --start")
        days = int((end - first) / DAY)
        verb = "would merge" if args.dry_run else "merged"
        print(f"looking for trades stored twice over {days} UTC days from {first:%Y-%m-%d} ...")
        changed: list[tuple[datetime, datetime]] = []
        trades = removed = 0
        started = time.monotonic()
        for k in range(days):
            day = first + k * DAY
            try:
                merges = await find_copies(conn, day)
                gone = 0 if args.dry_run or not merges else await merge_copies(conn, merges)
            except psycopg.errors.InsufficientPrivilege as exc:
                raise StorageError(
                    f"this login may not merge trades ({failure_line(exc)}): run the command "
                    "with the database owner's URL (the login `kalshibook migrate` runs with)"
                ) from None
            except psycopg.Error as exc:
                raise StorageError(
                    f"{day:%Y-%m-%d}: {failure_line(exc)} (days before it are done; run the "
                    f"command again with --start {day:%Y-%m-%d})"
                ) from None
            if merges:
                first_row = min(t for m in merges for t in (m.keep_ts, *m.drop_ts))
                changed.append((min(day, first_row), day + DAY))
                trades += len(merges)
                removed += gone
                print(f"{day:%Y-%m-%d}: {verb} {len(merges)} trades stored twice", flush=True)
            elif (k + 1) % PROGRESS_EVERY == 0:
                print(f"  {k + 1}/{days} days looked at", flush=True)
        took = time.monotonic() - started
        if args.dry_run:
            print(f"{trades} trades stored more than once over {len(changed)} days ({took:.1f} s)")
            return 0
        print(
            f"{verb} {trades} trades ({removed} rows removed) over {len(changed)} days, in "
            f"{took:.1f} s"
        )
        return await _refresh(conn, _windows(changed))


async def _refresh(
    conn: psycopg.AsyncConnection[object], windows: list[tuple[datetime, datetime]]
) -> int:
    refreshed = 0
    for lo, hi in windows:
        try:
            refreshed += bool(await refresh(conn, lo, hi, TRADES_ONLY))
        except RefreshDenied as exc:
            print(
                f"the trades candles were not refreshed: {exc}; run with the owner's URL:",
                file=sys.stderr,
            )
            for w_lo, w_hi in windows:
                print(f"  {refresh_command(w_lo, w_hi, TRADES_ONLY)}", file=sys.stderr)
            return EXIT_NOT_REFRESHED
    if refreshed:
        print(f"trades candle aggregates refreshed over {len(windows)} windows of changed days")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.require_database()
    start, end = _bound(args.start, "--start"), _bound(args.end, "--end")  # before connecting
    if start is not None and end is not None and end <= start:
        raise ConfigError("--end must be after --start")
    return asyncio.run(_dedupe(url, args))
