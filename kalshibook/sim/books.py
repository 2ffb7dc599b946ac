"""Order-book and trade generation: the market activity of the simulated exchange.

:class:`BookEngine` is the bottom layer of :class:`~kalshibook.sim.model.Exchange` (which sets the
state declared here). Makers add and cancel around the fair price; takers cross: buying YES
consumes the best NO bid at YES price ``1 - no_bid``, buying NO consumes the best YES bid. The book
is never crossed: best YES bid + best NO bid < 1, always. It also builds the ``msg`` objects of
book snapshots and ticker frames.
"""

from __future__ import annotations

import math
import random
from typing import Any, Final

from kalshibook.sim.entities import Market
from kalshibook.sim.records import (
    DELTA,
    TICKER,
    TRADE,
    Emit,
    ModelConfig,
    QuoteRec,
    TradeLog,
    TradeRec,
)
from kalshibook.sim.wire import PRICE_STR, UNIT, rfc3339_ms, size_str

__all__ = ("BookEngine",)

_SQRT2: Final = math.sqrt(2.0)
_WHOLE_SIZES: Final = (1, 2, 5, 10, 10, 20, 25, 50, 100, 100, 150, 200, 250, 500, 1000, 2500, 5000)
_TRADE_SIZES: Final = (1, 1, 2, 3, 5, 10, 10, 15, 20, 25, 50, 75, 100, 150, 250, 500)


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / _SQRT2))


class BookEngine:
    """Book and trade activity; the rest of the exchange layers on top of it."""

    config: ModelConfig
    rng: random.Random
    now_ms: int
    trades: TradeLog
    cid: int
    """Last book change id."""
    trade_n: int
    _ts_text: str
    """``rfc3339_ms(_ts_for)``, formatted once per ``advance``."""
    _ts_for: int
    _trade_ms: int = -1
    """Millisecond and microsecond of the last trade (sub-millisecond REST times)."""
    _trade_us: int = 0

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

    def _uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

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
        levels = 1
        if len(book) >= 2 and rng.random() < self.config.sweep_prob:
            levels = rng.randint(2, min(4, len(book)))
        for i in range(levels):
            q = max(book)
            yes_price = UNIT - q if buy_yes else q
            level = book[q]
            last = i == levels - 1
            # a sweep takes every level before its last whole
            whole = not last or rng.random() < 0.2
            count = level if whole else min(level, self._draw_trade_size())
            self._record_trade(m, now, yes_price, count, buy_yes, False, out)
            if count == level:
                del book[q]
            else:
                book[q] = level - count
            self._emit_delta(m, side, q, -count, now, out)
        return 2 * levels

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
        # Microseconds inside the millisecond: increasing, distinct while below 1000.
        us = self._trade_us + 1 + rng.randrange(40) if now == self._trade_ms else rng.randrange(200)
        self._trade_ms, self._trade_us = now, min(us, 999)
        rec = TradeRec(
            self.trade_n, now, trade_id, m.ticker, yes_price, count, outcome, block, m.oi,
            self._trade_us,
        )  # fmt: skip
        self.trades.append(rec)
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
