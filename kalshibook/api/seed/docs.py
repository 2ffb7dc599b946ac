"""OpenAPI keywords of the seed routes: price, credit headers, documented bodies with examples."""

from __future__ import annotations

from typing import Any, Final

import msgspec
from litestar.datastructures import ResponseHeader
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example

from kalshibook.api.seed.examples import ERROR_EXAMPLE, EXAMPLES
from kalshibook.api.seed.schemas import ErrorBody, ErrorResponse

__all__ = ("SEED_TAG", "seed_route")

SEED_TAG: Final = "kalshibook SDK"

_ERRORS: Final = {
    400: ("validation_error", "validation_error: the body is not JSON"),
    401: ("invalid_api_key", "missing, unknown or revoked API key"),
    404: (
        "market_not_found",
        "market_not_found, event_not_found, settlement_not_found or no_data_available",
    ),
    422: (
        "validation_error",
        "validation_error or invalid_timestamp (the message names the field)",
    ),
    429: (
        "rate_limit_exceeded",
        "rate_limit_exceeded (with Retry-After; the SDK retries) or credits_exhausted",
    ),
    503: ("service_unavailable", "the database is unavailable or the query took too long"),
}


def _error_spec(status: int) -> ResponseSpec:
    code, description = _ERRORS[status]
    example = msgspec.structs.replace(
        ERROR_EXAMPLE, error=ErrorBody(code=code, message=description)
    )
    return ResponseSpec(
        data_container=ErrorResponse,
        description=description,
        examples=[Example(summary=code, value=example)],
        generate_examples=False,
    )


def seed_route(
    cost: int, ok: type[Any], *, errors: tuple[int, ...] = (401, 422, 429, 503)
) -> dict[str, Any]:
    """Handler keywords of a seed route costing ``cost`` credits and answering ``ok``."""
    responses = {
        200: ResponseSpec(
            data_container=ok,
            description="OK",
            examples=[Example(summary="example", value=EXAMPLES[ok])],
            generate_examples=False,
        )
    }
    for status in sorted({400, 401, 422, 429, 503, *errors}):
        responses[status] = _error_spec(status)
    return {
        # cost_header: the middleware's credit_headers sets X-Credits-Cost on every charged
        # response, errors included (a header set here would reach only the 200s)
        "opt": {"cost": cost, "cost_header": True},
        "security": [{"bearer": []}],
        "tags": [SEED_TAG],
        "response_headers": [
            ResponseHeader(
                name="X-Credits-Cost",
                value=str(cost),
                documentation_only=True,
                description="credits this request spent (on every charged response)",
            ),
            ResponseHeader(
                name="X-Credits-Remaining",
                documentation_only=True,
                description="credits left on the API key",
            ),
        ],
        "responses": responses,
    }
