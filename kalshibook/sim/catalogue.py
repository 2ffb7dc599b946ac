"""Catalogue generation: series templates, and new events with their markets (strike ladders).

Events are mutually exclusive "between" ladders (two tails plus buckets), non-exclusive "greater"
ladders, or single binary markets; a few events have no series (``series_ticker == ""``). Every
event gets a hidden underlying (``mu``, ``sigma``) that drives its markets' fair prices.
"""

from __future__ import annotations

import itertools
from typing import Final

from kalshibook.sim.books import BookEngine
from kalshibook.sim.entities import GRIDS, Event, Market, Series, strike_num
from kalshibook.sim.wire import date_code

__all__ = ("CatalogueMaker",)

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


def _label(x: float, unit: str) -> str:
    """Human strike label: ``$94,000``, ``62°``, ``0.3%``."""
    if unit == "$":
        v = strike_num(x)
        return f"${v:,}"
    return f"{strike_num(x)}{unit}"


_TAG_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def run_tag(start_ms: int) -> str:
    """Four characters of the run's start second (a 19-day cycle) in event tickers: an exchange
    never reuses a ticker, and two runs of the simulator against one database (a second `make
    demo`) must not either, or the recorder would take a new market for an old one."""
    n = start_ms // 1000 % len(_TAG_DIGITS) ** 4
    out = ""
    for _ in range(4):
        n, d = divmod(n, len(_TAG_DIGITS))
        out = _TAG_DIGITS[d] + out
    return out


def _ticker_strike(x: float) -> str:
    """Strike as it appears in a ticker (no second ``-``: ``-0.4`` becomes ``M0.4``)."""
    return f"{strike_num(x)}".replace("-", "M")


class CatalogueMaker(BookEngine):
    """Creates events and markets (their market ids come from the same seeded stream)."""

    series: dict[str, Series]
    events: dict[str, Event]
    markets: dict[str, Market]
    markets_by_id: dict[str, Market]
    market_list: list[Market]
    """Every market in creation order (``market_list[i].index == i``)."""
    event_list: list[Event]
    """Every event in creation order (``event_list[i].index == i``)."""
    _event_n: int

    def update_series(
        self,
        ticker: str,
        at_ms: int,
        *,
        title: str | None = None,
        fee_type: str | None = None,
    ) -> Series:
        """Kalshi edits a series (its title or fee type) at ``at_ms``: no frame is published,
        only its REST object and ``last_updated_ts`` change (``GET /series?min_updated_ts``)."""
        s = self.series[ticker]
        if title is not None:
            s.title = title
        if fee_type is not None:
            s.fee_type = fee_type
        s.updated_ms = max(s.updated_ms, at_ms)
        return s

    def _make_series(self) -> None:
        """The series, one per theme (numbered beyond the first round)."""
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
        code = date_code(close_ms) + run_tag(self.config.start_ms)
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
