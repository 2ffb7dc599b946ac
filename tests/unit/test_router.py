"""The collector's router and bookkeeping, fed literal Kalshi frames (no I/O, no event loop)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from kalshibook.collector.catalog import Catalog, lifecycle_status, merge_status
from kalshibook.collector.router import Router
from kalshibook.collector.subscriptions import EpochClock, SubscriptionPlan
from kalshibook.kalshi.sequencing import GapDetected
from kalshibook.kalshi.ws import Disconnected
from kalshibook.kalshi.ws_decode import decode_frame

T0 = datetime(2026, 8, 24, 15, 0, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def request_snapshot(self, sid: int, tickers: list[str] | None) -> None:
        self.calls.append(("snapshot", (sid, tickers)))

    def resubscribe(self, sid: int, channel: str, reason: str) -> None:
        self.calls.append(("resubscribe", (sid, channel, reason)))

    def backfill(self, start: datetime, end: datetime) -> None:
        self.calls.append(("backfill", (start, end)))

    def confirm_settlement(self, ticker: str) -> None:
        self.calls.append(("confirm", ticker))

    def subscribe_markets(self, tickers: list[str]) -> None:
        self.calls.append(("subscribe", tickers))

    def unsubscribe_markets(self, tickers: list[str]) -> None:
        self.calls.append(("unsubscribe", tickers))

    def enrich(self, market: str | None = None, event: str | None = None) -> None:
        self.calls.append(("enrich", (market, event)))

    def rediscover(self) -> None:
        self.calls.append(("rediscover", None))

    def of(self, kind: str) -> list[Any]:
        return [a for k, a in self.calls if k == kind]


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def frame(text: str, rec_ms: int = 0) -> Any:
    return decode_frame(text.encode(), received_at=at(rec_ms) + timedelta(microseconds=500))


def snap(sid: int, seq: int, ticker: str, yes: str = "", no: str = "", cmd_id: int = 0) -> Any:
    parts = [f'"market_ticker":"{ticker}"']
    if yes:
        parts.append(f'"yes_dollars_fp":{yes}')
    if no:
        parts.append(f'"no_dollars_fp":{no}')
    head = f'"id":{cmd_id},' if cmd_id else ""
    return frame(
        f'{{{head}"type":"orderbook_snapshot","sid":{sid},"seq":{seq},"msg":{{{",".join(parts)}}}}}'
    )


def delta(sid: int, seq: int, ticker: str, side: str, price: str, d: str, ms: int) -> Any:
    return frame(
        f'{{"type":"orderbook_delta","sid":{sid},"seq":{seq},"msg":{{"market_ticker":"{ticker}",'
        f'"price_dollars":"{price}","delta_fp":"{d}","side":"{side}","ts_ms":{T0_MS + ms}}}}}',
        ms,
    )


def trade(sid: int, seq: int, ticker: str, trade_id: str, ms: int) -> Any:
    return frame(
        f'{{"type":"trade","sid":{sid},"seq":{seq},"msg":{{"trade_id":"{trade_id}",'
        f'"market_ticker":"{ticker}","yes_price_dollars":"0.3600","no_price_dollars":"0.6400",'
        f'"count_fp":"12.50","taker_outcome_side":"yes","taker_book_side":"bid",'
        f'"is_block_trade":false,"ts_ms":{T0_MS + ms}}}}}',
        ms,
    )


def lifecycle(sid: int, seq: int, msg: str) -> Any:
    return frame(f'{{"type":"market_lifecycle_v2","sid":{sid},"seq":{seq},"msg":{msg}}}')


def rows(r: Router, table: str) -> list[Any]:
    return [row for t, row in r.drain() if t == table]


def split(r: Router) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for t, row in r.drain():
        out.setdefault(t, []).append(row)
    return out


@pytest.fixture
def effects() -> Recorder:
    return Recorder()


def make_router(effects: Recorder) -> Router:
    """A router with deterministic epochs and clock, a checkpoint every 3 deltas."""
    epochs = iter(range(1000, 2000))
    return Router(
        effects=effects,
        checkpoint_deltas=3,
        epochs=EpochClock(lambda: next(epochs)),
        monotonic=lambda: 0.0,
    )


@pytest.fixture
def router(effects: Recorder) -> Router:
    return make_router(effects)


M = "KXHIGHNY-26AUG24-B80"
YES = '[["0.4000","10.00"],["0.4200","5.00"]]'
NO = '[["0.5000","7.00"],["0.5500","3.25"]]'


def test_snapshot_is_stamped_by_the_next_frame_and_deltas_are_stored(router: Router) -> None:
    router.handle(snap(4, 1, M, YES, NO))
    assert router.drain() == []  # a snapshot carries no time: it waits for the next frame
    router.handle(delta(4, 2, M, "yes", "0.4300", "2.00", 100))
    got = split(router)
    (s,) = got["orderbook_snapshots"]
    assert (s.ts, s.source, s.sid, s.seq, s.epoch) == (at(100), "snapshot", 4, 1, 1000)
    assert s.yes_bids == b"[[0.4000,10.00],[0.4200,5.00]]"
    assert s.no_bids == b"[[0.5000,7.00],[0.5500,3.25]]"
    (d,) = got["orderbook_deltas"]
    assert (d.ts, d.side, d.price, d.delta, d.epoch, d.sid, d.seq) == (
        at(100),
        "yes",
        Decimal("0.4300"),
        Decimal("2.00"),
        1000,
        4,
        2,
    )
    q0, q1 = got["quotes"]
    # the snapshot's quote (stamped), then the new best YES bid; ask = 1 - best NO bid
    assert (q0.ts, q0.yes_bid, q0.yes_bid_size, q0.yes_ask, q0.yes_ask_size) == (
        at(100),
        Decimal("0.4200"),
        Decimal("5.00"),
        Decimal("0.4500"),
        Decimal("3.25"),
    )
    assert (q1.yes_bid, q1.yes_bid_size) == (Decimal("0.4300"), Decimal("2.00"))
    assert q1.received_at > q0.received_at


def test_quote_only_on_top_of_book_change(router: Router) -> None:
    router.handle(snap(4, 1, M, YES, NO))
    router.handle(delta(4, 2, M, "yes", "0.4000", "1.00", 1))  # below the best bid
    router.handle(delta(4, 3, M, "no", "0.5500", "-3.25", 2))  # best NO level gone
    got = split(router)
    assert len(got["orderbook_deltas"]) == 2
    assert len(got["quotes"]) == 2  # the snapshot's and the ask change
    assert got["quotes"][1].yes_ask == Decimal("0.5000")
    assert got["quotes"][1].yes_ask_size == Decimal("7.00")


def test_delta_before_snapshot_is_dropped(router: Router) -> None:
    router.handle(delta(4, 1, M, "yes", "0.4300", "2.00", 1))
    assert rows(router, "orderbook_deltas") == []
    assert router.dropped_deltas == 1


def test_deltas_with_no_snapshot_ever_ask_for_it_once(router: Router, effects: Recorder) -> None:
    """Kalshi sends a market's snapshot first; when it never came, the market's deltas must not
    be dropped silently for the life of the subscription: its snapshot is asked for, once."""
    for seq in (1, 2, 3):
        router.handle(delta(4, seq, M, "yes", "0.4300", "2.00", seq))
    assert effects.of("snapshot") == [(4, [M])]
    assert router.dropped_deltas == 3
    router.handle(snap(4, 4, M, yes="[[0.43, 5]]", cmd_id=9))
    router.handle(delta(4, 5, M, "yes", "0.4300", "2.00", 5))
    assert len(rows(router, "orderbook_deltas")) == 1
    router.forget(M, at(6))
    router.handle(delta(4, 6, M, "yes", "0.4300", "1.00", 6))  # a late delta of an unfollowed one
    assert effects.of("snapshot") == [(4, [M]), (4, [M])]  # asked again; the subscriber filters


def test_a_sid_number_given_out_again_starts_a_new_epoch(router: Router) -> None:
    """Kalshi may give a new subscription a sid number it used before (its seq restarts): the
    new subscription's rows must not share the old one's epoch, or a replay could apply the old
    subscription's later-numbered deltas on top of the new snapshot."""
    router.handle(snap(4, 1, M, yes="[[0.43, 5]]"))
    router.handle(delta(4, 2, M, "yes", "0.4300", "2.00", 2))
    router.handle(delta(4, 3, M, "yes", "0.4300", "1.00", 3))
    router.handle(snap(4, 1, M, yes="[[0.44, 5]]"))  # the same sid number, a new subscription
    router.handle(delta(4, 2, M, "yes", "0.4400", "1.00", 5))
    got = split(router)
    first, again = (r.epoch for r in got["orderbook_snapshots"])
    assert again > first
    assert [r.epoch for r in got["orderbook_deltas"]] == [first, first, again]


