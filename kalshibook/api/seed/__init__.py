"""The seed API: the endpoints kalshibook's Python SDK (``kalshibook`` 0.1.0 on PyPI) calls.

Mounted beside ``/v1`` with no prefix (``POST /orderbook``, ``/deltas``, ``/trades``;
``GET /candles/{ticker}``, ``/markets``, ``/markets/{ticker}``, ``/events``,
``/events/{event_ticker}``, ``/settlements``, ``/settlements/{ticker}``), these routes serve the
same reads as ``/v1`` (:mod:`kalshibook.storage.reads`, ``trade_reads``, ``candles``,
:mod:`kalshibook.domain.book`) in the SDK's shapes: prices in cents, sizes in contracts
(:mod:`.numbers`), errors as ``{"error": {"code", "message"}}`` (:mod:`.errors`). Keys, credits,
rate limits and usage records are the API middleware's, as on ``/v1``; each response also says
its price in ``X-Credits-Cost``.
"""

from __future__ import annotations

from litestar import Router

from kalshibook.api.seed import book, candles, reference, trades
from kalshibook.api.seed.errors import seed_exception_handlers

__all__ = ("SEED_HANDLERS", "seed_router")

SEED_HANDLERS = [*book.HANDLERS, *trades.HANDLERS, *candles.HANDLERS, *reference.HANDLERS]


def seed_router() -> Router:
    """The seed routes, with the seed's error shape on every one of them."""
    return Router(
        path="/", route_handlers=list(SEED_HANDLERS), exception_handlers=seed_exception_handlers()
    )
