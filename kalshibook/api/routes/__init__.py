"""Every route handler of the API. ``create_app`` registers everything in :data:`ROUTE_HANDLERS`.

A handler declares its price in credits with ``opt={"cost": N}`` (``opt={"public": True}`` for
routes that need no key), takes ``conn: Conn`` (:mod:`kalshibook.api.deps`) for the request's
connection and ``settings: SettingsDep``, raises :mod:`kalshibook.errors` API errors, and
returns msgspec Structs wrapped in the envelopes of :mod:`kalshibook.api.schemas`.
"""

from __future__ import annotations

from typing import Any

from kalshibook.api.routes import books, candles, coverage, exports, ops, reference, trades

ROUTE_HANDLERS: list[Any] = [
    *reference.HANDLERS,
    *coverage.HANDLERS,
    *trades.HANDLERS,
    *books.HANDLERS,
    *ops.HANDLERS,
    *candles.HANDLERS,
    *exports.HANDLERS,
]
