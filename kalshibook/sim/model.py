"""A pure, seeded model of a Kalshi exchange: catalogue, order books, trades, lifecycle.

No I/O and no clock of its own: the caller feeds exchange time (Unix ms) and a frame budget to
:meth:`Exchange.advance`, which returns what the exchange publishes, already in Kalshi's 2026 wire
shapes (the ``msg`` object of each WebSocket frame). The same seed and the same sequence of
``advance`` calls always give the same output.

Model in brief (one module per layer, see :class:`Exchange`)
--------------------------------------------------------------
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

import random

from kalshibook.sim.lifecycle import Lifecycle
from kalshibook.sim.records import Emit, ModelConfig, TradeLog
from kalshibook.sim.wire import rfc3339_ms

__all__ = ("Exchange",)


class Exchange(Lifecycle):
    """The simulated exchange; deterministic for a seed and a sequence of ``advance`` calls.

    Layers: :class:`~kalshibook.sim.books.BookEngine` (book and trade activity) <
    :class:`~kalshibook.sim.catalogue.CatalogueMaker` (events and markets) <
    :class:`~kalshibook.sim.lifecycle.Lifecycle` (schedule, transitions, initial state) < this
    class (the state itself and :meth:`advance`).
    """

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
        self.series = {}
        self.events = {}
        self.markets = {}
        self.markets_by_id = {}
        self.market_list = []
        self.event_list = []
        self.trades = TradeLog(cfg.trade_history)
        self.cid = 0
        self.trade_n = 0
        self.cutoff_ms = cfg.start_ms - 30 * 86_400_000
        """Kalshi's ``/historical/cutoff`` (the server moves it into a generated history)."""
        self._live = []
        self._schedule = []
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
