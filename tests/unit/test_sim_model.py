"""The simulator's pure market model: determinism, book invariants, trades vs books, lifecycle."""

from __future__ import annotations

from collections import defaultdict

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kalshibook.sim.entities import GRIDS
from kalshibook.sim.model import Exchange
from kalshibook.sim.records import (
    CLOSED,
    DELTA,
    EVENT_LIFECYCLE,
    LIFECYCLE,
    TICKER,
    TRADE,
    Emit,
    ModelConfig,
    TradeLog,
    TradeRec,
)
from kalshibook.sim.wire import UNIT, parse_price, parse_size, price_str, size_str

START = 1_780_000_000_000


def run(ex: Exchange, steps: int, frames: int, dt_ms: int = 50) -> list[Emit]:
    out: list[Emit] = []
    now = ex.now_ms
    for _ in range(steps):
        now += dt_ms
        out.extend(ex.advance(now, frames))
    return out


def books_of(ex: Exchange) -> dict[str, tuple[dict[int, int], dict[int, int]]]:
    return {t: (dict(m.yes), dict(m.no)) for t, m in ex.markets.items()}


def apply(book: dict[int, int], price: int, delta: int) -> None:
    new = book.get(price, 0) + delta
    assert new >= 0, f"level {price} goes negative"
    if new:
        book[price] = new
    else:
        book.pop(price, None)


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_and_ticks_give_identical_output() -> None:
    cfg = ModelConfig(seed=7, markets=60, lifetime_s=20, start_ms=START)
    a, b = Exchange(cfg), Exchange(cfg)
    out_a, out_b = run(a, 200, 40), run(b, 200, 40)
    assert msgspec.json.encode(out_a) == msgspec.json.encode(out_b)
    assert [m.ticker for m in a.market_list] == [m.ticker for m in b.market_list]


def test_different_seed_differs() -> None:
    a = Exchange(ModelConfig(seed=1, markets=30, start_ms=START))
    b = Exchange(ModelConfig(seed=2, markets=30, start_ms=START))
    assert msgspec.json.encode(run(a, 20, 20)) != msgspec.json.encode(run(b, 20, 20))


def test_frame_budget_is_met() -> None:
    ex = Exchange(ModelConfig(seed=3, markets=100, start_ms=START))
    out = ex.advance(START + 10, 1000)
    data = [e for e in out if e.kind in (DELTA, TRADE, TICKER)]
    assert 1000 <= len(data) <= 1003


def test_catalogue_shape() -> None:
    ex = Exchange(ModelConfig(seed=5, markets=400, start_ms=START))
    assert sum(1 for m in ex.market_list if m.status == "active") >= 400
    assert any(m.status == "finalized" for m in ex.market_list)
    assert any(m.status == "initialized" for m in ex.market_list)
    assert any(ev.series_ticker == "" for ev in ex.event_list), "events without a series"
    assert any(ev.mutually_exclusive for ev in ex.event_list), "exclusive strike ladders"
    grids = {ev.grid.name for ev in ex.event_list}
    assert {"linear_cent", "deci_cent"} <= grids
    assert len(set(ex.markets)) == len(ex.market_list)
    for ev in ex.event_list:
        if ev.series_ticker:
            assert ev.series_ticker in ex.series
        for m in ev.markets:
            assert m.ticker.startswith(ev.event_ticker)


# --- books ---------------------------------------------------------------------------------------


def assert_sane(ex: Exchange) -> None:
    for m in ex.market_list:
        grid = m.grid
        for book in (m.yes, m.no):
            for p, s in book.items():
                assert grid.contains(p), f"{m.ticker}: {p} off the {grid.name} grid"
                assert s > 0
        if m.yes and m.no:
            assert max(m.yes) + max(m.no) < UNIT, f"{m.ticker} crossed"
        if m.status != "active":
            assert not m.yes, f"{m.ticker} {m.status} with a book"
            assert not m.no, f"{m.ticker} {m.status} with a book"


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), frames=st.integers(1, 200), dt_ms=st.integers(0, 400))
def test_books_never_crossed_and_on_grid(seed: int, frames: int, dt_ms: int) -> None:
    ex = Exchange(ModelConfig(seed=seed, markets=25, lifetime_s=5, start_ms=START))
    now = START
    for _ in range(40):
        now += dt_ms
        ex.advance(now, frames)
        assert_sane(ex)


