"""`kalshibook export --out DIR --start DATE [...]`: Parquet / gzip CSV files of recorded data.

One file per table, market and UTC day (layout: kalshibook/export/run.py, docs/export.md), a
``manifest.json`` with row counts, time ranges and sha256; a re-run writes only what changed or
is missing. Progress (planning, then files) is a one-line counter on a terminal and plain log
lines otherwise, on stderr. Exit codes: ``EPILOG``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal
import sys
import time as clock
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from kalshibook.cli.common import EXIT_NO_MATCH, open_checked, split_names
from kalshibook.domain.times import parse_day
from kalshibook.errors import ConfigError, InvalidInput
from kalshibook.export.files import FORMATS
from kalshibook.export.run import ALL_TABLES, ExportRequest, Summary, run_export, validate
from kalshibook.export.tables import TABLES
from kalshibook.settings import Settings

log = logging.getLogger(__name__)

EPILOG = f"""\
exit codes:
  0  exported (a market, event or series named but unknown is reported on stderr)
  1  the database is unreachable or not migrated, a file could not be written, the output
     directory's manifest.json is unreadable, or another export is writing into it (one line
     on stderr); also when a stored value does not fit its column's exact type: each such file
     is named on stderr (table, market, day, column, value) and not written, the others are
     written
  2  bad configuration or arguments (a --out that is not a directory or cannot be created)
  {EXIT_NO_MATCH}  no recorded market matches --market / --event / --series (each unknown name on
     stderr): nothing is written
  130  interrupted (SIGINT, Ctrl-C); 143 terminated (SIGTERM): the file being written is removed,
     the files done are in the manifest; run it again to resume
"""
EXIT_TERMINATED = 128 + signal.SIGTERM
DEFAULT_TABLES = tuple(t for t in TABLES if t != "candles_1m")
"""``--tables`` not given: every table but ``candles_1m`` (the replayed ones are not in
``TABLES``)."""
PLANNING_EVERY = 1.0
"""Seconds between two planning progress lines (off a terminal)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--start", required=True, help="first UTC day, YYYY-MM-DD")
    parser.add_argument("--end", default=None, help="UTC day after the last (default: tomorrow)")
    parser.add_argument(
        "--tables",
        action="append",
        default=[],
        metavar="TABLE",
        help=f"repeatable, or a comma-separated list, among {', '.join(ALL_TABLES)} (default: "
        "all but candles_1m and the replayed book_samples / trades_bbo)",
    )
    parser.add_argument("--format", choices=FORMATS, default="parquet")
    parser.add_argument(
        "--levels", type=int, default=10, help="book_samples: levels per side (default 10)"
    )
    parser.add_argument("--every", default="1", help="book_samples: seconds between samples (1)")
    for flag, what in (("--market", "market"), ("--event", "event"), ("--series", "series")):
        parser.add_argument(
            flag,
            action="append",
            default=[],
            metavar="TICKER",
            help=f"{what} tickers: repeatable, or a comma-separated list (--market, --event and "
            "--series: their union)",
        )


def _day(text: str, flag: str) -> datetime:
    try:
        return datetime.combine(parse_day(text, flag), time(0), tzinfo=UTC)
    except InvalidInput as exc:
        raise ConfigError(exc.message) from None


def _every(text: str) -> timedelta:
    """``--every``: a finite number of seconds (``nan``, ``inf`` or ``1e400`` refused in one
    line, as an interval out of range is by :func:`validate`)."""
    try:
        seconds = float(text)
    except ValueError:
        raise ConfigError(f"--every must be a number of seconds, not {text!r}") from None
    if not math.isfinite(seconds) or not 0.001 <= seconds <= 86_400:
        raise ConfigError(f"--every must be between 0.001 and 86400 seconds, not {text!r}")
    return timedelta(seconds=seconds)


def request_from(args: argparse.Namespace) -> ExportRequest:
    if not str(args.out).strip():
        raise ConfigError("--out is empty: give the output directory")
    try:
        tables = split_names(args.tables, "--tables") if args.tables else DEFAULT_TABLES
    except ConfigError as exc:
        raise ConfigError(f"{exc.args[0]}; tables: {', '.join(ALL_TABLES)}") from None
    start = _day(str(args.start), "--start")
    end = (
        _day(str(args.end), "--end")
        if args.end is not None
        else datetime.combine(datetime.now(UTC).date() + timedelta(days=1), time(0), tzinfo=UTC)
    )
    req = ExportRequest(
        tables=tables,
        start=start,
        end=end,
        fmt=args.format,
        tickers=split_names(args.market, "--market"),
        events=split_names(args.event, "--event"),
        series=split_names(args.series, "--series"),
        levels=int(args.levels),
        every=_every(str(args.every)),
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


class Terminated(Exception):
    """The export was stopped by SIGTERM (its temporary files removed)."""


async def _export(url: str, req: ExportRequest, out: Path) -> Summary:
    """The export, stopped by SIGTERM as by SIGINT: the run is cancelled, so the file being
    written is removed (its temporary file) and the manifest keeps what was done."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        if task is not None:
            task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
        loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        return await _connected_export(url, req, out)
    except asyncio.CancelledError:
        if terminated:
            raise Terminated from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _connected_export(url: str, req: ExportRequest, out: Path) -> Summary:
    # autocommit: each read its own transaction (no snapshot held for the whole export; a
    # SET LOCAL of one read, e.g. the candle read's, ends with it)
    async with await open_checked(url) as conn:
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
    try:
        summary = asyncio.run(_export(url, req, out))
    except Terminated:
        print("kalshibook export: terminated (SIGTERM); run it again to resume", file=sys.stderr)
        return EXIT_TERMINATED
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
    for failure in summary.failed:
        print(f"kalshibook export: {failure}", file=sys.stderr)
    failed = f", {len(summary.failed)} NOT written (stderr)" if summary.failed else ""
    print(
        f"export to {args.out}: {len(summary.written)} files written, "
        f"{len(summary.skipped)} unchanged, {summary.rows} rows{failed}"
    )
    return 1 if summary.failed else 0
