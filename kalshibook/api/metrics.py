"""In-process Prometheus metrics of the API, exposed by ``prometheus_client`` (text format 0.0.4).

Labels are the route template (``/v1/markets/{ticker:str}/trades``), never the raw path, so the
series count stays bounded; no key material is ever a label. Each app has its own registry (tests
build many apps in one process).

Litestar's Prometheus plugin is not used: its metrics live in the process-global registry, its
labels are fixed (``path``, ``status_code``, ``app_name`` on the histogram too), and it has no
credit or auth-rejection counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ("BUCKETS", "ApiMetrics")

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    """The API's request, latency, credit and auth-rejection metrics, in one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "kalshibook_api_requests",
            "HTTP requests served, by route and status.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "kalshibook_api_request_duration_seconds",
            "Time to serve a request.",
            ("route",),
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.credits = Counter(
            "kalshibook_api_credits_spent",
            "Credits charged to API keys.",
            ("route",),
            registry=self.registry,
        )
        self.rejected = Counter(
            "kalshibook_api_auth_rejections",
            "Requests refused by authentication.",
            ("reason",),
            registry=self.registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float, credits: int) -> None:
        self.requests.labels(route, method, str(status)).inc()
        if credits:
            self.credits.labels(route).inc(credits)
        self.duration.labels(route).observe(seconds)

    def reject(self, reason: str) -> None:
        """Count a request refused by auth (unauthorized, out_of_credits, rate_limited)."""
        self.rejected.labels(reason).inc()

    def render(self) -> str:
        return generate_latest(self.registry).decode()
