"""What the router asks of the daemon: the :class:`Effects` protocol (and :class:`NullEffects`).

The router is a pure state machine: follow-up work it cannot do itself (``get_snapshot``,
resubscriptions, trade backfill windows, settlement confirmation, subscription changes,
enrichment, rediscovery) goes through an ``Effects``; the daemon's implementation queues it
(:class:`~kalshibook.collector.work.WorkQueues`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

__all__ = ("Effects", "NullEffects")


class Effects(Protocol):
    """Follow-up work the router asks for; implementations must not block (queue it)."""

    def request_snapshot(self, sid: int, tickers: list[str] | None) -> None:
        """Send ``update_subscription get_snapshot`` for ``tickers`` on orderbook ``sid``;
        ``None``: for every market subscribed on it (a sequence gap: the lost frame may have been
        any of its markets' snapshot or delta, also of one that has no book yet)."""

    def resubscribe(self, sid: int, channel: str, reason: str) -> None:
        """Subscription ``sid`` is gone (error 10/25): subscribe its channel/markets again."""

    def backfill(self, start: datetime, end: datetime) -> None:
        """Trades may be missing in ``[start, end]``: fetch them over REST."""

    def confirm_settlement(self, ticker: str) -> None: ...

    def subscribe_markets(self, tickers: list[str]) -> None:
        """Add markets to the orderbook subscriptions."""

    def unsubscribe_markets(self, tickers: list[str]) -> None: ...

    def enrich(self, market: str | None = None, event: str | None = None) -> None:
        """Fetch and store the REST view of a market and/or event (and their series)."""

    def rediscover(self) -> None:
        """Lifecycle frames may have been lost: sweep the markets over REST."""


class NullEffects:
    """Effects that do nothing (replay, tests)."""

    def request_snapshot(self, sid: int, tickers: list[str] | None) -> None:
        pass

    def resubscribe(self, sid: int, channel: str, reason: str) -> None:
        pass

    def backfill(self, start: datetime, end: datetime) -> None:
        pass

    def confirm_settlement(self, ticker: str) -> None:
        pass

    def subscribe_markets(self, tickers: list[str]) -> None:
        pass

    def unsubscribe_markets(self, tickers: list[str]) -> None:
        pass

    def enrich(self, market: str | None = None, event: str | None = None) -> None:
        pass

    def rediscover(self) -> None:
        pass
