"""A pure, seeded model of a Kalshi exchange: catalogue, order books, trades, lifecycle.

No I/O and no clock of its own: the caller feeds exchange time (Unix ms) and a frame budget to
:meth:`Exchange.advance`, which returns what the exchange publishes, already in Kalshi's 2026 wire
shapes (the ``msg`` object of each WebSocket frame). The same seed and the same sequence of
``advance`` calls always give the same output.

Model in brief
--------------
* series > events > markets. Events are mutually exclusive "between" ladders (two tails plus
  buckets), non-exclusive "greater" ladders, or single binary markets; a few events have no series
  (``series_ticker == ""``).
* Every event has a hidden underlying (``mu``, ``sigma``) that random-walks; a market's fair YES
  probability is the normal probability of its strike condition, so a ladder's prices move
  together and an exclusive ladder sums to about 1. At determination one value is drawn from the
  underlying and every market of the event resolves from it (exactly one bucket of an exclusive
  ladder wins).
* Books hold YES bids and NO bids (NO in NO-leg prices, Kalshi's default), integer prices in
  :data:`~kalshibook.sim.wire.UNIT` on the market's tick grid and sizes in hundredths. Makers add
  and cancel around the fair price; takers cross: buying YES consumes the best NO bid at YES price
  ``1 - no_bid``, buying NO consumes the best YES bid. The book is never crossed: best YES bid +
  best NO bid < 1, always.
* Lifecycle on a compressed clock: created -> activated -> (close_date_updated) -> closed (the book
  is cancelled, deltas published) -> determined -> settled; new events appear over time.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import msgspec

from kalshibook.sim.wire import PRICE_STR, UNIT, date_code, rfc3339_ms, size_str

__all__ = (
    "CLOSED",
    "DELTA",
    "EVENT_LIFECYCLE",
    "GRIDS",
    "LIFECYCLE",
    "TICKER",
    "TRADE",
    "Emit",
    "Event",
    "Exchange",
    "Grid",
    "Market",
    "ModelConfig",
    "QuoteRec",
    "Series",
    "TradeLog",
    "TradeRec",
)

# Kinds of emitted records. All but CLOSED are Kalshi frame types.
DELTA: Final = "orderbook_delta"
TRADE: Final = "trade"
TICKER: Final = "ticker"
LIFECYCLE: Final = "market_lifecycle_v2"
EVENT_LIFECYCLE: Final = "event_lifecycle"
CLOSED: Final = "closed"
"""Internal record (no frame: Kalshi has no "closed" lifecycle event) marking trading close."""


class Emit(NamedTuple):
    """One thing the exchange published at ``ts_ms``."""

    kind: str
    ticker: str
    """Market ticker (the event ticker for ``event_lifecycle``)."""
    ts_ms: int
    msg: dict[str, Any]
    """The frame's ``msg`` object, exactly as Kalshi sends it."""
    cid: int = 0
    """Exchange-wide book change id (deltas only; strictly increasing)."""


class TradeRec(NamedTuple):
    n: int
    """Exchange-wide trade number (strictly increasing)."""
    ts_ms: int
    trade_id: str
    ticker: str
    yes_price: int
    size: int
    """Contracts traded, hundredths."""
    taker_outcome_side: str
    is_block_trade: bool
    open_interest: int
    """The market's open interest after the trade (hundredths)."""


class QuoteRec(NamedTuple):
    ts_ms: int
    yes_bid: int
    """0 when there is no YES bid."""
    yes_ask: int
    """``UNIT`` when there is no NO bid."""


class ModelConfig(msgspec.Struct, frozen=True, kw_only=True):
    seed: int = 1
    markets: int = 50
    """Open markets at start (plus a few unopened and already settled ones)."""
    lifetime_s: float = 600.0
    """Trading life of a market (open -> close) on the compressed clock."""
    new_markets_per_min: float | None = None
    """New markets created per minute; ``None`` = steady state (markets / lifetime)."""
    start_ms: int = 1_780_000_000_000
    """Exchange time of the initial state (Unix ms)."""
    trade_prob: float = 0.12
    cancel_prob: float = 0.40
    block_trade_prob: float = 0.002
    illiquid_prob: float = 0.03
    """Share of markets whose book stays empty."""
    close_update_prob: float = 0.1
    """Share of events whose close date moves once (``close_date_updated``)."""
    max_levels: int = 30
    trade_history: int = 500_000
    """Trades kept for REST ``/markets/trades`` (oldest dropped first)."""
    quote_history: int = 20_000
    """Top-of-book changes kept per market for candlesticks."""


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

    @property
    def highest(self) -> int:
        return self.prices[-1]

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


