"""Ground truth written by the simulator reads back to the model's exact state at any instant."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

import msgspec

from kalshibook.sim.entities import Market
from kalshibook.sim.model import Exchange
from kalshibook.sim.recorder import TruthWriter
from kalshibook.sim.records import DELTA, ModelConfig
from kalshibook.sim.truth import BookState, load_truth
from kalshibook.sim.wire import UNIT

START = 1_780_000_000_000


def as_state(m: Market) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    def conv(book: dict[int, int]) -> list[tuple[Decimal, Decimal]]:
        return [(Decimal(p) / UNIT, Decimal(s) / 100) for p, s in sorted(book.items())]

    return conv(m.yes), conv(m.no)


def same(book: BookState, m: Market) -> bool:
    return (book.yes, book.no) == as_state(m)


def test_truth_round_trip(tmp_path: Path) -> None:
    ex = Exchange(
        ModelConfig(seed=5, markets=30, lifetime_s=4, new_markets_per_min=60, start_ms=START)
    )
    path = tmp_path / "truth.jsonl"
    writer = TruthWriter(path, ex, checkpoint_every=25)
    enc = msgspec.json.encode
    watched = ex.market_list[5].ticker
    history: list[tuple[int, Market, tuple[object, object]]] = []
    all_trades = 0
    now = START
    for step in range(200):
        now += 37
        out = ex.advance(now, 40)
        writer.record(out, [enc(e.msg) for e in out])
        all_trades += sum(1 for e in out if e.kind == "trade")
        if step % 10 == 0:
            m = ex.markets[watched]
            history.append((now, m, as_state(m)))
    writer.close()

    truth = load_truth(path)
    assert truth.meta["seed"] == 5
    assert set(truth.markets) == set(ex.markets)
    assert set(truth.events) == set(ex.events)
    assert set(truth.series) == set(ex.series)
    # Any instant: the book as the model had it then.
    for ts, _, state in history:
        book = truth.book_at(watched, ts)
        assert (book.yes, book.no) == state
    # The end state of every market.
    for t, m in ex.markets.items():
        assert same(truth.book_at(t, now), m), t
    # Before a market existed its book is empty.
    late = ex.market_list[-1]
    assert truth.book_at(late.ticker, START - 1).yes == []

    trades = truth.trades()
    assert len(trades) == all_trades
    assert all(t.yes_price + t.no_price == 1 for t in trades)
    assert truth.trades(trades[0].ticker)[0] == trades[0]

    settlements = truth.settlements()
    assert settlements
    for s in settlements:
        m = ex.markets[s.ticker]
        assert s.result == m.result
        assert s.settlement_value == (1 if m.result == "yes" else 0)
        assert s.determined_ts <= s.settled_ts

    quotes = truth.quotes_sequence(watched)
    assert quotes
    for q in quotes:
        if q.yes_bid is not None and q.yes_ask is not None:
            assert q.yes_bid < q.yes_ask
    final = truth.book_at(watched, now)
    assert quotes[-1].yes_bid == final.yes_bid
    assert quotes[-1].yes_ask == final.yes_ask
    assert [x for x in truth.lifecycle() if x[1] == "closed"]


def test_quotes_sequence_only_lists_top_changes(tmp_path: Path) -> None:
    ex = Exchange(ModelConfig(seed=1, markets=5, start_ms=START))
    path = tmp_path / "t.jsonl"
    writer = TruthWriter(path, ex)
    out = ex.advance(START + 1, 500)
    writer.record(out, [msgspec.json.encode(e.msg) for e in out])
    writer.close()
    truth = load_truth(path)
    t = next(e.ticker for e in out if e.kind == DELTA)
    quotes = truth.quotes_sequence(t)
    pairs = [(q.yes_bid, q.yes_bid_size, q.yes_ask, q.yes_ask_size) for q in quotes]
    assert all(a != b for a, b in itertools.pairwise(pairs))
    assert len(quotes) <= 1 + sum(1 for e in out if e.kind == DELTA and e.ticker == t)


def test_partial_last_line_is_ignored(tmp_path: Path) -> None:
    ex = Exchange(ModelConfig(seed=1, markets=3, start_ms=START))
    path = tmp_path / "t.jsonl"
    TruthWriter(path, ex).close()
    with path.open("ab") as f:
        f.write(b'{"k":"trade","ts":1')
    assert load_truth(path).trades() == []
