"""In-process Prometheus metrics of the API (text exposition format 0.0.4).

Labels are the route template (``/v1/markets/{ticker:str}/trades``), never the raw path, so the
series count stays bounded; no key material is ever a label.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

__all__ = ("ApiMetrics",)

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ApiMetrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.credits: dict[str, int] = defaultdict(int)
        self.rejected: dict[str, int] = defaultdict(int)
        self._hist: dict[str, list[int]] = {}
        self._sum: dict[str, float] = defaultdict(float)
        self._count: dict[str, int] = defaultdict(int)

    def observe(self, route: str, method: str, status: int, seconds: float, credits: int) -> None:
        self.requests[(route, method, status)] += 1
        if credits:
            self.credits[route] += credits
        counts = self._hist.get(route)
        if counts is None:
            counts = self._hist[route] = [0] * (len(BUCKETS) + 1)
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self._sum[route] += seconds
        self._count[route] += 1

    def reject(self, reason: str) -> None:
        """Count a request refused by auth (unauthorized, out_of_credits, rate_limited)."""
        self.rejected[reason] += 1

    def render(self) -> str:
        out: list[str] = [
            "# HELP kalshibook_api_requests_total HTTP requests served, by route and status.",
            "# TYPE kalshibook_api_requests_total counter",
        ]
        for (route, method, status), n in sorted(self.requests.items()):
            out.append(
                f'kalshibook_api_requests_total{{route="{_escape(route)}",method="{method}",'
                f'status="{status}"}} {n}'
            )
        out += [
            "# HELP kalshibook_api_request_duration_seconds Time to serve a request.",
            "# TYPE kalshibook_api_request_duration_seconds histogram",
        ]
        for route, counts in sorted(self._hist.items()):
            label = _escape(route)
            cumulative = 0
            for bound, n in zip(BUCKETS, counts, strict=False):
                cumulative += n
                out.append(
                    f'kalshibook_api_request_duration_seconds_bucket{{route="{label}",'
                    f'le="{bound}"}} {cumulative}'
                )
            cumulative += counts[-1]
            out.append(
                f'kalshibook_api_request_duration_seconds_bucket{{route="{label}",le="+Inf"}} '
                f"{cumulative}"
            )
            out.append(
                f'kalshibook_api_request_duration_seconds_sum{{route="{label}"}} '
                f"{self._sum[route]:.6f}"
            )
            out.append(
                f'kalshibook_api_request_duration_seconds_count{{route="{label}"}} '
                f"{self._count[route]}"
            )
        out += [
            "# HELP kalshibook_api_credits_spent_total Credits charged to API keys.",
            "# TYPE kalshibook_api_credits_spent_total counter",
        ]
        for route, n in sorted(self.credits.items()):
            out.append(f'kalshibook_api_credits_spent_total{{route="{_escape(route)}"}} {n}')
        out += [
            "# HELP kalshibook_api_auth_rejections_total Requests refused by authentication.",
            "# TYPE kalshibook_api_auth_rejections_total counter",
        ]
        for reason, n in sorted(self.rejected.items()):
            out.append(f'kalshibook_api_auth_rejections_total{{reason="{reason}"}} {n}')
        return "\n".join(out) + "\n"