def test_checkpoint_every_n_deltas(router: Router) -> None:
    router.handle(snap(4, 1, M, YES, NO))
    for i in range(3):
        router.handle(delta(4, 2 + i, M, "yes", "0.3000", "1.00", 10 + i))
    cps = [s for s in rows(router, "orderbook_snapshots") if s.source == "checkpoint"]
    assert len(cps) == 1
    assert (cps[0].ts, cps[0].seq, cps[0].epoch) == (at(12), 4, 1000)
    assert cps[0].yes_bids == b"[[0.3000,3.00],[0.4000,10.00],[0.4200,5.00]]"


def test_seq_gap_marks_the_sid_dirty_until_its_snapshot(router: Router, effects: Recorder) -> None:
    router.sid_channels = {4: "orderbook_delta"}
    other = "KXHIGHNY-26AUG24-B82"
    router.handle(snap(4, 1, M, YES, NO))
    router.handle(snap(4, 2, other, YES, NO))
    router.handle(delta(4, 3, M, "yes", "0.4300", "2.00", 50))
    router.drain()
    router.handle(GapDetected(sid=4, expected=4, got=6, received_at=at(60)))
    assert effects.of("snapshot") == [(4, None)]  # every market of the sid
    router.handle(delta(4, 6, M, "yes", "0.4400", "1.00", 60))  # dirty: not applied
    assert rows(router, "orderbook_deltas") == []
    router.handle(snap(4, 7, M, YES, NO, cmd_id=9))
    router.handle(delta(4, 8, other, "yes", "0.4100", "1.00", 70))  # other still dirty
    got = split(router)
    assert "orderbook_deltas" not in got
    (s,) = got["orderbook_snapshots"]
    assert (s.source, s.ts, s.seq) == ("resync", at(70), 7)
    (g,) = got["book_gaps"]
    assert (g.market_ticker, g.reason, g.from_ts, g.to_ts, g.sid) == (
        M,
        "seq_gap",
        at(50),
        at(70),
        4,
    )


