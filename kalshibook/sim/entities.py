"""The exchange's catalogue objects: tick grids, series, events and markets (with their books).

Books hold YES bids and NO bids (NO in NO-leg prices, Kalshi's default) as ``{price: size}``,
integer prices in :data:`~kalshibook.sim.wire.UNIT` and sizes in hundredths.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Final

from kalshibook.sim.records import QuoteRec
from kalshibook.sim.wire import PRICE_STR, UNIT

__all__ = ("GRIDS", "Event", "Grid", "Market", "Series", "rules_primary", "strike_num")


class Grid:
    """A tick grid: the sorted valid prices strictly between 0 and 1."""

    __slots__ = ("name", "prices", "ranges")

    def __init__(self, name: str, prices: list[int], ranges: list[dict[str, str]]) -> None:
        self.name = name
        self.prices: tuple[int, ...] = tuple(prices)
        self.ranges = ranges

    @property
    def lowest(self) -> int:
        return self.prices[0]

    def floor(self, p: int) -> int:
        """Largest valid price <= p, or 0 when none."""
        i = bisect.bisect_right(self.prices, p) - 1
        return self.prices[i] if i >= 0 else 0

    def contains(self, p: int) -> bool:
        i = bisect.bisect_left(self.prices, p)
        return i < len(self.prices) and self.prices[i] == p


def _range(start: int, end: int, step: int) -> dict[str, str]:
    return {"start": PRICE_STR[start], "end": PRICE_STR[end], "step": PRICE_STR[step]}


GRIDS: Final[dict[str, Grid]] = {
    "linear_cent": Grid("linear_cent", list(range(100, UNIT, 100)), [_range(0, UNIT, 100)]),
    "deci_cent": Grid("deci_cent", list(range(10, UNIT, 10)), [_range(0, UNIT, 10)]),
    "tapered_deci_cent": Grid(
        "tapered_deci_cent",
        list(range(10, 1000, 10)) + list(range(1000, 9000, 100)) + list(range(9000, UNIT, 10)),
        [_range(0, 1000, 10), _range(1000, 9000, 100), _range(9000, UNIT, 10)],
    ),
}


@dataclass(slots=True, eq=False)
class Series:
    ticker: str
    title: str
    category: str
    frequency: str
    tags: list[str]
    kind: str
    """``between`` | ``greater`` | ``binary``: the shape of its events."""
    base: float
    step: float
    unit: str
    index: int
    updated_ms: int
    fee_type: str = "quadratic"


@dataclass(slots=True, eq=False)
class Event:
    event_ticker: str
    series_ticker: str
    title: str
    sub_title: str
    category: str
    kind: str
    mutually_exclusive: bool
    grid: Grid
    index: int
    created_ms: int
    open_ms: int
    close_ms: int
    mu: float
    sigma: float
    status: str = "unopened"
    """``unopened`` | ``open`` | ``closed`` | ``determined`` | ``settled``."""
    determined_ms: int = 0
    settled_ms: int = 0
    value: float | None = None
    updated_ms: int = 0
    markets: list[Market] = field(default_factory=list)

    @property
    def collateral_return_type(self) -> str:
        return "MECNET" if self.mutually_exclusive else ""


@dataclass(slots=True, eq=False)
class Market:
    ticker: str
    event: Event
    market_id: str
    index: int
    strike_type: str | None
    floor_strike: float | None
    cap_strike: float | None
    yes_sub_title: str
    no_sub_title: str
    half_spread: int
    gap: int
    illiquid: bool
    status: str = "initialized"
    """Kalshi's market status: initialized | active | closed | determined | finalized."""
    yes: dict[int, int] = field(default_factory=dict)
    no: dict[int, int] = field(default_factory=dict)
    last_price: int = 0
    last_trade_size: int = 0
    volume: int = 0
    oi: int = 0
    prev_yes_bid: int = 0
    prev_yes_ask: int = 0
    prev_price: int = 0
    result: str = ""
    settlement_value: int | None = None
    updated_ms: int = 0
    changes: int = 0
    """Book changes so far (checkpoint cadence for the truth writer)."""
    live_pos: int = -1
    quotes: list[QuoteRec] = field(default_factory=list)

    @property
    def grid(self) -> Grid:
        return self.event.grid

    @property
    def series_ticker(self) -> str:
        return self.event.series_ticker

    def top(self) -> tuple[int, int, int, int]:
        """``(yes_bid, yes_bid_size, yes_ask, yes_ask_size)``; ask = 1 - best NO bid."""
        yes, no = self.yes, self.no
        if yes:
            bb = max(yes)
            bbs = yes[bb]
        else:
            bb = bbs = 0
        if no:
            bn = max(no)
            return bb, bbs, UNIT - bn, no[bn]
        return bb, bbs, UNIT, 0

    def levels(self, side: str) -> list[tuple[int, int]]:
        """``[(price, size)]`` ascending (best bid last), Kalshi's order."""
        book = self.yes if side == "yes" else self.no
        return sorted(book.items())


def rules_primary(m: Market) -> str:
    ev = m.event
    if m.strike_type is None:
        return f"If the outcome of {ev.title} is Yes, then the market resolves to Yes."
    return f"If the value for {ev.title} is {m.yes_sub_title}, then the market resolves to Yes."


def strike_num(x: float) -> float | int:
    """A strike or value as a JSON number: 4 decimals at most, integral values as ``int``."""
    r = round(x, 4)
    return int(r) if r == int(r) else r
