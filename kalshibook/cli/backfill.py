"""``kalshibook backfill``: load history from Kalshi's REST (see :mod:`kalshibook.backfill`).

Choose ``--all`` or any of ``--series`` / ``--event`` / ``--market`` (repeatable), optionally
``--start``. Resumable: run it again after a kill and it continues per market; run it twice and
the second run adds nothing. Exit codes: ``EPILOG``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime

import psycopg

from kalshibook.backfill.loader import Backfill, Selection, Summary, describe
from kalshibook.backfill.progress import ProgressReport
from kalshibook.cli.collect import _load_key, signal_handlers
from kalshibook.cli.common import (
    EXIT_NO_MATCH,
    EXIT_NOT_REFRESHED,
    check_schema,
    parse_instant,
    split_names,
)
from kalshibook.errors import ConfigError, InvalidInput
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.settings import Settings
from kalshibook.storage.candle_refresh import refresh_command
from kalshibook.storage.candles import TRADES_ONLY
from kalshibook.storage.pool import make_pool
from kalshibook.storage.urls import unreachable
from kalshibook.storage.writer import Writer

__all__ = ("EPILOG", "add_arguments", "run")

log = logging.getLogger("kalshibook.backfill")

EPILOG = f"""\
exit codes:
  0    every market loaded; the candle aggregates refreshed over the loaded trades
  1    a market kept failing (the others are loaded; run it again to retry), or the database is
       unreachable or not migrated
  2    bad configuration or arguments
  {EXIT_NO_MATCH}    none of the named series, events or markets is listed by the exchange (each
       unknown name is on stderr; when only some are unknown, the others are loaded and the
       exit code is theirs)
  {EXIT_NOT_REFRESHED}    loaded, but the candle aggregates were not refreshed over the loaded
       trades: only their owner may (this login is not, e.g. the collector's); stderr has the
       command to run with the owner's URL
  130  interrupted (run it again to resume)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--all", action="store_true", help="every market Kalshi lists")
    for flag in ("--series", "--event", "--market"):
        parser.add_argument(
            flag,
            action="append",
            default=[],
            metavar="TICKER",
            help="repeatable, or a comma-separated list",
        )
    parser.add_argument(
        "--start",
        default=None,
        help="only history from this instant, not in the future: a UTC day YYYY-MM-DD (its "
        "midnight), RFC 3339 (2026-01-15T00:00:00Z) or Unix seconds (default: all Kalshi has)",
    )
    parser.add_argument(
        "--no-candles", action="store_true", help="skip Kalshi's official candlesticks"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        metavar="N",
        help="markets loaded at once; the REST rate limit still applies (default: %(default)s)",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="send unsigned requests (only for a local simulator started with --no-auth)",
    )


def selection(args: argparse.Namespace) -> Selection:
    series = split_names(args.series, "--series")
    events = split_names(args.event, "--event")
    markets = split_names(args.market, "--market")
    if not (args.all or series or events or markets):
        raise ConfigError("choose what to backfill: --all, --series, --event or --market")
    if args.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    try:
        start = parse_instant(str(args.start), "--start") if args.start is not None else None
    except InvalidInput as exc:
        raise ConfigError(exc.message) from None
    if start is not None and start > datetime.now(UTC):
        raise ConfigError(f"--start {args.start}: in the future (there is no history yet)")
    return Selection(
        all=bool(args.all),
        series=series,
        events=events,
        markets=markets,
        start=start,
        candles=not args.no_candles,
    )


async def main(settings: Settings, sel: Selection, *, no_auth: bool, concurrency: int) -> int:
    key = _load_key(settings, no_auth)
    url = settings.require_database()
    await check_schema(url)
    pool = make_pool(settings, min_size=1, max_size=concurrency + 2, name="kalshibook-backfill")
    try:
        await pool.open(wait=True, timeout=30.0)
    except (psycopg.OperationalError, TimeoutError) as exc:
        await pool.close()
        raise unreachable(url, exc) from None
    try:
        async with Writer(settings, pool) as writer, KalshiRest(settings.kalshi, key) as rest:
            job = Backfill(
                rest=rest,
                writer=writer,
                pool=pool,
                report=ProgressReport(),
                concurrency=concurrency,
            )
            log.info("backfill starting: %s rest=%s", describe(sel), settings.kalshi.rest_url)
            task = asyncio.current_task()
            assert task is not None

            def interrupt() -> None:
                task.cancel()

            with signal_handlers(asyncio.get_running_loop(), interrupt):
                s = await job.run(sel)
    finally:
        await pool.close()
    print(
        f"backfill: markets={s.markets} failed={s.markets_failed} trades={s.trades_fetched} "
        f"candles={s.candles_fetched} settlements={s.settlements} "
        f"requests={rest.stats.requests} http_429={rest.stats.http_429} "
        f"aggregates={_aggregates(s)}",
        flush=True,
    )
    return _verdict(s, sel)


def _aggregates(s: Summary) -> str:
    """The summary's word on the candle aggregates over the loaded trades."""
    if s.refresh_window is None:
        return "unchanged"  # no trade loaded
    return "NOT-REFRESHED" if s.refresh_problem is not None else "refreshed"


def _verdict(s: Summary, sel: Selection) -> int:
    """Report on stderr what the summary line cannot say; the exit code (``EPILOG``)."""
    for name in s.unknown:
        print(f"kalshibook backfill: {name}: the exchange lists no such market", file=sys.stderr)
    if s.refresh_window is not None and s.refresh_problem is not None:
        print(
            f"kalshibook backfill: the candle aggregates were NOT refreshed over the loaded "
            f"trades ({s.refresh_problem}); run as the database owner: "
            f"{refresh_command(*s.refresh_window, TRADES_ONLY)}",
            file=sys.stderr,
        )
    if s.markets_failed:
        return 1
    if s.refresh_window is not None and s.refresh_problem is not None:
        return EXIT_NOT_REFRESHED
    named = len(set(sel.series)) + len(set(sel.events)) + len(set(sel.markets))
    if not sel.all and named and len(s.unknown) == named:
        return EXIT_NO_MATCH
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    sel = selection(args)
    try:
        return asyncio.run(
            main(settings, sel, no_auth=bool(args.no_auth), concurrency=int(args.concurrency))
        )
    except asyncio.CancelledError:
        print("backfill interrupted: run it again to resume", flush=True)
        return 130
