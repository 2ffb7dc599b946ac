"""Shared pieces of the ``/trade-api/v2`` handlers: route keywords, Kalshi's cursors and limits,
Unix-second parameters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, TypeVar

from litestar import Request
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Parameter

from kalshibook.api.deps import cursor_codec
from kalshibook.api.kalshi_compat.errors import CODES
from kalshibook.api.kalshi_compat.examples import ERROR_EXAMPLE, EXAMPLES
from kalshibook.api.kalshi_compat.schemas import ErrorResponse
from kalshibook.api.kalshi_compat.shapes import EPOCH
from kalshibook.api.params import parse_limit
from kalshibook.domain.booleans import parse_bool
from kalshibook.errors import BadRequest

__all__ = (
    "KALSHI_TAG",
    "Cursor",
    "EventPath",
    "Flag",
    "KalshiPager",
    "Limit",
    "SeriesPath",
    "Text",
    "Ticker",
    "TickerPath",
    "UnixTs",
    "kalshi_route",
    "parse_flag",
    "parse_tickers",
    "unix_time",
)

KALSHI_TAG: Final = "Kalshi-compatible"
_LATEST: Final = 2**33  # year 2242: beyond any recorded instant, within datetime's range

Limit = Annotated[int | None, Parameter(description="page size (Kalshi's bounds)")]
Cursor = Annotated[str | None, Parameter(description="`cursor` of the previous page; empty: first")]
Text = Annotated[str | None, Parameter(description="exact match")]
Ticker = Annotated[str | None, Parameter(description="market ticker")]
UnixTs = Annotated[int | None, Parameter(description="Unix seconds, inclusive")]
Flag = Annotated[str | None, Parameter(description="true or false")]
TickerPath = Annotated[str, Parameter(description="market ticker")]
EventPath = Annotated[str, Parameter(description="event ticker")]
SeriesPath = Annotated[str, Parameter(description="series ticker")]

K = TypeVar("K")
R = TypeVar("R")


def _spec(container: type[Any], example: Any, description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=container,
        description=description,
        examples=[Example(summary="example", value=example)],
        generate_examples=False,
    )


def kalshi_route(cost: int, ok: type[Any], *, per: str | None = None) -> dict[str, Any]:
    """Handler keywords of a Kalshi route costing ``cost`` credits (per item of ``per``: all
    charged before the handler runs; all but one item's price given back if it fails)."""
    opt: dict[str, Any] = {"cost": cost}
    if per is not None:
        opt["cost_per"] = per
    responses = {200: _spec(ok, EXAMPLES[ok], "OK")}
    for status in (400, 401, 402, 404, 429, 503):
        responses[status] = _spec(ErrorResponse, ERROR_EXAMPLE, f"error ({CODES[status]})")
    return {
        "opt": opt,
        "security": [{"bearer": []}],
        "tags": [KALSHI_TAG],
        "responses": responses,
    }


def parse_flag(value: str | None, name: str) -> bool:
    """Kalshi's boolean query parameters (absent: false)."""
    if value is None:
        return False
    flag = parse_bool(value)
    if flag is None:
        raise BadRequest(f"{name} must be true or false, got {value!r}", parameter=name)
    return flag


def unix_time(value: int | None, name: str) -> datetime | None:
    """A Unix-seconds query parameter (Kalshi's ``*_ts``) as an aware UTC datetime."""
    if value is None:
        return None
    if not 0 <= value <= _LATEST:
        raise BadRequest(f"{name} must be Unix seconds, got {value}", parameter=name)
    return EPOCH + timedelta(seconds=value)


def parse_tickers(value: list[str] | None, name: str, maximum: int) -> list[str] | None:
    """Kalshi's ticker lists: comma-separated and/or repeated (``?tickers=A&tickers=B``)."""
    if value is None:
        return None
    items = [t.strip() for v in value for t in v.split(",") if t.strip()]
    if not items:
        return None
    if any(len(t) > 200 for t in items):
        raise BadRequest(f"{name}: not a ticker", parameter=name)
    unique = list(dict.fromkeys(items))
    if len(unique) > maximum:
        raise BadRequest(f"{name}: at most {maximum} tickers per request", parameter=name)
    return unique


class KalshiPager:
    """Kalshi's paging: ``limit`` in ``[1, maximum]``, an opaque ``cursor`` (empty = first page),
    and ``"cursor": ""`` on the last page. Cursors are kalshibook's signed keyset positions."""

    __slots__ = ("codec", "kind", "limit")

    def __init__(
        self, request: Request[Any, Any, Any], limit: int | None, kind: str, *, default: int,
        maximum: int,
    ) -> None:  # fmt: skip
        self.limit = parse_limit(limit, default=default, maximum=maximum)
        self.codec = cursor_codec(request)
        self.kind = f"kalshi-{kind}"

    @property
    def fetch(self) -> int:
        return self.limit + 1

    def after(self, cursor: str | None, position_type: type[K]) -> K | None:
        if not cursor:
            return None
        return self.codec.decode(cursor, self.kind, position_type)

    def split(self, rows: list[R], key: Callable[[R], Any]) -> tuple[list[R], str]:
        """``(page, cursor)``: the first ``limit`` rows; cursor ``""`` when nothing follows."""
        if len(rows) <= self.limit:
            return rows, ""
        page = rows[: self.limit]
        return page, self.codec.encode(self.kind, key(page[-1]))