def test_deltas_replay_to_the_model_books_and_trades_cross_the_book() -> None:
    ex = Exchange(ModelConfig(seed=11, markets=40, lifetime_s=8, start_ms=START))
    books = books_of(ex)
    out = run(ex, 400, 30)
    trades = 0
    last_cid = 0
    pending_trade: Emit | None = None
    for e in out:
        if e.kind == TRADE:
            pending_trade = e
            continue
        if e.kind == DELTA:
            assert e.cid > last_cid
            last_cid = e.cid
            msg = e.msg
            yes, no = books.setdefault(e.ticker, ({}, {}))
            book = yes if msg["side"] == "yes" else no
            price, delta = parse_price(msg["price_dollars"]), parse_size(msg["delta_fp"])
            if pending_trade is not None and not pending_trade.msg["is_block_trade"]:
                t = pending_trade.msg
                assert pending_trade.ticker == e.ticker
                count = parse_size(t["count_fp"])
                assert delta == -count
                if t["taker_outcome_side"] == "yes":
                    # Buying YES consumes the best NO bid: YES price = 1 - that NO price.
                    assert t["taker_book_side"] == "bid"
                    assert msg["side"] == "no"
                    assert price == max(no)
                    assert parse_price(t["yes_price_dollars"]) == UNIT - price
                else:
                    assert t["taker_book_side"] == "ask"
                    assert msg["side"] == "yes"
                    assert price == max(yes)
                    assert parse_price(t["yes_price_dollars"]) == price
                assert t["taker_side"] == t["taker_outcome_side"]
                assert (
                    parse_price(t["yes_price_dollars"]) + parse_price(t["no_price_dollars"]) == UNIT
                )
                trades += 1
            pending_trade = None
            apply(book, price, delta)
            if yes and no:
                assert max(yes) + max(no) < UNIT
    assert trades > 50
    assert books == {t: b for t, b in books_of(ex).items() if t in books}


def test_ticker_frames_match_the_book() -> None:
    ex = Exchange(ModelConfig(seed=4, markets=20, start_ms=START))
    for e in run(ex, 50, 20):
        if e.kind != TICKER:
            continue
        m = e.msg
        assert set(m) == {
            "market_id",
            "market_ticker",
            "price_dollars",
            "yes_bid_dollars",
            "yes_ask_dollars",
            "volume_fp",
            "open_interest_fp",
            "dollar_volume",
            "dollar_open_interest",
            "yes_bid_size_fp",
            "yes_ask_size_fp",
            "last_trade_size_fp",
            "ts",
            "ts_ms",
            "time",
        }
        assert parse_price(m["yes_bid_dollars"]) < parse_price(m["yes_ask_dollars"])
    market = ex.market_list[0]
    msg = ex.ticker_msg(market)
    bb, _, ask, asks = market.top()
    assert msg["yes_bid_dollars"] == price_str(bb)
    assert msg["yes_ask_dollars"] == price_str(ask)
    assert msg["yes_ask_size_fp"] == size_str(asks)


def test_fractional_sizes_and_snapshot_absent_sides() -> None:
    ex = Exchange(ModelConfig(seed=9, markets=300, illiquid_prob=0.2, start_ms=START))
    sizes = [s for m in ex.market_list for s in (*m.yes.values(), *m.no.values())]
    assert any(s % 100 for s in sizes), "some sizes have hundredths"
    empty = next(m for m in ex.market_list if m.status == "active" and not m.yes and not m.no)
    assert ex.snapshot_msg(empty) == {"market_ticker": empty.ticker, "market_id": empty.market_id}
    full = next(m for m in ex.market_list if m.yes and m.no)
    snap = ex.snapshot_msg(full)
    prices = [parse_price(p) for p, _ in snap["yes_dollars_fp"]]
    assert prices == sorted(prices), "ascending, best bid last"


# --- lifecycle -----------------------------------------------------------------------------------

ORDER = {
    "created": 0,
    "activated": 1,
    "close_date_updated": 2,
    "closed": 3,
    "determined": 4,
    "settled": 5,
}


