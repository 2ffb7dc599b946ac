"""Per-request context kept in the ASGI scope: request id, start time, the request's connection."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection

if TYPE_CHECKING:
    from kalshibook.api.auth import Charge

__all__ = ("RequestContext", "request_context")

_STATE_KEY = "kalshibook.ctx"
_INCOMING_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(slots=True)
class RequestContext:
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    conn: AsyncConnection[Any] | None = None
    """The request's data connection, checked out on first use (``deps.provide_conn``) and given
    back by the middleware when the response starts: a client slow to read holds none."""
    conn_pool: Any = None
    """The pool ``conn`` came from (the primary's or a read replica's)."""
    on_replica: bool = False
    """``conn`` came from a read replica's pool."""
    replica_error: BaseException | None = None
    """A read on the replica failed for the replica's sake (its session lost, a conflict with
    its recovery): the middleware runs the request once more, elsewhere."""
    avoid: Any = None
    """A replica's pool a read failed on: the request's next connection comes from another."""
    conn_since: float = 0.0
    db_seconds: float = 0.0
    """Seconds the request held a data connection (charged: ``seconds_per_credit``)."""
    deadline: float | None = None
    """``time.monotonic()`` by which the whole request must be done (priced routes)."""
    charging: asyncio.Task[Charge] | None = None
    """The request's credit charge, running beside the handler (``middleware.granted``)."""
    items_cost: int = 0
    """Of the charge, a batch route's price of its items beyond the first: given back if the
    request fails (``middleware.settle``)."""
    charge_refused: bool = False
    """The charge failed (refused, or the control database failed) and the route rendered it."""
    extra_credits: int = 0
    """Credits a handler adds to the request's price once it knows its size (export rows)."""

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000.0, 3)

    def remaining(self, default: float) -> float:
        """Seconds left before the deadline (``default`` when there is none), at least 1 ms."""
        if self.deadline is None:
            return default
        return max(0.001, min(default, self.deadline - time.monotonic()))


def _incoming_request_id(scope: Any) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _INCOMING_ID.match(text) else None
    return None


def request_context(scope: Any) -> RequestContext:
    """The request's context, created on first use (a valid incoming X-Request-ID is kept)."""
    state = scope.setdefault("state", {})
    ctx = state.get(_STATE_KEY)
    if ctx is None:
        ctx = RequestContext(request_id=_incoming_request_id(scope) or uuid.uuid4().hex)
        state[_STATE_KEY] = ctx
    return ctx  # type: ignore[no-any-return]
