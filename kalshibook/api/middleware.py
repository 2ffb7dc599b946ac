"""The request pipeline around every route: auth + credits, deadline, usage, metrics, headers.

Two pools: the **data** pool serves the handlers' queries, the small **control** pool serves auth,
credits, usage rows and ``/health``, so none of those ever waits behind data queries (an injected
pool serves both). For a priced route the middleware authenticates the key and charges the
route's cost (:class:`~kalshibook.api.auth.Authenticator`, which also caps the requests one key has
in flight): before the handler runs, or beside it when the key's last balance covers the request
(:class:`~kalshibook.api.auth.Admission`; the result then waits for the charge in
:func:`await_charge`), and runs the handler under the request's **deadline**
(``route_timeout``: every query and the sending of the response together; past it a 504, the
running query cancelled). The handler's data connection is checked out on first use and given back
as soon as the response starts, so a client that reads slowly holds no connection. After the
response the usage row settles the charge: a request that failed on our side (5xx other than the
504 of its own deadline) is refunded; a request that held the database longer is charged one more
credit per ``api.seconds_per_credit`` (a timed-out request is not free). A batch route (priced per
item, :mod:`kalshibook.api.credentials`) is charged for all its items before it reads any; a
failed batch (400, 404) gets back all but the first item's price. Public routes
(``opt={"public": True}`` and the OpenAPI documents) skip auth, credits and the deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

import psycopg
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from kalshibook.api.auth import Admission, Authenticator, Charge
from kalshibook.api.context import RequestContext, request_context
from kalshibook.api.credentials import authorization_of, key_header_of, request_cost
from kalshibook.api.deadlines import route_timeout
from kalshibook.api.metrics import ApiMetrics
from kalshibook.errors import DatabaseUnavailable, DeadlineExceeded, KalshibookError
from kalshibook.storage import api_keys
from kalshibook.storage.replicas import Replicas

if TYPE_CHECKING:
    from litestar import Response
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from kalshibook.settings import Settings

__all__ = (
    "CONTROL_TIMEOUT",
    "ApiMiddleware",
    "Services",
    "await_charge",
    "charge_settled",
    "credit_headers",
    "granted",
    "settle",
)

log = logging.getLogger(__name__)

CONTROL_TIMEOUT = 5.0
"""Seconds auth and usage wait for a control connection."""
BODY_CHUNK = 64 * 1024
"""A response body goes to the server in pieces of this size, so the server's flow control holds
the handler back while the client does not read (instead of buffering the whole body); at the
deadline the response is abandoned and its memory freed."""


REPLICA_WAIT = 1.0
"""Seconds a request waits for a replica's connection before that replica counts as failed."""


class Services:
    """What the pipeline needs, held on ``app.state.services``; the lifespan sets the pools."""

    def __init__(self, settings: Settings, openapi_path: str) -> None:
        self.settings = settings
        self.openapi_path = openapi_path
        self.pool: AsyncConnectionPool[Any] | None = None
        self.control: AsyncConnectionPool[Any] | None = None
        self.status_cache: tuple[float, object] | None = None
        """``/v1/status``'s last database reading: (monotonic time, value)."""
        self.status_lock = asyncio.Lock()
        self.replicas: Replicas | None = None
        """Read replicas (``KALSHIBOOK_REPLICA_URLS``): the data connection comes from one."""
        self.auth = Authenticator(
            settings.api.rate_limit_per_second, settings.api.max_concurrent_per_key
        )
        self.metrics = ApiMetrics()
        self.exports_busy = 0
        """Export files being built in this process (one event loop: no lock needed)."""

    def require_pool(self) -> AsyncConnectionPool[Any]:
        if self.pool is None:  # pragma: no cover - the lifespan always sets it
            raise RuntimeError("the API's connection pool is not open")
        return self.pool

    def require_control(self) -> AsyncConnectionPool[Any]:
        return self.control if self.control is not None else self.require_pool()

    def read_pool(self, avoid: Any = None) -> AsyncConnectionPool[Any]:
        """Where a request's data reads go: a healthy replica (not ``avoid``, one a read of the
        request failed on) when there are replicas, else the primary (or a 503 with
        ``KALSHIBOOK_REPLICA_FALLBACK=unavailable``)."""
        replicas = self.replicas
        if replicas:
            chosen = replicas.choose(avoid)
            if chosen is not None:
                return chosen
            if self.settings.replica.fallback == "unavailable":
                raise DatabaseUnavailable(
                    "no read replica is usable (down or lagging more than "
                    f"{self.settings.replica.max_lag_seconds:g} s) and "
                    "KALSHIBOOK_REPLICA_FALLBACK=unavailable"
                )
        return self.require_pool()

    async def data_connection(self, ctx: RequestContext) -> psycopg.AsyncConnection[Any]:
        """The request's data connection, checked out now if it has none yet: all of one
        request's reads go to one server. A replica whose pool gives no connection within
        ``REPLICA_WAIT`` (busy, or down and not yet found so by its lag check) sends this request
        to the primary (fallback ``primary``) or is waited for (``unavailable``); it is not marked
        down for it: its own check says whether it is."""
        if ctx.conn is None:
            pool = self.read_pool(ctx.avoid)  # its own wait, never past the request's deadline
            if self.replicas and pool is not self.pool:
                try:
                    ctx.conn = await pool.getconn(timeout=ctx.remaining(REPLICA_WAIT))
                except PoolTimeout:
                    if self.settings.replica.fallback == "primary":
                        pool = self.require_pool()
            if ctx.conn is None:
                ctx.conn = await pool.getconn(timeout=ctx.remaining(pool.timeout))
            ctx.conn_pool = pool
            ctx.on_replica = pool is not self.pool
            ctx.conn_since = time.monotonic()
        return ctx.conn

    async def release(self, ctx: RequestContext) -> None:
        """Give the request's data connection back (idempotent)."""
        conn, ctx.conn = ctx.conn, None
        if conn is not None:
            ctx.db_seconds += time.monotonic() - ctx.conn_since
            pool = ctx.conn_pool or self.require_pool()
            ctx.conn_pool = None
            if conn.broken and self.replicas and pool is not self.pool:
                self.replicas.mark_failed(pool, psycopg.OperationalError("connection lost"))
            ctx.on_replica = False
            await pool.putconn(conn)


