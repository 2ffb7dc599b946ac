"""The request pipeline around every route: connection, auth + credits, usage, metrics, headers.

For a priced route the middleware checks out one pooled connection for the whole request (auth,
the handler's queries and the usage row share it), charges the route's cost before the handler
runs, records usage after the response went out (refunding a request that failed on our side),
and adds ``X-Credits-Remaining``. Public routes (``opt={"public": True}`` and the OpenAPI
documents) skip all of it except metrics.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import psycopg
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from psycopg_pool import AsyncConnectionPool

from kalshibook.api.auth import Authenticator, Charge
from kalshibook.api.context import request_context
from kalshibook.api.credentials import authorization_of, request_cost
from kalshibook.api.metrics import ApiMetrics
from kalshibook.errors import KalshibookError
from kalshibook.storage import api_keys

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from kalshibook.settings import Settings

__all__ = ("ApiMiddleware", "Services")

log = logging.getLogger(__name__)


class Services:
    """What the pipeline needs, held on ``app.state.services``; the pool is set by the lifespan."""

    def __init__(self, settings: Settings, openapi_path: str) -> None:
        self.settings = settings
        self.openapi_path = openapi_path
        self.pool: AsyncConnectionPool[Any] | None = None
        self.auth = Authenticator(settings.api.rate_limit_per_second)
        self.metrics = ApiMetrics()

    def require_pool(self) -> AsyncConnectionPool[Any]:
        if self.pool is None:  # pragma: no cover - the lifespan always sets it
            raise RuntimeError("the API's connection pool is not open")
        return self.pool


class ApiMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        services: Services = scope["litestar_app"].state.services
        ctx = request_context(scope)
        handler = scope["route_handler"]
        route: str = scope.get("path_template") or scope["path"]
        method = scope.get("method", "GET")
        status = 500
        charge: Charge | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if ctx.credits_remaining is not None:
                    MutableScopeHeaders.from_message(message)["X-Credits-Remaining"] = str(
                        ctx.credits_remaining
                    )
            await send(message)

        public = bool(handler.opt.get("public")) or scope["path"].startswith(services.openapi_path)
        try:
            if public:
                await self.app(scope, receive, send_wrapper)
                return
            cost = request_cost(handler.opt, scope)
            async with services.require_pool().connection() as conn:
                ctx.conn = conn
                try:
                    if services.settings.api.require_auth:
                        charge = await services.auth.authorize(conn, authorization_of(scope), cost)
                        ctx.credits_remaining = charge.remaining
                    await self.app(scope, receive, send_wrapper)
                finally:
                    ctx.conn = None
                    if charge is not None:
                        await _record_usage(conn, charge, route, status, ctx.request_id)
        except Exception as exc:
            status = _status_of(exc)
            if status in _REJECTIONS:
                services.metrics.reject(_REJECTIONS[status])
            raise
        finally:
            spent = 0 if charge is None or status >= 500 else charge.cost
            services.metrics.observe(
                route, method, status, time.perf_counter() - ctx.started, spent
            )


_REJECTIONS = {401: "unauthorized", 402: "out_of_credits", 429: "rate_limited"}


def _status_of(exc: Exception) -> int:
    if isinstance(exc, KalshibookError):
        return exc.status
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, psycopg.OperationalError):
        return 503
    return 500


async def _record_usage(
    conn: psycopg.AsyncConnection[Any], charge: Charge, route: str, status: int, rid: str
) -> None:
    try:
        await api_keys.record_usage(
            conn,
            key_id=charge.key_id,
            endpoint=route,
            cost=charge.cost,
            refund=charge.cost if status >= 500 else 0,
            status=status,
            request_id=rid,
        )
    except psycopg.Error as exc:
        log.warning("request %s: usage not recorded: %s", rid, type(exc).__name__)
