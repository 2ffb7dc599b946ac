"""The collector's database writer: bounded queues, batched binary COPY, outage spooling.

Producers hand rows to one bounded queue per table (:mod:`kalshibook.storage.tables` defines the
tables, row types and SQL)::

    async with Writer(settings, pool) as w:
        await w.put("orderbook_deltas", DeltaRow(...))   # waits while the queue is full
        w.put_nowait("quotes", QuoteRow(...))            # raises WriterFull instead of waiting
        n = w.put_table_nowait("quotes", rows)           # as many as go in at once (per burst)
        await w.upsert_markets([MarketRow(...)])
        await w.drain()                                   # everything put so far is committed

Inside, supervised coroutines share the state (one event loop, no locks):

* **intake** cuts a table's queue into a batch (at most ``batch_rows`` rows) once it is due (it
  holds ``batch_rows`` rows or its oldest row is ``batch_age`` seconds old) and a flusher is free
  to take it, the oldest due table first; while every flusher is busy the rows keep gathering,
  so under load each transaction carries more of them (group commit). While the database keeps
  up, a table has at most one batch in flight, so a slow database fills the queue and blocks
  producers: backpressure, counted in
  :meth:`Writer.stats`. While the database is down (or spooled batches of the table are still
  being replayed) intake keeps cutting so producers never block: batches stay in memory up to
  ``memory_rows`` rows over all tables, then each further batch goes to its own fsynced spool file
  (:mod:`kalshibook.storage.spool`).
* **flush** (``connections`` of them) writes batches oldest first, never two batches of one table
  at the same time, one transaction each. Each flusher has a COPY worker child process with its
  own connection (:mod:`kalshibook.storage.copyworker`: the rows go there as msgpack, off this
  process's core) that runs the transaction: binary ``COPY``; for ``dedupe`` tables ``COPY`` into
  a TEMP staging table + ``INSERT … ON CONFLICT DO NOTHING``; for reference tables an upsert per
  row. The pool here only prunes old commit marks. A connection or server failure is retried
  with capped, jittered backoff (``retry_max``) and the batch stays at the head of its table,
  so per-table order is kept. A spool file is deleted only after its batch committed. Rows the
  database rejects as invalid (data or constraint errors) are isolated by bisection and written,
  with the error, to ``<spool_dir>/rejected/<table>.jsonl`` instead of wedging the writer.

On start, spool files left by a previous process are replayed first (crash recovery). ``close()``
(and ``async with`` exit) drains with a timeout and spools whatever is still in memory, so nothing
handed to the writer is lost.

Exactly once: append-only tables (``copy``) get no unique key to dedupe on (it would cost every
insert), so each transaction reads the writer's commit mark for the table under a row lock
(``private.writer_progress``: writer id, batch seq, rows done; migration 0003), skips the rows it
already covers and moves it to the end of the rows it writes. A batch retried after a commit
whose acknowledgement was lost, a part of a split batch, or a spool file that outlived its
commit (crash before the deletion) is therefore never written twice. ``dedupe`` tables
(trades) and upserts are idempotent by themselves.

Around this module: the queue and batch data (:mod:`~kalshibook.storage.batches`), the spool
directory (:mod:`~kalshibook.storage.spool`), the stats structs
(:mod:`~kalshibook.storage.writer_stats`), the transactions (:mod:`~kalshibook.storage.copyworker`).
What is left is one class over ~800 lines on purpose: the producers, the intake and the flushers
share its state without locks (one event loop), so splitting it would put attribute hops on the
per-row path.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import msgspec
import psycopg
from psycopg import AsyncConnection

from kalshibook.backoff import Backoff
from kalshibook.errors import StorageError
from kalshibook.settings import Settings
from kalshibook.storage.batches import Batch, Row, TableQueue, encoder, items_of, one_more
from kalshibook.storage.copyworker import CopyWorker, describe
from kalshibook.storage.pool import Pool, connect_kwargs
from kalshibook.storage.spool import READ_ERRORS, SPOOL_ERRORS, Spool, rejected_line
from kalshibook.storage.tables import (
    ALL_TABLES,
    TABLES,
    EventRow,
    MarketRow,
    SeriesRow,
    SettlementRow,
    TableSpec,
)
from kalshibook.storage.writer_stats import BatchLatency, TableStats, WriterStats

__all__ = ("Writer", "WriterClosed", "WriterFull")

log = logging.getLogger(__name__)

PROGRESS_RETENTION_DAYS: Final = 30
"""Commit marks (``private.writer_progress``) untouched for this long are pruned when a writer
starts: a spool file older than that is replayed without the duplicate check."""
_BACKOFF_INITIAL: Final = 0.05

PRUNE_PROGRESS: Final = """
DELETE FROM private.writer_progress WHERE updated_at < now() - make_interval(days => %(days)s)
"""


class WriterFull(StorageError):
    """A writer queue is full: the database is not keeping up."""


class WriterClosed(StorageError):
    """The writer is closed, or its flush task failed."""


def _is_data_error(exc: BaseException) -> bool:
    """The rows are at fault (retrying the same rows cannot succeed)."""
    if isinstance(exc, psycopg.Error):
        return isinstance(exc, psycopg.DataError | psycopg.IntegrityError)
    return isinstance(exc, TypeError | ValueError | OverflowError)


def _is_retryable(exc: BaseException) -> bool:
    """The database or the network is at fault: hold the rows and retry."""
    return isinstance(exc, psycopg.Error | OSError | TimeoutError) and not _is_data_error(exc)


# -- the writer --------------------------------------------------------------------------------


class Writer:
    """Batches rows per table into the database; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        pool: Pool,
        *,
        spool_dir: Path | str | None = None,
        close_timeout: float = 10.0,
    ) -> None:
        ws = settings.writer
        if (
            ws.batch_rows < 1
            or ws.queue_rows < 1
            or ws.memory_rows < 0
            or ws.batch_age <= 0
            or ws.connections < 1
        ):
            raise StorageError(
                "writer settings need batch_rows >= 1, queue_rows >= 1, memory_rows >= 0, "
                "batch_age > 0 and connections >= 1"
            )
        self._pool = pool
        self._id = uuid.uuid4()
        """This writer's commit-mark identity (``private.writer_progress.writer_id``)."""
        self._pruned = False
        self._workers = [
            CopyWorker(
                settings.require_database(), connect_kwargs(f"kalshibook-writer-{i}"), str(i)
            )
            for i in range(ws.connections)
        ]
        """One child process per flusher runs its transactions (see copyworker)."""
        self._inflight: set[str] = set()
        """Tables with a batch being written (at most one per table: per-table order)."""
        self._idle_flushers = 0
        """Flushers waiting for a batch: the intake cuts a due batch only for one of them."""
        self._batch_rows = ws.batch_rows
        self._batch_age = ws.batch_age
        self._memory_rows = ws.memory_rows
        self._retry_max = max(ws.retry_max, 0.01)
        self._connect_timeout = max(1.0, self._retry_max)
        self._spool_dir = Path(spool_dir) if spool_dir is not None else settings.spool_dir
        self._spool = Spool(self._spool_dir, self._id)
        self._close_timeout = close_timeout
        trigger = min(ws.batch_rows, ws.queue_rows)
        self._queues: dict[str, TableQueue] = {
            spec.name: TableQueue(spec, ws.queue_rows, trigger) for spec in ALL_TABLES
        }
        self._backlog: dict[str, deque[Batch]] = {spec.name: deque() for spec in ALL_TABLES}
        self._disk: dict[str, int] = dict.fromkeys(TABLES, 0)
        """Spooled batches per table (files pending)."""
        self._held_rows = 0
        self._recovered_pending = 0
        self._seq = 0
        self._down = False
        self._draining = 0
        self._open = True
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._wake = asyncio.Event()
        """Intake: a queue may be due, or the flusher finished a batch."""
        self._work = asyncio.Event()
        """Flush: a batch was added to a backlog."""
        self._progress = asyncio.Event()
        """Drain: a batch finished."""
        self._spool_retry_at = 0.0
        # counters
        self._written = dict.fromkeys(TABLES, 0)
        self._duplicate = dict.fromkeys(TABLES, 0)
        self._rejected = dict.fromkeys(TABLES, 0)
        self._done = dict.fromkeys(TABLES, 0)
        """Live rows committed or rejected, per table (for drain)."""
        self._retries = 0
        self._batches_written = 0
        self._last_commit_at: float | None = None
        self._spooled_total = 0
        self._replayed_total = 0
        self._spool_errors = 0
        self._latency = BatchLatency()
        self._last_error: str | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Writer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Load leftover spool files (replayed first) and start the flush task."""
        if self._task is not None or self._closed:
            raise WriterClosed("the writer was already started")
        await asyncio.to_thread(self._recover_spool)
        self._task = asyncio.create_task(self._run(), name="kalshibook-writer")
        self._task.add_done_callback(self._on_task_done)

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The flush task, for a supervisor that watches its children."""
        return self._task

    async def drain(self) -> None:
        """Wait until every row put before this call is committed (and spool files left by a
        previous process are replayed). Bound it with ``asyncio.timeout`` if needed: rows not
        written yet stay queued, held or spooled."""
        self._check_open()
        if self._task is None:
            raise WriterClosed("the writer is not started")
        targets = {name: q.rows_put for name, q in self._queues.items()}
        self._draining += 1
        self._wake.set()
        try:
            while not self._drained(targets):
                self._progress.clear()
                await self._progress.wait()
                self._check_failed()
        finally:
            self._draining -= 1

    async def close(self) -> None:
        """Drain (up to the close timeout), stop the flush task, spool what is left in memory.

        Raises :class:`WriterClosed` if the flush task had failed.
        """
        if self._closed:
            return
        try:
            if self._task is not None and not self._task.done():
                try:
                    async with asyncio.timeout(self._close_timeout):
                        await self.drain()
                except TimeoutError:
                    log.warning(
                        "writer: not drained after %.1f s; spooling the rest to %s",
                        self._close_timeout,
                        self._spool_dir,
                    )
        finally:
            self._open = False
            self._closed = True
            try:
                await self._stop_task()
            finally:
                # Synchronous on purpose: runs to the end even if we are being cancelled.
                self._spool_everything()
                self._wake_everyone()
                await asyncio.gather(*(w.close() for w in self._workers))
        if self._error is not None:
            raise WriterClosed(f"the writer failed: {describe(self._error)}") from self._error

    async def _stop_task(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():  # we were cancelled ourselves, not (only) the task
                raise
        except Exception:  # noqa: BLE001, S110 - recorded by _on_task_done, raised by close()
            pass

    # -- producers --------------------------------------------------------------------------

    async def put(self, table: str, row: Row) -> None:
        """Queue ``row`` for ``table``; waits while the table's queue is full (backpressure)."""
        q = self._put_fast(table, row)
        if q is not None:
            await self._put_slow(q, row)

    def put_nowait(self, table: str, row: Row) -> None:
        """Queue ``row`` for ``table`` or raise :class:`WriterFull` at once."""
        q = self._put_fast(table, row)
        if q is None:
            return
        self._check_open()
        self._check_row(q, row)
        self._wake.set()
        raise WriterFull(
            f"the writer queue of {table} is full ({q.limit} rows): the database is not "
            "keeping up; use `await put()` to wait"
        )

    def put_table_nowait(self, table: str, rows: Sequence[Row]) -> int:
        """Queue rows of ``table`` in order, as :meth:`put_nowait` would each, while they go
        straight in (writer open, known table, room, right width); returns how many were queued.
        The caller hands the rest, in order, to :meth:`put` (which waits for room or raises the
        precise error). The collector's per-burst call: one call per table, not per row."""
        q = self._queues.get(table)
        if q is None or not self._open or not rows:
            return 0
        queued = q.rows
        take = min(len(rows), q.limit - len(queued))
        if take <= 0:
            return 0
        ncols = q.ncols
        for i in range(take):
            if len(rows[i]) != ncols:
                take = i
                break
        if not take:
            return 0
        if not queued:
            q.first_at = time.monotonic()
            self._wake.set()
        before = len(queued)
        run = rows if take == len(rows) else rows[:take]
        queued.extend(run)
        if not q.segs and before:  # the rows queued one by one before it
            q.segs.append((before, None))
        q.segs.append((take, items_of(run)))
        q.rows_put += take
        if before < q.trigger <= len(queued):
            self._wake.set()
        return take

    async def put_many(self, table: str, rows: Iterable[Row]) -> None:
        """:meth:`put` for several rows of one table, in order."""
        for row in rows:
            await self.put(table, row)

    async def upsert_series(self, rows: Iterable[SeriesRow]) -> None:
        """Insert or update series (a null never erases a known value; ``raw`` is merged)."""
        await self.put_many("series", rows)

    async def upsert_events(self, rows: Iterable[EventRow]) -> None:
        """Insert or update events (a null never erases a known value; ``raw`` is merged)."""
        await self.put_many("events", rows)

    async def upsert_markets(self, rows: Iterable[MarketRow]) -> None:
        """Insert or update markets (a null never erases a known value; ``raw`` is merged)."""
        await self.put_many("markets", rows)

    async def upsert_settlement(self, row: SettlementRow) -> None:
        """Record a settlement: the WS lifecycle row first (``confirmed=False``), then the REST
        confirmation (``source='rest', confirmed=True``) which sets the value for good."""
        await self.put("settlements", row)

    def _put_fast(self, table: str, row: Row) -> TableQueue | None:
        """The fast path of :meth:`put` and :meth:`put_nowait`: queue ``row`` when the writer is
        open, the row has the table's width and the queue has room (``None``); otherwise queue
        nothing and return the table's queue for the caller's slow path."""
        q = self._queues.get(table)
        if q is None:
            raise StorageError(f"the writer has no table {table!r}")
        rows = q.rows
        if len(rows) < q.limit and self._open and len(row) == q.ncols:
            if not rows:
                q.first_at = time.monotonic()
                self._wake.set()
            rows.append(row)
            if q.segs:
                one_more(q.segs)
            q.rows_put += 1
            if len(rows) == q.trigger:
                self._wake.set()
            return None
        return q

    async def _put_slow(self, q: TableQueue, row: Row) -> None:
        self._check_open()
        self._check_row(q, row)
        q.waits += 1
        started = time.monotonic()
        try:
            while len(q.rows) >= q.limit:
                q.space.clear()
                self._wake.set()
                await q.space.wait()
                self._check_open()
        finally:
            q.blocked_seconds += time.monotonic() - started
        if not q.rows:
            q.first_at = time.monotonic()
            self._wake.set()
        q.rows.append(row)
        if q.segs:
            one_more(q.segs)
        q.rows_put += 1
        if len(q.rows) >= q.trigger:
            self._wake.set()

    @staticmethod
    def _check_row(q: TableQueue, row: Row) -> None:
        if len(row) != q.ncols:
            raise StorageError(
                f"a {q.spec.name} row has {q.ncols} values {q.spec.columns}, got {len(row)}"
            )

    def _check_failed(self) -> None:
        if self._error is not None:
            raise WriterClosed(f"the writer failed: {describe(self._error)}") from self._error

    def _check_open(self) -> None:
        self._check_failed()
        if not self._open:
            raise WriterClosed("the writer is closed")

    # -- stats ------------------------------------------------------------------------------

    def stats(self) -> WriterStats:
        tables: dict[str, TableStats] = {}
        for name, q in self._queues.items():
            backlog = self._backlog[name]
            tables[name] = TableStats(
                queue_depth=len(q.rows),
                queue_limit=q.limit,
                rows_put=q.rows_put,
                rows_written=self._written[name],
                rows_duplicate=self._duplicate[name],
                rows_rejected=self._rejected[name],
                rows_held=sum(b.n - b.done for b in backlog if b.rows is not None),
                batches_pending=len(backlog),
                producer_waits=q.waits,
                producer_blocked_seconds=q.blocked_seconds,
            )
        return WriterStats(
            tables=tables,
            database_up=not self._down,
            held_rows=self._held_rows,
            memory_rows=self._memory_rows,
            spool_files_pending=sum(self._disk.values()),
            spooled_batches_total=self._spooled_total,
            replayed_batches_total=self._replayed_total,
            spool_errors=self._spool_errors,
            retries=self._retries,
            batches_written=self._batches_written,
            last_commit_at=self._last_commit_at,
            worker_starts=sum(w.spawned for w in self._workers),
            batch_latency_last=self._latency.last,
            batch_latency=self._latency.snapshot(),
            last_error=self._last_error,
        )

    # -- the flush task ---------------------------------------------------------------------

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._intake_loop(), name="kalshibook-writer-intake")
            for i, worker in enumerate(self._workers):
                tg.create_task(self._flush_loop(worker), name=f"kalshibook-writer-flush-{i}")

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                    exc = exc.exceptions[0]
                self._error = exc
                self._open = False
                log.error("writer: flush task failed: %s", describe(exc), exc_info=exc)
        self._wake_everyone()

    def _wake_everyone(self) -> None:
        for q in self._queues.values():
            q.space.set()
        self._progress.set()

    def _drained(self, targets: dict[str, int]) -> bool:
        if self._recovered_pending:
            return False
        return all(self._done[name] >= n for name, n in targets.items())

    async def _intake_loop(self) -> None:
        """Cuts batches. A due batch (``batch_rows`` rows or ``batch_age`` old, or draining) is
        cut only when a flusher is free to take it, oldest rows first: while every flusher is
        busy the rows keep gathering, so under load each transaction carries more rows (group
        commit: PostgreSQL pays ~1-2 ms per COPY transaction into a hypertable, measured), and
        when the flushers are idle a due batch is cut at once (latency unchanged)."""
        while True:
            self._wake.clear()
            now = time.monotonic()
            timeout: float | None = None
            due: list[TableQueue] = []
            for name, q in self._queues.items():
                if not q.rows:
                    continue
                behind = self._down or self._disk[name] > 0
                if self._backlog[name] and not behind:
                    continue  # one batch in flight: let the queue fill (backpressure)
                n = len(q.rows)
                age_left = q.first_at + self._batch_age - now
                if n < q.trigger and age_left > 0 and not self._draining:
                    timeout = age_left if timeout is None else min(timeout, age_left)
                    continue
                if not behind:
                    due.append(q)
                    continue
                while n > 0 and q.rows:  # outage or replay: take everything that is due
                    n -= await self._cut_behind(q, now)
            if due:
                free = self._idle_flushers - sum(
                    1 for name, b in self._backlog.items() if b and name not in self._inflight
                )
                if free > 0:
                    due.sort(key=lambda q: q.first_at)
                    for q in due[:free]:
                        self._cut(q)
            if timeout is None:
                await self._wake.wait()
            else:
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    def _cut(self, q: TableQueue) -> Batch:
        rows, body = q.take(self._batch_rows)
        self._seq += 1
        batch = Batch(self._seq, q.spec, rows, len(rows), live=True, writer_id=self._id)
        batch.body = body
        self._held_rows += batch.n
        self._backlog[q.spec.name].append(batch)
        self._work.set()
        return batch

    async def _cut_behind(self, q: TableQueue, now: float) -> int:
        """Cut one batch while behind: in memory up to ``memory_rows``, else to a spool file."""
        n = min(len(q.rows), self._batch_rows)
        if self._held_rows + n <= self._memory_rows or now < self._spool_retry_at:
            return self._cut(q).n
        rows, _ = q.take(self._batch_rows)
        self._seq += 1
        batch = Batch(self._seq, q.spec, rows, len(rows), live=True, writer_id=self._id)
        try:
            batch.path = await asyncio.to_thread(self._spool.write, batch.seq, q.spec, rows)
        except SPOOL_ERRORS as exc:
            self._spool_errors += 1
            self._spool_retry_at = time.monotonic() + 5.0
            log.error(
                "writer: cannot spool a %s batch to %s (%s); holding it in memory",
                q.spec.name,
                self._spool_dir,
                describe(exc),
            )
            self._held_rows += batch.n
        else:
            batch.rows = None
            self._disk[q.spec.name] += 1
            self._spooled_total += 1
        self._backlog[q.spec.name].append(batch)
        self._work.set()
        return batch.n

    def _next_batch(self) -> Batch | None:
        """The oldest batch at the head of a table no other flusher is writing."""
        best: Batch | None = None
        inflight = self._inflight
        for name, backlog in self._backlog.items():
            if backlog and name not in inflight and (best is None or backlog[0].seq < best.seq):
                best = backlog[0]
        return best

    async def _flush_loop(self, worker: CopyWorker) -> None:
        """One of ``connections`` flushers: takes the oldest batch of a table that is not being
        written, writes it (retrying), and repeats."""
        while True:
            self._work.clear()
            batch = self._next_batch()
            if batch is None:
                self._idle_flushers += 1
                self._wake.set()  # the intake cuts due batches only for idle flushers
                try:
                    await self._work.wait()
                finally:
                    self._idle_flushers -= 1
                continue
            name = batch.spec.name
            self._inflight.add(name)
            # raises only when the writer is failing: the table then stays taken
            await self._flush(batch, worker)
            self._inflight.discard(name)
            self._work.set()  # a batch of this table may have been skipped meanwhile

    async def _flush(self, batch: Batch, worker: CopyWorker) -> None:
        """Write ``batch`` until it commits (retryable failures back off); then finish it."""
        backoff: Backoff | None = None
        while True:
            try:
                await self._write_batch(batch, worker)
            except Exception as exc:
                if not _is_retryable(exc):
                    raise
                if backoff is None:  # created on the first failure: nothing on the happy path
                    backoff = Backoff(_BACKOFF_INITIAL, self._retry_max)
                self._retries += 1
                self._last_error = describe(exc)
                if not self._down:
                    self._down = True
                    self._wake.set()
                    log.warning(
                        "writer: database write failed (%s); holding rows in memory "
                        "(up to %d) then spooling to %s, retrying",
                        self._last_error,
                        self._memory_rows,
                        self._spool_dir,
                    )
                await asyncio.sleep(backoff.next())
                continue
            if self._down:
                self._down = False
                log.warning(
                    "writer: database writes recovered after %d retries; %d spooled batches "
                    "to replay",
                    0 if backoff is None else backoff.attempt,
                    sum(self._disk.values()),
                )
            await self._finish(batch)
            return

    async def _finish(self, batch: Batch) -> None:
        name = batch.spec.name
        head = self._backlog[name].popleft()
        assert head is batch
        if batch.rows is not None:
            self._held_rows -= batch.n
        elif batch.path is not None:
            self._disk[name] -= 1
            self._replayed_total += 1
            try:
                await asyncio.to_thread(batch.path.unlink)
            except OSError as exc:
                log.error(
                    "writer: cannot delete replayed spool file %s (%s): it will be replayed "
                    "again on the next start",
                    batch.path,
                    describe(exc),
                )
        if batch.live:
            self._done[name] += batch.n
        else:
            self._recovered_pending -= 1
        self._batches_written += 1
        self._last_commit_at = time.time()
        self._progress.set()
        self._wake.set()

    async def _write_batch(self, batch: Batch, worker: CopyWorker) -> None:
        rows = batch.rows
        if rows is None:
            assert batch.path is not None
            try:
                loaded, writer_id, offset = await asyncio.to_thread(
                    Spool.read, batch.path, batch.spec
                )
            except READ_ERRORS as exc:
                await self._quarantine(batch, exc)
                return
            rows = loaded
            batch.n = len(rows)
            if not batch.live:
                batch.writer_id, batch.offset = writer_id, offset
        started = time.perf_counter()
        if not self._pruned:
            self._pruned = True  # once per process, by whichever flusher comes first
            async with self._pool.connection(timeout=self._connect_timeout) as conn:
                await self._prune(conn)
        await self._write_isolating(worker, batch, rows)
        self._latency.observe(time.perf_counter() - started)

    async def _prune(self, conn: AsyncConnection[Any]) -> None:
        async with conn.transaction():
            await conn.execute(PRUNE_PROGRESS, {"days": PROGRESS_RETENTION_DAYS})

    async def _write_isolating(self, worker: CopyWorker, batch: Batch, rows: list[Row]) -> None:
        """Write ``rows[batch.done:]``; bisect around rows the database refuses as invalid."""
        spec = batch.spec
        pending = [(batch.done, len(rows))]
        while pending:
            lo, hi = pending.pop()
            if lo >= hi:
                continue
            part = rows if lo == 0 and hi == len(rows) else rows[lo:hi]
            mark = None
            if spec.mode == "copy" and batch.writer_id is not None:
                mark = {
                    "writer_id": str(batch.writer_id),
                    "table": spec.name,
                    "seq": batch.seq,
                    "start": batch.offset + lo,
                    "done": batch.offset + hi,
                }
            body = batch.body if part is rows and rows is batch.rows else None
            try:
                inserted, skipped = await self._write_rows(worker, spec, part, mark, body)
            except Exception as exc:
                if not _is_data_error(exc):
                    raise
                if hi - lo == 1:
                    await self._reject(spec, part[0], exc)
                    batch.done = hi
                else:
                    mid = (lo + hi) // 2
                    pending.append((mid, hi))
                    pending.append((lo, mid))
                continue
            batch.done = hi
            if skipped:
                log.warning(
                    "writer: %d %s rows of batch %d were committed already (late commit "
                    "acknowledgement or replayed spool file); not written again",
                    skipped,
                    spec.name,
                    batch.seq,
                )
            # Rows this process committed but saw no acknowledgement for count as written;
            # rows a previous process committed (replayed spool) as duplicates.
            self._written[spec.name] += inserted + (skipped if batch.live else 0)
            self._duplicate[spec.name] += len(part) - inserted - (skipped if batch.live else 0)

    async def _write_rows(
        self,
        worker: CopyWorker,
        spec: TableSpec,
        rows: Sequence[Row],
        mark: dict[str, Any] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, int]:
        """One transaction, in ``worker``'s process: ``(rows inserted, rows skipped because the
        commit mark shows them committed before)`` (see :func:`copyworker.write_rows`).
        ``body``: ``rows`` already msgpack-encoded."""
        if body is None:
            try:
                body = encoder.encode(rows)
            except msgspec.EncodeError as exc:
                raise ValueError(f"a {spec.name} row cannot be encoded: {exc}") from None
        return await worker.write(spec.name, mark, body)

    async def _reject(self, spec: TableSpec, row: Row, exc: BaseException) -> None:
        self._rejected[spec.name] += 1
        reason = describe(exc)
        log.error("writer: %s row rejected by the database (%s): %r", spec.name, reason, row)
        line = rejected_line(spec.name, row, reason)
        try:
            await asyncio.to_thread(self._spool.append_rejected, spec.name, line)
        except OSError as e:
            log.error("writer: cannot record the rejected row: %s", describe(e))

    async def _quarantine(self, batch: Batch, exc: BaseException) -> None:
        """A spool file that cannot be read: move it aside, never delete it."""
        assert batch.path is not None
        log.error("writer: unreadable spool file %s (%s); moved aside", batch.path, describe(exc))
        self._spool_errors += 1
        try:
            await asyncio.to_thread(self._spool.quarantine, batch.path)
        except OSError as e:
            log.error("writer: cannot move %s aside: %s", batch.path, describe(e))
        batch.path = None  # nothing to delete when the flush loop finishes the batch
        self._disk[batch.spec.name] -= 1

    # -- spool files (blocking: run in a thread, or on close synchronously) -------------------

    def _recover_spool(self) -> None:
        """Queue leftover spool files (oldest first) ahead of everything else."""
        found = self._spool.recover()
        for seq, spec, path in found:
            self._backlog[spec.name].append(
                Batch(seq, spec, None, 0, live=False, writer_id=None, path=path)
            )
            self._disk[spec.name] += 1
            self._recovered_pending += 1
            self._seq = max(self._seq, seq)
        if found:
            log.warning("writer: replaying %d spool files left in %s", len(found), self._spool_dir)

    def _spool_everything(self) -> None:
        """On close: every batch still in memory, then every queued row, to spool files."""
        count = 0
        rows_total = 0
        for name, backlog in self._backlog.items():
            spec = TABLES[name]
            for batch in backlog:
                if batch.rows is None:
                    continue
                rows = batch.rows[batch.done :]
                if rows:
                    self._spool_sync(batch.seq, spec, rows, batch.offset + batch.done)
                    count += 1
                    rows_total += len(rows)
                self._held_rows -= batch.n
                batch.rows = None
            backlog.clear()
        for q in self._queues.values():
            while q.rows:
                rows, _ = q.take(self._batch_rows)
                self._seq += 1
                self._spool_sync(self._seq, q.spec, rows)
                count += 1
                rows_total += len(rows)
        if count:
            log.warning(
                "writer: spooled %d rows in %d batches to %s; they are written on the next start",
                rows_total,
                count,
                self._spool_dir,
            )

    def _spool_sync(self, seq: int, spec: TableSpec, rows: Sequence[Row], offset: int = 0) -> None:
        try:
            self._spool.write(seq, spec, rows, offset)
        except SPOOL_ERRORS as exc:
            log.critical(
                "writer: LOST %d %s rows: cannot spool them to %s (%s)",
                len(rows),
                spec.name,
                self._spool_dir,
                describe(exc),
            )
        else:
            self._spooled_total += 1