def test_terminal_error_resubscribes_and_opens_gaps(router: Router, effects: Recorder) -> None:
    router.sid_channels = {4: "orderbook_delta"}
    router.handle(snap(4, 1, M, YES, NO))
    router.handle(delta(4, 2, M, "yes", "0.4300", "2.00", 10))
    router.drain()
    router.handle(frame('{"type":"error","sid":4,"seq":3,"msg":{"code":25,"msg":"overflow"}}'))
    assert effects.of("resubscribe") == [(4, "orderbook_delta", "error_25")]
    # the new subscription (new sid, new epoch) resyncs the book and closes the gap
    router.handle(snap(9, 1, M, YES, NO))
    router.handle(trade(2, 1, M, "d91bc706-ee49-470d-82d8-11418bda6fed", 40))
    got = split(router)
    (s,) = got["orderbook_snapshots"]
    assert (s.source, s.sid, s.epoch) == ("resync", 9, 1001)
    (g,) = got["book_gaps"]
    assert (g.reason, g.from_ts, g.to_ts) == ("error_25", at(10), at(40))


def test_disconnect_gaps_and_trade_backfill(router: Router, effects: Recorder) -> None:
    router.handle(snap(4, 1, M, YES, NO))
    router.handle(trade(2, 1, M, "d91bc706-ee49-470d-82d8-11418bda6fed", 100))
    router.handle(delta(4, 2, M, "yes", "0.4300", "2.00", 120))
    router.drain()
    router.handle(Disconnected(epoch=1, reason="lost", at=at(130)))
    assert effects.of("rediscover")
    # new connection: sids restart at 1
    router.handle(snap(1, 1, M, YES, NO))
    router.handle(trade(2, 1, M, "e91bc706-ee49-470d-82d8-11418bda6fed", 500))
    got = split(router)
    (g,) = got["book_gaps"]
    assert (g.reason, g.from_ts, g.to_ts) == ("disconnect", at(120), at(500))
    assert effects.of("backfill") == [(at(100), at(500))]
    assert len(got["trades"]) == 1


