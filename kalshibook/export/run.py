"""One export run: every (table, market, UTC day) file of a request, skipping unchanged ones.

Layout under the output directory (``EXT`` = ``parquet`` or ``csv.gz``)::

    <table>/<market_ticker>/<YYYY-MM-DD>.<EXT>    trades, deltas, snapshots, quotes,
                                                    market_stats, candles_1m/1h/1d
    settlements/settlements.<EXT>                 the settlements of the selected markets and
                                                    of those already in the file (earlier runs)
    manifest.json                                 one entry per file (see manifest.py)

Named markets kalshibook has no record of, and named events or series without a market, are
reported in ``Summary.unknown`` and leave no file; when nothing named exists the run writes
nothing. Planning (reading each market's source days and fingerprints, before the first file)
reports its progress through ``planning``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import msgspec
import psycopg
import pyarrow as pa

from kalshibook.domain.periods import Interval
from kalshibook.errors import InvalidInput, KalshibookError
from kalshibook.export import manifest as mf
from kalshibook.export import reads
from kalshibook.export.candles import CandleDay
from kalshibook.export.files import (
    BadValue,
    Format,
    extension,
    read_texts,
    remove_stale_temps,
    write_file,
)
from kalshibook.export.sampled import (
    TBBO,
    bbo_batches,
    sample_batches,
    samples_spec,
    source_fingerprint,
)
from kalshibook.export.tables import RAW_TABLES, TABLES, TableSpec
from kalshibook.storage.candles import market_exists

__all__ = ("LOCK_NAME", "ExportBusy", "ExportRequest", "ManifestError", "Summary", "run_export")

log = logging.getLogger(__name__)
AConn = psycopg.AsyncConnection[Any]
Progress = Callable[[int, int, str], None]
"""``(done, total, what)``: files done (``what`` the last one's path), or planning steps done
(``what`` the table and market just planned)."""


class ManifestError(KalshibookError):
    """The output directory's manifest.json cannot be read."""


class ExportBusy(KalshibookError):
    """Another export is writing into the output directory."""


LOCK_NAME = ".export.lock"
"""In the output directory: a run holds an exclusive ``flock`` on it from before it reads the
manifest until its end, and writes its pid and start time into it (what a refused run names)."""


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold the output directory's lock, or raise :class:`ExportBusy` naming its holder. The
    kernel drops the lock when the process ends, however it ends: a killed run leaves none."""
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "starting"
            raise ExportBusy(
                f"another export is writing into {root} ({holder}): wait for it to end, or "
                "choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        os.pwrite(fd, f"pid {os.getpid()}, started {started}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


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
    unknown: list[str] = msgspec.field(default_factory=list)
    """Named markets with no record, events and series with no market (``market 'X'``)."""
    markets: int = 0
    """Markets exported."""
    failed: list[str] = msgspec.field(default_factory=list)
    """Files not written because a stored value does not fit its column (one line each, naming
    the table, market, day, column and value); the other files are written."""


class _Job(msgspec.Struct, frozen=True):
    rel: str
    table: str
    ticker: str | None
    date: str | None
    fingerprint: Callable[[], Awaitable[str]]  # the file's sources, read just before the file
    make: Callable[[], AsyncGenerator[Sequence[Sequence[Any]], None]]
    release: Callable[[], None] = lambda: None  # drop what fingerprint() read (file skipped)


def _known(fp: str) -> Callable[[], Awaitable[str]]:
    async def known() -> str:
        return fp

    return known


def _unchanged(root: Path, rel: str, fingerprint: str, entry: mf.Entry | None) -> bool:
    if entry is None or entry.fingerprint != fingerprint:
        return False
    path = root / rel
    return path.exists() and path.stat().st_size == entry.bytes


def _replay_job(conn: AConn, req: ExportRequest, table: str, ticker: str, day: date) -> _Job:
    now = datetime.now(UTC)  # a day in progress: samples up to now, and its fingerprint says so

    def make() -> AsyncGenerator[Sequence[Sequence[Any]], None]:
        if table == "book_samples":
            return sample_batches(conn, ticker, day, req.levels, req.every, now=now)
        return bbo_batches(conn, ticker, day)

    async def fingerprint() -> str:
        return await source_fingerprint(conn, ticker, day, table, req.levels, req.every, now=now)

    rel = f"{table}/{ticker}/{day.isoformat()}.{extension(req.fmt)}"
    return _Job(rel, table, ticker, day.isoformat(), fingerprint, make)


def _candle_job(conn: AConn, req: ExportRequest, table: str, ticker: str, day: date) -> _Job:
    source = CandleDay(conn, ticker, cast(Interval, table.removeprefix("candles_")), day)
    rel = f"{table}/{ticker}/{day.isoformat()}.{extension(req.fmt)}"
    return _Job(
        rel, table, ticker, day.isoformat(), source.fingerprint, source.batches, source.release
    )


def _settled_before(path: Path, fmt: Format) -> set[str]:
    """The markets of an earlier run's settlements file (kept: a narrower re-run adds to it)."""
    try:
        return set(read_texts(path, fmt, "market_ticker"))
    except (OSError, pa.ArrowException) as exc:
        log.warning("%s is unreadable (%s): written again from this selection only", path, exc)
        return set()


async def _jobs(
    conn: AConn,
    req: ExportRequest,
    markets: list[str],
    root: Path,
    planning: Progress | None = None,
) -> list[_Job]:
    ext = extension(req.fmt)
    jobs: list[_Job] = []
    steps = sum(len(markets) for t in req.tables if t != "settlements")
    step = 0
    for table in req.tables:
        if table == "settlements":
            # one file for every run into this directory: the markets selected now and those an
            # earlier (maybe broader) run put in it, so a narrower re-run never drops a market
            rel = f"settlements/settlements.{ext}"
            earlier = _settled_before(root / rel, req.fmt)
            settled = sorted(earlier | set(markets))
            fp = await reads.settlements_fingerprint(conn, settled)
            jobs.append(
                _Job(
                    rel,
                    table,
                    None,
                    None,
                    _known(fp),
                    lambda s=settled: reads.settlement_batches(conn, s, req.batch_rows),  # type: ignore[misc]
                )
            )
            continue
        for ticker in markets:
            if table in ("book_samples", "trades_bbo"):
                # replayed per day that has book events (samples) or trades (BBO)
                for day in await reads.book_days(conn, ticker, req.start, req.end, table):
                    jobs.append(_replay_job(conn, req, table, ticker, day))
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
                            _known(fp),
                            lambda s=spec, t=ticker, a=lo, b=hi: reads.raw_batches(  # type: ignore[misc]
                                conn, s, t, a, b
                            ),
                        )
                    )
            else:
                interval = table.removeprefix("candles_")
                for day in await reads.source_days(conn, ticker, req.start, req.end, interval):
                    jobs.append(_candle_job(conn, req, table, ticker, day))
            step += 1
            if planning is not None:
                planning(step, steps, f"{table} {ticker}")
    return jobs