def test_lifecycle_order_and_resolution() -> None:
    ex = Exchange(
        ModelConfig(seed=21, markets=30, lifetime_s=3, new_markets_per_min=120, start_ms=START)
    )
    out = run(ex, 300, 5, dt_ms=50)  # 15 s of exchange time: several full lives
    seen: dict[str, list[tuple[int, str]]] = defaultdict(list)
    events_announced = set()
    last_ts = 0
    for e in out:
        assert e.ts_ms >= last_ts
        last_ts = e.ts_ms
        if e.kind == EVENT_LIFECYCLE:
            events_announced.add(e.ticker)
            assert set(e.msg) >= {
                "event_ticker",
                "title",
                "series_ticker",
                "collateral_return_type",
            }
        elif e.kind == LIFECYCLE:
            seen[e.ticker].append((e.ts_ms, e.msg["event_type"]))
        elif e.kind == CLOSED:
            seen[e.ticker].append((e.ts_ms, "closed"))
    assert seen
    settled = 0
    for ticker, evs in seen.items():
        kinds = [k for _, k in evs]
        ranks = [ORDER[k] for k in kinds]
        assert ranks == sorted(ranks), f"{ticker}: {kinds}"
        assert len(kinds) - kinds.count("close_date_updated") == len(set(kinds))
        if "created" in kinds:
            assert ex.markets[ticker].event.event_ticker in events_announced
            created = next(e for e in out if e.kind == LIFECYCLE and e.ticker == ticker)
            meta = created.msg["additional_metadata"]
            assert meta["event_ticker"] == ex.markets[ticker].event.event_ticker
            assert created.msg["price_level_structure"] in GRIDS
            assert created.msg["price_ranges"]
        if "settled" in kinds:
            settled += 1
            assert "determined" in kinds
    assert settled > 20
    # Exclusive ladders: exactly one market wins; greater ladders resolve monotonically.
    for ev in ex.event_list:
        if ev.status not in ("determined", "settled"):
            continue
        results = [m.result for m in ev.markets]
        assert set(results) <= {"yes", "no"}
        if ev.mutually_exclusive:
            assert results.count("yes") == 1, ev.event_ticker
        elif ev.kind == "greater":
            strikes = [(m.floor_strike, m.result) for m in ev.markets]
            yes_then_no = [r for _, r in sorted(strikes, key=lambda x: x[0] or 0)]
            assert yes_then_no == sorted(yes_then_no, key=lambda r: r != "yes")
        for m in ev.markets:
            assert m.settlement_value == (UNIT if m.result == "yes" else 0)


def test_determined_and_settled_frames_match_kalshi_shapes() -> None:
    ex = Exchange(ModelConfig(seed=2, markets=10, lifetime_s=1, start_ms=START))
    out = run(ex, 100, 0, dt_ms=100)
    det = next(e.msg for e in out if e.kind == LIFECYCLE and e.msg["event_type"] == "determined")
    assert set(det) == {
        "market_ticker",
        "determination_ts",
        "result",
        "settlement_value",
        "event_type",
    }
    assert det["settlement_value"] in ("1.0000", "0.0000")
    settled = next(e.msg for e in out if e.kind == LIFECYCLE and e.msg["event_type"] == "settled")
    assert set(settled) == {"market_ticker", "settled_ts", "event_type"}


def test_new_markets_appear_over_time() -> None:
    ex = Exchange(
        ModelConfig(seed=8, markets=10, lifetime_s=600, new_markets_per_min=60, start_ms=START)
    )
    before = len(ex.market_list)
    out = run(ex, 100, 0, dt_ms=100)  # 10 s -> about 10 new markets
    created = [e for e in out if e.kind == LIFECYCLE and e.msg["event_type"] == "created"]
    assert 5 <= len(created) <= 25
    assert len(ex.market_list) == before + len(created)


# --- trade log -----------------------------------------------------------------------------------


def _rec(n: int, ticker: str, ts: int) -> TradeRec:
    return TradeRec(n, ts, f"id{n}", ticker, 5000, 100, "yes", False, 0)


def test_trade_log_pages_newest_first_and_trims() -> None:
    log = TradeLog(cap=50)
    for n in range(1, 101):
        log.append(_rec(n, "A" if n % 2 else "B", 1000 + n))
    assert len(log) == 50
    got: list[int] = []
    before = None
    while True:
        page, before = log.page(None, None, None, before, 7)
        got += [r.n for r in page]
        if before is None:
            break
    assert got == list(range(100, 50, -1))
    page, _ = log.page("A", 1000 + 60, 1000 + 70, None, 100)
    assert [r.n for r in page] == [69, 67, 65, 63, 61]


# --- wire ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "text"), [(0, "0.00"), (1, "0.01"), (1250, "12.50"), (-5400, "-54.00"), (-7, "-0.07")]
)
def test_size_strings(units: int, text: str) -> None:
    assert size_str(units) == text
    assert parse_size(text) == units


def test_price_strings() -> None:
    assert price_str(4200) == "0.4200"
    assert price_str(UNIT) == "1.0000"
    assert parse_price("0.42") == 4200
    assert parse_price("0.0010") == 10


def test_tickers_are_never_reused_by_another_run() -> None:
    """Two runs with one seed against one database (a second `make demo`) name different
    markets; the same run start is the same catalogue (determinism)."""
    first = Exchange(ModelConfig(seed=7, markets=40, start_ms=START))
    again = Exchange(ModelConfig(seed=7, markets=40, start_ms=START))
    later = Exchange(ModelConfig(seed=7, markets=40, start_ms=START + 25_000))
    assert set(first.markets) == set(again.markets)
    assert not set(first.markets) & set(later.markets)
    assert not set(first.events) & set(later.events)
