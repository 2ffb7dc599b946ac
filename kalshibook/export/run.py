"""One export run: every (table, market, UTC day) file of a request, skipping unchanged ones.

Layout under the output directory (``EXT`` = ``parquet`` or ``csv.gz``)::

    <table>/<market_ticker>/<YYYY-MM-DD>.<EXT>    trades, deltas, snapshots, quotes,
                                                    market_stats, candles_1m/1h/1d
    settlements/settlements.<EXT>                 the selected markets' settlements
    manifest.json                                 one entry per file (see manifest.py)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import msgspec
import psycopg

from kalshibook.domain.periods import Interval
from kalshibook.errors import InvalidInput
from kalshibook.export import manifest as mf
from kalshibook.export import reads
from kalshibook.export.files import Format, extension, write_file
from kalshibook.export.sampled import TBBO, bbo_batches, sample_batches, samples_spec
from kalshibook.export.tables import RAW_TABLES, TABLES, TableSpec

__all__ = ("ExportRequest", "Summary", "run_export")

log = logging.getLogger(__name__)
AConn = psycopg.AsyncConnection[Any]
Progress = Callable[[int, int, str], None]


class ExportRequest(msgspec.Struct, frozen=True):
    tables: tuple[str, ...]
    start: datetime
    end: datetime
    fmt: Format = "parquet"
    tickers: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    series: tuple[str, ...] = ()
    batch_rows: int = reads.BATCH_ROWS
    levels: int = 10  # book_samples: levels per side
    every: timedelta = timedelta(seconds=1)  # book_samples: sampling interval


class Summary(msgspec.Struct):
    written: list[str] = msgspec.field(default_factory=list)
    skipped: list[str] = msgspec.field(default_factory=list)
    rows: int = 0


class _Job(msgspec.Struct, frozen=True):
    rel: str
    table: str
    ticker: str | None
    date: str | None
    fingerprint: str | None  # None: compare by content (candles)
    make: Callable[[], AsyncIterator[Sequence[Sequence[Any]]]]


def _unchanged(root: Path, job: _Job, entry: mf.Entry | None) -> bool:
    if entry is None or job.fingerprint is None or entry.fingerprint != job.fingerprint:
        return False
    path = root / job.rel
    return path.exists() and path.stat().st_size == entry.bytes


async def _jobs(conn: AConn, req: ExportRequest, markets: list[str]) -> list[_Job]:
    ext = extension(req.fmt)
    jobs: list[_Job] = []
    for table in req.tables:
        if table == "settlements":
            fp = await reads.settlements_fingerprint(conn, markets)
            jobs.append(
                _Job(
                    f"settlements/settlements.{ext}",
                    table,
                    None,
                    None,
                    fp,
                    lambda: reads.settlement_batches(conn, markets, req.batch_rows),
                )
            )
            continue
        for ticker in markets:
            if table in ("book_samples", "trades_bbo"):
                # Replayed per day that has trades or book events; always recomputed (content
                # compared), since the book carried into the day depends on earlier days.
                book_days = await reads.book_days(conn, ticker, req.start, req.end, table)
                for day in book_days:
                    jobs.append(
                        _Job(
                            f"{table}/{ticker}/{day.isoformat()}.{ext}",
                            table,
                            ticker,
                            day.isoformat(),
                            None,
                            (
                                lambda t=ticker, d=day: sample_batches(  # type: ignore[misc]
                                    conn, t, d, req.levels, req.every
                                )
                            )
                            if table == "book_samples"
                            else (lambda t=ticker, d=day: bbo_batches(conn, t, d)),  # type: ignore[misc]
                        )
                    )
            elif table in RAW_TABLES:
                spec = RAW_TABLES[table]
                days = await reads.day_fingerprints(conn, spec, ticker, req.start, req.end)
                for day, fp in days:
                    lo, hi = reads.day_bounds(day)
                    jobs.append(
                        _Job(
                            f"{table}/{ticker}/{day.isoformat()}.{ext}",
                            table,
                            ticker,
                            day.isoformat(),
                            fp,
                            lambda s=spec, t=ticker, a=lo, b=hi: reads.raw_batches(  # type: ignore[misc]
                                conn, s, t, a, b
                            ),
                        )
                    )
            else:
                interval = cast(Interval, table.removeprefix("candles_"))
                for day in await reads.source_days(conn, ticker, req.start, req.end):
                    jobs.append(
                        _Job(
                            f"{table}/{ticker}/{day.isoformat()}.{ext}",
                            table,
                            ticker,
                            day.isoformat(),
                            None,
                            lambda t=ticker, d=day, i=interval: reads.candle_batches(  # type: ignore[misc]
                                conn, t, i, d
                            ),
                        )
                    )
    return jobs


ALL_TABLES = (*TABLES, "book_samples", "trades_bbo")


def spec_for(table: str, req: ExportRequest) -> TableSpec:
    if table == "book_samples":
        return samples_spec(req.levels)
    return TBBO if table == "trades_bbo" else TABLES[table]


def validate(req: ExportRequest) -> None:
    unknown = [t for t in req.tables if t not in ALL_TABLES]
    if unknown:
        raise InvalidInput(
            f"unknown table(s) {', '.join(unknown)}; tables: {', '.join(ALL_TABLES)}"
        )
    if not 1 <= req.levels <= 100:
        raise InvalidInput("levels must be between 1 and 100")
    if req.every < timedelta(milliseconds=1) or req.every > timedelta(days=1):
        raise InvalidInput("the sampling interval must be between 1 ms and 1 day")
    if req.end <= req.start:
        raise InvalidInput("the end date must be after the start date")


async def run_export(
    conn: AConn, req: ExportRequest, root: Path, progress: Progress | None = None
) -> Summary:
    """Export ``req`` under ``root``; files whose source fingerprint and size match the manifest
    are skipped, candle files are rewritten only when their bytes change."""
    validate(req)
    markets = await reads.select_markets(conn, req.tickers, req.events, req.series)
    manifest = mf.load(root)
    jobs = await _jobs(conn, req, markets)
    summary = Summary()
    for i, job in enumerate(jobs):
        old = manifest.files.get(job.rel)
        if _unchanged(root, job, old):
            summary.skipped.append(job.rel)
        else:
            spec = spec_for(job.table, req)
            written = await write_file(root / job.rel, spec, req.fmt, job.make())
            summary.rows += written.rows
            if old is not None and old.sha256 == written.sha256 and job.fingerprint is None:
                summary.skipped.append(job.rel)
            else:
                summary.written.append(job.rel)
            manifest.files[job.rel] = mf.Entry(
                table=job.table,
                market_ticker=job.ticker,
                date=job.date,
                format=req.fmt,
                rows=written.rows,
                first_ts=written.first_ts,
                last_ts=written.last_ts,
                sha256=written.sha256,
                bytes=written.bytes,
                fingerprint=job.fingerprint,
            )
            mf.save(root, manifest)
        if progress is not None:
            progress(i + 1, len(jobs), job.rel)
    mf.save(root, manifest)
    return summary
