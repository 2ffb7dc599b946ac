"""`kalshibook status`: collector health, database, freshness per channel, gaps, sizes.

A human table by default, ``--json`` for machines, ``--quiet`` for cron (prints only problems).
The exit code is the verdict (see ``EPILOG``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import timedelta

import psycopg
from psycopg.conninfo import conninfo_to_dict

from kalshibook.errors import ConfigError, DatabaseUnavailable, KalshibookError, StorageError
from kalshibook.ops import status
from kalshibook.ops.coverage import coverage_lines
from kalshibook.settings import Settings
from kalshibook.storage import replicas, status_reads
from kalshibook.storage.coverage import Coverage, read_coverage
from kalshibook.storage.urls import redact, scrub, unreachable

SET_TIMEOUT = "SET statement_timeout = '20s'"
CONNECT_TIMEOUT = 5

EPILOG = f"""\
exit codes:
  0  healthy: the freshest channel received data within --stale-after seconds
  1  the database is unreachable or not migrated (one line on stderr)
  2  bad configuration or arguments (one line on stderr)
  {status.EXIT_STALE}  stale: the freshest channel (or a --channel one) is older than
     --stale-after, or there is no data at all yet
  {status.EXIT_COLLECTOR}  --require-collector and the collector's /health is unreachable or
     unhealthy
  {status.EXIT_POLICIES}  Community edition: a refresh, compression or retention policy's last run
     failed or is paused, or the job scheduler is off (timescaledb.max_background_workers = 0)
  {status.EXIT_REPLICAS}  a read replica (KALSHIBOOK_REPLICA_URLS) is unreachable or lags more
     than KALSHIBOOK_REPLICA_MAX_LAG_SECONDS

freshness = now - newest received_at, per hypertable: {", ".join(status_reads.CHANNELS[:3])},
{", ".join(status_reads.CHANNELS[3:])}. Only the freshest channel decides by default (a quiet
channel such as lifecycle_events is normal); name channels that must each be fresh with --channel.

cron / monitoring (cron mails any output, --quiet prints only when something is wrong):
  * * * * *  KALSHIBOOK_DATABASE_URL=postgresql://... kalshibook status --quiet --stale-after 300
  kalshibook status --json | jq .exit_code     # the whole report as JSON, same exit code
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "--stale-after",
        type=_positive_seconds,
        default=120.0,
        metavar="SECONDS",
        help="age of the newest data beyond which the data counts as stale (default: 120)",
    )
    parser.add_argument(
        "--channel",
        action="append",
        choices=status_reads.CHANNELS,
        default=[],
        metavar="NAME",
        help="also require this channel to be fresh (repeatable): "
        + ", ".join(status_reads.CHANNELS),
    )
    parser.add_argument(
        "--gap-window",
        type=_positive_seconds,
        default=24.0,
        metavar="HOURS",
        help="count book gaps overlapping the last HOURS hours (default: 24)",
    )
    parser.add_argument(
        "--collector-url",
        default=None,
        metavar="URL",
        help="collector health URL (default: built from KALSHIBOOK_COLLECTOR_METRICS_HOST and "
        "_PORT: http://127.0.0.1:9108/health)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=2.0,
        metavar="SECONDS",
        help="timeout of the collector health request (default: 2)",
    )
    parser.add_argument(
        "--require-collector",
        action="store_true",
        help=f"exit {status.EXIT_COLLECTOR} when the collector is unreachable or unhealthy",
    )
    parser.add_argument(
        "--market",
        action="append",
        default=[],
        metavar="TICKER",
        help="also print this market's coverage: trades per source, backfill, books, gaps "
        "(repeatable; text output only)",
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the report as JSON")
    out.add_argument(
        "-q", "--quiet", action="store_true", help="print only problems (nothing when healthy)"
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _check_url(url: str) -> None:
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        reason = scrub(str(exc).strip().splitlines()[0]) if str(exc).strip() else "malformed"
        raise ConfigError(
            f"KALSHIBOOK_DATABASE_URL is not a valid connection URL: {reason}"
        ) from None


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    try:
        conn = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name="kalshibook-status",
        )
    except psycopg.Error as exc:
        raise unreachable(url, exc) from None
    conn.execute(SET_TIMEOUT)
    return conn


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.require_database()
    _check_url(url)
    health_url = args.collector_url or status.collector_health_url(
        settings.collector.metrics_host, settings.collector.metrics_port
    )
    collector = status.probe_collector(health_url, timeout=args.timeout)
    try:
        with _connect(url) as conn:
            snapshot = status_reads.read_database(
                conn, url=redact(url), gap_window=timedelta(hours=args.gap_window)
            )
    except psycopg.Error as exc:  # connection lost mid-way, statement timeout, privileges
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        error: KalshibookError = (
            DatabaseUnavailable(f"reading {redact(url)} failed: {reason}")
            if isinstance(exc, psycopg.OperationalError)
            else StorageError(f"reading {redact(url)} failed: {reason}")
        )
        _emit_unreachable(args, url, collector, error)
        raise error from None
    except KalshibookError as exc:
        _emit_unreachable(args, url, collector, exc)
        raise
    report = status.assess(
        snapshot,
        collector,
        stale_after=args.stale_after,
        required_channels=tuple(dict.fromkeys(args.channel)),
        require_collector=args.require_collector,
    )
    if settings.replica.url_list():
        report = status.with_replicas(
            report,
            [
                status.ReplicaLine(
                    name=r.name,
                    healthy=r.healthy,
                    lag_seconds=r.lag_seconds,
                    behind_bytes=r.behind_bytes,
                    error=r.error,
                )
                for r in replicas.measure(url, settings.replica)
            ],
        )
    if args.json:
        sys.stdout.buffer.write(status.encode_json(report))
        sys.stdout.flush()
    elif args.quiet:
        for problem in report.problems:
            print(f"kalshibook status: {problem}")
    else:
        sys.stdout.write(status.render_text(report))
        for ticker in dict.fromkeys(args.market):
            for line in coverage_lines(ticker, asyncio.run(_coverage(url, ticker))):
                print(line)
    return report.exit_code


async def _coverage(url: str, ticker: str) -> Coverage | None:
    try:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=CONNECT_TIMEOUT
        ) as conn:
            return await read_coverage(conn, ticker)
    except psycopg.Error as exc:
        raise unreachable(url, exc) from None


def _emit_unreachable(
    args: argparse.Namespace, url: str, collector: status.CollectorState, exc: KalshibookError
) -> None:
    """With ``--json`` a document is still printed (the error also goes to stderr, one line)."""
    if not args.json:
        return
    reachable = not isinstance(exc, DatabaseUnavailable)  # e.g. reachable but not migrated
    database = status_reads.DatabaseState(url=redact(url), reachable=reachable, error=exc.message)
    report = status.unreachable_report(
        database, collector, stale_after=args.stale_after, exit_code=exc.exit_code
    )
    sys.stdout.buffer.write(status.encode_json(report))
    sys.stdout.flush()
