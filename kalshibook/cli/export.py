"""`kalshibook export --out DIR --start DATE [...]`: Parquet / gzip CSV files of recorded data.

One file per table, market and UTC day (layout: kalshibook/export/run.py, docs/export.md), a
``manifest.json`` with row counts, time ranges and sha256; a re-run writes only what changed or
is missing. Progress is a one-line counter on a terminal and plain log lines otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import psycopg

from kalshibook.errors import ConfigError, InvalidInput
from kalshibook.export.files import FORMATS
from kalshibook.export.run import ALL_TABLES, ExportRequest, Summary, run_export, validate
from kalshibook.export.tables import TABLES
from kalshibook.settings import Settings
from kalshibook.storage.urls import unreachable

log = logging.getLogger(__name__)


def _list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
    except ValueError:
        raise ConfigError(f"{flag} must be a UTC day YYYY-MM-DD, got {text!r}") from None


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


async def _export(url: str, req: ExportRequest, out: Path) -> Summary:
    try:
        # autocommit: each read its own transaction (no snapshot held for the whole export; a
        # SET LOCAL of one read, e.g. the candle read's, ends with it)
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=10, autocommit=True)
    except psycopg.Error as exc:
        raise unreachable(url, exc) from None
    async with conn:
        return await run_export(conn, req, out, _progress)


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.require_database()
    req = request_from(args)
    summary = asyncio.run(_export(url, req, Path(args.out)))
    print(
        f"export to {args.out}: {len(summary.written)} files written, "
        f"{len(summary.skipped)} unchanged, {summary.rows} rows"
    )
    return 0
