"""What the collector knows about the exchange's hierarchy (in memory, pure).

Discovery and enrichment (REST) and lifecycle frames (WS) both feed it; it decides the ``markets``
row status when both sources speak and remembers which events and series are already stored so
that enrichment fetches each of them once.

**Market status.** Kalshi's statuses are ``initialized``, ``inactive`` (paused), ``active``,
``closed`` (trading over, no result yet), then the resolution stages ``determined``, ``disputed``,
``amended`` and the terminal ``finalized`` (the ``GET /markets`` filter words ``unopened``,
``open``, ``paused`` and ``settled`` are accepted as their synonyms). Before resolution a market
can move either way (paused and unpaused; closed and reopened when its close date moves), so the
*newest* report wins: each status is stamped with the time it was learned (a lifecycle frame's
receive time, or the time the REST request that reported it was sent), and a REST answer never
replaces a status learned after its request was sent, except to move the market into resolution.
Resolution only moves forward: once a market is determined (or later) no pre-resolution status (a
stale REST page saying ``active``) replaces it; ``determined``, ``disputed`` and ``amended`` follow
each other as reported (newest wins); ``finalized`` is terminal. Statuses read back from the
database at start carry no time: any report replaces them (within the same rules).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Final

__all__ = (
    "FINAL_STATUSES",
    "FINISHED_STATUSES",
    "OPEN_STATUSES",
    "STATUS_STAGE",
    "Catalog",
    "MarketInfo",
    "frame_status",
    "lifecycle_status",
    "merge_status",
)

STATUS_STAGE: Final[dict[str, int]] = {
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
"""Lifecycle stage of each Kalshi market status (unknown words: 0). Stages 3 and 4 are final: a
market never leaves them for an earlier stage."""

_RESOLVED: Final = 3
_TERMINAL: Final = 4

_LIFECYCLE_STATUS: Final[dict[str, str]] = {
    "created": "initialized",
    "activated": "active",
    "determined": "determined",
    "settled": "finalized",
}

OPEN_STATUSES: Final = frozenset({"initialized", "active", "inactive", "unopened", "open"})
FINAL_STATUSES: Final = frozenset({"finalized", "settled"})
"""Terminal statuses: the market's lifecycle has ended."""
FINISHED_STATUSES: Final = frozenset(
    {"closed", "determined", "disputed", "amended", "finalized", "settled"}
)
"""No more book activity: a market in one of these is not followed (``closed``: no result yet;
the others have one, whose settlement is confirmed)."""


def merge_status(
    new: str | None,
    known: str | None,
    new_at: datetime | None = None,
    known_at: datetime | None = None,
) -> str | None:
    """The status to keep when a source reports ``new`` (learned at ``new_at``: a frame's receive
    time or the time its REST request was sent) and the catalog holds ``known`` (learned at
    ``known_at``; ``None``: unknown, e.g. read back from the database at start).

    * finalized is terminal; determined or later never goes back to an earlier stage;
    * otherwise the newer report wins (a REST answer sent before the frame that set ``known``
      is stale), also at an equal or lower stage (unpaused, reopened, disputed, amended);
    * when only ``known`` has a time (a caller that cannot tell when its request was sent), the
      report wins unless its stage is earlier than the known one.
    """
    if not new:
        return known
    if known is None or new == known:
        return new
    n, k = STATUS_STAGE.get(new, 0), STATUS_STAGE.get(known, 0)
    if k >= _TERMINAL:
        return known
    if n >= _RESOLVED or k >= _RESOLVED:
        if n < _RESOLVED:
            return known  # a stale pre-resolution report never reopens a resolved market
        if n >= _TERMINAL or k < _RESOLVED:
            return new  # resolution only moves forward
    if known_at is None:
        return new
    if new_at is None:
        return new if n >= k else known
    return new if new_at >= known_at else known


def frame_status(event_type: str, is_deactivated: bool | None) -> str | None:
    """The market status a lifecycle frame reports (``deactivated`` with ``is_deactivated``
    false is an unpause), or ``None`` when it reports none."""
    if event_type == "deactivated":
        return "active" if is_deactivated is False else "inactive"
    return _LIFECYCLE_STATUS.get(event_type)


def lifecycle_status(
    event_type: str,
    is_deactivated: bool | None,
    current: str | None,
    at: datetime | None = None,
    current_at: datetime | None = None,
) -> str | None:
    """The market status after a lifecycle frame received at ``at`` (``current``, learned at
    ``current_at``, when the frame does not move it), or ``None`` when the frame implies none."""
    status = frame_status(event_type, is_deactivated)
    if status is None:
        return None
    return merge_status(status, current, at, current_at)


class MarketInfo:
    __slots__ = (
        "event_ticker",
        "result",
        "series_ticker",
        "settlement_value",
        "status",
        "status_at",
    )

    def __init__(
        self,
        event_ticker: str | None,
        series_ticker: str | None,
        status: str | None,
        status_at: datetime | None = None,
    ) -> None:
        self.event_ticker = event_ticker
        self.series_ticker = series_ticker
        self.status = status
        self.status_at = status_at
        """When ``status`` was learned (frame receive time or REST request time); ``None``:
        unknown (read from the database at start)."""
        self.result: str | None = None
        self.settlement_value: Decimal | None = None

    def learn_status(self, status: str | None, at: datetime | None) -> bool:
        """Merge a reported status (:func:`merge_status`); True when it was taken."""
        merged = merge_status(status, self.status, at, self.status_at)
        if merged is None or merged != status:
            return False
        if at is not None and (
            merged != self.status or self.status_at is None or at > self.status_at
        ):
            self.status_at = at  # a report without a time keeps the previous stamp
        self.status = merged
        return True


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
        status_at: datetime | None = None,
    ) -> MarketInfo:
        info = self.markets.get(ticker)
        if info is None:
            info = self.markets[ticker] = MarketInfo(
                event_ticker, series_ticker, status, status_at if status else None
            )
            return info
        if event_ticker:
            info.event_ticker = event_ticker
        if series_ticker:
            info.series_ticker = series_ticker
        info.learn_status(status, status_at)
        return info

    def open_markets(self) -> list[str]:
        return [t for t, m in self.markets.items() if m.status in OPEN_STATUSES]

    def unsettled_markets(self) -> list[str]:
        """Markets whose lifecycle has not ended as far as we know (not finalized)."""
        return [t for t, m in self.markets.items() if m.status not in FINAL_STATUSES]
