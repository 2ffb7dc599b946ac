"""`kalshibook export --out DIR --start DATE [...]`: Parquet / gzip CSV files of recorded data.

One file per table, market and UTC day (layout: kalshibook/export/run.py, docs/export.md), a
``manifest.json`` with row counts, time ranges and sha256; a re-run writes only what changed or
is missing. Progress (planning, then files) is a one-line counter on a terminal and plain log
lines otherwise, on stderr. Exit codes: ``EPILOG``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time as clock
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import psycopg

from kalshibook.cli.common import EXIT_NO_MATCH, check_schema
from kalshibook.domain.times import parse_day
from kalshibook.errors import ConfigError, InvalidInput
from kalshibook.export.files import FORMATS
from kalshibook.export.run import ALL_TABLES, ExportRequest, Summary, run_export, validate
from kalshibook.export.tables import TABLES
from kalshibook.settings import Settings
from kalshibook.storage.urls import unreachable

log = logging.getLogger(__name__)

EPILOG = f"""\
exit codes:
  0  exported (a market, event or series named but unknown is reported on stderr)
  1  the database is unreachable or not migrated, a file could not be written, or the
     output directory's manifest.json is unreadable (one line on stderr)
  2  bad configuration or arguments (a --out that is not a directory or cannot be created)
  {EXIT_NO_MATCH}  no recorded market matches --market / --event / --series (each unknown name on
     stderr): nothing is written
"""
PLANNING_EVERY = 1.0
"""Seconds between two planning progress lines (off a terminal)."""


def _list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--start", required=True, help="first UTC day, YYYY-MM-DD")
    parser.add_argument("--end", default=None, help="UTC day after the last (default: tomorrow)")
    parser.add_argument(
        "--tables",
        type=_list,
        default=tuple(t for t in TABLES if t != "candles_1m"),
        help=f"comma-separated, among {', '.join(ALL_TABLES)} (default: all but candles_1m "
        "and the replayed book_samples / trades_bbo)",
    )
    parser.add_argument("--format", choices=FORMATS, default="parquet")
    parser.add_argument(
        "--levels", type=int, default=10, help="book_samples: levels per side (default 10)"
    )
    parser.add_argument(
        "--every", type=float, default=1.0, help="book_samples: seconds between samples (1)"
    )
    parser.add_argument("--market", type=_list, default=(), help="market tickers, comma-separated")
    parser.add_argument("--event", type=_list, default=(), help="event tickers, comma-separated")
    parser.add_argument("--series", type=_list, default=(), help="series tickers, comma-separated")


def _day(text: str, flag: str) -> datetime:
    try:
        return datetime.combine(parse_day(text, flag), time(0), tzinfo=UTC)
    except InvalidInput as exc:
        raise ConfigError(exc.message) from None


def request_from(args: argparse.Namespace) -> ExportRequest:
    start = _day(str(args.start), "--start")
    end = (
        _day(str(args.end), "--end")
        if args.end is not None
        else datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time(0), tzinfo=UTC)
    )
    req = ExportRequest(
        tables=tuple(args.tables),
        start=start,
        end=end,
        fmt=args.format,
        tickers=tuple(args.market),
        events=tuple(args.event),
        series=tuple(args.series),
        levels=int(args.levels),
        every=timedelta(seconds=float(args.every)),
    )
    try:
        validate(req)
    except InvalidInput as exc:
        raise ConfigError(exc.message) from None
    return req


def _progress(done: int, total: int, rel: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r[{done}/{total}] {rel[:60]:<60}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    else:
        log.info("export %d/%d %s", done, total, rel)


class _Planning:
    """Planning progress: a counter on a terminal, a log line a second otherwise."""

    def __init__(self) -> None:
        self.started = clock.monotonic()
        self.last = self.started

    def __call__(self, done: int, total: int, what: str) -> None:
        now = clock.monotonic()
        if sys.stderr.isatty():
            sys.stderr.write(f"\rplanning: [{done}/{total}] {what[:60]:<60}")
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif done == total or now - self.last >= PLANNING_EVERY:
            self.last = now
            log.info(
                "export planning: %d/%d markets x tables (%s), %.0f s",
                done,
                total,
                what,
                now - self.started,
            )


async def _export(url: str, req: ExportRequest, out: Path) -> Summary:
    await check_schema(url)
    try:
        # autocommit: each read its own transaction (no snapshot held for the whole export; a
        # SET LOCAL of one read, e.g. the candle read's, ends with it)
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=10, autocommit=True)
    except psycopg.Error as exc:
        raise unreachable(url, exc) from None
    async with conn:
        try:
            return await run_export(conn, req, out, _progress, _Planning())
        except InvalidInput as exc:  # the output directory cannot be made
            raise ConfigError(f"--out: {exc.message}") from None


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.require_database()
    req = request_from(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    summary = asyncio.run(_export(url, req, out))
    for name in summary.unknown:
        what = (
            "kalshibook has no record of it (no market row, trade, quote or ticker update)"
            if name.startswith("market ")
            else "no market of it in market.markets"
        )
        print(f"kalshibook export: unknown {name}: {what}", file=sys.stderr)
    if summary.markets == 0 and (req.tickers or req.events or req.series):
        print(
            "kalshibook export: no recorded market matches --market / --event / --series: "
            "nothing written",
            file=sys.stderr,
        )
        return EXIT_NO_MATCH
    print(
        f"export to {args.out}: {len(summary.written)} files written, "
        f"{len(summary.skipped)} unchanged, {summary.rows} rows"
    )
    return 0