def test_shutdown_disconnect_writes_no_gap(router: Router) -> None:
    router.handle(snap(4, 1, M, YES, NO))
    router.handle(delta(4, 2, M, "yes", "0.4300", "2.00", 1))
    router.drain()
    router.stopping = True
    router.handle(Disconnected(epoch=1, reason="closed by client", at=at(5), by_client=True))
    assert router.checkpoint_all(at(6)) == 1
    got = split(router)
    assert "book_gaps" not in got
    assert got["orderbook_snapshots"][0].source == "checkpoint"


def test_delta_that_does_not_fit_the_book_is_a_gap(router: Router, effects: Recorder) -> None:
    router.handle(snap(4, 1, M, YES, NO))
    router.handle(delta(4, 2, M, "yes", "0.4000", "-11.00", 5))  # more than the level holds
    assert effects.of("snapshot") == [(4, [M])]
    assert router.dirty_count() == 1
    assert rows(router, "orderbook_deltas") == []


def test_trade_and_ticker_rows(router: Router) -> None:
    router.handle(trade(2, 1, M, "d91bc706-ee49-470d-82d8-11418bda6fed", 7))
    router.handle(
        frame(
            '{"type":"ticker","sid":3,"msg":{"market_ticker":"' + M + '","price_dollars":"0.3600",'
            '"yes_bid_dollars":"0.3500","yes_ask_dollars":"0.3700","volume_fp":"1200.00",'
            '"open_interest_fp":"800.00","dollar_volume":600,"dollar_open_interest":400,'
            '"ts_ms":' + str(T0_MS + 8) + "}}",
            8,
        )
    )
    got = split(router)
    (t,) = got["trades"]
    assert (str(t.trade_id), t.ts, t.yes_price, t.no_price, t.count, t.source) == (
        "d91bc706-ee49-470d-82d8-11418bda6fed",
        at(7),
        Decimal("0.3600"),
        Decimal("0.6400"),
        Decimal("12.50"),
        "ws",
    )
    assert (t.taker_outcome_side, t.taker_book_side, t.is_block_trade) == ("yes", "bid", False)
    (s,) = got["market_stats"]
    assert (s.ts, s.price, s.volume, s.open_interest, s.dollar_volume) == (
        at(8),
        Decimal("0.3600"),
        Decimal("1200.00"),
        Decimal("800.00"),
        600,
    )


def test_lifecycle_drives_subscriptions_settlements_and_status(
    router: Router, effects: Recorder
) -> None:
    router.handle(trade(2, 1, M, "d91bc706-ee49-470d-82d8-11418bda6fed", 1))  # exchange clock
    router.handle(
        lifecycle(
            1,
            1,
            '{"market_ticker":"' + M + '","event_type":"created",'
            '"open_ts":1787670000,"close_ts":1787680000,"additional_metadata":'
            '{"event_ticker":"KXHIGHNY-26AUG24","title":"High"}}',
        )
    )
    assert effects.of("subscribe") == [[M]]
    assert ("enrich", (M, "KXHIGHNY-26AUG24")) in effects.calls
    router.handle(lifecycle(1, 2, '{"market_ticker":"' + M + '","event_type":"activated"}'))
    router.handle(
        lifecycle(
            1,
            3,
            '{"market_ticker":"' + M + '","determination_ts":1787680100,'
            '"result":"no","settlement_value":"0.0000",'
            '"event_type":"determined"}',
        )
    )
    router.handle(
        lifecycle(
            1, 4, '{"market_ticker":"' + M + '","settled_ts":1787680200,"event_type":"settled"}'
        )
    )
    got = split(router)
    assert [r.event_type for r in got["lifecycle_events"]] == [
        "created",
        "activated",
        "determined",
        "settled",
    ]
    assert all(r.ts == at(1) and r.kind == "market" for r in got["lifecycle_events"])
    assert [m.status for m in got["markets"]] == [
        "initialized",
        "active",
        "determined",
        "finalized",
    ]
    assert all(m.event_ticker == "KXHIGHNY-26AUG24" for m in got["markets"])
    s1, s2 = got["settlements"]
    assert (s1.result, s1.settlement_value, s1.source, s1.confirmed) == (
        "no",
        Decimal("0.0000"),
        "ws",
        False,
    )
    assert s1.determined_at == datetime.fromtimestamp(1787680100, UTC)
    assert (s2.result, s2.settled_at) == ("no", datetime.fromtimestamp(1787680200, UTC))
    assert effects.of("confirm") == [M, M]
    assert effects.of("unsubscribe") == [[M]]


