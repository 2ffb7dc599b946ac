"""What the collector knows about the exchange's hierarchy (in memory, pure).

Discovery and enrichment (REST) and lifecycle frames (WS) both feed it; it decides the ``markets``
row status when both sources speak (REST answers may be older than the lifecycle frames that
arrived while the request was in flight) and remembers which events and series are already stored
so that enrichment fetches each of them once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

__all__ = ("STATUS_RANK", "Catalog", "MarketInfo", "lifecycle_status", "merge_status")

STATUS_RANK: Final[dict[str, int]] = {
    "unopened": 0,
    "initialized": 0,
    "inactive": 1,
    "active": 1,
    "open": 1,
    "paused": 1,
    "closed": 2,
    "determined": 3,
    "disputed": 3,
    "amended": 3,
    "settled": 4,
    "finalized": 4,
}
"""Lifecycle order of Kalshi market statuses (higher = later; never goes back)."""

_LIFECYCLE_STATUS: Final[dict[str, str]] = {
    "created": "initialized",
    "activated": "active",
    "determined": "determined",
    "settled": "finalized",
}

OPEN_STATUSES: Final = frozenset({"initialized", "active", "inactive", "unopened", "open"})
FINAL_STATUSES: Final = frozenset({"finalized", "settled"})


def lifecycle_status(
    event_type: str, is_deactivated: bool | None, current: str | None
) -> str | None:
    """The market status a lifecycle event implies, or ``None`` when it implies none."""
    if event_type == "deactivated":
        status = "active" if is_deactivated is False else "inactive"
    else:
        found = _LIFECYCLE_STATUS.get(event_type)
        if found is None:
            return None
        status = found
    if current is not None and STATUS_RANK.get(current, 0) > STATUS_RANK.get(status, 0):
        return current  # a late or repeated frame never moves a market backwards
    return status


def merge_status(rest: str, known: str | None) -> str:
    """Status for a REST market row when the WS lifecycle already told us ``known``.

    The later stage wins (a REST answer may predate a lifecycle frame); within one stage
    (active/inactive) the lifecycle's word wins.
    """
    if known is None:
        return rest
    r, k = STATUS_RANK.get(rest, 0), STATUS_RANK.get(known, 0)
    if r > k:
        return rest
    return known


class MarketInfo:
    __slots__ = ("event_ticker", "result", "series_ticker", "settlement_value", "status")

    def __init__(
        self, event_ticker: str | None, series_ticker: str | None, status: str | None
    ) -> None:
        self.event_ticker = event_ticker
        self.series_ticker = series_ticker
        self.status = status
        self.result: str | None = None
        self.settlement_value: Decimal | None = None


class Catalog:
    """Markets, events and series known to this process."""

    def __init__(self) -> None:
        self.markets: dict[str, MarketInfo] = {}
        self.events: dict[str, str | None] = {}
        """event ticker -> series ticker (stored events)."""
        self.series: set[str] = set()
        """Stored series tickers."""

    def market(self, ticker: str) -> MarketInfo | None:
        return self.markets.get(ticker)

    def note_market(
        self,
        ticker: str,
        event_ticker: str | None,
        series_ticker: str | None,
        status: str | None,
    ) -> MarketInfo:
        info = self.markets.get(ticker)
        if info is None:
            info = self.markets[ticker] = MarketInfo(event_ticker, series_ticker, status)
            return info
        if event_ticker:
            info.event_ticker = event_ticker
        if series_ticker:
            info.series_ticker = series_ticker
        if status is not None:
            info.status = merge_status(status, info.status) if info.status else status
        return info

    def open_markets(self) -> list[str]:
        return [t for t, m in self.markets.items() if m.status in OPEN_STATUSES]

    def unsettled_markets(self) -> list[str]:
        """Markets whose lifecycle has not ended as far as we know (not finalized)."""
        return [t for t, m in self.markets.items() if m.status not in FINAL_STATUSES]