def settle(
    status: int, cost: int, db_seconds: float, seconds_per_credit: float, items_cost: int = 0
) -> tuple[int, int]:
    """``(refund, extra)`` credits of a finished request (pure; the rule of docs/api.md) that was
    charged ``cost + items_cost``: ``items_cost`` is a batch's price of its items beyond the
    first, given back should the request end in a 4xx (a failed batch pays ``cost``, as a failed
    single request does)."""
    if status >= 500 and status != DeadlineExceeded.status:
        return cost + items_cost, 0
    extra = int(db_seconds // seconds_per_credit) if seconds_per_credit > 0 else 0
    if 400 <= status < 500:
        return items_cost, extra
    return 0, extra


_CHARGED: ContextVar[RequestContext | None] = ContextVar("kalshibook_charged", default=None)
"""The request being handled, when it is being charged (set by the middleware for the hook)."""


async def await_charge(response: Response[Any]) -> Response[Any]:
    """``after_request`` hook: the handler's result goes out only once its charge is granted.
    A refused charge (401 revoked, 402 out of credits, 503 control database) raises here, inside
    the route, so each surface renders it in its own error shape."""
    ctx = _CHARGED.get()
    if ctx is not None:
        await granted(ctx)
    return response


async def charge_settled(exc: Exception, scope: Scope) -> None:
    """``after_exception`` hook: an error response (a 400, a 404) starts only once the request's
    charge has run, so it carries the balance as every charged response does. Waits, never
    raises: the error is the answer."""
    ctx = _CHARGED.get()
    if ctx is not None and ctx.charging is not None:
        await asyncio.wait((ctx.charging,))


async def granted(ctx: RequestContext) -> Charge | None:
    """The request's charge, waited for (``None`` on a public route or with auth off); raises
    the charge's error. For a handler that needs the balance before it answers (exports)."""
    if ctx.charging is None:
        return None
    try:
        # shielded: a deadline striking here stops the request, not its charge (a 504 is paid)
        return await asyncio.shield(ctx.charging)
    except Exception:  # not a cancellation (a BaseException): the charge itself failed
        ctx.charge_refused = True  # the route renders the failure; the middleware counts it
        raise


def _granted_charge(ctx: RequestContext) -> Charge | None:
    """The request's charge once granted (``None``: not granted, or not done yet)."""
    charging = ctx.charging
    charged = _result(charging) if charging and charging.done() else None
    return charged if isinstance(charged, Charge) else None


def _refund(ctx: RequestContext, charged: Charge, status: int) -> int:
    """What :func:`settle` will give back of ``charged`` for a response with ``status``."""
    refund, _ = settle(status, charged.cost - ctx.items_cost, 0.0, 0.0, ctx.items_cost)
    return refund


def _balance(ctx: RequestContext, status: int) -> int | None:
    """``X-Credits-Remaining`` of a response starting with ``status``: the balance after the
    request's charge (``None``: none granted), with a failed batch's per-item part given back."""
    charged = _granted_charge(ctx)
    if charged is None:
        return None
    # a failure of ours (5xx) is refunded after the response, as the balance always said
    return charged.remaining + (_refund(ctx, charged, status) if status < 500 else 0)


def _spent(ctx: RequestContext, status: int) -> int | None:
    """``X-Credits-Cost`` of a response starting with ``status``: the credits its charge spent,
    less what :func:`settle` will give back (0 for a failure of ours); ``None`` as
    :func:`_balance`. The time-based extra is settled after the response, as for the balance."""
    charged = _granted_charge(ctx)
    return None if charged is None else charged.cost - _refund(ctx, charged, status)


async def credit_headers(message: Message, scope: Scope) -> None:
    """``before_send`` hook of the app: a response whose charge was granted says the balance
    left in ``X-Credits-Remaining`` (:func:`_balance`) and, on a route with
    ``opt["cost_header"]`` (the seed's), the credits it spent in ``X-Credits-Cost``
    (:func:`_spent`). At the app's level, so every response is seen, also an error rendered
    outside the route (the 504 :class:`ApiMiddleware` raises, once the charge has run). Never
    waits (the deadline could strike between Litestar's "started" and ours): a result waited for
    its charge in :func:`await_charge`, an error response in :func:`charge_settled` or in the
    middleware's ``finally``."""
    if message["type"] != "http.response.start":
        return
    ctx = request_context(scope)
    status = message["status"]
    remaining = _balance(ctx, status)
    if remaining is None:
        return
    headers = MutableScopeHeaders.from_message(message)
    headers["X-Credits-Remaining"] = str(remaining)
    handler = scope.get("route_handler")
    spent = _spent(ctx, status) if handler is not None and handler.opt.get("cost_header") else None
    if spent is not None:
        headers["X-Credits-Cost"] = str(spent)


def _result(charging: asyncio.Task[Charge]) -> Charge | BaseException | None:
    """A finished charge: granted, its error, or ``None`` if it was cancelled."""
    if charging.cancelled():
        return None
    return charging.exception() or charging.result()


async def _outcome(charging: asyncio.Task[Charge]) -> Charge | BaseException | None:
    """The charge once it has run (:func:`_result`), waited for without raising."""
    await asyncio.wait((charging,))
    return _result(charging)


class ApiMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        services: Services = scope["litestar_app"].state.services
        api = services.settings.api
        ctx = request_context(scope)
        handler = scope["route_handler"]
        route: str = scope.get("path_template") or scope["path"]
        method = scope.get("method", "GET")
        status = 500
        started = False
        charge: Charge | None = None
        charging_token: Token[RequestContext | None] | None = None
        admitted: Admission | None = None

        again = False  # the response is a replica's failure: dropped, the request run again

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started, again
            if again:
                return  # the failed attempt's body
            if message["type"] == "http.response.start":
                failed_on = ctx.conn_pool if ctx.replica_error is not None else None
                if failed_on is not None and retry_allowed:
                    again = True
                    log.warning(
                        "request %s: a read on a replica failed (%s); answering from another "
                        "server",
                        ctx.request_id,
                        type(ctx.replica_error).__name__,
                    )
                    await services.release(ctx)
                    ctx.avoid, ctx.replica_error = failed_on, None
                    return
                status, started = message["status"], True
                await services.release(ctx)  # the body goes out without a connection held
                # the credit headers: credit_headers, the app's before_send hook
            elif message["type"] == "http.response.body" and len(message["body"]) > BODY_CHUNK:
                body = memoryview(message["body"])
                more = message.get("more_body", False)
                for offset in range(0, len(body), BODY_CHUNK):
                    piece = bytes(body[offset : offset + BODY_CHUNK])
                    last = offset + BODY_CHUNK >= len(body)
                    await send(
                        {"type": "http.response.body", "body": piece, "more_body": more or not last}
                    )
                return
            await send(message)

        # a GET's or HEAD's handler only reads: run again when a replica failed under it
        retry_allowed = method in ("GET", "HEAD")

        async def run() -> None:
            nonlocal again, retry_allowed
            await self.app(scope, receive, send_wrapper)
            if again:  # once: a replica's failure, answered from another server
                again = retry_allowed = False
                await self.app(scope, receive, send_wrapper)

        public = bool(handler.opt.get("public")) or scope["path"].startswith(services.openapi_path)
        cost, ctx.items_cost = (0, 0) if public else request_cost(handler.opt, scope)
        try:
            if public:
                try:
                    async with asyncio.timeout(api.request_timeout):
                        await run()
                except TimeoutError:
                    if not started:
                        raise DeadlineExceeded(
                            f"the request took longer than {api.request_timeout:g} s"
                        ) from None
                    log.info("request %s: response not read within the deadline", ctx.request_id)
                finally:
                    await services.release(ctx)
                return
            timeout = route_timeout(handler.opt, api)  # the route's own (exports: longer)
            ctx.deadline = time.monotonic() + timeout
            if api.require_auth:
                control = services.require_control()
                admitted = await services.auth.admit(
                    control,
                    authorization_of(scope),
                    cost,
                    wait=CONTROL_TIMEOUT,
                    header=key_header_of(scope),
                )
                # a key whose last balance covers the request is charged while the handler
                # reads (one round trip less): the result waits for the charge (await_charge)
                # and is dropped if it is refused; any other key is charged first
                ctx.charging = asyncio.create_task(
                    services.auth.spend(control, admitted, wait=CONTROL_TIMEOUT),
                    name=f"charge {ctx.request_id}",
                )
                charging_token = _CHARGED.set(ctx)
                if not admitted.covered or services.control is None:
                    # with one injected pool for both, a handler holding its last connection
                    # would wait for a charge waiting for a connection: charge first
                    await asyncio.shield(ctx.charging)
            try:
                async with asyncio.timeout(ctx.remaining(timeout)):
                    await run()
            except TimeoutError:
                if started:  # the client did not read the response in time: drop it
                    log.info("request %s: response not read within the deadline", ctx.request_id)
                    return
                raise DeadlineExceeded(
                    f"the request took longer than {timeout:g} s and was stopped "
                    "(it is charged); narrow the time range, lower `limit` or ask for fewer "
                    "tickers"
                ) from None
            finally:
                await services.release(ctx)
        except Exception as exc:
            status = _status_of(exc)
            if status in _REJECTIONS:
                services.metrics.reject(_REJECTIONS[status])
            raise
        finally:
            spent = 0
            if charging_token is not None:
                _CHARGED.reset(charging_token)
            if admitted is not None:  # first, before any await: a cancelled request frees it too
                services.auth.release(admitted.key_id)
            cancelled: asyncio.CancelledError | None = None
            if ctx.charging is not None:
                try:
                    outcome = await _outcome(ctx.charging)
                except asyncio.CancelledError as exc:
                    # cancelled while settling: its charge may be spent, so it is waited for
                    # (once more, bounded by the control timeouts) and recorded, then re-raised
                    cancelled = exc
                    outcome = await _outcome(ctx.charging)
                if isinstance(outcome, Charge):
                    charge = outcome
                elif (
                    ctx.charge_refused  # raised in the route: rendered there, counted here
                    and isinstance(outcome, KalshibookError)
                    and outcome.status in _REJECTIONS
                ):
                    services.metrics.reject(_REJECTIONS[outcome.status])
            if charge is not None:
                items_cost = ctx.items_cost
                refund, extra = settle(
                    status, charge.cost - items_cost, ctx.db_seconds, api.seconds_per_credit,
                    items_cost,
                )  # fmt: skip
                if refund < charge.cost:  # not a failure of ours (those are given back whole)
                    extra += ctx.extra_credits
                spent = charge.cost - refund + extra
                await _record_usage(
                    services, charge.key_id, charge.cost, route, status, ctx.request_id, refund,
                    extra,
                )  # fmt: skip
            services.metrics.observe(
                route, method, status, time.perf_counter() - ctx.started, spent
            )
            if cancelled is not None:
                raise cancelled


_REJECTIONS = {401: "unauthorized", 402: "out_of_credits", 429: "rate_limited"}


def _status_of(exc: Exception) -> int:
    if isinstance(exc, KalshibookError):
        return exc.status
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return DeadlineExceeded.status
    if isinstance(exc, psycopg.OperationalError):
        return 503
    return 500


async def _record_usage(
    services: Services,
    key_id: int,
    cost: int,
    route: str,
    status: int,
    rid: str,
    refund: int,
    extra: int,
) -> None:
    try:
        async with services.require_control().connection(timeout=CONTROL_TIMEOUT) as conn:
            await api_keys.record_usage(
                conn,
                key_id=key_id,
                endpoint=route,
                cost=cost,
                refund=refund,
                extra=extra,
                status=status,
                request_id=rid,
            )
    except (psycopg.Error, TimeoutError) as exc:
        log.warning("request %s: usage not recorded: %s", rid, type(exc).__name__)