async def _select(conn: AConn, req: ExportRequest) -> tuple[list[str], list[str]]:
    """The markets to export (the union of the named markets and those of the named events and
    series; with no name, every recorded market), and the names of the request that match
    nothing."""
    if not (req.tickers or req.events or req.series):
        return await reads.all_markets(conn, req.start, req.end), []
    grouped = (
        await reads.markets_of(conn, req.events, req.series) if req.events or req.series else []
    )
    events = {g[1] for g in grouped}
    series = {s for g in grouped for s in g[2]}
    unknown = [f"event {e!r}" for e in dict.fromkeys(req.events) if e not in events]
    unknown += [f"series {s!r}" for s in dict.fromkeys(req.series) if s not in series]
    selected = {g[0] for g in grouped}
    for ticker in dict.fromkeys(req.tickers):
        if ticker in selected:
            continue
        if await market_exists(conn, ticker):
            selected.add(ticker)
        else:
            unknown.append(f"market {ticker!r}")
    return sorted(selected), unknown


def _make_root(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(
            f"cannot create the output directory {root}: {exc.strerror or exc}", "out"
        ) from None


def _load_manifest(root: Path) -> mf.Manifest:
    try:
        return mf.load(root)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(
            f"{root / mf.MANIFEST_NAME} is not an export manifest ({exc}): move it away (every "
            "file is then written again) or choose another --out"
        ) from None


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


def columns_tag(spec: TableSpec) -> str:
    """A short digest of a table's columns and types: part of every fingerprint, so files made
    with other columns (another ``--levels``, a newer kalshibook) are rewritten."""
    text = ",".join(f"{c.name}:{c.kind}" for c in spec.columns)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


async def run_export(
    conn: AConn,
    req: ExportRequest,
    root: Path,
    progress: Progress | None = None,
    planning: Progress | None = None,
) -> Summary:
    """Export ``req`` under ``root``. Each file's source fingerprint is read first; a file whose
    fingerprint and size match the manifest is skipped without reading or computing its rows. A
    file computed again to the same bytes is left as it was (and counted unchanged). A request
    naming only what does not exist writes nothing (``Summary.unknown`` says what)."""
    validate(req)
    if (root / mf.MANIFEST_NAME).exists():
        _load_manifest(root)  # an unreadable manifest fails before any database read
    markets, unknown = await _select(conn, req)
    summary = Summary(unknown=unknown, markets=len(markets))
    if not markets and (req.tickers or req.events or req.series):
        return summary  # nothing named matched: no file, not even an empty settlements file
    _make_root(root)
    with _locked(root):
        manifest = _load_manifest(root)  # read under the lock: no other run is changing it
        await _write_jobs(conn, req, root, markets, manifest, summary, progress, planning)
    return summary


async def _write_jobs(
    conn: AConn,
    req: ExportRequest,
    root: Path,
    markets: list[str],
    manifest: mf.Manifest,
    summary: Summary,
    progress: Progress | None,
    planning: Progress | None,
) -> None:
    jobs = await _jobs(conn, req, markets, root, planning)
    swept: set[Path] = set()
    for i, job in enumerate(jobs):
        folder = (root / job.rel).parent
        if folder not in swept:  # temporary files of a killed run (this one holds the lock)
            swept.add(folder)
            for stale in remove_stale_temps(folder):
                log.info("export: removed %s, left by an interrupted run", stale)
        spec = spec_for(job.table, req)
        fingerprint = f"{columns_tag(spec)}:{await job.fingerprint()}"
        old = manifest.files.get(job.rel)
        if _unchanged(root, job.rel, fingerprint, old):
            job.release()
            summary.skipped.append(job.rel)
        else:
            keep = old.sha256 if old is not None else None
            label = (
                f"{job.table} of {job.ticker} on {job.date} ({job.rel})"
                if job.ticker is not None
                else f"{job.table} ({job.rel})"
            )
            try:
                written = await write_file(
                    root / job.rel, spec, req.fmt, job.make(), keep=keep, label=label
                )
            except BadValue as exc:  # the file (and its manifest entry) stays as it was
                summary.failed.append(exc.message)
                if progress is not None:
                    progress(i + 1, len(jobs), job.rel)
                continue
            summary.rows += written.rows
            (summary.written if written.replaced else summary.skipped).append(job.rel)
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
                fingerprint=fingerprint,
            )
            mf.save(root, manifest)
        if progress is not None:
            progress(i + 1, len(jobs), job.rel)
    mf.save(root, manifest)