class TradeLog:
    """Recent trades, exchange-wide and per market, ordered by trade number (and time)."""

    def __init__(self, cap: int) -> None:
        self.cap = max(1, cap)
        self._all: list[TradeRec] = []
        self._head = 0
        self._by: dict[str, list[TradeRec]] = {}
        self._heads: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._all) - self._head

    def append(self, rec: TradeRec) -> None:
        self._all.append(rec)
        lst = self._by.get(rec.ticker)
        if lst is None:
            lst = self._by[rec.ticker] = []
            self._heads[rec.ticker] = 0
        lst.append(rec)
        if len(self._all) - self._head > self.cap:
            old = self._all[self._head]
            self._head += 1
            self._heads[old.ticker] += 1
            if self._head > 4096 and self._head * 2 > len(self._all):
                del self._all[: self._head]
                self._head = 0
            h = self._heads[old.ticker]
            olds = self._by[old.ticker]
            if h == len(olds):
                del self._by[old.ticker]
                del self._heads[old.ticker]
            elif h > 256 and h * 2 > len(olds):
                del olds[:h]
                self._heads[old.ticker] = 0

    def all(self, ticker: str | None = None) -> list[TradeRec]:
        """Oldest first."""
        if ticker is None:
            return self._all[self._head :]
        lst = self._by.get(ticker)
        return [] if lst is None else lst[self._heads[ticker] :]

    def page(
        self,
        ticker: str | None,
        min_ts_ms: int | None,
        max_ts_ms: int | None,
        before_n: int | None,
        limit: int,
    ) -> tuple[list[TradeRec], int | None]:
        """Newest first: up to ``limit`` trades with ``n < before_n`` inside the time window,
        and the ``n`` to continue from (``None`` at the end)."""
        if ticker is None:
            lst, lo = self._all, self._head
        else:
            found = self._by.get(ticker)
            if found is None:
                return [], None
            lst, lo = found, self._heads[ticker]
        hi = len(lst)
        if before_n is not None:
            hi = bisect.bisect_left(lst, before_n, lo, hi, key=_trade_n)
        if max_ts_ms is not None:
            hi = bisect.bisect_right(lst, max_ts_ms, lo, hi, key=_trade_ts)
        if min_ts_ms is not None:
            lo = bisect.bisect_left(lst, min_ts_ms, lo, hi, key=_trade_ts)
        start = max(lo, hi - limit)
        out = lst[start:hi]
        out.reverse()
        return out, (out[-1].n if start > lo and out else None)


def _trade_n(r: TradeRec) -> int:
    return r.n


def _trade_ts(r: TradeRec) -> int:
    return r.ts_ms


# --- catalogue templates --------------------------------------------------------------------------

_THEMES: Final[tuple[tuple[str, str, str, str, str, float, float, str], ...]] = (
    # prefix, category, title, frequency, kind, base, step, unit
    ("HIGHNY", "Climate and Weather", "Highest temperature in NYC", "daily", "between", 62, 2, "°"),
    (
        "HIGHCHI",
        "Climate and Weather",
        "Highest temperature in Chicago",
        "daily",
        "between",
        55,
        2,
        "°",
    ),
    ("BTCD", "Crypto", "Bitcoin price today at 5pm", "daily", "greater", 95000, 500, "$"),
    ("ETH", "Crypto", "Ethereum price range", "hourly", "between", 3500, 25, "$"),
    ("INXD", "Financials", "S&P 500 daily close", "daily", "between", 6000, 25, ""),
    ("CPI", "Economics", "CPI month over month", "monthly", "between", 0.2, 0.1, "%"),
    ("FED", "Economics", "Fed funds rate upper bound", "custom", "greater", 3.75, 0.25, "%"),
    ("NBAGAME", "Sports", "Pro basketball game winner", "daily", "binary", 0, 0, ""),
    ("MENTION", "Mentions", "What will be said at the briefing", "weekly", "binary", 0, 0, ""),
    ("SENATE", "Politics", "Senate vote passes", "custom", "binary", 0, 0, ""),
    ("GDP", "Economics", "GDP growth this quarter", "quarterly", "greater", 2.0, 0.5, "%"),
    (
        "RAIN",
        "Climate and Weather",
        "Rain in Seattle this month",
        "monthly",
        "between",
        3.0,
        0.5,
        " in",
    ),
)

_SCHEDULE_ACTIVATE: Final = 0
_SCHEDULE_CLOSE_UPDATE: Final = 1
_SCHEDULE_CLOSE: Final = 2
_SCHEDULE_DETERMINE: Final = 3
_SCHEDULE_SETTLE: Final = 4

_SQRT2: Final = math.sqrt(2.0)
_WHOLE_SIZES: Final = (1, 2, 5, 10, 10, 20, 25, 50, 100, 100, 150, 200, 250, 500, 1000, 2500, 5000)
_TRADE_SIZES: Final = (1, 1, 2, 3, 5, 10, 10, 15, 20, 25, 50, 75, 100, 150, 250, 500)


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / _SQRT2))


