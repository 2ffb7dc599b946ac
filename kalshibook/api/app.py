"""The Litestar application factory.

``create_app(settings, pool=None)``: the lifespan opens its own psycopg pools (``open=False``,
``check=storage.pool.check_connection``, ``await open(wait=True)``) and closes them on
shutdown: the data pool for the handlers' queries and a small control pool for auth, credits,
usage and ``/health`` (see :mod:`kalshibook.api.middleware`). A pool passed in serves both and is
never closed. Every handler of
:data:`kalshibook.api.routes.ROUTE_HANDLERS` is registered. The OpenAPI document is served under
``/schema`` (``/schema/openapi.json``). The seed API of the kalshibook SDK
(:mod:`kalshibook.api.seed`) is mounted beside ``/v1`` with its own error handlers, and so is the
Kalshi-compatible ``/trade-api/v2`` (:mod:`kalshibook.api.kalshi_compat`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from litestar import Litestar, Request
from litestar.datastructures import MutableScopeHeaders, State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Tag
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from kalshibook.api.context import request_context
from kalshibook.api.cursors import CursorCodec
from kalshibook.api.deps import provide_conn, provide_settings
from kalshibook.api.kalshi_compat import kalshi_router
from kalshibook.api.kalshi_compat.errors import outside_routes
from kalshibook.api.middleware import (
    ApiMiddleware,
    Services,
    await_charge,
    charge_settled,
    credit_headers,
)
from kalshibook.api.problems import exception_handlers
from kalshibook.api.query import QueryRules
from kalshibook.api.routes import ROUTE_HANDLERS
from kalshibook.api.seed import seed_router
from kalshibook.errors import BadRequest, DatabaseUnavailable
from kalshibook.ops.secrets import cursor_secret
from kalshibook.settings import Settings
from kalshibook.storage import pool as storage_pool
from kalshibook.storage.candle_reads import warm_candle_reads
from kalshibook.storage.pool import Pool
from kalshibook.storage.replicas import Replicas
from kalshibook.storage.urls import redact

if TYPE_CHECKING:
    from litestar.types import Message, Scope

__all__ = ("OPENAPI_PATH", "create_app", "make_pool", "warm_connection")

log = logging.getLogger(__name__)

OPENAPI_PATH = "/schema"
POOL_MIN_SIZE = 2
POOL_MAX_SIZE = 16
POOL_TIMEOUT = 10.0
"""Seconds the lifespan waits for the database at start."""
CONTROL_POOL_SIZE = 4


def connection_options(statement_ms: int) -> str:
    """The server settings of the API's connections (see :data:`CONNECTION_OPTIONS`)."""
    return (
        "-c timezone=UTC -c plan_cache_mode=force_custom_plan -c jit=off "
        f"-c statement_timeout={statement_ms} -c synchronous_commit=off"
    )


CONNECTION_OPTIONS = connection_options(10_000)
"""With the default deadline. UTC times; custom plans so ``(%(x)s IS NULL OR …)`` filters fold
away; no one query longer than the request deadline (the server stops it even if the client's
cancel were lost). The API's only writes are credit charges and usage rows: they commit without
waiting for the WAL flush (a server crash could forget the last fraction of a second of charges,
never corrupt them). No JIT compilation, whatever the database's setting: over hypertables the
planner's estimates grow with the chunks, and JIT then compiles every chunk's expressions at each
execution (kalshibook.storage.database_defaults has the measurements); the candle reads' generic
plans would reach the threshold at ~2.4 times the 10M-trade bench's year."""
CONTROL_STATEMENT_MS = 5000