def test_unfollowed_dirty_book_waits_for_its_final_rest_book(router: Router) -> None:
    router.sid_channels = {4: "orderbook_delta"}
    router.handle(snap(4, 1, M, YES, NO))
    router.handle(delta(4, 2, M, "yes", "0.4300", "2.00", 10))
    router.handle(GapDetected(sid=4, expected=3, got=5, received_at=at(20)))
    router.drain()
    assert router.forget(M, at(30)) is True  # inside a gap: its gap stays open
    assert router.needs_final_book(M)
    assert router.rest_snapshot(M, [], [], at(40)) is True
    got = split(router)
    (s,) = got["orderbook_snapshots"]
    assert (s.source, s.sid, s.seq, s.yes_bids, s.no_bids) == ("rest", None, None, b"[]", b"[]")
    (g,) = got["book_gaps"]
    assert (g.from_ts, g.to_ts) == (at(10), at(10))  # the exchange clock did not move
    assert not router.needs_final_book(M)


def test_restart_gap_closes_with_the_first_snapshot(router: Router) -> None:
    router.open_restart_gaps([M], at(-5000))
    router.open_trade_outage(at(-6000))
    router.handle(snap(4, 1, M, YES, NO))
    router.handle(trade(2, 1, M, "d91bc706-ee49-470d-82d8-11418bda6fed", 10))
    got = split(router)
    (g,) = got["book_gaps"]
    assert (g.reason, g.from_ts, g.to_ts) == ("daemon_restart", at(-5000), at(10))
    assert got["orderbook_snapshots"][0].source == "resync"


def test_subscription_plan_shards() -> None:
    plan = SubscriptionPlan(2)
    added = plan.add(["a", "b", "c", "a"])
    assert [(s.index, t) for s, t in added.items()] == [(0, ["a", "b"]), (1, ["c"])]
    plan.bind(plan.shards[0], 7)
    assert plan.shard_by_sid(7) is plan.shards[0]
    plan.remove(["a"])
    added = plan.add(["d", "e"])
    assert [(s.index, t) for s, t in added.items()] == [(0, ["d"]), (1, ["e"])]
    plan.unbind_all()
    assert plan.shard_by_sid(7) is None
    assert [s.index for s in plan.unsubscribed_shards()] == [0, 1]


def test_epochs_strictly_increase() -> None:
    clock = EpochClock(lambda: 5)
    assert [clock.next() for _ in range(3)] == [5, 6, 7]


def test_status_merging() -> None:
    assert lifecycle_status("settled", None, "active") == "finalized"
    assert lifecycle_status("activated", None, "determined") == "determined"  # never backwards
    assert lifecycle_status("deactivated", False, "inactive") == "active"
    assert lifecycle_status("close_date_updated", None, "active") is None
    assert merge_status("active", "determined") == "determined"
    assert merge_status("closed", "active") == "closed"
    cat = Catalog()
    cat.note_market("X", "E", "S", "active")
    assert cat.open_markets() == ["X"]
    assert cat.unsettled_markets() == ["X"]


def test_work_queue_windows_merge() -> None:
    from kalshibook.collector.work import merge_windows

    w = merge_windows([(at(10_000), at(20_000)), (at(0), at(5_000)), (at(20_500), at(30_000))])
    assert w == [(at(0), at(5_000)), (at(10_000), at(30_000))]


