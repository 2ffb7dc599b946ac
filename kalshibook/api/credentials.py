"""What a request presents to the API middleware: its API key and the credits it costs.

* **Key.** ``Authorization: Bearer kb-…``; when that header is absent, a ``KALSHI-ACCESS-KEY``
  header carrying a kalshibook key is read the same way (code written for Kalshi's API sends its
  key id there, with ``KALSHI-ACCESS-SIGNATURE``/``-TIMESTAMP``, which kalshibook does not
  verify: the key itself is the secret).
* **Cost.** A handler's ``opt={"cost": N}``, charged before the handler runs. A batch route
  (``opt["cost_per"] = "<query parameter>"``) costs ``N`` per distinct item of that parameter: a
  batch of 100 order books costs what 100 single requests cost, charged before any is read (a
  key that cannot pay gets its 402 before the work). Should the batch fail (400, 404), the part
  beyond the first item is given back (:func:`kalshibook.api.middleware.settle`): a failed batch
  costs what a failed single request costs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from litestar.types import Scope

__all__ = ("KALSHI_KEY_HEADER", "authorization_of", "key_header_of", "request_cost")

KALSHI_KEY_HEADER = "KALSHI-ACCESS-KEY"
KALSHI_PREFIX = "/trade-api/v2"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def authorization_of(scope: Scope) -> str | None:
    """The ``Authorization`` value to authenticate, or a Bearer built from ``KALSHI-ACCESS-KEY``."""
    authorization = _header(scope, b"authorization")
    if authorization:
        return authorization
    kalshi_key = _header(scope, b"kalshi-access-key")
    return f"Bearer {kalshi_key.strip()}" if kalshi_key and kalshi_key.strip() else None


def key_header_of(scope: Scope) -> str:
    """The header a request's key came in, for the messages about it: ``Authorization`` when
    present, else ``KALSHI-ACCESS-KEY`` when present; with neither, the one the surface's clients
    send (Kalshi's on ``/trade-api/v2``)."""
    if _header(scope, b"authorization"):
        return "Authorization"
    if _header(scope, b"kalshi-access-key") is not None:
        return KALSHI_KEY_HEADER
    path = str(scope.get("path", ""))
    return KALSHI_KEY_HEADER if path.startswith(KALSHI_PREFIX) else "Authorization"


def request_cost(opt: Mapping[str, Any], scope: Scope) -> tuple[int, int]:
    """``(credits charged before the handler runs, the part of them for a batch's items beyond
    the first)`` (see the module docstring)."""
    cost = int(opt.get("cost", 1))
    per = opt.get("cost_per")
    if not per:
        return cost, 0
    query = scope.get("query_string", b"").decode("latin-1")
    items = {
        item.strip()
        for name, value in parse_qsl(query)
        if name == per
        for item in value.split(",")
        if item.strip()
    }
    further = cost * (len(items) - 1) if len(items) > 1 else 0
    return cost + further, further
