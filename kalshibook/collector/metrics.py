"""Prometheus metrics for the collector (on ``prometheus-client``) and a tiny asyncio HTTP server
for ``/metrics`` and ``/health``.

Why this shape: the collector's per-frame path (router, WebSocket session) bumps counters and
observes lag for every data frame, at 100k+ frames/s. ``prometheus_client``'s own ``Counter`` and
``Summary`` take a lock and walk a labels/child lookup on every ``inc``/``observe``, which would
add per-frame work. So the hot path keeps touching only plain Python state (``Counter.values`` is
a ``dict[labels, float]`` incremented in place; ``Summary`` keeps a bounded ring of recent
samples; everything else is a callback over stats objects that other modules already keep), and
each metric here is a ``prometheus_client`` *custom collector* that turns that state into
``CounterMetricFamily``/``GaugeMetricFamily``/``SummaryMetricFamily``/``HistogramMetricFamily``
only when scraped. The families live on a private ``CollectorRegistry`` per :class:`Metrics`
(never the process-global one, so tests and several collectors in one process do not collide),
rendered by ``generate_latest``; registration rejects duplicate names. The HTTP side stays an
``asyncio`` server on the daemon's loop (no extra thread), which also answers ``/health``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

__all__ = (
    "Counter",
    "Gauge",
    "Histogram",
    "Metrics",
    "MetricsServer",
    "Registry",
    "Summary",
)

log = logging.getLogger(__name__)

Labels = tuple[str, ...]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""What :func:`prometheus_client.generate_latest` produces (Prometheus text format 0.0.4)."""


def _require_total(name: str) -> None:
    # CounterMetricFamily exports ``<name>_total``: a name without the suffix would change.
    if not name.endswith("_total"):
        raise ValueError(f"counter name must end in _total: {name}")


class _Metric(Collector):
    """One metric family: a ``prometheus_client`` collector over plain in-process state."""

    kind: str = "untyped"

    def __init__(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames: tuple[str, ...] = tuple(labelnames)

    def _family(self) -> Metric:
        """An empty family of this metric's name, type and labels."""
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.help, labels=self.labelnames)
        if self.kind == "gauge":
            return GaugeMetricFamily(self.name, self.help, labels=self.labelnames)
        if self.kind == "summary":
            return SummaryMetricFamily(self.name, self.help, labels=self.labelnames)
        return HistogramMetricFamily(self.name, self.help, labels=self.labelnames)

    def describe(self) -> Iterable[Metric]:
        """Name and type only (no callback runs), so registration can reject duplicates."""
        return [self._family()]

    def collect(self) -> Iterable[Metric]:  # pragma: no cover - overridden
        raise NotImplementedError


class Counter(_Metric):
    """A monotonically increasing counter. ``values`` may be incremented directly on hot paths."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Iterable[str] = ()) -> None:
        _require_total(name)
        super().__init__(name, help_text, labelnames)
        self.values: dict[Labels, float] = {}
        if not self.labelnames:
            self.values[()] = 0.0

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        v = self.values
        v[labels] = v.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def total(self) -> float:
        return sum(self.values.values())

    def collect(self) -> Iterable[Metric]:
        fam = CounterMetricFamily(self.name, self.help, labels=self.labelnames)
        for k, v in sorted(self.values.items()):
            fam.add_metric(k, v)
        return [fam]


class Gauge(_Metric):
    """A value read at scrape time from a callback returning ``{labels: value}`` or a number.

    ``kind="counter"`` exports it as a counter (a cumulative count kept elsewhere, e.g. by the
    WebSocket client or the writer; its name must end in ``_total``)."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        fn: Callable[[], float | dict[Labels, float]],
        labelnames: Iterable[str] = (),
        kind: str = "gauge",
    ) -> None:
        if kind not in ("gauge", "counter"):
            raise ValueError(f"gauge kind must be 'gauge' or 'counter', not {kind!r}")
        if kind == "counter":
            _require_total(name)
        super().__init__(name, help_text, labelnames)
        self.fn = fn
        self.kind = kind

    def collect(self) -> Iterable[Metric]:
        fam: CounterMetricFamily | GaugeMetricFamily
        if self.kind == "counter":
            fam = CounterMetricFamily(self.name, self.help, labels=self.labelnames)
        else:
            fam = GaugeMetricFamily(self.name, self.help, labels=self.labelnames)
        try:
            got = self.fn()
        except Exception:
            log.exception("metric=%s gauge callback failed", self.name)
            return [fam]  # HELP/TYPE without samples, as before
        if isinstance(got, dict):
            for k, v in sorted(got.items()):
                fam.add_metric(k, v)
        else:
            fam.add_metric((), float(got))
        return [fam]


