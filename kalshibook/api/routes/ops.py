"""Data status (0 credits, key needed), health and Prometheus metrics (public)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from psycopg_pool import PoolTimeout

from kalshibook.api import docs
from kalshibook.api import schemas as s
from kalshibook.api.deps import envelope_meta, services_of
from kalshibook.api.docs import priced, responses
from kalshibook.api.middleware import Services
from kalshibook.storage import reads

__all__ = ("HANDLERS",)

CHANNELS = {
    "trades": "trade",
    "orderbook_snapshots": "orderbook_delta",
    "orderbook_deltas": "orderbook_delta",
    "quotes": "orderbook_delta (derived)",
    "market_stats": "ticker",
    "lifecycle_events": "market_lifecycle_v2",
    "book_gaps": "gap detection",
}
HEALTH_TIMEOUT = 3.0
METRICS_MEDIA_TYPE = "text/plain; version=0.0.4"
METRICS_EXAMPLE = """\
# TYPE kalshibook_api_requests_total counter
kalshibook_api_requests_total{method="GET",route="/v1/trades",status="200"} 1234.0
# TYPE kalshibook_api_credits_spent_total counter
kalshibook_api_credits_spent_total{route="/v1/trades"} 2468.0
"""


STATUS_WAIT = 5.0
"""Seconds ``/v1/status`` waits for a primary connection."""
STATUS_TTL = 2.0
"""Seconds one reading of the freshness and coverage queries serves every ``/v1/status``
request (the endpoint is free; the freshness reads plan only each table's newest and oldest
chunks, see ``reads.STATUS_CHANNELS``)."""


StatusReads = tuple[datetime, Any, Any, Any]


def _cached_status(services: Services) -> StatusReads | None:
    cached = services.status_cache
    if cached is not None and time.monotonic() - cached[0] < STATUS_TTL:
        return cast(StatusReads, cached[1])
    return None


async def _status_reads(services: Services) -> StatusReads:
    """The status queries on the primary, read at most once per ``STATUS_TTL`` per API process
    (a cached answer takes no connection: the endpoint is free)."""
    cached = _cached_status(services)
    if cached is not None:
        return cached
    async with (
        services.status_lock,
        services.require_pool().connection(timeout=STATUS_WAIT) as conn,
    ):
        cached = _cached_status(services)  # read by the request that held the lock before
        if cached is not None:
            return cached
        now = datetime.now(UTC)
        channels = await reads.status_channels(conn)
        coverage, by_status = await reads.status_coverage(conn)
        value = (now, channels, coverage, by_status)
        services.status_cache = (time.monotonic(), value)
        return value


@get(
    "/v1/status",
    summary="Data freshness and coverage",
    description="Freshness per table (newest received_at, lag), time span and approximate "
    "size, plus counts of the reference data and of recent gaps.",
    tags=["data quality"],
    responses=responses(s.StatusOne, docs.STATUS_ONE, errors=(401, 429, 503)),
    **priced(0),
)
async def status(request: Request[Any, Any, Any]) -> s.StatusOne:
    services = services_of(request.app.state)
    replicas = services.replicas
    # on the primary, whatever the replicas' state: this is where their lag is shown, also when
    # none is usable (a data connection would then be a 503 with fallback `unavailable`)
    now, channels, coverage, by_status = await _status_reads(services)
    data = s.Status(
        now=now,
        channels=[
            s.ChannelFreshness(
                table=c.table,
                channel=CHANNELS.get(c.table, c.table),
                last_received_at=c.last_received_at,
                last_ts=c.last_ts,
                first_ts=c.first_ts,
                lag_seconds=None
                if c.last_received_at is None
                else round((now - c.last_received_at).total_seconds(), 3),
                approx_rows=max(0, int(c.approx_rows)),
            )
            for c in channels
        ],
        coverage=s.Coverage(
            series=coverage.series,
            events=coverage.events,
            markets=coverage.markets,
            markets_by_status=by_status,
            settlements=coverage.settlements,
            gaps_last_24h=coverage.gaps_last_24h,
        ),
        replicas=[s.ReplicaStatus(**r) for r in replicas.describe()] if replicas else [],
    )
    return s.StatusOne(data=data, **envelope_meta(request))


@get(
    "/health",
    summary="Liveness and database probe",
    tags=["ops"],
    opt={"public": True},
    responses={
        200: ResponseSpec(
            s.Health,
            description="the API and its database answer",
            examples=[Example(summary="up", value=s.Health(status="ok", database=True))],
            generate_examples=False,
        ),
        503: ResponseSpec(
            s.Health,
            description="the database does not answer",
            examples=[
                Example(summary="down", value=s.Health(status="unavailable", database=False))
            ],
            generate_examples=False,
        ),
    },
)
async def health(state: State) -> Response[s.Health]:
    pool = services_of(state).require_control()  # never behind data queries
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            async with pool.connection(timeout=HEALTH_TIMEOUT) as conn:
                await reads.probe(conn)
    except (psycopg.Error, PoolTimeout, TimeoutError):
        return Response(s.Health(status="unavailable", database=False), status_code=503)
    return Response(s.Health(status="ok", database=True), status_code=200)


@get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["ops"],
    opt={"public": True},
    media_type=METRICS_MEDIA_TYPE,
    responses={
        200: ResponseSpec(
            str,
            description="Prometheus text exposition format",
            media_type=METRICS_MEDIA_TYPE,
            examples=[Example(summary="excerpt", value=METRICS_EXAMPLE)],
            generate_examples=False,
        )
    },
)
async def metrics(state: State) -> str:
    return services_of(state).metrics.render()


HANDLERS = [status, health, metrics]