def test_silence_watchdog_gap_reason(router: Router) -> None:
    router.handle(snap(4, 1, M, YES, NO))
    router.handle(delta(4, 2, M, "yes", "0.4300", "2.00", 10))
    router.drain()
    router.handle(Disconnected(epoch=1, reason="silent for 30 s", at=at(40)))
    router.handle(snap(1, 1, M, YES, NO))
    router.handle(delta(1, 2, M, "yes", "0.4400", "1.00", 50))
    (g,) = rows(router, "book_gaps")
    assert (g.reason, g.from_ts, g.to_ts) == ("silence", at(10), at(50))


def test_event_level_frames_become_lifecycle_rows(router: Router, effects: Recorder) -> None:
    router.handle(
        frame(
            '{"type":"event_lifecycle","sid":3,"seq":7,"msg":{"event_ticker":"KXHIGHNY-26AUG24",'
            '"series_ticker":"KXHIGHNY","title":"NYC high","subtitle":"Aug 24",'
            '"collateral_return_type":"MECNET"}}',
            5,
        )
    )
    router.handle(
        frame(
            '{"type":"event_fee_update","sid":3,"seq":8,"msg":{"event_ticker":"KXHIGHNY-26AUG24",'
            '"fee_type_override":"flat","fee_multiplier_override":0.5}}',
            6,
        )
    )
    out = split(router)
    life = out["lifecycle_events"]
    assert [(r.kind, r.event_type, r.event_ticker, r.market_ticker) for r in life] == [
        ("event", "event_lifecycle", "KXHIGHNY-26AUG24", None),
        ("event_fee", "event_fee_update", "KXHIGHNY-26AUG24", None),
    ]
    assert [(r.sid, r.seq) for r in life] == [(3, 7), (3, 8)]
    assert all(r.received_at.tzinfo is not None for r in life)
    assert b'"fee_type_override":"flat"' in life[1].payload
    (event,) = out["events"]
    assert (event.event_ticker, event.series_ticker, event.title) == (
        "KXHIGHNY-26AUG24",
        "KXHIGHNY",
        "NYC high",
    )
    assert effects.of("enrich") == [(None, "KXHIGHNY-26AUG24")]


def test_handle_all_reports_a_failing_item_and_goes_on(router: Router) -> None:
    failed: list[Any] = []
    bad = frame('{"type":"ticker","sid":3,"msg":{"market_ticker":"' + M + '"}}')
    router._dispatch[type(bad)] = lambda item: 1 / 0  # a handler bug
    router.handle_all(
        [snap(1, 1, M, yes='[["0.4000","10.00"]]'), bad, delta(1, 2, M, "yes", "0.4100", "5", 2)],
        failed.append,
    )
    assert failed == [bad]
    got = split(router)
    assert [r.seq for r in got["orderbook_deltas"]] == [2]
    router.handle_all([object()], failed.append)
    assert router.unknown_frames == 1
    assert failed == [bad]


def test_seq_gap_before_any_exchange_time_still_stops_the_book(
    router: Router, effects: Recorder
) -> None:
    """Snapshots carry no time: a gap found before any timestamped frame must still mark the
    book dirty (its later deltas would be applied to a book that missed one) and open a gap from
    the time the gap was found."""
    router.sid_channels = {4: "orderbook_delta"}
    router.handle(snap(4, 1, M, YES, NO))  # unstamped: no exchange time known yet
    router.handle(GapDetected(sid=4, expected=2, got=3, received_at=at(40)))
    assert effects.of("snapshot") == [(4, None)]
    router.handle(delta(4, 3, M, "yes", "0.4300", "2.00", 50))  # not applied: the book is dirty
    got = split(router)
    assert "orderbook_deltas" not in got
    router.handle(snap(4, 4, M, YES, NO, cmd_id=9))
    router.handle(delta(4, 5, M, "yes", "0.4300", "2.00", 60))
    got = split(router)
    (g,) = got["book_gaps"]
    assert (g.market_ticker, g.reason, g.from_ts, g.sid) == (M, "seq_gap", at(40), 4)
    assert [d.seq for d in got["orderbook_deltas"]] == [5]
