"""Dependencies and helpers shared by the route modules.

Handlers declare ``conn: Conn`` to get the request's database connection (checked out from the
data pool on first use; the middleware gives it back), page with
``routes._paging.Pager`` and fill the envelope with :func:`envelope_meta`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeVar

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from psycopg import AsyncConnection

from kalshibook.api.context import request_context
from kalshibook.api.cursors import CursorCodec
from kalshibook.api.middleware import Services
from kalshibook.domain.prices import fmt_dollars
from kalshibook.errors import BadRequest, NotFound
from kalshibook.settings import Settings
from kalshibook.storage import reads

__all__ = (
    "Conn",
    "SettingsDep",
    "cursor_codec",
    "dollars_str",
    "envelope_meta",
    "num_str",
    "parse_tickers",
    "provide_conn",
    "provide_settings",
    "require_market",
    "services_of",
    "split_page",
)

T = TypeVar("T")

Conn = NamedDependency[AsyncConnection[Any]]
"""Handler parameter ``conn: Conn``: the request's database connection (autocommit)."""
SettingsDep = NamedDependency[Settings]
"""Handler parameter ``settings: SettingsDep``: the application's settings."""


def services_of(state: State) -> Services:
    services: Services = state.services
    return services


async def provide_conn(
    request: Request[Any, Any, Any], settings: SettingsDep
) -> AsyncConnection[Any]:
    """The request's data connection (the middleware gives it back when the response starts).

    ``settings`` is not used: it makes this dependency depend on ``settings``, so that Litestar
    resolves the two one after the other. Two dependencies of one level are resolved in an anyio
    task group, which starts a task per dependency on every request (~2% of a trades page's
    server time under load, py-spy)."""
    del settings
    return await services_of(request.app.state).data_connection(request_context(request.scope))


def provide_settings(state: State) -> Settings:
    return services_of(state).settings


def cursor_codec(request: Request[Any, Any, Any]) -> CursorCodec:
    codec: CursorCodec = request.app.state.cursor_codec
    return codec


def envelope_meta(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """``request_id`` and ``response_time`` for an envelope."""
    ctx = request_context(request.scope)
    return {"request_id": ctx.request_id, "response_time": ctx.elapsed_ms()}


def dollars_str(value: Decimal | None) -> str | None:
    return None if value is None else fmt_dollars(value)


def num_str(value: Decimal | None) -> str | None:
    """A plain exact number (strikes, multipliers): no exponent, no trailing zeros."""
    if value is None:
        return None
    return format(value.normalize(), "f")


def split_page(
    rows: list[T],
    limit: int,
    codec: CursorCodec,
    kind: str,
    key: Any,
) -> tuple[list[T], str | None, bool]:
    """Rows fetched with ``LIMIT limit + 1`` → ``(page, next_cursor, has_more)``."""
    if len(rows) <= limit:
        return rows, None, False
    page = rows[:limit]
    return page, codec.encode(kind, key(page[-1])), True


async def require_market(conn: AsyncConnection[Any], ticker: str) -> None:
    """404 ``unknown market ticker`` unless the market is known (:func:`reads.market_known`)."""
    if not await reads.market_known(conn, ticker):
        raise NotFound(f"unknown market ticker {ticker!r}", parameter="ticker")


def parse_tickers(
    value: list[str] | None, name: str = "tickers", maximum: int = 100
) -> list[str] | None:
    """A ticker list, comma-separated and/or repeated (``A,B`` or ``A&tickers=B``, as on
    ``/trade-api/v2``), without repeats; ``None`` when absent."""
    if value is None:
        return None
    items = [t.strip() for v in value for t in v.split(",")]
    if not items or any(not t or len(t) > 200 for t in items):
        raise BadRequest(f"{name} must be a comma-separated list of tickers", parameter=name)
    unique = list(dict.fromkeys(items))
    if len(unique) > maximum:
        raise BadRequest(f"{name}: at most {maximum} tickers per request", parameter=name)
    return unique
