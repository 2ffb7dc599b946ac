"""kalshibook.domain.exchange_order: ranks in a millisecond from WS delivery and REST listings."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from kalshibook.domain.exchange_order import (
    SEQ_PER_MS,
    LiveRanker,
    RestRanker,
    epoch_ms,
    exchange_seq,
    seq_time,
)

T = datetime(2026, 12, 2, 2, 50, 12, 632000, tzinfo=UTC)
US = timedelta(microseconds=1)


def test_seq_is_the_millisecond_then_the_rank() -> None:
    assert exchange_seq(T, 0) == epoch_ms(T) * SEQ_PER_MS
    assert exchange_seq(T + 999 * US, 3) == exchange_seq(T, 3)  # same millisecond
    assert exchange_seq(T, SEQ_PER_MS - 1) < exchange_seq(T + 1000 * US, 0)
    assert seq_time(exchange_seq(T, 7)) == T
    assert epoch_ms(datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC)) == -1  # floor
    with pytest.raises(ValueError):
        exchange_seq(T, SEQ_PER_MS)


def test_live_ranks_count_a_markets_trades_of_one_millisecond() -> None:
    r = LiveRanker()
    got = [
        r.seq("A", T), r.seq("B", T), r.seq("A", T + 400 * US), r.seq("A", T + 1000 * US),
        r.seq("B", T),
    ]  # fmt: skip
    ms = epoch_ms(T) * SEQ_PER_MS
    assert got == [ms, ms, ms + 1, ms + SEQ_PER_MS, ms + 1]


def test_live_ranker_forgets_old_markets_but_not_the_current_millisecond() -> None:
    r = LiveRanker()
    for i in range(LiveRanker.PRUNE_AT):
        r.seq(f"M{i}", T - timedelta(seconds=5))
    r.seq("HOT", T)
    assert r.seq("NEW", T) == exchange_seq(T, 0)  # triggers the prune
    assert len(r) <= 3
    assert r.seq("HOT", T) == exchange_seq(T, 1)  # the current millisecond's rank survived


def test_rest_ranks_a_newest_first_listing_by_microseconds() -> None:
    # exchange order per market: A1 A2 A3 in one ms (distinct µs), B1 B2 in the same ms with equal
    # µs (the later-listed is older), then A4 in the next ms
    trades = [
        ("A", T + 10 * US, "A1"), ("A", T + 20 * US, "A2"), ("A", T + 30 * US, "A3"),
        ("B", T + 5 * US, "B1"), ("B", T + 5 * US, "B2"), ("A", T + 1000 * US, "A4"),
    ]  # fmt: skip
    listing = [trades[5], trades[2], trades[4], trades[1], trades[3], trades[0]]  # newest first
    r: RestRanker[str] = RestRanker()
    out: dict[str, int] = {}
    for market, created, name in listing:
        out.update(r.push(market, created, name))
    out.update(r.finish())
    assert out == {
        "A1": exchange_seq(T, 0), "A2": exchange_seq(T, 1), "A3": exchange_seq(T, 2),
        "B1": exchange_seq(T, 0), "B2": exchange_seq(T, 1), "A4": exchange_seq(T + 1000 * US, 0),
    }  # fmt: skip
    assert r.out_of_order == 0


def test_rest_and_live_agree_on_a_random_feed() -> None:
    rnd = random.Random(5)
    feed = []  # (market, created, id) in exchange order
    now = T
    for i in range(3000):
        now += timedelta(microseconds=rnd.choice((0, 0, 1, 7, 300, 2500)))
        feed.append((rnd.choice("ABC"), now, f"t{i}"))
    live = LiveRanker()
    ws = {name: live.seq(m, created) for m, created, name in feed}
    rest: RestRanker[str] = RestRanker()
    got: dict[str, int] = {}
    for m, created, name in reversed(feed):
        got.update(rest.push(m, created, name))
    got.update(rest.finish())
    assert got == ws
    for market in "ABC":
        names = [n for m, _, n in feed if m == market]
        assert sorted(names, key=got.__getitem__) == names


def test_rest_counts_a_listing_that_is_not_newest_first() -> None:
    r: RestRanker[str] = RestRanker()
    out = dict(r.push("A", T, "old"))
    out.update(r.push("A", T + 1000 * US, "new"))
    out.update(r.finish())
    assert r.out_of_order == 1
    assert set(out) == {"old", "new"}
