"""Pure conversions from kalshibook's read rows to Kalshi's shapes, and Kalshi's candle rules.

Candles (``period_interval`` 1, 60, 1440 minutes = kalshibook's 1m, 1h, 1d periods):

* **Label.** ``end_period_ts`` = the period's start + 1 minute / 1 hour / **24 hours**. For 1m/1h
  periods and ordinary New York days that is the period's end. ``/v1``'s candles carry the same
  label (``kalshibook.api.routes.candles.candles_out``). On the 25-hour New York day that
  ends daylight saving time Kalshi labels the day local midnight + 24 h (2025-11-02: 2025-11-03
  04:00Z, one hour before the day ends; the recorded fixture shows it), and this module does the
  same; on the 23-hour spring-forward day the same rule gives one hour after its end (not
  observed in any recording).
* **Range.** A candle is returned when its label lies in ``[start_ts, end_ts]``, both inclusive,
  and its period has ended (Kalshi never returns the period in progress).
* **Keys.** Missing values are omitted: a period without trades has no ``open/high/low/close/
  mean`` price keys (``previous_dollars`` stays while a trade happened before it); ``mean_dollars``
  is the volume-weighted mean rounded half-even to 4 decimal places, as Kalshi shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

from kalshibook.api.kalshi_compat import schemas as k
from kalshibook.domain.book import OrderBook
from kalshibook.domain.candle_rows import CandleRow
from kalshibook.domain.candles import Candle, Interval
from kalshibook.domain.prices import fmt_count, fmt_dollars
from kalshibook.errors import BadRequest
from kalshibook.storage.reads import EventRow, MarketRow, SeriesRow
from kalshibook.storage.trade_reads import TradeRow

__all__ = (
    "EPOCH",
    "LABEL_WIDTH",
    "PERIODS",
    "book_out",
    "candle_out",
    "carried_candle",
    "event_out",
    "hist_candle_out",
    "label_of",
    "market_out",
    "parse_period",
    "read_range",
    "returned",
    "series_out",
    "trade_out",
)

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
PERIODS: Final[dict[int, Interval]] = {1: "1m", 60: "1h", 1440: "1d"}
LABEL_WIDTH: Final[dict[Interval, timedelta]] = {
    "1m": timedelta(minutes=1),
    "1h": timedelta(hours=1),
    "1d": timedelta(hours=24),
}
_ONE_US: Final = timedelta(microseconds=1)
_MEAN_PLACES: Final = Decimal("0.0001")


def _number(value: Decimal | None) -> int | float | None:
    """Kalshi's JSON numbers (strikes, fee multipliers)."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def _dollars(value: Decimal | None) -> str | None:
    return None if value is None else fmt_dollars(value)


def series_out(row: SeriesRow) -> k.Series:
    return k.Series(
        ticker=row.ticker,
        title=row.title,
        category=row.category,
        frequency=row.frequency,
        tags=None if row.tags is None else list(row.tags),
        fee_type=row.fee_type,
        fee_multiplier=_number(row.fee_multiplier),
        last_updated_ts=row.updated_at,
    )


def market_out(row: MarketRow) -> k.Market:
    return k.Market(
        ticker=row.ticker,
        event_ticker=row.event_ticker,
        series_ticker=row.series_ticker,
        market_type=row.market_type,
        title=row.title,
        yes_sub_title=row.yes_sub_title,
        no_sub_title=row.no_sub_title,
        status=row.status,
        created_time=row.created_time,
        updated_time=row.updated_at,
        open_time=row.open_time,
        close_time=row.close_time,
        expected_expiration_time=row.expected_expiration_time,
        latest_expiration_time=row.latest_expiration_time,
        strike_type=row.strike_type,
        floor_strike=_number(row.floor_strike),
        cap_strike=_number(row.cap_strike),
        functional_strike=row.functional_strike,
        custom_strike=row.custom_strike,
        price_level_structure=row.price_level_structure,
        price_ranges=row.price_ranges,
        result=row.result or "",
        settlement_value_dollars=_dollars(row.settlement_value),
        settlement_ts=row.settled_at,
    )


def event_out(row: EventRow, markets: Sequence[MarketRow] | None = None) -> k.Event:
    return k.Event(
        event_ticker=row.event_ticker,
        series_ticker=row.series_ticker or "",
        title=row.title,
        sub_title=row.sub_title,
        category=row.category,
        mutually_exclusive=row.mutually_exclusive,
        collateral_return_type=row.collateral_return_type,
        strike_date=row.strike_date,
        strike_period=row.strike_period,
        last_updated_ts=row.updated_at,
        markets=None if markets is None else [market_out(m) for m in markets],
    )


def trade_out(row: TradeRow) -> k.Trade:
    return k.Trade(
        trade_id=row.trade_id,
        ticker=row.market_ticker,
        count_fp=row.contracts,
        yes_price_dollars=row.yes_price,
        no_price_dollars=row.no_price,
        taker_outcome_side=row.taker_outcome_side,
        taker_book_side=row.taker_book_side,
        taker_side=row.taker_outcome_side,
        created_time=row.created_time.astimezone(UTC),
        is_block_trade=row.is_block_trade,
    )


