"""Market lifecycle on the compressed clock, and the exchange's initial state.

created -> activated -> (close_date_updated) -> closed (the book is cancelled, deltas published)
-> determined -> settled; new events appear over time. A heap schedules the transitions. At
determination one value is drawn from the event's underlying and every market of the event
resolves from it (exactly one bucket of an exclusive ladder wins).
"""

from __future__ import annotations

import heapq
from typing import Any, Final

from kalshibook.sim.catalogue import CatalogueMaker
from kalshibook.sim.entities import Event, Market, rules_primary, strike_num
from kalshibook.sim.records import CLOSED, EVENT_LIFECYCLE, LIFECYCLE, Emit, QuoteRec
from kalshibook.sim.wire import PRICE_STR, UNIT

__all__ = ("Lifecycle",)

_SCHEDULE_ACTIVATE: Final = 0
_SCHEDULE_CLOSE_UPDATE: Final = 1
_SCHEDULE_CLOSE: Final = 2
_SCHEDULE_DETERMINE: Final = 3
_SCHEDULE_SETTLE: Final = 4


class Lifecycle(CatalogueMaker):
    """Schedules and runs lifecycle transitions; builds the initial catalogue."""

    lifetime_ms: int
    activation_ms: int
    determination_ms: int
    settlement_ms: int
    new_per_ms: float
    """New markets per exchange millisecond."""
    _live: list[Market]
    """Open, liquid markets (``m.live_pos`` is each one's index)."""
    _schedule: list[tuple[int, int, int, Event]]
    _sched_n: int
    _spawn_acc: float
    _spawn_ms: int

    def _build_catalogue(self) -> None:
        """The initial state: series, settled history, open markets and a few about to open."""
        cfg, rng, start = self.config, self.rng, self.config.start_ms
        self._make_series()
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
            meta["floor_strike"] = strike_num(m.floor_strike)
        if m.cap_strike is not None:
            meta["cap_strike"] = strike_num(m.cap_strike)
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
