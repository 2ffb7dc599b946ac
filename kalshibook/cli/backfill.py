"""``kalshibook backfill``: load history from Kalshi's REST (see :mod:`kalshibook.backfill`).

Choose ``--all`` or any of ``--series`` / ``--event`` / ``--market`` (repeatable), optionally
``--start``. Resumable: run it again after a kill and it continues per market; run it twice and
the second run adds nothing. Exit 0 when every market was loaded, 1 when some failed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import psycopg

from kalshibook.backfill.loader import Backfill, Selection, describe
from kalshibook.backfill.progress import ProgressReport
from kalshibook.cli.collect import SCHEMA_CHECK, _load_key, signal_handlers
from kalshibook.domain.times import parse_time
from kalshibook.errors import ConfigError, InvalidInput, SchemaError
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.settings import Settings
from kalshibook.storage.pool import make_pool
from kalshibook.storage.urls import redact, unreachable
from kalshibook.storage.writer import Writer

__all__ = ("add_arguments", "run")

log = logging.getLogger("kalshibook.backfill")

PROGRESS_TABLE_CHECK = "SELECT to_regclass('market.backfill_progress')"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true", help="every market Kalshi lists")
    parser.add_argument("--series", action="append", default=[], metavar="TICKER")
    parser.add_argument("--event", action="append", default=[], metavar="TICKER")
    parser.add_argument("--market", action="append", default=[], metavar="TICKER")
    parser.add_argument(
        "--start",
        default=None,
        help="only history from this instant: RFC 3339 or Unix seconds (default: all Kalshi has)",
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
    if not (args.all or args.series or args.event or args.market):
        raise ConfigError("choose what to backfill: --all, --series, --event or --market")
    if args.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    try:
        start = parse_time(str(args.start), "--start") if args.start is not None else None
    except InvalidInput as exc:
        raise ConfigError(exc.message) from None
    return Selection(
        all=bool(args.all),
        series=tuple(args.series),
        events=tuple(args.event),
        markets=tuple(args.market),
        start=start,
        candles=not args.no_candles,
    )


async def _check_schema(url: str) -> None:
    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=10) as conn:
            row = await (await conn.execute(SCHEMA_CHECK)).fetchone()
            prog = await (await conn.execute(PROGRESS_TABLE_CHECK)).fetchone()
    except psycopg.Error as exc:
        raise unreachable(url, exc) from None
    if row is None or row[0] is None or prog is None or prog[0] is None:
        raise SchemaError(
            f"{redact(url)} has no kalshibook schema of this version: run `kalshibook migrate`"
        )


async def main(settings: Settings, sel: Selection, *, no_auth: bool, concurrency: int) -> int:
    key = _load_key(settings, no_auth)
    url = settings.require_database()
    await _check_schema(url)
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
        f"requests={rest.stats.requests} http_429={rest.stats.http_429}",
        flush=True,
    )
    return 1 if s.markets_failed else 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    sel = selection(args)
    try:
        return asyncio.run(
            main(settings, sel, no_auth=bool(args.no_auth), concurrency=int(args.concurrency))
        )
    except asyncio.CancelledError:
        print("backfill interrupted: run it again to resume", flush=True)
        return 130
