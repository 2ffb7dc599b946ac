"""Every error → an RFC 9457 ``application/problem+json`` response, mapped in one place.

Handlers raise the domain errors of :mod:`kalshibook.errors`; Litestar's own exceptions
(validation, unknown route, wrong method) and database outages are translated here too, so no
error leaves the API in another shape, and bad input never becomes a 500.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, Final

import psycopg
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from psycopg_pool import PoolTimeout

from kalshibook.api.auth import KeyRateLimited, OutOfCredits
from kalshibook.api.context import request_context
from kalshibook.api.schemas import Problem
from kalshibook.errors import ApiError, DatabaseUnavailable, KalshibookError, Unauthorized

__all__ = (
    "PROBLEM_MEDIA_TYPE",
    "RETRY_AFTER_MAX",
    "exception_handlers",
    "handler_table",
    "invalid_fields",
    "problem_response",
    "quota_headers",
)

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:kalshibook:problem:"

_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    402: "out-of-credits",
    404: "not-found",
    405: "method-not-allowed",
    429: "rate-limited",
    500: "internal-error",
    503: "unavailable",
    504: "deadline-exceeded",
}


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    detail: str,
    *,
    parameter: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response[Problem]:
    ctx = request_context(request.scope)
    body = Problem(
        type=TYPE_BASE + _SLUGS.get(status, str(status)),
        title=_title(status),
        status=status,
        detail=detail,
        instance=request.scope.get("path", ""),
        request_id=ctx.request_id,
        parameter=parameter,
    )
    return Response(
        body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=dict(headers or {})
    )


RETRY_AFTER_MAX = 3600
"""Most seconds a ``Retry-After`` names (a wait that is not finite, e.g. of a zero refill rate,
is sent as this, never turned into a 500)."""


def quota_headers(exc: ApiError) -> dict[str, str]:
    """``Retry-After`` (whole seconds, 1 to :data:`RETRY_AFTER_MAX`) of a key's rate limit,
    ``X-Credits-Remaining`` of a key out of credits: the same headers on every surface."""
    if isinstance(exc, KeyRateLimited):
        wait = exc.retry_after
        seconds = math.ceil(wait) if math.isfinite(wait) else RETRY_AFTER_MAX
        return {"Retry-After": str(min(RETRY_AFTER_MAX, max(1, seconds)))}
    if isinstance(exc, OutOfCredits):
        return {"X-Credits-Remaining": str(exc.credits_remaining)}
    return {}


def _api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[Problem]:
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="kalshibook"'
    headers.update(quota_headers(exc))
    return problem_response(
        request, exc.status, exc.message, parameter=exc.parameter, headers=headers
    )


def unavailable_headers(exc: KalshibookError) -> dict[str, str]:
    """``Retry-After`` of a database or replica that is unavailable (as for a lost connection),
    the same on every surface."""
    return {"Retry-After": "5"} if isinstance(exc, DatabaseUnavailable) else {}


def log_failure(request: Request[Any, Any, Any], exc: KalshibookError) -> None:
    """A 5xx of ours in the log: a warning when the database is unavailable (an outage, logged
    once per request, not a defect), else an error."""
    if exc.status >= 500:
        rid = request_context(request.scope).request_id
        level = logging.WARNING if isinstance(exc, DatabaseUnavailable) else logging.ERROR
        log.log(level, "request %s failed: %s", rid, exc)


def _kalshibook_error(request: Request[Any, Any, Any], exc: KalshibookError) -> Response[Problem]:
    log_failure(request, exc)
    return problem_response(request, exc.status, exc.message, headers=unavailable_headers(exc))


def invalid_fields(exc: ValidationException) -> list[tuple[str, str]]:
    """``(key, message)`` of each invalid input Litestar reports (key ``""`` when it names none),
    read the same way on every surface."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    return [
        (str(e.get("key") or ""), str(e.get("message") or "invalid value"))
        for e in extra
        if isinstance(e, Mapping)
    ]


def _validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[Problem]:
    fields = invalid_fields(exc)
    if fields:
        key, message = fields[0]
        detail = f"{key}: {message}" if key else message
        if len(fields) > 1:
            detail += f" (and {len(fields) - 1} more invalid parameters)"
        return problem_response(request, 400, detail, parameter=key or None)
    return problem_response(request, 400, exc.detail or "invalid request")


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    scope: dict[str, Any] = dict(request.scope)
    if status == 404 and "route_handler" not in scope:
        detail = f"no endpoint at {scope.get('path', '')}; the API is described at /schema"
    else:
        detail = exc.detail or _title(status)
    headers = {k: v for k, v in (exc.headers or {}).items() if isinstance(v, str)}
    if status >= 500:
        log.error("request %s failed: %s", request_context(request.scope).request_id, exc)
    return problem_response(request, status, detail, headers=headers)


def _database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    rid = request_context(request.scope).request_id
    if isinstance(exc, psycopg.errors.QueryCanceled):
        log.warning("request %s: query cancelled (timeout)", rid)
        return problem_response(
            request,
            504,
            "the query took too long and was stopped (it is charged); narrow the time range "
            "or lower `limit`",
        )
    log.warning("request %s: database unavailable: %s", rid, type(exc).__name__)
    return problem_response(
        request, 503, "the database is unavailable; retry later", headers={"Retry-After": "5"}
    )


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    rid = request_context(request.scope).request_id
    log.exception("request %s failed", rid, exc_info=exc)
    return problem_response(
        request, 500, f"internal error; report request id {rid} to the operators"
    )


Handler = Callable[..., Response[Any]]


def handler_table(
    *,
    api: Handler,
    domain: Handler,
    validation: Handler,
    http: Handler,
    database: Handler,
    internal: Handler,
) -> dict[type[Exception] | int, Handler]:
    """The exceptions every surface (``/v1``, Kalshi's, the seed's) renders, each to that surface's
    handler: the API's domain errors, other domain errors, Litestar's validation and HTTP errors,
    the database away or too slow (pool timeout, lost connection, cancelled query), the rest."""
    return {
        ApiError: api,
        KalshibookError: domain,
        ValidationException: validation,
        HTTPException: http,
        PoolTimeout: database,
        psycopg.OperationalError: noting_replica_failures(database),
        psycopg.errors.QueryCanceled: database,
        Exception: noting_replica_failures(internal),
    }


REPLICA_FAILURES: Final = (
    psycopg.OperationalError,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)
"""Errors of a read on a replica that another server may not give: its session lost (the server
stopped, the backend terminated, the network), or the read cancelled by a conflict with the
replica's recovery (40001, 40P01: WAL replay needed what the query held). A cancelled query
(57014: the request's time ran out) is not among them."""


def noting_replica_failures(handler: Handler) -> Handler:
    """``handler``, after noting on the request's context an error of :data:`REPLICA_FAILURES`
    raised while the request's connection came from a replica (the middleware then answers the
    request again from another server: :class:`~kalshibook.api.middleware.ApiMiddleware`)."""

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        ctx = request_context(request.scope)
        if (
            ctx.on_replica
            and isinstance(exc, REPLICA_FAILURES)
            and not isinstance(exc, psycopg.errors.QueryCanceled)
        ):
            ctx.replica_error = exc
        return handler(request, exc)

    return handle


def exception_handlers() -> dict[type[Exception] | int, Handler]:
    return handler_table(
        api=_api_error,
        domain=_kalshibook_error,
        validation=_validation_error,
        http=_http_error,
        database=_database_error,
        internal=_internal_error,
    )