class Summary(_Metric):
    """Count, sum and quantiles of the last ``window`` observations (per label set)."""

    kind = "summary"
    QUANTILES: Final = (0.5, 0.9, 0.99)

    def __init__(
        self, name: str, help_text: str, labelnames: Iterable[str] = (), window: int = 4096
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self.window = window
        self._rings: dict[Labels, list[float]] = {}
        self._pos: dict[Labels, int] = {}
        self._count: dict[Labels, int] = {}
        self._sum: dict[Labels, float] = {}

    def observe(self, value: float, *labels: str) -> None:
        ring = self._rings.get(labels)
        if ring is None:
            ring = self._rings[labels] = []
            self._pos[labels] = 0
            self._count[labels] = 0
            self._sum[labels] = 0.0
        if len(ring) < self.window:
            ring.append(value)
        else:
            pos = self._pos[labels]
            ring[pos] = value
            self._pos[labels] = (pos + 1) % self.window
        self._count[labels] += 1
        self._sum[labels] += value

    def count(self, *labels: str) -> int:
        return self._count.get(labels, 0)

    def collect(self) -> Iterable[Metric]:
        fam = SummaryMetricFamily(self.name, self.help, labels=self.labelnames)
        for labels in sorted(self._rings):
            ring = sorted(self._rings[labels])
            base = dict(zip(self.labelnames, labels, strict=True))
            for q in self.QUANTILES:
                idx = min(len(ring) - 1, max(0, math.ceil(q * len(ring)) - 1))
                fam.add_sample(self.name, {**base, "quantile": str(q)}, ring[idx])
            fam.add_sample(self.name + "_sum", base, self._sum[labels])
            fam.add_sample(self.name + "_count", base, self._count[labels])
        return [fam]


class Histogram(_Metric):
    """A histogram read at scrape time: ``fn() -> (bounds, cumulative counts, count, sum)``."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        fn: Callable[[], tuple[tuple[float, ...], tuple[int, ...], int, float]],
    ) -> None:
        super().__init__(name, help_text)
        self.fn = fn

    def collect(self) -> Iterable[Metric]:
        bounds, counts, count, total = self.fn()
        buckets: list[tuple[str, float]] = [
            (f"{b:g}", c) for b, c in zip(bounds, counts, strict=True)
        ]
        buckets.append(("+Inf", count))
        return [HistogramMetricFamily(self.name, self.help, buckets=buckets, sum_value=total)]


class Registry:
    """The metrics of one exporter, in registration order, on a private ``CollectorRegistry``."""

    def __init__(self) -> None:
        self.collector_registry = CollectorRegistry(auto_describe=False)

    def add(self, metric: _Metric) -> None:
        """Register ``metric``; raises ``ValueError`` if one of its names is already taken."""
        self.collector_registry.register(metric)

    def render(self) -> str:
        return generate_latest(self.collector_registry).decode()


class Metrics:
    """Every metric the collector exports (``kalshibook_collector_*``)."""

    def __init__(self) -> None:
        p = "kalshibook_collector_"
        self.registry = Registry()
        self.router_errors = Counter(
            p + "router_errors_total", "items the router failed on (logged and skipped)"
        )
        self.lag = Summary(
            p + "lag_seconds", "receive time minus exchange time of data frames", ["type"]
        )
        self.gaps = Counter(p + "gaps_total", "book_gaps rows written", ["reason"])
        self.seq_gaps = Counter(p + "seq_gaps_total", "sequence gaps detected", ["channel"])
        self.reconnects = Counter(
            p + "reconnects_total", "WebSocket (re)connections after the first"
        )
        self.resubscribes = Counter(p + "resubscribes_total", "subscriptions renewed", ["reason"])
        self.snapshots_requested = Counter(
            p + "snapshot_requests_total", "get_snapshot commands sent"
        )
        self.rest_requests = Counter(p + "rest_requests_total", "REST requests", ["kind"])
        self.backfilled_trades = Counter(p + "backfill_trades_total", "trades fetched by backfill")
        self.settlements_confirmed = Counter(
            p + "settlements_confirmed_total", "settlements confirmed over REST"
        )
        self.checkpoints = Counter(p + "checkpoints_total", "checkpoint snapshots written")
        for m in (
            self.router_errors,
            self.lag,
            self.gaps,
            self.seq_gaps,
            self.reconnects,
            self.resubscribes,
            self.snapshots_requested,
            self.rest_requests,
            self.backfilled_trades,
            self.settlements_confirmed,
            self.checkpoints,
        ):
            self.registry.add(m)

    def add_gauge(
        self,
        name: str,
        help_text: str,
        fn: Callable[[], float | dict[Labels, float]],
        labelnames: Iterable[str] = (),
    ) -> Gauge:
        """A gauge; names ending in ``_total`` are rendered as counters."""
        kind = "counter" if name.endswith("_total") else "gauge"
        g = Gauge("kalshibook_collector_" + name, help_text, fn, labelnames, kind)
        self.registry.add(g)
        return g

    def add(self, metric: _Metric) -> None:
        self.registry.add(metric)

    def render(self) -> str:
        return self.registry.render()


class MetricsServer:
    """``GET /metrics`` (Prometheus text 0.0.4) and ``GET /health`` (JSON; 200 or 503).

    Deliberately minimal: one request per connection, ``Connection: close``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        render: Callable[[], str],
        health: Callable[[], tuple[bool, str]],
    ) -> None:
        self.host = host
        self.port = port
        self._render = render
        self._health = health
        self._server: asyncio.Server | None = None

    @property
    def bound_port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self.port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        log.info("metrics server listening host=%s port=%d", self.host, self.bound_port)

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set."""
        if self._server is None:
            await self.start()
        try:
            await stop.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5.0)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split()
            method = parts[0] if parts else ""
            path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
            if method not in ("GET", "HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain", "method not allowed\n"
            elif path == "/metrics":
                status, ctype, body = "200 OK", CONTENT_TYPE, self._render()
            elif path == "/health":
                ok, detail = self._health()
                status = "200 OK" if ok else "503 Service Unavailable"
                ctype, body = "application/json", detail + "\n"
            else:
                status, ctype, body = "404 Not Found", "text/plain", "not found\n"
            data = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            if method != "HEAD":
                writer.write(data)
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
