"""What a request presents to the API middleware: its API key and the credits it costs.

* **Key.** ``Authorization: Bearer kb-…``; when that header is absent, a ``KALSHI-ACCESS-KEY``
  header carrying a kalshibook key is read the same way (code written for Kalshi's API sends its
  key id there, with ``KALSHI-ACCESS-SIGNATURE``/``-TIMESTAMP``, which kalshibook does not
  verify: the key itself is the secret).
* **Cost.** A handler's ``opt={"cost": N}``, charged before the handler runs. A batch route
  (``opt["cost_per"] = "<query parameter>"``) costs ``N`` per distinct item of that parameter: a
  batch of 100 order books costs what 100 single requests cost. The middleware charges the ``N``
  of the first item (all that a failed request pays, as a failed single request); the handler
  charges the rest once it has its answer (:func:`kalshibook.api.middleware.charge_items`), so
  a key that cannot pay the whole batch still gets its 400 or 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litestar.types import Scope

__all__ = ("authorization_of", "request_cost")


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


def request_cost(opt: Mapping[str, Any]) -> int:
    """Credits charged before the handler runs (see the module docstring)."""
    return int(opt.get("cost", 1))
