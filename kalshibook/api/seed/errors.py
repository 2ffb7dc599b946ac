"""Errors on the seed routes: ``{"error": {"code", "message"}, "request_id"}``, the seed's codes.

The kalshibook SDK maps ``error.code`` to its exceptions: ``invalid_api_key`` →
AuthenticationError, ``rate_limit_exceeded`` → RateLimitError (retried after ``Retry-After``),
``credits_exhausted`` → CreditsExhaustedError (429, never retried), ``market_not_found`` /
``event_not_found`` / ``settlement_not_found`` / ``no_data_available`` → MarketNotFoundError,
``validation_error`` / ``invalid_timestamp`` → ValidationError (422). These handlers are
registered on the seed router only: ``/v1`` keeps RFC 9457 problem+json. The same domain errors
(:mod:`kalshibook.errors`) are raised on both surfaces; only their rendering differs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

import psycopg
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from kalshibook.api.context import request_context
from kalshibook.api.problems import handler_table, invalid_fields, quota_headers
from kalshibook.api.seed.schemas import ErrorBody, ErrorResponse
from kalshibook.errors import (
    ApiError,
    KalshibookError,
    NotFound,
    PaymentRequired,
    RateLimited,
    Unauthorized,
)

__all__ = ("TIME_FIELDS", "SeedNotFound", "seed_exception_handlers")

log = logging.getLogger(__name__)

TIME_FIELDS: Final = frozenset({"timestamp", "start_time", "end_time"})
"""Parameters whose bad values are ``invalid_timestamp`` rather than ``validation_error``."""

_NOT_FOUND_CODES: Final = {"ticker": "market_not_found", "event_ticker": "event_not_found"}
_STATUS_CODES: Final = {404: "not_found", 405: "method_not_allowed", 503: "service_unavailable"}
VALIDATION_STATUS: Final = 422


class SeedNotFound(NotFound):
    """Not found, with the seed's code (``settlement_not_found``, ``no_data_available``...)."""

    def __init__(self, message: str, *, code: str, parameter: str | None = None) -> None:
        super().__init__(message, parameter)
        self.code = code


def seed_error(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> Response[ErrorResponse]:
    body = ErrorResponse(
        error=ErrorBody(code=code, message=message),
        request_id=request_context(request.scope).request_id,
    )
    return Response(body, status_code=status, headers=dict(headers or {}))


def code_of(exc: ApiError) -> tuple[int, str]:
    """``(HTTP status, seed code)`` of a domain API error."""
    if isinstance(exc, Unauthorized):
        return 401, "invalid_api_key"
    if isinstance(exc, PaymentRequired):
        return 429, "credits_exhausted"
    if isinstance(exc, RateLimited):
        return 429, "rate_limit_exceeded"
    if isinstance(exc, SeedNotFound):
        return 404, exc.code
    if isinstance(exc, NotFound):
        return 404, _NOT_FOUND_CODES.get(exc.parameter or "", "not_found")
    if exc.status >= 500:
        return exc.status, _STATUS_CODES.get(exc.status, "internal_error")
    if exc.parameter in TIME_FIELDS:
        return VALIDATION_STATUS, "invalid_timestamp"
    return VALIDATION_STATUS, "validation_error"


def _api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[ErrorResponse]:
    status, code = code_of(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="kalshibook"'
    headers.update(quota_headers(exc))
    message = exc.message
    if exc.parameter and status == VALIDATION_STATUS and exc.parameter not in message:
        message = f"{exc.parameter}: {message}"
    return seed_error(request, status, code, message, headers)


def _kalshibook_error(
    request: Request[Any, Any, Any], exc: KalshibookError
) -> Response[ErrorResponse]:
    if exc.status >= 500:
        log.error("request %s failed: %s", request_context(request.scope).request_id, exc)
        return seed_error(
            request, exc.status, _STATUS_CODES.get(exc.status, "internal_error"), exc.message
        )
    return seed_error(request, VALIDATION_STATUS, "validation_error", exc.message)


def _validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[ErrorResponse]:
    fields = invalid_fields(exc)
    if not fields:
        return seed_error(request, VALIDATION_STATUS, "validation_error", exc.detail or "invalid")
    key, message = fields[0]
    leaf = key.rsplit(".", 1)[-1]
    code = "invalid_timestamp" if leaf in TIME_FIELDS else "validation_error"
    text = f"{key}: {message}" if key else message
    if len(fields) > 1:
        text += f" (and {len(fields) - 1} more invalid fields)"
    return seed_error(request, VALIDATION_STATUS, code, text)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorResponse]:
    status = exc.status_code
    if status >= 500:
        log.error("request %s failed: %s", request_context(request.scope).request_id, exc)
    code = _STATUS_CODES.get(status, "internal_error" if status >= 500 else "validation_error")
    headers = {k: v for k, v in (exc.headers or {}).items() if isinstance(v, str)}
    return seed_error(request, status, code, exc.detail or str(status), headers)


def _database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    rid = request_context(request.scope).request_id
    if isinstance(exc, psycopg.errors.QueryCanceled):
        log.warning("request %s: query cancelled (timeout)", rid)
        message = "the query took too long; narrow the time range or lower `limit`"
        return seed_error(request, 503, "service_unavailable", message)
    log.warning("request %s: database unavailable: %s", rid, type(exc).__name__)
    return seed_error(
        request,
        503,
        "service_unavailable",
        "the database is unavailable; retry later",
        {"Retry-After": "5"},
    )


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    rid = request_context(request.scope).request_id
    log.exception("request %s failed", rid, exc_info=exc)
    return seed_error(
        request, 500, "internal_error", f"internal error; report request id {rid} to the operators"
    )


def seed_exception_handlers() -> dict[type[Exception] | int, Callable[..., Response[Any]]]:
    """The seed router's ``exception_handlers`` (they override the app's problem+json ones)."""
    return handler_table(
        api=_api_error,
        domain=_kalshibook_error,
        validation=_validation_error,
        http=_http_error,
        database=_database_error,
        internal=_internal_error,
    )
