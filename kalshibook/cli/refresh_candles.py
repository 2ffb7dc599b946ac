"""`kalshibook refresh-candles --start … [--end …] [--source …]`: fold late rows into the candles.

Use after a REST backfill that inserted trades (or quotes/stats) older than the refresh policies'
windows (3 h for 1m, 2 days for 1h, 7 days for 1d). The candle continuous aggregates of the
sources given (``--source trades,quotes,stats``, the default: all three; the backfills print the
command with ``--source trades``, what they wrote) are refreshed over the window in chain order
(1m, then 1h, then 1d), widened to New York midnights and stopped at the bucket still in progress
(real-time aggregation serves it); each aggregate is printed as it starts and ends. A source whose
raw rows were partly dropped (retention) is refreshed only from where they begin: its older
candles are kept.
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
from kalshibook.storage.candles import ALL_SOURCES, CandleSource


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
    parser.add_argument(
        "--source",
        default=",".join(ALL_SOURCES),
        help="the candle sources to refresh, comma-separated: trades, quotes, stats "
        "(default: all three)",
    )


def _sources(text: str) -> tuple[CandleSource, ...]:
    """``--source``'s list, in chain order; an unknown or empty one is a ConfigError."""
    given = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in given if part not in ALL_SOURCES]
    if unknown or not given:
        raise ConfigError(
            f"--source: {', '.join(map(repr, unknown)) or 'nothing given'} is not a candle "
            f"source (expected a comma-separated list of {', '.join(ALL_SOURCES)})"
        )
    return tuple(source for source in ALL_SOURCES if source in given)


def _window(args: argparse.Namespace) -> tuple[datetime, datetime]:
    try:
        start = parse_instant(str(args.start), "--start")
        end = parse_instant(str(args.end), "--end") if args.end is not None else datetime.now(UTC)
    except InvalidInput as exc:
        raise ConfigError(exc.message) from None
    if end <= start:
        raise ConfigError("--end must be after --start")
    return start, end


def _progress(name: str, lo: datetime, hi: datetime, seconds: float | None) -> None:
    if seconds is None:
        print(f"refreshing {name} over [{lo.isoformat()}, {hi.isoformat()}) ...", flush=True)
    else:
        print(f"  {name} refreshed in {seconds:.1f} s", flush=True)


async def _refresh(
    url: str, start: datetime, end: datetime, sources: tuple[CandleSource, ...]
) -> tuple[list[str], str]:
    async with await open_checked(url) as conn:
        try:
            done = await refresh(conn, start, end, sources, _progress)
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
    sources = _sources(str(args.source))
    done, edition = asyncio.run(_refresh(url, start, end, sources))
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
