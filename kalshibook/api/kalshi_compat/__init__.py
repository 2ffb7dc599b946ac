"""Kalshi-compatible market data: ``/trade-api/v2/…`` answered from kalshibook's record.

Code written for Kalshi's Trade API v2 reads kalshibook's history by changing its base URL to
``http://<host>/trade-api/v2``: series, events, markets (:mod:`.reference`), trades newest first
(:mod:`.trades`), order books at any instant (:mod:`.book`), candlesticks (:mod:`.candles`) and
the historical variants, in Kalshi's 2026 shapes (:mod:`.schemas`, :mod:`.shapes`). Every route
reads through the same functions as ``/v1`` (:mod:`kalshibook.storage.reads`, ``trade_reads``,
``candles``; :mod:`kalshibook.domain.book`); only the shapes differ. Errors are Kalshi's
``{"error": {"code", "message"}}`` (:mod:`.errors`). Keys: ``KALSHI-ACCESS-KEY: kb-…`` or
``Authorization: Bearer kb-…`` (:mod:`kalshibook.api.credentials`); credits as ``/v1``.
"""

from __future__ import annotations

from typing import Final

from litestar import Router

from kalshibook.api.kalshi_compat import book, candles, reference, trades
from kalshibook.api.kalshi_compat.errors import kalshi_exception_handlers

__all__ = ("KALSHI_HANDLERS", "KALSHI_PREFIX", "kalshi_router")

KALSHI_PREFIX: Final = "/trade-api/v2"
KALSHI_HANDLERS = [*reference.HANDLERS, *trades.HANDLERS, *book.HANDLERS, *candles.HANDLERS]


def kalshi_router() -> Router:
    """The Kalshi routes under ``/trade-api/v2``, with Kalshi's error shape on every one."""
    return Router(
        path=KALSHI_PREFIX,
        route_handlers=list(KALSHI_HANDLERS),
        exception_handlers=kalshi_exception_handlers(),
    )