def book_out(book: OrderBook, depth: int | None) -> k.Orderbook:
    """Both sides ascending by price, best bid last, the best ``depth`` levels if given."""

    def side(name: str) -> list[tuple[str, str]]:
        return [(fmt_dollars(p), fmt_count(q)) for p, q in book.levels(name, depth)]

    return k.Orderbook(yes_dollars=side("yes"), no_dollars=side("no"))


# --- candles ------------------------------------------------------------------------------------


def parse_period(value: int | None, name: str = "period_interval") -> Interval:
    if value is None:
        raise BadRequest(f"{name} is required: 1, 60 or 1440 (minutes)", parameter=name)
    interval = PERIODS.get(value)
    if interval is None:
        raise BadRequest(f"{name} must be 1, 60 or 1440, got {value}", parameter=name)
    return interval


def label_of(c: Candle | CandleRow, interval: Interval) -> datetime:
    """The instant Kalshi's ``end_period_ts`` names for a period (see the module docstring)."""
    return c.start + LABEL_WIDTH[interval]


def read_range(start: datetime, end: datetime, interval: Interval) -> tuple[datetime, datetime]:
    """``[t0, t1)`` of period starts to read (kalshibook's rule) so that every period whose label
    lies in ``[start, end]`` is among them; :func:`returned` then keeps exactly those."""
    width = LABEL_WIDTH[interval]
    return start - width, end - width + _ONE_US


def returned(c: Candle, interval: Interval, start: datetime, end: datetime, now: datetime) -> bool:
    """Kalshi returns a candle when its label is in ``[start, end]`` and the period has ended."""
    return start <= label_of(c, interval) <= end and c.end <= now


def _mean(c: Candle) -> str | None:
    if c.vwap is None:
        return None
    return fmt_dollars(c.vwap.quantize(_MEAN_PLACES, rounding=ROUND_HALF_EVEN))


def _oi(c: Candle) -> str | None:
    return None if c.open_interest is None else fmt_count(c.open_interest)


def candle_out(c: Candle, interval: Interval) -> k.Candle:
    d = _dollars
    return k.Candle(
        end_period_ts=int(label_of(c, interval).timestamp()),
        yes_bid=k.OHLC(
            open_dollars=d(c.yes_bid_open),
            low_dollars=d(c.yes_bid_low),
            high_dollars=d(c.yes_bid_high),
            close_dollars=d(c.yes_bid_close),
        ),
        yes_ask=k.OHLC(
            open_dollars=d(c.yes_ask_open),
            low_dollars=d(c.yes_ask_low),
            high_dollars=d(c.yes_ask_high),
            close_dollars=d(c.yes_ask_close),
        ),
        price=k.Price(
            open_dollars=d(c.open),
            low_dollars=d(c.low),
            high_dollars=d(c.high),
            close_dollars=d(c.close),
            mean_dollars=_mean(c),
            previous_dollars=d(c.previous),
        ),
        volume_fp=fmt_count(c.volume),
        open_interest_fp=_oi(c),
    )


def hist_candle_out(c: Candle, interval: Interval) -> k.HistCandle:
    """The historical endpoint's names: no ``_dollars``/``_fp`` suffixes, same values."""
    live = candle_out(c, interval)
    bid, ask, p = live.yes_bid, live.yes_ask, live.price
    return k.HistCandle(
        end_period_ts=live.end_period_ts,
        yes_bid=k.HistOHLC(
            open=bid.open_dollars,
            low=bid.low_dollars,
            high=bid.high_dollars,
            close=bid.close_dollars,
        ),
        yes_ask=k.HistOHLC(
            open=ask.open_dollars,
            low=ask.low_dollars,
            high=ask.high_dollars,
            close=ask.close_dollars,
        ),
        price=k.HistPrice(
            open=p.open_dollars,
            low=p.low_dollars,
            high=p.high_dollars,
            close=p.close_dollars,
            mean=p.mean_dollars,
            previous=p.previous_dollars,
        ),
        volume=live.volume_fp,
        open_interest=live.open_interest_fp,
    )


def carried_candle(before: Candle, interval: Interval) -> k.Candle:
    """``include_latest_before_start``: the period just before the range, as Kalshi's synthetic
    candle: no trade prices, bid/ask flat at their close, ``previous`` = the last trade price."""
    last = before.close if before.close is not None else before.previous
    bid, ask = _dollars(before.yes_bid_close), _dollars(before.yes_ask_close)
    return k.Candle(
        end_period_ts=int(label_of(before, interval).timestamp()),
        yes_bid=k.OHLC(open_dollars=bid, low_dollars=bid, high_dollars=bid, close_dollars=bid),
        yes_ask=k.OHLC(open_dollars=ask, low_dollars=ask, high_dollars=ask, close_dollars=ask),
        price=k.Price(previous_dollars=_dollars(last)),
        volume_fp=fmt_count(Decimal(0)),
        open_interest_fp=_oi(before),
    )