DESCRIPTION = """\
Kalshi market data recorded by kalshibook: the series > event > market hierarchy, trades,
settlements, order books at any instant, raw book deltas and data-quality information.

* **Auth**: `Authorization: Bearer kb-<prefix>-<secret>`; each request spends the credits listed
  per endpoint; the balance comes back in `X-Credits-Remaining`. 401 missing/unknown/revoked key,
  402 out of credits, 429 rate limited.
* **Lists** return `{data, next_cursor, has_more, request_id, response_time}`; pass `next_cursor`
  back as `cursor` until it is null. `limit` is bounded.
* **Times**: RFC 3339 or Unix seconds; ranges are `[start, end)`; responses are RFC 3339 UTC.
* **Numbers**: prices are exact dollar strings (`"0.4200"`), sizes exact count strings (`"12.50"`).
* **Errors**: RFC 9457 `application/problem+json` with `parameter` naming the bad parameter.
* **kalshibook SDK**: the routes tagged "kalshibook SDK" (no `/v1` prefix) serve the same data in
  the shapes of the `kalshibook` Python SDK: cents, `{"error": {"code", "message"}}` errors,
  `X-Credits-Cost`; see docs/api.md "Using the kalshibook SDK".
* **Kalshi-compatible**: the routes tagged "Kalshi-compatible" (`/trade-api/v2/...`) serve the
  market-data subset of Kalshi's Trade API v2 in Kalshi's shapes; a kalshibook key works as
  `KALSHI-ACCESS-KEY`; see docs/api.md "Point your Kalshi code at kalshibook".
"""


def make_pool(
    settings: Settings,
    *,
    application_name: str = "kalshibook-api",
    control: bool = False,
    url: str | None = None,
) -> Pool:
    """A closed pool for the API (open it with ``await pool.open(wait=True)``): autocommit
    connections with the API's server settings; ``control`` for the small auth/usage pool."""
    ms = CONTROL_STATEMENT_MS if control else max(1, int(settings.api.request_timeout * 1000))
    return storage_pool.make_pool(
        settings,
        min_size=1 if control else POOL_MIN_SIZE,
        max_size=CONTROL_POOL_SIZE if control else POOL_MAX_SIZE,
        timeout=POOL_TIMEOUT,
        name=f"{application_name}-control" if control else application_name,
        autocommit=True,
        options=connection_options(ms),
        url=url,
        configure=None if control else warm_connection,
    )


async def warm_connection(conn: AsyncConnection[Any]) -> None:
    """A new data-pool connection's candle statements prepared before it serves a request
    (:func:`kalshibook.storage.candle_reads.warm_candle_reads`). An optimisation only: a failure
    is logged and the connection is kept (its first candle reads prepare them, as without): an
    exception out of psycopg_pool's ``configure`` discards the connection, and one that every
    connection raised would keep the API from starting."""
    try:
        await warm_candle_reads(conn, datetime.now(UTC))
    except psycopg.Error as exc:  # e.g. a lock it would not wait for (WARM_LIMITS)
        log.warning("candle statements not prepared ahead on a new connection: %s", exc)
    except Exception:  # an optimisation must never cost the connection
        log.warning("candle statements not prepared ahead on a new connection", exc_info=True)


async def _add_request_id(message: Message, scope: Scope) -> None:
    if message["type"] == "http.response.start":
        MutableScopeHeaders.from_message(message)["X-Request-ID"] = request_context(
            scope
        ).request_id


async def reject_control_characters(request: Request[Any, Any, Any]) -> None:
    """No path or query parameter may carry a control character (``%00`` …): PostgreSQL text
    cannot hold NUL, and none of our parameters (tickers, times, cursors, lists) has any use for
    them. One check for every endpoint, before any handler runs: a 400 naming the parameter."""
    params = [*request.path_params.items(), *request.query_params.multi_items()]
    for name, value in params:
        if isinstance(value, str) and any(ord(ch) < 32 or ch == "\x7f" for ch in value):
            raise BadRequest(f"{name} contains a control character", parameter=name)


