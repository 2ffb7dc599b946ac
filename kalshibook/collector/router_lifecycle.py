"""Lifecycle handling of the router: market and event lifecycle frames, fee updates.

Every lifecycle frame becomes a ``lifecycle_events`` row (stamped with the exchange clock: these
frames carry no time). Market frames also keep the catalog and the ``markets`` row current (the
status stamped with the frame's receive time, see :mod:`~kalshibook.collector.catalog`), write
``settlements`` rows when the result is known, and ask for follow-up work: subscribe created or
activated markets and every market that becomes active (an unpause), enrich what the catalog
lacks and markets whose price grid changed, confirm settlements, unfollow settled markets.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from kalshibook.collector.catalog import frame_status
from kalshibook.collector.reference import SETTLEMENT_RESULTS, price_ranges_json
from kalshibook.collector.router_core import RouterCore, encode_json
from kalshibook.kalshi.ws_frames import EventFeeUpdate, EventLifecycle, MarketLifecycle
from kalshibook.storage.tables import EventRow, LifecycleRow, MarketRow, SettlementRow

__all__ = ("LifecycleRouting",)

_EMPTY_JSON: Final = b"{}"
_ROW_EVENTS: Final = frozenset({"metadata_updated", "price_level_structure_updated"})
"""Event types that change a market's stored fields without a status or close time."""


class LifecycleRouting(RouterCore):
    """The ``market_lifecycle_v2`` channel."""

    def _on_lifecycle(self, f: MarketLifecycle) -> None:
        rec = f.received_at
        assert rec is not None
        ts = self._now_ts(rec)
        ticker = f.market_ticker
        et = f.event_type
        cat = self.catalog
        info = cat.market(ticker)
        meta = f.additional_metadata
        event_ticker = meta.event_ticker if meta is not None else None
        if info is None:
            info = cat.note_market(ticker, event_ticker, None, None)
        elif event_ticker:
            info.event_ticker = event_ticker
        self._emit(
            "lifecycle_events",
            LifecycleRow(
                ts,
                ticker,
                info.event_ticker,
                rec,
                "market",
                et,
                f.result or None,
                f.settlement_value,
                f.open_ts,
                f.close_ts,
                f.determination_ts,
                f.settled_ts,
                f.sid,
                f.seq,
                encode_json(f.raw),
            ),
        )
        if f.multivariate:
            return
        before = info.status
        status: str | None = None
        implied = frame_status(et, f.is_deactivated)
        if implied is not None:
            info.learn_status(implied, rec)  # stamped with the frame's time when taken
            status = info.status
        if et == "determined":
            if f.result:
                info.result = f.result
            if f.settlement_value is not None:
                info.settlement_value = f.settlement_value
        self._market_row(f, info, status)
        if et in ("created", "activated") or (status == "active" and before != "active"):
            self.effects.subscribe_markets([ticker])  # also unpaused (deactivated, false)
        if et in ("created", "activated"):
            if et == "created" or info.event_ticker is None:
                self.effects.enrich(market=ticker, event=info.event_ticker)
        elif et == "price_level_structure_updated":
            # the frame's grid is in the markets row already (_market_row); the REST view
            # follows with whatever else the change moved
            self.effects.enrich(market=ticker, event=info.event_ticker)
        elif et == "determined":
            self._settlement_row(ticker, info, f, rec)
            self.effects.confirm_settlement(ticker)
        elif et == "settled":
            self._settlement_row(ticker, info, f, rec)
            self.effects.confirm_settlement(ticker)
            self.effects.unsubscribe_markets([ticker])

    def _market_row(self, f: MarketLifecycle, info: Any, status: str | None) -> None:
        """Keep ``markets`` current from lifecycle (nulls never erase stored values)."""
        if info.event_ticker is None:
            self.effects.enrich(market=f.market_ticker)
            return
        if status is None and f.close_ts is None and f.event_type not in _ROW_EVENTS:
            return
        current = status or info.status
        if current is None:
            self.effects.enrich(market=f.market_ticker, event=info.event_ticker)
            return
        meta = f.additional_metadata
        ranges = price_ranges_json(f.price_ranges)
        custom = (
            f.custom_strike
            if f.custom_strike is not None
            else (meta.custom_strike if meta is not None else None)
        )
        self._emit(
            "markets",
            MarketRow(
                f.market_ticker,
                info.event_ticker,
                info.series_ticker,
                None,
                meta.title if meta is not None else None,
                f.yes_sub_title or (meta.yes_sub_title if meta is not None else None),
                f.no_sub_title or (meta.no_sub_title if meta is not None else None),
                current,
                None,
                f.open_ts,
                f.close_ts,
                meta.expected_expiration_ts if meta is not None else None,
                None,
                f.strike_type or (meta.strike_type if meta is not None else None),
                f.floor_strike
                if f.floor_strike is not None
                else (meta.floor_strike if meta is not None else None),
                f.cap_strike
                if f.cap_strike is not None
                else (meta.cap_strike if meta is not None else None),
                None,
                None if custom is None else encode_json(custom),
                f.price_level_structure,
                ranges,
                f.result or None,
                f.settlement_value,
                _EMPTY_JSON,
            ),
        )

    def _settlement_row(self, ticker: str, info: Any, f: MarketLifecycle, rec: datetime) -> None:
        result = f.result or info.result
        if result not in SETTLEMENT_RESULTS:
            return  # the REST confirmation will write it
        value = f.settlement_value if f.settlement_value is not None else info.settlement_value
        self._emit(
            "settlements",
            SettlementRow(
                ticker,
                info.event_ticker,
                info.series_ticker,
                result,
                value,
                f.determination_ts,
                f.settled_ts,
                "ws",
                False,
                encode_json(f.raw),
            ),
        )

    def _event_row(self, f: EventLifecycle | EventFeeUpdate, kind: str, event_type: str) -> None:
        """A lifecycle_events row for an event-level frame (no market, no typed market fields)."""
        rec = f.received_at
        assert rec is not None
        row = LifecycleRow(
            self._now_ts(rec), None, f.event_ticker, rec, kind, event_type,
            None, None, None, None, None, None, f.sid, f.seq, encode_json(f.raw),
        )  # fmt: skip
        self._emit("lifecycle_events", row)

    def _on_event_lifecycle(self, f: EventLifecycle) -> None:
        self._event_row(f, "event", "event_lifecycle")
        self._emit(
            "events",
            EventRow(
                f.event_ticker,
                f.series_ticker or None,
                f.title,
                f.subtitle,
                None,
                None,
                f.collateral_return_type,
                f.strike_date,
                f.strike_period or None,
                encode_json(f.raw),
            ),
        )
        self.catalog.events.setdefault(f.event_ticker, f.series_ticker or None)
        self.effects.enrich(event=f.event_ticker)

    def _on_fee(self, f: EventFeeUpdate) -> None:
        self._event_row(f, "event_fee", "event_fee_update")
