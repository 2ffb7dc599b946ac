"""The collector's gauges: read at scrape time from the WebSocket, REST, writer and router stats.

Counters kept by the components themselves are exported as gauges (``*_total`` names) so the hot
path never touches a metric object; ``writer.stats()`` is computed at most once per scrape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kalshibook.collector.metrics import Histogram, Metrics
from kalshibook.collector.router import Router
from kalshibook.collector.work import WorkQueues
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.kalshi.ws import KalshiWebSocket
from kalshibook.storage.writer import Writer

__all__ = ("CachedStats", "register_gauges")


class CachedStats:
    """``writer.stats()`` computed at most once per scrape (many gauges read it)."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._at = 0.0
        self._stats: Any = None

    def stats(self) -> Any:
        now = time.monotonic()
        if self._stats is None or now - self._at > 0.05:
            self._stats = self._writer.stats()
            self._at = now
        return self._stats


def register_gauges(
    m: Metrics,
    *,
    ws: KalshiWebSocket,
    rest: KalshiRest,
    router: Router,
    writer: Writer,
    work: WorkQueues,
    ws_queue_depth: Callable[[], float],
) -> None:
    """Register the collector's gauges (names unchanged: dashboards depend on them)."""
    stats = CachedStats(writer)

    def frames() -> dict[tuple[str, ...], float]:
        d = ws.stats.decode
        out: dict[tuple[str, ...], float] = {(k,): float(v) for k, v in d.by_type.items()}
        for k, v in d.unknown_types.items():
            out[(f"unknown:{k}",)] = float(v)
        return out

    m.add_gauge("ws_frames_by_type_total", "frames decoded, by type", frames, ["type"])
    m.add_gauge(
        "ws_frames_received_total",
        "WebSocket messages received",
        lambda: float(ws.stats.frames),
    )
    m.add_gauge(
        "ws_decode_errors_total",
        "frames that failed to decode (skipped)",
        lambda: float(ws.stats.decode_errors),
    )
    m.add_gauge(
        "ws_stale_frames_total", "duplicate/old frames dropped", lambda: float(ws.stats.stale)
    )
    m.add_gauge("ws_connects_total", "WebSocket connections made", lambda: float(ws.stats.connects))
    m.add_gauge(
        "ws_silence_timeouts_total",
        "connections closed by the silence watchdog",
        lambda: float(ws.stats.silence_timeouts),
    )
    m.add_gauge(
        "ws_queue_high_water",
        "highest decoded-frame buffer depth",
        lambda: float(ws.stats.queue_high_water),
    )
    m.add_gauge(
        "ws_read_pauses_total",
        "times the socket was not read because the frame buffer was full (backpressure)",
        lambda: float(ws.stats.read_pauses),
    )
    m.add_gauge(
        "ws_queue_depth",
        "decoded frames waiting for the router",
        ws_queue_depth,
    )
    m.add_gauge(
        "rest_requests_sent_total",
        "REST requests sent (incl. retries)",
        lambda: float(rest.stats.requests),
    )
    m.add_gauge("rest_retries_sent_total", "REST retries", lambda: float(rest.stats.retries))
    m.add_gauge("rest_http_429_total", "REST 429 answers", lambda: float(rest.stats.http_429))
    m.add_gauge(
        "rest_items_rejected_total",
        "REST list items (markets, events, an event's markets) left out as undecodable; each "
        "is logged",
        lambda: float(rest.stats.rejected_items),
    )
    m.add_gauge(
        "rest_throttled_seconds_total",
        "seconds waited for the REST token bucket",
        lambda: rest.stats.throttled_s,
    )

    def table_stat(attr: str) -> Callable[[], dict[tuple[str, ...], float]]:
        def read() -> dict[tuple[str, ...], float]:
            return {(k,): float(getattr(v, attr)) for k, v in stats.stats().tables.items()}

        return read

    m.add_gauge("writer_queue_depth", "rows queued per table", table_stat("queue_depth"), ["table"])
    m.add_gauge(
        "writer_rows_put_total", "rows handed to the writer", table_stat("rows_put"), ["table"]
    )
    m.add_gauge(
        "writer_rows_written_total", "rows committed", table_stat("rows_written"), ["table"]
    )
    m.add_gauge(
        "writer_rows_duplicate_total",
        "rows skipped as duplicates",
        table_stat("rows_duplicate"),
        ["table"],
    )
    m.add_gauge(
        "writer_rows_rejected_total",
        "rows refused by the database",
        table_stat("rows_rejected"),
        ["table"],
    )
    m.add_gauge(
        "writer_producer_waits_total",
        "times a producer waited on a full queue",
        table_stat("producer_waits"),
        ["table"],
    )
    m.add_gauge(
        "writer_held_rows",
        "rows held in memory (not committed)",
        lambda: float(stats.stats().held_rows),
    )
    m.add_gauge(
        "writer_spool_files",
        "spool files waiting for replay",
        lambda: float(stats.stats().spool_files_pending),
    )
    m.add_gauge(
        "writer_database_up",
        "1 when the last write succeeded",
        lambda: 1.0 if stats.stats().database_up else 0.0,
    )
    m.add_gauge(
        "writer_batches_total",
        "batches committed",
        lambda: float(stats.stats().batches_written),
    )
    m.add_gauge(
        "writer_last_commit_timestamp_seconds",
        "Unix time the last batch committed (0 before the first): write freshness",
        lambda: stats.stats().last_commit_at or 0.0,
    )

    def latency() -> tuple[tuple[float, ...], tuple[int, ...], int, float]:
        h = stats.stats().batch_latency
        return h.bounds, h.counts, h.count, h.sum

    m.add(
        Histogram(
            "kalshibook_collector_writer_batch_latency_seconds",
            "time to write and commit one batch",
            latency,
        )
    )
    m.add_gauge(
        "writer_batch_latency_seconds_last",
        "latency of the last batch",
        lambda: stats.stats().batch_latency_last or 0.0,
    )
    m.add_gauge(
        "writer_retries_total",
        "failed batch writes retried",
        lambda: float(stats.stats().retries),
    )
    m.add_gauge(
        "writer_worker_starts_total",
        "COPY worker processes started (beyond one per writer connection: replaced)",
        lambda: float(stats.stats().worker_starts),
    )
    m.add_gauge("books", "live order books", lambda: float(router.book_count))
    m.add_gauge(
        "books_dirty",
        "books waiting for a snapshot after a gap",
        lambda: float(router.dirty_count()),
    )
    m.add_gauge(
        "deltas_dropped_total",
        "deltas not applied (no snapshot yet / dirty)",
        lambda: float(router.dropped_deltas),
    )
    m.add_gauge(
        "router_unknown_items_total",
        "decoded frames of a type the router does not record (skipped)",
        lambda: float(router.unknown_frames),
    )
    m.add_gauge(
        "router_control_errors_total",
        "error frames that end no subscription (logged)",
        lambda: float(router.control_errors),
    )
    m.add_gauge("work_queue_depth", "pending background work", work.depth, ["queue"])
