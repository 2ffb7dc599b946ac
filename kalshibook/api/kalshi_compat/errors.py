"""Errors on ``/trade-api/v2``: Kalshi's body ``{"error": {"code", "message"}}`` (plus our
``request_id``), registered on the Kalshi router only (``/v1`` keeps problem+json).

Codes: 400 ``bad_request`` (the message names the parameter), 401 ``unauthorized``, 402
``insufficient_credits``, 404 ``not_found``, 429 (Kalshi's ``{"error": "too many requests"}``,
with ``Retry-After``),
503 ``service_unavailable``, 500 ``internal_server_error``. The domain errors raised are the
same as on ``/v1`` (:mod:`kalshibook.errors`); only their rendering differs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

import psycopg
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from kalshibook.api.context import request_context
from kalshibook.api.credentials import KALSHI_PREFIX
from kalshibook.api.kalshi_compat.schemas import Error, ErrorResponse
from kalshibook.api.problems import (
    handler_table,
    invalid_fields,
    log_failure,
    quota_headers,
    unavailable_headers,
)
from kalshibook.errors import ApiError, KalshibookError

__all__ = ("CODES", "kalshi_exception_handlers", "outside_routes")

log = logging.getLogger(__name__)

TOO_MANY: Final = "too many requests"
"""A 429's ``error``: Kalshi's own body (``Retry-After`` is sent besides, which Kalshi does not
send: a client backing off exponentially ignores it)."""

CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    402: "insufficient_credits",
    404: "not_found",
    405: "method_not_allowed",
    429: "too_many_requests",
    503: "service_unavailable",
}


def kalshi_error(
    request: Request[Any, Any, Any],
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> Response[ErrorResponse]:
    code = CODES.get(status, "internal_server_error" if status >= 500 else "bad_request")
    rid = request_context(request.scope).request_id
    if status == 429:  # Kalshi's rate-limit body is this string (KALSHI_API.md §3.1)
        return Response(
            ErrorResponse(error=TOO_MANY, request_id=rid),
            status_code=status,
            headers=dict(headers or {}),
        )
    body = ErrorResponse(error=Error(code=code, message=message), request_id=rid)
    return Response(body, status_code=status, headers=dict(headers or {}))


def _api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[ErrorResponse]:
    headers = quota_headers(exc)
    message = exc.message
    if exc.parameter and exc.status == 400 and exc.parameter not in message:
        message = f"{exc.parameter}: {message}"
    return kalshi_error(request, exc.status, message, headers)


def _kalshibook_error(
    request: Request[Any, Any, Any], exc: KalshibookError
) -> Response[ErrorResponse]:
    log_failure(request, exc)
    return kalshi_error(request, exc.status, exc.message, unavailable_headers(exc))


def _validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[ErrorResponse]:
    fields = invalid_fields(exc)
    if not fields:
        return kalshi_error(request, 400, exc.detail or "invalid request")
    key, message = fields[0]
    return kalshi_error(request, 400, f"{key}: {message}" if key else message)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorResponse]:
    if exc.status_code >= 500:
        log.error("request %s failed: %s", request_context(request.scope).request_id, exc)
    headers = {k: v for k, v in (exc.headers or {}).items() if isinstance(v, str)}
    return kalshi_error(request, exc.status_code, exc.detail or str(exc.status_code), headers)


def _database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    rid = request_context(request.scope).request_id
    if isinstance(exc, psycopg.errors.QueryCanceled):
        log.warning("request %s: query cancelled (timeout)", rid)
        return kalshi_error(request, 503, "the query took too long; narrow the time range")
    log.warning("request %s: database unavailable: %s", rid, type(exc).__name__)
    return kalshi_error(
        request, 503, "the database is unavailable; retry later", {"Retry-After": "5"}
    )


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    rid = request_context(request.scope).request_id
    log.exception("request %s failed", rid, exc_info=exc)
    return kalshi_error(request, 500, f"internal error; report request id {rid} to the operators")


def outside_routes(default: Callable[..., Response[Any]]) -> Callable[..., Response[Any]]:
    """The app's ``HTTPException`` handler, except that a request under ``/trade-api/v2`` that no
    route took (an endpoint kalshibook does not serve: 404; a wrong method: 405) is answered in
    Kalshi's shape: the Kalshi router's handlers only see requests routed to it."""

    def handle(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        scope: dict[str, Any] = dict(request.scope)
        path = str(scope.get("path", ""))
        if not path.startswith(KALSHI_PREFIX):
            return default(request, exc)
        if exc.status_code == 404 and "route_handler" not in scope:
            return kalshi_error(
                request,
                404,
                f"no endpoint at {path}: kalshibook serves Kalshi's public market data (series, "
                "events, markets, trades, order books, candlesticks), not trading or portfolio "
                "endpoints",
            )
        return _http_error(request, exc)

    return handle


def kalshi_exception_handlers() -> dict[type[Exception] | int, Callable[..., Response[Any]]]:
    """The Kalshi router's ``exception_handlers`` (they override the app's problem+json ones)."""
    return handler_table(
        api=_api_error,
        domain=_kalshibook_error,
        validation=_validation_error,
        http=_http_error,
        database=_database_error,
        internal=_internal_error,
    )
