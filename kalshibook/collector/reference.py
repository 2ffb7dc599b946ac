"""REST objects -> rows of the reference tables and trades (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

from kalshibook.collector.catalog import Catalog
from kalshibook.kalshi.rest_models import Event, Market, RestTrade, Series
from kalshibook.storage.tables import EventRow, MarketRow, SeriesRow, SettlementRow, TradeRow

__all__ = (
    "SETTLEMENT_RESULTS",
    "event_row",
    "market_row",
    "rest_trade_row",
    "series_row",
    "settlement_row",
)

SETTLEMENT_RESULTS = frozenset({"yes", "no", "scalar", "void"})


def price_ranges_json(ranges: Sequence[Any] | None) -> bytes | None:
    """A market's price ranges as stored in ``markets.price_ranges`` (jsonb), None when unknown."""
    if ranges is None:
        return None
    return msgspec.json.encode(
        [{"start": str(r.start), "end": str(r.end), "step": str(r.step)} for r in ranges]
    )


_encode = msgspec.json.encode
_ZERO = Decimal(0)
_ONE = Decimal(1)


def _json(v: Any) -> bytes | None:
    return None if v is None else _encode(v)


def _text(v: Any) -> str | None:
    if v is None or v == "":
        return None
    return v if isinstance(v, str) else _encode(v).decode()


def _price(v: Decimal | None) -> Decimal | None:
    if v is None or v < _ZERO or v > _ONE:
        return None
    return v


def market_row(m: Market, catalog: Catalog, asked_at: datetime | None = None) -> MarketRow | None:
    """The ``markets`` row of a REST market; the status is merged with what the catalog already
    knows (:func:`~kalshibook.collector.catalog.merge_status`: the newer report wins, resolution
    never goes back). ``asked_at`` is when the REST request was sent (``None``: unknown). ``None``
    without an event ticker."""
    if not m.event_ticker:
        return None
    info = catalog.market(m.ticker)
    series = catalog.events.get(m.event_ticker)
    if series is None and info is not None:
        series = info.series_ticker
    info = catalog.note_market(m.ticker, m.event_ticker, series, m.status or None, asked_at)
    status = info.status or "unknown"
    ranges = price_ranges_json(m.price_ranges)
    return MarketRow(
        m.ticker,
        m.event_ticker,
        series,
        m.market_type,
        m.title,
        m.yes_sub_title,
        m.no_sub_title,
        status,
        m.created_time,
        m.open_time,
        m.close_time,
        m.expected_expiration_time,
        m.latest_expiration_time,
        m.strike_type,
        m.floor_strike,
        m.cap_strike,
        _text(m.functional_strike),
        _json(m.custom_strike),
        m.price_level_structure or None,
        ranges,
        m.result or None,
        _price(m.settlement_value_dollars),
        _encode(m.raw),
    )


def event_row(e: Event) -> EventRow:
    return EventRow(
        e.event_ticker,
        e.series_ticker or None,
        e.title,
        e.sub_title,
        e.category,
        e.mutually_exclusive,
        e.collateral_return_type,
        e.strike_date,
        e.strike_period or None,
        _encode(e.raw),
    )


def series_row(s: Series) -> SeriesRow:
    return SeriesRow(
        s.ticker,
        s.title,
        s.category,
        s.frequency,
        list(s.tags) if s.tags is not None else None,
        s.fee_type,
        s.fee_multiplier,
        _encode(s.raw),
    )


def settlement_row(m: Market, catalog: Catalog) -> SettlementRow | None:
    """The confirmed settlement of a REST market, or ``None`` while it is not determined."""
    result = m.result
    if result not in SETTLEMENT_RESULTS or m.status not in (
        "determined",
        "finalized",
        "settled",
        "amended",
        "disputed",
    ):
        return None
    info = catalog.market(m.ticker)
    series = catalog.events.get(m.event_ticker or "") if m.event_ticker else None
    if series is None and info is not None:
        series = info.series_ticker
    return SettlementRow(
        m.ticker,
        m.event_ticker,
        series,
        result,
        _price(m.settlement_value_dollars),
        None,
        m.settlement_ts,
        "rest",
        True,
        _encode(m.raw),
    )


def rest_trade_row(t: RestTrade, received_at: datetime, exchange_seq: int) -> TradeRow | None:
    if t.created_time is None:
        return None
    yes = t.yes_price_dollars
    no = t.no_price_dollars if t.no_price_dollars is not None else _ONE - yes
    outcome = t.taker_outcome_side or t.taker_side
    book = t.taker_book_side
    if book is None and outcome in ("yes", "no"):
        book = "bid" if outcome == "yes" else "ask"
    return TradeRow(
        t.created_time,
        UUID(t.trade_id),
        t.ticker,
        yes,
        no,
        t.count_fp,
        outcome,
        book,
        bool(t.is_block_trade),
        "rest",
        received_at,
        exchange_seq,
    )
