"""`kalshibook refresh-candles --start … [--end …]`: fold late trades into the candle aggregates.

Use after a REST backfill that inserted trades (or quotes/stats) older than the refresh policies'
windows (3 h for 1m, 2 days for 1h, 7 days for 1d). Every candle continuous aggregate is refreshed
over the window in chain order (1m, then 1h, then 1d), widened to New York midnights and stopped
at the bucket still in progress (real-time aggregation serves it). A source whose raw rows were
partly dropped (retention) is refreshed only from where they begin: its older candles are kept.
On the Apache edition the candle relations are plain views, always current, and the command only
says so.

Only the owner of the aggregates (the role that ran ``kalshibook migrate``, or a superuser) may
refresh them: run it with the owner's URL. Any other login (the collector's, an API or SQL login)
gets one line saying so, exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

from kalshibook.cli.common import open_checked, parse_instant
from kalshibook.errors import ConfigError, InvalidInput
from kalshibook.settings import Settings
from kalshibook.storage.candle_refresh import RefreshDenied, refresh


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--start",
        required=True,
        help="window start: a UTC day YYYY-MM-DD (its midnight), RFC 3339 "
        "(2026-03-01T00:00:00Z) or Unix seconds",
    )
    parser.add_argument(
        "--end", default=None, help="window end, the same forms (exclusive; default: now)"
    )


def _window(args: argparse.Namespace) -> tuple[datetime, datetime]:
    try:
        start = parse_instant(str(args.start), "--start")
        end = parse_instant(str(args.end), "--end") if args.end is not None else datetime.now(UTC)
    except InvalidInput as exc:
        raise ConfigError(exc.message) from None
    if end <= start:
        raise ConfigError("--end must be after --start")
    return start, end


async def _refresh(url: str, start: datetime, end: datetime) -> tuple[list[str], str]:
    async with await open_checked(url) as conn:
        try:
            done = await refresh(conn, start, end)
        except RefreshDenied as exc:
            raise RefreshDenied(
                f"{exc}: run this command with the database owner's URL (the login "
                "`kalshibook migrate` runs with)"
            ) from None
        row = await (await conn.execute("SHOW timescaledb.license")).fetchone()
    return done, (str(row[0]) if row else "")


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.require_database()
    start, end = _window(args)
    done, edition = asyncio.run(_refresh(url, start, end))
    window = f"[{start.isoformat()}, {end.isoformat()})"
    if done:
        print(f"refreshed {len(done)} candle aggregates over {window}: {', '.join(done)}")
    elif edition == "apache":
        print("candle relations are plain views on this TimescaleDB edition: always current")
    else:
        print(
            f"no candle aggregate refreshed: {window} lies in buckets still in progress, "
            "which are computed on read (real-time aggregation)"
        )
    return 0
