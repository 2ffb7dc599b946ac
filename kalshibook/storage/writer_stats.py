"""The writer's statistics: what :meth:`kalshibook.storage.writer.Writer.stats` returns.

Plain frozen structs (the collector's status and metrics read them) and the batch-latency
histogram the flushers feed, one observation per batch.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = ("LATENCY_BUCKETS", "BatchLatency", "LatencyHistogram", "TableStats", "WriterStats")

LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the batch-latency histogram; a final +Inf bucket is implied."""


class LatencyHistogram(msgspec.Struct, frozen=True, kw_only=True):
    """Prometheus-style histogram: ``counts[i]`` = batches with latency <= ``bounds[i]``
    (cumulative), ``count`` = all batches (the +Inf bucket)."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    sum: float


class TableStats(msgspec.Struct, frozen=True, kw_only=True):
    queue_depth: int
    queue_limit: int
    rows_put: int
    rows_written: int
    """Rows committed (for dedupe tables: rows actually inserted)."""
    rows_duplicate: int
    """Rows not inserted again: duplicates of a dedupe table, or rows a replayed spool file
    carried that its commit mark shows committed already."""
    rows_rejected: int
    """Rows the database refused as invalid, kept in ``rejected/<table>.jsonl``."""
    rows_held: int
    """Rows cut from the queue and held in memory, not yet committed."""
    batches_pending: int
    """Batches waiting to be written, in memory or spooled."""
    producer_waits: int
    """Times a producer found the queue full and waited (backpressure)."""
    producer_blocked_seconds: float


class WriterStats(msgspec.Struct, frozen=True, kw_only=True):
    tables: dict[str, TableStats]
    database_up: bool
    held_rows: int
    memory_rows: int
    spool_files_pending: int
    spooled_batches_total: int
    replayed_batches_total: int
    spool_errors: int
    retries: int
    batches_written: int
    last_commit_at: float | None
    """Unix time the writer last finished a batch (committed; or, rarely, set aside as rejected
    rows or an unreadable spool file); None before the first."""
    worker_starts: int
    """COPY worker processes started (one per flusher at first use; more = workers replaced)."""
    batch_latency_last: float | None
    batch_latency: LatencyHistogram
    last_error: str | None


class BatchLatency:
    """Batch latencies observed so far, in :data:`LATENCY_BUCKETS` (not cumulative)."""

    __slots__ = ("buckets", "count", "last", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.count = 0
        self.sum = 0.0
        self.last: float | None = None

    def observe(self, seconds: float) -> None:
        self.last = seconds
        self.count += 1
        self.sum += seconds
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
                break

    def snapshot(self) -> LatencyHistogram:
        cumulative: list[int] = []
        total = 0
        for n in self.buckets:
            total += n
            cumulative.append(total)
        return LatencyHistogram(
            bounds=LATENCY_BUCKETS, counts=tuple(cumulative), count=self.count, sum=self.sum
        )