def _num(x: float) -> float | int:
    r = round(x, 4)
    return int(r) if r == int(r) else r


def _fmt_strike(x: float) -> str:
    return f"{_num(x)}"


def _label(x: float, unit: str) -> str:
    """Human strike label: ``$94,000``, ``62°``, ``0.3%``."""
    if unit == "$":
        v = _num(x)
        return f"${v:,}"
    return f"{_num(x)}{unit}"


def _ticker_strike(x: float) -> str:
    """Strike as it appears in a ticker (no second ``-``: ``-0.4`` becomes ``M0.4``)."""
    return _fmt_strike(x).replace("-", "M")


class Exchange:
    """The simulated exchange; deterministic for a seed and a sequence of ``advance`` calls."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        self.config = cfg = config or ModelConfig()
        self.rng = random.Random(cfg.seed)
        self.now_ms = cfg.start_ms
        self.lifetime_ms = max(1_000, int(cfg.lifetime_s * 1000))
        self.activation_ms = int(min(5_000.0, max(200.0, self.lifetime_ms * 0.01)))
        self.determination_ms = int(min(30_000.0, max(500.0, self.lifetime_ms * 0.01)))
        self.settlement_ms = int(min(60_000.0, max(1_000.0, self.lifetime_ms * 0.01)))
        rate = cfg.new_markets_per_min
        self.new_per_ms = (
            cfg.markets * 60.0 / (self.lifetime_ms / 1000.0) if rate is None else rate
        ) / 60_000.0
        self.series: dict[str, Series] = {}
        self.events: dict[str, Event] = {}
        self.markets: dict[str, Market] = {}
        self.markets_by_id: dict[str, Market] = {}
        self.market_list: list[Market] = []
        """Every market in creation order (``market_list[i].index == i``)."""
        self.event_list: list[Event] = []
        """Every event in creation order (``event_list[i].index == i``)."""
        self.trades = TradeLog(cfg.trade_history)
        self.cid = 0
        """Last book change id."""
        self.trade_n = 0
        self._live: list[Market] = []
        self._schedule: list[tuple[int, int, int, Event]] = []
        self._sched_n = 0
        self._spawn_acc = 0.0
        self._spawn_ms = cfg.start_ms
        self._ts_text = rfc3339_ms(self.now_ms)
        self._ts_for = self.now_ms
        self._event_n = 0
        self._build_catalogue()

    # --- public API -------------------------------------------------------------------------------

    @property
    def live_count(self) -> int:
        """Open markets with a (possibly empty) book that trades."""
        return len(self._live)

    def advance(self, now_ms: int, frames: int = 0) -> list[Emit]:
        """Move exchange time to ``now_ms`` (never backwards) and generate ``frames`` data frames.

        Scheduled lifecycle transitions and new markets due by ``now_ms`` come first (not counted
        in ``frames``), then book/trade/ticker activity until at least ``frames`` data frames were
        produced (a trade yields up to three: trade, delta, ticker).
        """
        now = now_ms if now_ms > self.now_ms else self.now_ms
        self.now_ms = now
        if now != self._ts_for:
            self._ts_for = now
            self._ts_text = rfc3339_ms(now)
        out: list[Emit] = []
        self._run_schedule(now, out)
        self._spawn(now, out)
        produced = 0
        guard = 0
        live = self._live
        rng = self.rng
        while produced < frames and live:
            # Half the activity on a "hot" tenth of the live markets, half spread evenly.
            n = len(live)
            r = rng.random()
            idx = int(r * 2.0 * max(1, n // 10)) if r < 0.5 else int((r - 0.5) * 2.0 * n)
            m = live[idx if idx < n else n - 1]
            got = self._act(m, now, out)
            produced += got
            guard = 0 if got else guard + 1
            if guard > 1000:  # pragma: no cover - only with absurd configs
                break
        return out

    def snapshot_msg(self, m: Market) -> dict[str, Any]:
        """The ``msg`` of an ``orderbook_snapshot`` (a side's key is absent when it is empty)."""
        msg: dict[str, Any] = {"market_ticker": m.ticker, "market_id": m.market_id}
        if m.yes:
            msg["yes_dollars_fp"] = [[PRICE_STR[p], size_str(s)] for p, s in sorted(m.yes.items())]
        if m.no:
            msg["no_dollars_fp"] = [[PRICE_STR[p], size_str(s)] for p, s in sorted(m.no.items())]
        return msg

    def ticker_msg(self, m: Market, now: int | None = None) -> dict[str, Any]:
        ts = self.now_ms if now is None else now
        bb, bbs, ask, asks = m.top()
        return {
            "market_id": m.market_id,
            "market_ticker": m.ticker,
            "price_dollars": PRICE_STR[m.last_price],
            "yes_bid_dollars": PRICE_STR[bb],
            "yes_ask_dollars": PRICE_STR[ask],
            "volume_fp": size_str(m.volume),
            "open_interest_fp": size_str(m.oi),
            # Every recorded prod frame has exactly floor(contracts / 2) here; we do the same.
            "dollar_volume": m.volume // 200,
            "dollar_open_interest": m.oi // 200,
            "yes_bid_size_fp": size_str(bbs),
            "yes_ask_size_fp": size_str(asks),
            "last_trade_size_fp": size_str(m.last_trade_size),
            "ts": ts // 1000,
            "ts_ms": ts,
            "time": self._ts_text if ts == self._ts_for else rfc3339_ms(ts),
        }

    # --- catalogue --------------------------------------------------------------------------------

    def _uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _build_catalogue(self) -> None:
        cfg, rng, start = self.config, self.rng, self.config.start_ms
        n_series = min(200, max(4, cfg.markets // 40))
        for i in range(n_series):
            prefix, category, title, freq, kind, base, step, unit = _THEMES[i % len(_THEMES)]
            n = i // len(_THEMES)
            ticker = f"KX{prefix}" + (f"{n + 1}" if n else "")
            self.series[ticker] = Series(
                ticker=ticker,
                title=title + (f" ({n + 1})" if n else ""),
                category=category,
                frequency=freq,
                tags=[category.split()[0]],
                kind=kind,
                base=base,
                step=step,
                unit=unit,
                index=i,
                updated_ms=start - 86_400_000 * (1 + rng.randrange(300)),
                fee_type="quadratic" if rng.random() < 0.8 else "quadratic_with_maker_fees",
            )
        life = self.lifetime_ms
        # Already settled history (catalogue only).
        target_hist = max(1, cfg.markets // 20) if cfg.markets else 0
        made = 0
        while made < target_hist:
            close = start - rng.randrange(life, 5 * life)
            ev = self._new_event(close - life - self.activation_ms, close - life, close)
            ev.status = "settled"
            self._resolve(ev)
            ev.determined_ms = close + self.determination_ms
            ev.settled_ms = ev.determined_ms + self.settlement_ms
            ev.updated_ms = ev.settled_ms
            for m in ev.markets:
                m.status = "finalized"
                m.updated_ms = ev.settled_ms
            made += len(ev.markets)
        # Open markets, their remaining lives spread over one lifetime.
        made = 0
        while made < cfg.markets:
            remaining = int(life * (0.05 + 0.95 * rng.random()))
            open_ms = start + remaining - life
            ev = self._new_event(open_ms - self.activation_ms, open_ms, start + remaining)
            self._open(ev, start, None)
            self._plan_close(ev)
            made += len(ev.markets)
        # A few markets about to open.
        made = 0
        target_soon = max(1, cfg.markets // 50) if cfg.markets else 0
        while made < target_soon:
            open_ms = start + rng.randrange(1, max(2, life // 10))
            ev = self._new_event(start - rng.randrange(1, 60_000), open_ms, open_ms + life)
            self._push(open_ms, _SCHEDULE_ACTIVATE, ev)
            made += len(ev.markets)

    def _new_event(self, created_ms: int, open_ms: int, close_ms: int) -> Event:
        rng = self.rng
        self._event_n += 1
        orphan = rng.random() < 0.05
        series_list = list(self.series.values())
        s = series_list[rng.randrange(len(series_list))]
        kind = s.kind
        if orphan:
            kind = "binary"
        r = rng.random()
        grid = GRIDS["linear_cent" if r < 0.8 else "deci_cent" if r < 0.95 else "tapered_deci_cent"]
        code = date_code(close_ms)
        if orphan:
            ticker = f"KXSIMMISC-{code}S{self._event_n}"
            series_ticker = ""
            title = f"Will event {self._event_n} happen by {code}?"
            category = "World"
        else:
            ticker = f"{s.ticker}-{code}S{self._event_n}"
            series_ticker = s.ticker
            title = f"{s.title} on {code}"
            category = s.category
        if kind == "binary":
            mu, sigma = rng.gauss(0.0, 1.0), 1.0
        else:
            mu = s.base + rng.gauss(0.0, s.step * 1.5)
            sigma = s.step * (1.0 + 2.0 * rng.random())
        ev = Event(
            event_ticker=ticker,
            series_ticker=series_ticker,
            title=title,
            sub_title=f"On {code}",
            category=category,
            kind=kind,
            mutually_exclusive=kind == "between",
            grid=grid,
            index=len(self.event_list),
            created_ms=created_ms,
            open_ms=open_ms,
            close_ms=close_ms,
            mu=mu,
            sigma=sigma,
            updated_ms=created_ms,
        )
        self.events[ticker] = ev
        self.event_list.append(ev)
        if kind == "binary":
            suffix = "" if rng.random() < 0.5 else "-YES"
            self._add_market(ev, ticker + suffix, None, None, None, "Yes", "No")
        else:
            step = s.step
            centre = round(mu / step) * step
            if kind == "between":
                buckets = rng.randint(2, 8)
                lo = centre - step * (buckets // 2)
                strikes = [lo + i * step for i in range(buckets + 1)]
                unit = s.unit
                k0 = _label(strikes[0], unit)
                self._add_market(
                    ev,
                    f"{ticker}-T{_ticker_strike(strikes[0])}",
                    "less",
                    None,
                    strikes[0],
                    f"{k0} or below",
                    f"Above {k0}",
                )
                for a, b in itertools.pairwise(strikes):
                    fa, fb = _label(a, unit), _label(b, unit)
                    self._add_market(
                        ev,
                        f"{ticker}-B{_ticker_strike(a)}",
                        "between",
                        a,
                        b,
                        f"{fa} to {fb}",
                        f"Not {fa} to {fb}",
                    )
                kn = _label(strikes[-1], unit)
                self._add_market(
                    ev,
                    f"{ticker}-T{_ticker_strike(strikes[-1])}",
                    "greater",
                    strikes[-1],
                    None,
                    f"{kn} or above",
                    f"Below {kn}",
                )
            else:
                count = rng.randint(3, 8)
                lo = centre - step * (count // 2)
                for i in range(count):
                    k = lo + i * step
                    fk = _label(k, s.unit)
                    self._add_market(
                        ev,
                        f"{ticker}-T{_ticker_strike(k)}",
                        "greater",
                        k,
                        None,
                        f"Above {fk}",
                        f"{fk} or below",
                    )
        return ev

    def _add_market(
        self,
        ev: Event,
        ticker: str,
        strike_type: str | None,
        floor_strike: float | None,
        cap_strike: float | None,
        yes_sub: str,
        no_sub: str,
    ) -> None:
        rng = self.rng
        fine = ev.grid.name == "deci_cent"
        m = Market(
            ticker=ticker,
            event=ev,
            market_id=self._uuid(),
            index=len(self.market_list),
            strike_type=strike_type,
            floor_strike=floor_strike,
            cap_strike=cap_strike,
            yes_sub_title=yes_sub,
            no_sub_title=no_sub,
            half_spread=rng.choice((20, 50, 100, 200) if fine else (100, 100, 200, 300, 500)),
            gap=rng.choice((10, 20, 50, 100) if fine else (100, 100, 100, 200)),
            illiquid=rng.random() < self.config.illiquid_prob,
            updated_ms=ev.created_ms,
        )
        ev.markets.append(m)
        self.markets[ticker] = m
        self.markets_by_id[m.market_id] = m
        self.market_list.append(m)

    # --- lifecycle --------------------------------------------------------------------------------

    def _push(self, at_ms: int, action: int, ev: Event) -> None:
        self._sched_n += 1
        heapq.heappush(self._schedule, (at_ms, self._sched_n, action, ev))

    def _plan_close(self, ev: Event) -> None:
        self._push(ev.close_ms, _SCHEDULE_CLOSE, ev)
        if self.rng.random() < self.config.close_update_prob:
            at = ev.open_ms + (ev.close_ms - ev.open_ms) // 2
            if at > self.now_ms:
                self._push(at, _SCHEDULE_CLOSE_UPDATE, ev)

    def _run_schedule(self, now: int, out: list[Emit]) -> None:
        sched = self._schedule
        while sched and sched[0][0] <= now:
            at, _, action, ev = heapq.heappop(sched)
            if action == _SCHEDULE_ACTIVATE:
                self._open(ev, at, out)
                self._plan_close(ev)
            elif action == _SCHEDULE_CLOSE_UPDATE:
                if ev.status == "open":
                    self._close_update(ev, at, out)
            elif action == _SCHEDULE_CLOSE:
                if ev.status == "open" and ev.close_ms == at:
                    self._close(ev, at, out)
            elif action == _SCHEDULE_DETERMINE:
                self._determine(ev, at, out)
            else:
                self._settle(ev, at, out)

    def _spawn(self, now: int, out: list[Emit]) -> None:
        if self.new_per_ms <= 0:
            self._spawn_ms = now
            return
        self._spawn_acc += (now - self._spawn_ms) * self.new_per_ms
        self._spawn_ms = now
        while self._spawn_acc >= 1.0:
            open_ms = now + self.activation_ms
            ev = self._new_event(now, open_ms, open_ms + self.lifetime_ms)
            self._spawn_acc -= len(ev.markets)
            out.append(
                Emit(
                    EVENT_LIFECYCLE,
                    ev.event_ticker,
                    now,
                    {
                        "event_ticker": ev.event_ticker,
                        "exchange_index": 0,
                        "title": ev.title,
                        "subtitle": ev.sub_title,
                        "collateral_return_type": ev.collateral_return_type,
                        "series_ticker": ev.series_ticker,
                    },
                )
            )
            for m in ev.markets:
                out.append(Emit(LIFECYCLE, m.ticker, now, self._created_msg(m)))
            self._push(open_ms, _SCHEDULE_ACTIVATE, ev)

    def _created_msg(self, m: Market) -> dict[str, Any]:
        ev = m.event
        meta: dict[str, Any] = {
            "name": m.yes_sub_title,
            "title": ev.title,
            "yes_sub_title": m.yes_sub_title,
            "no_sub_title": m.no_sub_title,
            "rules_primary": rules_primary(m),
            "rules_secondary": "",
            "can_close_early": True,
            "event_ticker": ev.event_ticker,
            "expected_expiration_ts": (ev.close_ms + self.determination_ms) // 1000,
        }
        if m.strike_type is not None:
            meta["strike_type"] = m.strike_type
        if m.floor_strike is not None:
            meta["floor_strike"] = _num(m.floor_strike)
        if m.cap_strike is not None:
            meta["cap_strike"] = _num(m.cap_strike)
        return {
            "market_ticker": m.ticker,
            "exchange_index": 0,
            "open_ts": ev.open_ms // 1000,
            "close_ts": ev.close_ms // 1000,
            "additional_metadata": meta,
            "event_type": "created",
            "price_level_structure": ev.grid.name,
            "price_ranges": ev.grid.ranges,
        }

    def _open(self, ev: Event, at: int, out: list[Emit] | None) -> None:
        ev.status = "open"
        if out is not None:
            ev.open_ms = at
        ev.updated_ms = ev.open_ms
        for m in ev.markets:
            m.status = "active"
            m.updated_ms = ev.updated_ms
            if out is not None:
                out.append(
                    Emit(
                        LIFECYCLE,
                        m.ticker,
                        at,
                        {"market_ticker": m.ticker, "event_type": "activated"},
                    )
                )
            if not m.illiquid:
                self._seed_book(m, at, out)
                m.live_pos = len(self._live)
                self._live.append(m)
            bb, _, ask, _ = m.top()
            m.prev_yes_bid, m.prev_yes_ask = bb, ask
            m.quotes.append(QuoteRec(ev.open_ms, bb, ask))

    def _seed_book(self, m: Market, at: int, out: list[Emit] | None) -> None:
        rng, grid = self.rng, m.grid
        fair = self._fair_units(m)
        for side, target in (("yes", fair - m.half_spread), ("no", UNIT - fair - m.half_spread)):
            book = m.yes if side == "yes" else m.no
            n_levels = rng.randint(3, 15)
            p = target
            for _ in range(n_levels):
                q = grid.floor(p)
                if q <= 0:
                    break
                size = self._draw_size()
                book[q] = book.get(q, 0) + size
                if out is not None:
                    self._emit_delta(m, side, q, size, at, out)
                p = q - m.gap * rng.randint(1, 2)
        if m.no and m.yes:  # seeding is below fair on both sides, never crossed
            assert max(m.yes) + max(m.no) < UNIT

    def _close_update(self, ev: Event, at: int, out: list[Emit]) -> None:
        rng = self.rng
        remaining = ev.close_ms - at
        new_close = at + max(1_000, int(remaining * (0.5 + rng.random())))
        ev.close_ms = new_close
        ev.updated_ms = at
        for m in ev.markets:
            m.updated_ms = at
            out.append(
                Emit(
                    LIFECYCLE,
                    m.ticker,
                    at,
                    {
                        "market_ticker": m.ticker,
                        "close_ts": new_close // 1000,
                        "event_type": "close_date_updated",
                    },
                )
            )
        self._push(new_close, _SCHEDULE_CLOSE, ev)

    def _close(self, ev: Event, at: int, out: list[Emit]) -> None:
        ev.status = "closed"
        ev.updated_ms = at
        for m in ev.markets:
            m.status = "closed"
            m.updated_ms = at
            self._unlive(m)
            for side in ("yes", "no"):
                book = m.yes if side == "yes" else m.no
                for p in sorted(book):
                    size = book.pop(p)
                    self._emit_delta(m, side, p, -size, at, out)
            out.append(
                Emit(CLOSED, m.ticker, at, {"market_ticker": m.ticker, "close_ts": at // 1000})
            )
            m.quotes.append(QuoteRec(at, 0, UNIT))
        self._push(at + self.determination_ms, _SCHEDULE_DETERMINE, ev)

    def _unlive(self, m: Market) -> None:
        pos = m.live_pos
        if pos < 0:
            return
        live = self._live
        last = live.pop()
        if last is not m:
            live[pos] = last
            last.live_pos = pos
        m.live_pos = -1

    def _resolve(self, ev: Event) -> None:
        """Draw the event's outcome and set every market's result."""
        x = self.rng.gauss(ev.mu, ev.sigma if ev.kind != "binary" else 1.0)
        ev.value = x
        for m in ev.markets:
            st = m.strike_type
            if st is None:
                yes = x > 0.0
            elif st == "greater":
                assert m.floor_strike is not None
                yes = x >= m.floor_strike
            elif st == "less":
                assert m.cap_strike is not None
                yes = x < m.cap_strike
            else:
                assert m.floor_strike is not None
                assert m.cap_strike is not None
                yes = m.floor_strike <= x < m.cap_strike
            m.result = "yes" if yes else "no"
            m.settlement_value = UNIT if yes else 0

    def _determine(self, ev: Event, at: int, out: list[Emit]) -> None:
        self._resolve(ev)
        ev.status = "determined"
        ev.determined_ms = at
        ev.updated_ms = at
        for m in ev.markets:
            m.status = "determined"
            m.updated_ms = at
            assert m.settlement_value is not None
            out.append(
                Emit(
                    LIFECYCLE,
                    m.ticker,
                    at,
                    {
                        "market_ticker": m.ticker,
                        "determination_ts": at // 1000,
                        "result": m.result,
                        "settlement_value": PRICE_STR[m.settlement_value],
                        "event_type": "determined",
                    },
                )
            )
        self._push(at + self.settlement_ms, _SCHEDULE_SETTLE, ev)

    def _settle(self, ev: Event, at: int, out: list[Emit]) -> None:
        ev.status = "settled"
        ev.settled_ms = at
        ev.updated_ms = at
        for m in ev.markets:
            m.status = "finalized"
            m.updated_ms = at
            out.append(
                Emit(
                    LIFECYCLE,
                    m.ticker,
                    at,
                    {"market_ticker": m.ticker, "settled_ts": at // 1000, "event_type": "settled"},
                )
            )

    # --- market activity --------------------------------------------------------------------------

    def _fair(self, m: Market) -> float:
        ev = m.event
        st = m.strike_type
        if st is None:
            return _phi(ev.mu)
        if st == "greater":
            assert m.floor_strike is not None
            return 1.0 - _phi((m.floor_strike - ev.mu) / ev.sigma)
        if st == "less":
            assert m.cap_strike is not None
            return _phi((m.cap_strike - ev.mu) / ev.sigma)
        assert m.floor_strike is not None
        assert m.cap_strike is not None
        return _phi((m.cap_strike - ev.mu) / ev.sigma) - _phi((m.floor_strike - ev.mu) / ev.sigma)

    def _fair_units(self, m: Market) -> int:
        f = int(self._fair(m) * UNIT)
        lo = m.grid.lowest
        return min(max(f, lo), UNIT - lo)

    def _draw_size(self) -> int:
        rng = self.rng
        if rng.random() < 0.3:
            return rng.randint(1, 20_000)
        return _WHOLE_SIZES[rng.randrange(len(_WHOLE_SIZES))] * 100

    def _draw_trade_size(self) -> int:
        rng = self.rng
        if rng.random() < 0.35:
            return rng.randint(1, 5_000)
        return _TRADE_SIZES[rng.randrange(len(_TRADE_SIZES))] * 100

    def _emit_delta(
        self, m: Market, side: str, price: int, delta: int, now: int, out: list[Emit]
    ) -> None:
        self.cid += 1
        m.changes += 1
        out.append(
            Emit(
                DELTA,
                m.ticker,
                now,
                {
                    "market_ticker": m.ticker,
                    "market_id": m.market_id,
                    "price_dollars": PRICE_STR[price],
                    "delta_fp": size_str(delta),
                    "side": side,
                    "ts": self._ts_text if now == self._ts_for else rfc3339_ms(now),
                    "ts_ms": now,
                },
                self.cid,
            )
        )

    def _act(self, m: Market, now: int, out: list[Emit]) -> int:
        """One maker or taker action on ``m``; returns the data frames emitted."""
        rng = self.rng
        ev = m.event
        if rng.random() < 0.1:
            ev.mu += rng.gauss(0.0, ev.sigma * 0.04)
        before = m.top()
        volume = m.volume
        r = rng.random()
        cfg = self.config
        if r < cfg.trade_prob:
            n = self._trade(m, now, out)
        elif r < cfg.trade_prob + cfg.cancel_prob:
            n = self._cancel(m, now, out)
        else:
            n = self._add(m, now, out)
        if n == 0:
            return 0
        after = m.top()
        if after != before or m.volume != volume:
            if after[0] != before[0] or after[2] != before[2]:
                q = m.quotes
                q.append(QuoteRec(now, after[0], after[2]))
                if len(q) > cfg.quote_history:
                    del q[: len(q) // 2]
            out.append(Emit(TICKER, m.ticker, now, self.ticker_msg(m, now)))
            n += 1
        return n

    def _add(self, m: Market, now: int, out: list[Emit]) -> int:
        rng = self.rng
        grid = m.grid
        fair = self._fair_units(m)
        side = "yes" if rng.random() < 0.5 else "no"
        book, other = (m.yes, m.no) if side == "yes" else (m.no, m.yes)
        if len(book) >= self.config.max_levels:
            return self._cancel_side(m, side, True, now, out)
        target = (fair if side == "yes" else UNIT - fair) - m.half_spread
        k = 0
        while rng.random() < 0.55 and k < 12:
            k += 1
        p = target - k * m.gap
        if other:
            cap = UNIT - max(other) - 1  # never cross: yes + no < 1
            if p > cap:
                p = cap
        p = grid.floor(p)
        if p <= 0:
            return 0
        size = self._draw_size()
        book[p] = book.get(p, 0) + size
        self._emit_delta(m, side, p, size, now, out)
        return 1

    def _cancel(self, m: Market, now: int, out: list[Emit]) -> int:
        side = "yes" if self.rng.random() < 0.5 else "no"
        book = m.yes if side == "yes" else m.no
        if len(book) <= 3:
            return self._add(m, now, out)
        return self._cancel_side(m, side, False, now, out)

    def _cancel_side(self, m: Market, side: str, far: bool, now: int, out: list[Emit]) -> int:
        rng = self.rng
        book = m.yes if side == "yes" else m.no
        if not book:
            return 0
        if far or rng.random() < 0.4:
            p = min(book)
        else:
            keys = sorted(book)
            p = keys[rng.randrange(len(keys))]
        size = book[p]
        if size > 1 and rng.random() < 0.4:
            cut = rng.randint(1, size - 1)
            book[p] = size - cut
        else:
            cut = size
            del book[p]
        self._emit_delta(m, side, p, -cut, now, out)
        return 1

    def _trade(self, m: Market, now: int, out: list[Emit]) -> int:
        rng = self.rng
        yes, no = m.yes, m.no
        if rng.random() < self.config.block_trade_prob:
            return self._block_trade(m, now, out)
        if not yes and not no:
            return self._add(m, now, out)
        fair = self._fair_units(m)
        if not yes:
            buy_yes = True
        elif not no:
            buy_yes = False
        else:
            ask = UNIT - max(no)
            bid = max(yes)
            if ask < fair:
                p_yes = 0.85
            elif bid > fair:
                p_yes = 0.15
            else:
                p_yes = 0.5
            buy_yes = rng.random() < p_yes
        if buy_yes:  # taker buys YES: consumes the best NO bid
            q = max(no)
            book, side, yes_price = no, "no", UNIT - q
        else:  # taker buys NO: consumes the best YES bid
            q = max(yes)
            book, side, yes_price = yes, "yes", q
        level = book[q]
        count = level if rng.random() < 0.2 else min(level, self._draw_trade_size())
        self._record_trade(m, now, yes_price, count, buy_yes, False, out)
        if count == level:
            del book[q]
        else:
            book[q] = level - count
        self._emit_delta(m, side, q, -count, now, out)
        return 2

    def _block_trade(self, m: Market, now: int, out: list[Emit]) -> int:
        """An off-book block trade (no book change)."""
        price = m.grid.floor(self._fair_units(m))
        if price <= 0:
            return 0
        count = self.rng.randint(10, 500) * 100
        self._record_trade(m, now, price, count, self.rng.random() < 0.5, True, out)
        return 1

    def _record_trade(
        self,
        m: Market,
        now: int,
        yes_price: int,
        count: int,
        buy_yes: bool,
        block: bool,
        out: list[Emit],
    ) -> None:
        rng = self.rng
        self.trade_n += 1
        trade_id = self._uuid()
        outcome = "yes" if buy_yes else "no"
        m.volume += count
        if rng.random() < 0.6 or m.oi < count:
            m.oi += count
        else:
            m.oi -= count
        m.last_price = yes_price
        m.last_trade_size = count
        self.trades.append(
            TradeRec(self.trade_n, now, trade_id, m.ticker, yes_price, count, outcome, block, m.oi)
        )
        out.append(
            Emit(
                TRADE,
                m.ticker,
                now,
                {
                    "trade_id": trade_id,
                    "market_ticker": m.ticker,
                    "yes_price_dollars": PRICE_STR[yes_price],
                    "no_price_dollars": PRICE_STR[UNIT - yes_price],
                    "count_fp": size_str(count),
                    "taker_side": outcome,
                    "taker_outcome_side": outcome,
                    "taker_book_side": "bid" if buy_yes else "ask",
                    "is_block_trade": block,
                    "ts": now // 1000,
                    "ts_ms": now,
                },
            )
        )


def rules_primary(m: Market) -> str:
    ev = m.event
    if m.strike_type is None:
        return f"If the outcome of {ev.title} is Yes, then the market resolves to Yes."
    return f"If the value for {ev.title} is {m.yes_sub_title}, then the market resolves to Yes."