async def check_request(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook of every route (Litestar runs only the innermost layer's: no
    router, controller or handler may set its own): no control characters
    (:func:`reject_control_characters`), and on ``/v1`` no query parameter the route does not
    take nor one given twice (:class:`kalshibook.api.query.QueryRules`). It runs after the
    middleware's auth: such a 400 is charged like any other."""
    await reject_control_characters(request)
    rules: QueryRules = request.app.state.query_rules
    rules.check(request)


def _exception_handlers() -> dict[type[Exception] | int, Any]:
    """``/v1``'s problem+json handlers, with Kalshi's shape for unrouted ``/trade-api/v2`` paths."""
    handlers = exception_handlers()
    handlers[HTTPException] = outside_routes(handlers[HTTPException])
    return handlers


def create_app(settings: Settings, pool: AsyncConnectionPool[Any] | None = None) -> Litestar:
    services = Services(settings, openapi_path=OPENAPI_PATH)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None]:
        if pool is not None:
            services.pool = pool
            try:
                yield
            finally:
                services.pool = None  # injected: the caller closes it
            return
        own = make_pool(settings)
        control = make_pool(settings, control=True)
        try:
            await own.open(wait=True, timeout=POOL_TIMEOUT)
            await control.open(wait=True, timeout=POOL_TIMEOUT)
        except PoolTimeout:
            await own.close()
            await control.close()
            raise DatabaseUnavailable(
                f"the API cannot connect to {redact(settings.require_database())} "
                f"within {POOL_TIMEOUT:g} s"
            ) from None
        services.pool, services.control = own, control
        replicas = Replicas(
            settings.replica,
            lambda url, name: make_pool(settings, application_name=name, url=url),
        )
        stop = asyncio.Event()
        monitor: asyncio.Task[None] | None = None
        if replicas:
            await replicas.open()
            await replicas.check(own)  # first measure, so the first requests can use them
            services.replicas = replicas
            monitor = asyncio.create_task(replicas.monitor(own, stop), name="replica-monitor")
        try:
            yield
        finally:
            stop.set()
            if monitor is not None:
                # cancelled, not waited for: a check may be waiting on a replica that hangs
                monitor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await monitor
            services.replicas = None
            services.pool = services.control = None
            await replicas.close()
            await own.close()
            await control.close()

    openapi = OpenAPIConfig(
        title="kalshibook",
        version="1.0",
        description=DESCRIPTION,
        path=OPENAPI_PATH,
        render_plugins=[JsonRenderPlugin(), SwaggerRenderPlugin()],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="kb-<prefix>-<secret>",
                    description="API key from `kalshibook keys create`",
                )
            }
        ),
        tags=[
            Tag(name="reference", description="series, events, markets (1 credit)"),
            Tag(name="trades", description="trade history (2 credits)"),
            Tag(name="settlements", description="resolutions (1 credit)"),
            Tag(name="order book", description="book at an instant (5), raw deltas (2)"),
            Tag(name="candles", description="OHLC, volume, VWAP, bid/ask, open interest (3)"),
            Tag(name="data quality", description="gaps and freshness (0 credits, key needed)"),
            Tag(name="ops", description="health and metrics (no key)"),
        ],
        create_examples=False,
    )
    return Litestar(
        route_handlers=[*ROUTE_HANDLERS, seed_router(), kalshi_router()],
        dependencies={
            "conn": Provide(provide_conn),
            "settings": Provide(provide_settings, sync_to_thread=False),
        },
        middleware=[ApiMiddleware],
        exception_handlers=_exception_handlers(),
        before_request=check_request,
        # Litestar runs only the innermost layer's after_request: no router, controller or
        # handler may set its own, or a covered request's data could leave before its charge
        after_request=await_charge,
        after_exception=[charge_settled],
        before_send=[_add_request_id, credit_headers],
        lifespan=[lifespan],
        openapi_config=openapi,
        state=State(
            {
                "services": services,
                "cursor_codec": CursorCodec(cursor_secret(settings)),
                "query_rules": QueryRules(),
            }
        ),
        debug=False,
        logging_config=None,  # the process's logging is kalshibook.cli.logs' (one setup)
    )
