"""Collector metrics: the prometheus-client exposition and the asyncio /metrics + /health server."""

from __future__ import annotations

import asyncio
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kalshibook.collector.metrics import Counter, Gauge, Histogram, Metrics, MetricsServer


def families(text: str) -> dict[str, tuple[str, str, list[tuple[str, dict[str, str], float]]]]:
    return {
        f.name: (f.type, f.documentation, [(s.name, s.labels, s.value) for s in f.samples])
        for f in text_string_to_metric_families(text)
    }


def test_exposition_names_types_help_and_values() -> None:
    m = Metrics()
    m.gaps.inc(2.0, "disconnect")
    m.router_errors.inc()
    for v in (0.1, 0.2, 0.3, 0.4):
        m.lag.observe(v, "trade")
    m.add_gauge(
        "ws_frames_by_type_total", "frames decoded, by type", lambda: {("trade",): 7.0}, ["type"]
    )
    m.add_gauge("books", "live order books", lambda: 3.0)
    m.add(
        Histogram(
            "kalshibook_collector_writer_batch_latency_seconds",
            "time to write and commit one batch",
            lambda: ((0.01, 0.1), (1, 3), 4, 0.25),
        )
    )
    text = m.render()
    assert "# HELP kalshibook_collector_gaps_total book_gaps rows written\n" in text
    assert "# TYPE kalshibook_collector_gaps_total counter\n" in text
    assert "# TYPE kalshibook_collector_ws_frames_by_type_total counter\n" in text
    assert "# TYPE kalshibook_collector_books gauge\n" in text
    f = families(text)
    p = "kalshibook_collector_"
    assert f[p + "gaps"][2] == [(p + "gaps_total", {"reason": "disconnect"}, 2.0)]
    assert f[p + "router_errors"][2] == [(p + "router_errors_total", {}, 1.0)]
    assert f[p + "seq_gaps"][2] == []  # labelled and never incremented: header only
    lag_type, lag_help, lag = f[p + "lag_seconds"]
    assert (lag_type, lag_help) == ("summary", "receive time minus exchange time of data frames")
    assert (p + "lag_seconds", {"type": "trade", "quantile": "0.5"}, 0.2) in lag
    assert (p + "lag_seconds", {"type": "trade", "quantile": "0.99"}, 0.4) in lag
    assert (p + "lag_seconds_count", {"type": "trade"}, 4.0) in lag
    assert f[p + "ws_frames_by_type"][2] == [
        (p + "ws_frames_by_type_total", {"type": "trade"}, 7.0)
    ]
    assert f[p + "books"] == ("gauge", "live order books", [(p + "books", {}, 3.0)])
    hist = f[p + "writer_batch_latency_seconds"]
    assert hist[0] == "histogram"
    buckets = [(s[1]["le"], s[2]) for s in hist[2] if s[0].endswith("_bucket")]
    assert buckets == [("0.01", 1.0), ("0.1", 3.0), ("+Inf", 4.0)]


def test_failing_gauge_callback_exports_header_only() -> None:
    m = Metrics()

    def boom() -> float:
        raise RuntimeError("x")

    m.add_gauge("broken", "a broken gauge", boom)
    assert families(m.render())["kalshibook_collector_broken"][2] == []


def test_duplicates_and_bad_counter_names_are_rejected() -> None:
    m = Metrics()
    m.add_gauge("books", "live order books", lambda: 1.0)
    with pytest.raises(ValueError, match="books"):
        m.add_gauge("books", "again", lambda: 1.0)
    with pytest.raises(ValueError, match="_total"):
        Counter("kalshibook_collector_things", "no suffix")
    with pytest.raises(ValueError, match="_total"):
        Gauge("kalshibook_collector_things", "no suffix", lambda: 1.0, kind="counter")


async def _get(port: int, path: str, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(x.split(": ", 1) for x in lines[1:])
    return lines[0], headers, body


async def test_server_metrics_health_and_clean_stop() -> None:
    threads = threading.active_count()
    m = Metrics()
    healthy = [True]
    server = MetricsServer("127.0.0.1", 0, m.render, lambda: (healthy[0], '{"status":"x"}'))
    stop = asyncio.Event()
    task = asyncio.create_task(server.serve(stop))
    for _ in range(100):
        if server.bound_port:
            break
        await asyncio.sleep(0.01)
    port = server.bound_port
    status, headers, body = await _get(port, "/metrics")
    assert status == "HTTP/1.1 200 OK"
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert body.decode() == m.render()
    assert (await _get(port, "/health"))[0] == "HTTP/1.1 200 OK"
    healthy[0] = False
    status, headers, body = await _get(port, "/health")
    assert (status, headers["Content-Type"], body) == (
        "HTTP/1.1 503 Service Unavailable",
        "application/json",
        b'{"status":"x"}\n',
    )
    status, headers, body = await _get(port, "/metrics", "HEAD")
    assert (status, body) == ("HTTP/1.1 200 OK", b"")
    assert int(headers["Content-Length"]) > 0
    assert (await _get(port, "/nope"))[0] == "HTTP/1.1 404 Not Found"
    assert (await _get(port, "/metrics", "POST"))[0] == "HTTP/1.1 405 Method Not Allowed"
    assert threading.active_count() == threads
    stop.set()
    await asyncio.wait_for(task, 5)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
