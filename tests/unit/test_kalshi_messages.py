"""Kalshi wire formats: frame decoding, commands and REST response decoding
(kalshibook.kalshi: scalars, ws_frames, ws_decode, commands, rest_models)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kalshibook.errors import ProtocolError
from kalshibook.kalshi.commands import (
    list_subscriptions_cmd,
    subscribe_cmd,
    unsubscribe_cmd,
    update_subscription_cmd,
)
from kalshibook.kalshi.rest_decode import (
    decode_batch_candlesticks,
    decode_candlesticks,
    decode_event,
    decode_event_candlesticks,
    decode_events_page,
    decode_exchange_schedule,
    decode_exchange_status,
    decode_historical_cutoff,
    decode_market,
    decode_markets_page,
    decode_orderbook,
    decode_series,
    decode_series_list,
    decode_trades_page,
)
from kalshibook.kalshi.rest_models import HistoricalCutoff, Market, MarketCandlestick
from kalshibook.kalshi.scalars import parse_time
from kalshibook.kalshi.ws_decode import KNOWN_TYPES, DecodeStats, decode_frame
from kalshibook.kalshi.ws_frames import (
    ErrorFrame,
    EventFeeUpdate,
    EventLifecycle,
    Frame,
    MarketLifecycle,
    Ok,
    OrderbookDelta,
    OrderbookSnapshot,
    PriceRange,
    Subscribed,
    SubscriptionInfo,
    Ticker,
    Trade,
    UnknownFrame,
    Unsubscribed,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kalshi"
FIXTURE_FILES = sorted(p for p in FIXTURES.glob("*.json*"))


def frame(obj: dict[str, Any], stats: DecodeStats | None = None) -> Frame:
    return decode_frame(json.dumps(obj).encode(), stats)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Recorded fixtures: every file must decode
# ---------------------------------------------------------------------------------------------


def _ws_frames(obj: Any) -> Iterator[dict[str, Any]]:
    """Every server frame inside a fixture document (objects with a string ``type``)."""
    if isinstance(obj, dict):
        if isinstance(obj.get("type"), str):
            yield obj
            return
        for v in obj.values():
            yield from _ws_frames(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _ws_frames(v)


def _unwrap(doc: Any) -> Any:
    return doc["response"] if isinstance(doc, dict) and "_metadata" in doc else doc


# filename prefix -> decoder of the REST response body
REST_DECODERS: dict[str, Callable[[Any], Any]] = {
    "rest_get_markets_list": decode_markets_page,
    "rest_get_market_single": decode_market,
    "rest_get_event_with_markets": decode_event,
    "rest_get_events_list": decode_events_page,
    "rest_get_series_list": decode_series_list,
    "rest_get_series_single": decode_series,
    "rest_get_markets_trades": decode_trades_page,
    "rest_get_orderbook": decode_orderbook,
    "rest_get_market_candlesticks": decode_candlesticks,
    "rest_batch_candlesticks": decode_batch_candlesticks,
    "rest_event_candlesticks": decode_event_candlesticks,
    "rest_get_exchange_status": decode_exchange_status,
    "rest_get_exchange_schedule": decode_exchange_schedule,
}

# rest_post_migration_live_samples: one object per key, key prefix -> wrapper + decoder
SAMPLE_DECODERS: dict[str, Callable[[Any], Any]] = {
    "series": lambda v: decode_series({"series": v}),
    "event": lambda v: decode_event({"event": v}),
    "market": lambda v: decode_markets_page({"markets": [v]}).markets[0],
    "trade": lambda v: decode_trades_page({"trades": [v]}).trades[0],
    "candlestick": lambda v: decode_candlesticks({"candlesticks": [v]}).candlesticks[0],
    "historical_cutoff": decode_historical_cutoff,
}


def decode_fixture(path: Path) -> list[Any]:
    """Decode one fixture file by its name; returns what was decoded."""
    name = path.name
    if name.startswith("ws_"):
        if path.suffix == ".jsonl":
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            return [decode_frame(ln) for ln in lines]
        raws = list(_ws_frames(json.loads(path.read_text())))
        return [decode_frame(json.dumps(r)) for r in raws]
    if name.startswith("rest_post_migration_live_samples"):
        out = []
        for key, value in json.loads(path.read_text()).items():
            if key.startswith("_"):
                continue
            prefix = key.split(" ", 1)[0]
            assert prefix in SAMPLE_DECODERS, f"no decoder for sample {key!r}"
            out.append(SAMPLE_DECODERS[prefix](value))
        return out
    for prefix, decoder in REST_DECODERS.items():
        if name.startswith(prefix):
            return [decoder(_unwrap(json.loads(path.read_text())))]
    raise AssertionError(f"no decoder mapped for fixture {name}; extend REST_DECODERS")


def test_every_fixture_file_decodes() -> None:
    assert len(FIXTURE_FILES) >= 20, f"recorded payloads missing from {FIXTURES}"
    stats = DecodeStats(field_sample_every=1)
    decoded: dict[str, list[Any]] = {}
    for path in FIXTURE_FILES:
        items = decode_fixture(path)
        assert items, f"{path.name}: nothing decoded"
        decoded[path.name] = items
        if path.name.startswith("ws_"):
            assert not any(isinstance(i, UnknownFrame) for i in items), path.name
            for line in _raw_frames(path):
                decode_frame(line, stats)
    assert stats.malformed == 0
    assert not stats.unknown_types
    # The asyncapi examples cover every public frame type.
    assert set(stats.by_type) >= KNOWN_TYPES
    assert len(decoded) == len(FIXTURE_FILES)


def _raw_frames(path: Path) -> list[bytes]:
    if path.suffix == ".jsonl":
        return [ln.encode() for ln in path.read_text().splitlines() if ln.strip()]
    return [json.dumps(r).encode() for r in _ws_frames(json.loads(path.read_text()))]


def _fixture(name: str) -> Path:
    path = FIXTURES / name
    assert path.is_file(), f"fixture {name} missing from {FIXTURES}"
    return path


def test_fixture_demo_capture_values() -> None:
    items = decode_fixture(_fixture("ws_demo_wire_capture_2026-08-17.json"))
    acks = [i for i in items if isinstance(i, Subscribed)]
    assert [(a.id, a.channel, a.sid) for a in acks] == [
        (1, "orderbook_delta", 1),
        (1, "ticker", 2),
        (1, "trade", 3),
    ]
    (trade,) = [i for i in items if isinstance(i, Trade)]
    assert trade.sid == 3
    assert trade.seq == 1
    assert trade.yes_price == Decimal("0.8000")
    assert trade.no_price == Decimal("0.2000")
    assert trade.count == Decimal("2.00")
    assert trade.taker_outcome_side == "no"
    assert trade.taker_book_side == "ask"
    assert trade.ts == datetime(2026, 8, 17, 8, 49, 59, 391000, tzinfo=UTC)
    (err,) = [i for i in items if isinstance(i, ErrorFrame)]
    assert (err.sid, err.seq, err.code, err.msg) == (3, 2, 13, "Unsupported action")


def test_fixture_legacy_orderbook_delta() -> None:
    (d,) = decode_fixture(_fixture("ws_orderbook_delta_prod_2025-08-12_legacy_int.json"))
    assert isinstance(d, OrderbookDelta)
    assert d.price == Decimal("0.51")
    assert d.delta == Decimal(-1)
    assert d.side == "no"
    assert d.ts == datetime(2025, 8, 12, 21, 0, 32, 539836, tzinfo=UTC)  # ns truncated to µs


def test_fixture_legacy_ticker_empty_price() -> None:
    a, b = decode_fixture(_fixture("ws_ticker_prod_2024-11-26_legacy_int.json"))
    assert isinstance(a, Ticker)
    assert isinstance(b, Ticker)
    assert a.price == Decimal("0.12")
    assert a.volume == Decimal(351970)
    assert a.clock == 6598272994
    assert a.ts == datetime(2024, 11, 26, 0, 11, 20, tzinfo=UTC)
    assert b.price is None  # "" = never traded, even though legacy int price is 0
    assert b.yes_bid == Decimal("0.37")


def test_fixture_lifecycle_determined_settled() -> None:
    det, settled = decode_fixture(
        _fixture("ws_market_lifecycle_v2_determined_settled_prod_2026-07-19.json")
    )
    assert isinstance(det, MarketLifecycle)
    assert isinstance(settled, MarketLifecycle)
    assert det.event_type == "determined"
    assert det.result == "no"
    assert det.settlement_value == Decimal("0.0000")
    assert det.determination_ts == datetime.fromtimestamp(1784501722, UTC)
    assert det.raw["market_ticker"] == "KXMLBSPREAD-26JUL191605WSHATH-ATH4"
    assert settled.event_type == "settled"
    assert settled.seq == 274085
    assert settled.settled_ts == datetime.fromtimestamp(1784500206, UTC)


def test_fixture_asyncapi_snapshot_and_lifecycle() -> None:
    items = decode_fixture(_fixture("ws_official_asyncapi_examples.json"))
    (snap,) = [i for i in items if isinstance(i, OrderbookSnapshot)]
    assert snap.yes == ((Decimal("0.08"), Decimal(300)), (Decimal("0.22"), Decimal(333)))
    assert snap.no[1] == (Decimal("0.5600"), Decimal("146.00"))
    created = next(i for i in items if isinstance(i, MarketLifecycle) and i.event_type == "created")
    assert created.additional_metadata is not None
    assert created.additional_metadata.floor_strike == Decimal(4487)
    assert created.additional_metadata.can_close_early is True
    assert created.close_ts == datetime.fromtimestamp(1694721600, UTC)
    assert created.price_level_structure == "linear_cent"
    pls = next(
        i
        for i in items
        if isinstance(i, MarketLifecycle) and i.event_type == "price_level_structure_updated"
    )
    assert pls.price_ranges == (PriceRange(Decimal(0), Decimal(1), Decimal("0.001")),)
    meta = [
        i for i in items if isinstance(i, MarketLifecycle) and i.event_type == "metadata_updated"
    ]
    assert (meta[0].strike_type, meta[0].floor_strike, meta[0].cap_strike) == (
        "between",
        Decimal(95000),
        Decimal(95250),
    )
    assert meta[1].yes_sub_title == "above $95,000"
    mve = next(i for i in items if isinstance(i, MarketLifecycle) and i.multivariate)
    assert mve.market_ticker == "KXMVE-TEST-EVENT-M1"
    fees = [i for i in items if isinstance(i, EventFeeUpdate)]
    assert fees[0].fee_multiplier_override == Decimal(1)
    assert fees[1].fee_type_override is None
    assert fees[1].fee_multiplier_override is None
    (ev,) = [i for i in items if isinstance(i, EventLifecycle)]
    assert ev.collateral_return_type == "MECNET"
    assert ev.subtitle == "Jan 25 at 21:50"
    (ls,) = [i for i in items if isinstance(i, Ok) and i.subscriptions]
    assert ls.subscriptions == (
        SubscriptionInfo("orderbook_delta", 1),
        SubscriptionInfo("ticker", 2),
        SubscriptionInfo("fill", 3),
    )


def test_fixture_rest_values() -> None:
    page = decode_fixture(_fixture("rest_get_markets_list_prod_2026-01-12.json"))[0]
    assert len(page.markets) == 5
    assert page.cursor.startswith("CgwIyeGVywYQ")
    mk = page.markets[0]
    assert mk.no_bid_dollars == Decimal("1.0000")
    assert mk.price_ranges == (PriceRange(Decimal(0), Decimal(1), Decimal("0.0010")),)
    assert mk.raw["ticker"] == mk.ticker

    event = decode_fixture(_fixture("rest_get_event_with_markets_prod_2026-01-12.json"))[0]
    assert event.event_ticker == "KXELONMARS-99"
    assert event.markets is not None
    assert len(event.markets) == 1
    em = event.markets[0]
    assert em.volume_fp == Decimal(35001)  # legacy int fills the missing fixed-point field
    assert em.yes_bid_dollars == Decimal("0.06")
    assert em.created_time is None  # Go zero time

    trades = decode_fixture(_fixture("rest_get_markets_trades_prod_2026-01-12.json"))[0]
    t = trades.trades[0]
    assert t.count_fp == Decimal(1)
    assert t.yes_price_dollars == Decimal("0.06")
    assert t.taker_outcome_side == "no"
    assert t.taker_book_side == "ask"
    assert t.created_time == datetime(2026, 1, 12, 15, 0, 20, 897212, tzinfo=UTC)

    book = decode_fixture(_fixture("rest_get_orderbook_empty_mve_prod_2026-01-12.json"))[0]
    assert book.yes == ()
    assert book.no == ()

    candles = decode_fixture(
        _fixture("rest_get_market_candlesticks_daily_KXELONMARS-99_prod_2026-01-12.json")
    )[0]
    assert len(candles.candlesticks) == 90
    first = candles.candlesticks[0]
    assert first.price is not None
    assert first.price.close_dollars is None
    assert first.price.previous_dollars == Decimal("0.11")
    assert first.volume_fp == Decimal(0)

    samples = decode_fixture(_fixture("rest_post_migration_live_samples_2026-08-24.json"))
    market = next(s for s in samples if isinstance(s, Market))
    assert market.status == "finalized"
    assert market.settlement_value_dollars == Decimal(0)
    candle = next(s for s in samples if isinstance(s, MarketCandlestick))
    assert candle.open_interest_fp == Decimal("40101.16")
    cutoff = next(s for s in samples if isinstance(s, HistoricalCutoff))
    assert cutoff.trades_created_ts == datetime(2026, 6, 25, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# WebSocket frames
# ---------------------------------------------------------------------------------------------


def test_snapshot_absent_side_is_empty() -> None:
    f = frame(
        {
            "type": "orderbook_snapshot",
            "sid": 1,
            "seq": 2,
            "msg": {"market_ticker": "A", "yes_dollars_fp": [["0.0800", "300.00"]]},
        }
    )
    assert isinstance(f, OrderbookSnapshot)
    assert f.yes == ((Decimal("0.08"), Decimal(300)),)
    assert f.no == ()
    empty = frame({"type": "orderbook_snapshot", "sid": 1, "seq": 3, "msg": {"market_ticker": "B"}})
    assert isinstance(empty, OrderbookSnapshot)
    assert empty.yes == ()
    assert empty.no == ()


def test_snapshot_legacy_books() -> None:
    cents = frame(
        {
            "type": "orderbook_snapshot",
            "sid": 1,
            "seq": 1,
            "msg": {"market_ticker": "A", "yes": [[45, 100]], "no": [[1, 5], [54, 20]]},
        }
    )
    assert isinstance(cents, OrderbookSnapshot)
    assert cents.yes == ((Decimal("0.45"), Decimal(100)),)
    assert cents.no == ((Decimal("0.01"), Decimal(5)), (Decimal("0.54"), Decimal(20)))
    dollars = frame(
        {
            "type": "orderbook_snapshot",
            "sid": 1,
            "seq": 1,
            "msg": {"market_ticker": "A", "yes": [[45, 100]], "yes_dollars": [["0.45", 100]]},
        }
    )
    assert isinstance(dollars, OrderbookSnapshot)
    assert dollars.yes == ((Decimal("0.45"), Decimal(100)),)


def test_snapshot_bad_level() -> None:
    with pytest.raises(ProtocolError):
        frame(
            {
                "type": "orderbook_snapshot",
                "msg": {"market_ticker": "A", "yes_dollars_fp": [["0.08"]]},
            }
        )


def test_delta_fixed_point_and_json_numbers() -> None:
    f = frame(
        {
            "type": "orderbook_delta",
            "sid": 2,
            "seq": 3,
            "msg": {
                "market_ticker": "A",
                "price_dollars": 0.96,
                "delta_fp": -74.77,
                "side": "yes",
                "ts_ms": 1669149841123,
                "client_order_id": "c1",
            },
        }
    )
    assert isinstance(f, OrderbookDelta)
    assert f.price == Decimal("0.96")
    assert f.delta == Decimal("-74.77")
    assert f.ts == datetime(2022, 11, 22, 20, 44, 1, 123000, tzinfo=UTC)
    assert f.client_order_id == "c1"


def test_delta_invalid_side_or_missing_fields() -> None:
    base = {"market_ticker": "A", "price_dollars": "0.5", "delta_fp": "1.00"}
    with pytest.raises(ProtocolError, match="side"):
        frame({"type": "orderbook_delta", "msg": {**base, "side": "maybe"}})
    with pytest.raises(ProtocolError):
        frame({"type": "orderbook_delta", "msg": {"market_ticker": "A", "side": "yes"}})
    with pytest.raises(ProtocolError):
        frame({"type": "orderbook_delta"})


def test_legacy_trade_cents() -> None:
    f = frame(
        {
            "type": "trade",
            "sid": 1,
            "seq": 9,
            "msg": {
                "trade_id": "t",
                "market_ticker": "A",
                "yes_price": 45,
                "no_price": 55,
                "count": 3,
                "taker_side": "yes",
                "ts": 1700000000,
            },
        }
    )
    assert isinstance(f, Trade)
    assert (f.yes_price, f.no_price, f.count) == (Decimal("0.45"), Decimal("0.55"), Decimal(3))
    assert f.taker_outcome_side == "yes"
    assert f.taker_book_side == "bid"
    assert f.ts == datetime.fromtimestamp(1700000000, UTC)


def test_oldest_trade_shape_price_side() -> None:
    f = frame(
        {
            "type": "trade",
            "msg": {"trade_id": "t", "market_ticker": "A", "price": 30, "count": 1, "side": "no"},
        }
    )
    assert isinstance(f, Trade)
    assert f.yes_price == Decimal("0.30")
    assert f.no_price == Decimal("0.70")
    assert f.taker_outcome_side == "no"
    assert f.taker_book_side == "ask"


def test_trade_requires_id_and_price() -> None:
    with pytest.raises(ProtocolError, match="trade_id"):
        frame(
            {
                "type": "trade",
                "msg": {"market_ticker": "A", "yes_price_dollars": "0.5", "count_fp": "1.00"},
            }
        )
    with pytest.raises(ProtocolError, match="price"):
        frame({"type": "trade", "msg": {"trade_id": "t", "market_ticker": "A", "count_fp": "1"}})


def test_ticker_timestamp_fallbacks() -> None:
    def ticker(**msg: Any) -> Ticker:
        f = frame({"type": "ticker", "sid": 1, "msg": {"market_ticker": "A", **msg}})
        assert isinstance(f, Ticker)
        return f

    at = datetime(2022, 11, 22, 20, 44, 1, tzinfo=UTC)
    assert ticker(ts_ms=1669149841000, ts=1, time="2000-01-01T00:00:00Z").ts == at
    assert ticker(ts=1669149841, time="2000-01-01T00:00:00Z").ts == at
    assert ticker(time="2022-11-22T20:44:01Z").ts == at
    assert ticker(time="2022-11-22T20:44:01.123456789Z").ts == at.replace(microsecond=123456)
    assert ticker().ts is None
    assert ticker().seq is None


def test_ticker_values() -> None:
    f = frame(
        {
            "type": "ticker",
            "sid": 11,
            "msg": {
                "market_ticker": "A",
                "price_dollars": "0.4800",
                "yes_bid_dollars": "0.4500",
                "yes_ask_dollars": "0.5300",
                "volume_fp": "33896.00",
                "open_interest_fp": "20422.00",
                "dollar_volume": 16948,
                "dollar_open_interest": -3,
                "yes_bid_size_fp": "300.00",
                "yes_ask_size_fp": "150.00",
                "last_trade_size_fp": "25.00",
            },
        }
    )
    assert isinstance(f, Ticker)
    assert f.price == Decimal("0.48")
    assert f.yes_bid == Decimal("0.45")
    assert f.dollar_volume == Decimal(16948)
    assert f.dollar_open_interest == Decimal(-3)
    assert f.last_trade_size == Decimal(25)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1700000000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (1700000000123, datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)),
        (1700000000.5, datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)),
        ("1700000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("2025-08-12T21:00:32.539836022Z", datetime(2025, 8, 12, 21, 0, 32, 539836, tzinfo=UTC)),
        ("2025-08-12T23:00:32+02:00", datetime(2025, 8, 12, 21, 0, 32, tzinfo=UTC)),
        ("2025-08-12T23:00:32.5+0200", datetime(2025, 8, 12, 21, 0, 32, 500000, tzinfo=UTC)),
        ("2025-08-12T21:00:32", datetime(2025, 8, 12, 21, 0, 32, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_time(value: Any, expected: datetime | None) -> None:
    got = parse_time(value)
    assert got == expected
    if got is not None:
        assert got.tzinfo is UTC


@pytest.mark.parametrize("bad", ["yesterday", "2025-13-45T00:00:00Z", [1]])
def test_parse_time_rejects(bad: Any) -> None:
    with pytest.raises(ProtocolError):
        parse_time(bad)


def test_control_frames() -> None:
    sub = frame({"id": 4, "type": "subscribed", "msg": {"channel": "trade", "sid": 9}})
    assert sub == Subscribed(id=4, sid=9, channel="trade")
    old = frame({"id": 4, "type": "subscribed", "sid": 9})
    assert isinstance(old, Subscribed)
    assert old.sid == 9
    assert old.channel is None
    ok_top = frame({"id": 5, "sid": 9, "seq": 3, "type": "ok", "market_tickers": ["A", "B"]})
    assert isinstance(ok_top, Ok)
    assert ok_top.market_tickers == ("A", "B")
    assert ok_top.seq == 3
    ok_msg = frame(
        {"id": 5, "sid": 9, "type": "ok", "msg": {"market_tickers": ["C"], "market_ids": ["u"]}}
    )
    assert isinstance(ok_msg, Ok)
    assert ok_msg.market_tickers == ("C",)
    assert ok_msg.market_ids == ("u",)
    unsub = frame({"id": 102, "sid": 2, "seq": 7, "type": "unsubscribed"})
    assert unsub == Unsubscribed(id=102, sid=2, seq=7)
    err = frame(
        {
            "id": 6,
            "type": "error",
            "msg": {"code": 26, "msg": "limit", "market_ticker": "A", "market_tickers": ["B"]},
        }
    )
    assert isinstance(err, ErrorFrame)
    assert err.market_tickers == ("A", "B")
    assert not err.terminal
    overflow = frame({"type": "error", "sid": 1, "seq": 4, "msg": {"code": 25}})
    assert isinstance(overflow, ErrorFrame)
    assert overflow.terminal
    assert overflow.msg == ""
    with pytest.raises(ProtocolError, match="code"):
        frame({"type": "error", "id": 1})


def test_lifecycle_legacy_cents_and_unknown_event_type() -> None:
    f = frame(
        {
            "type": "market_lifecycle_v2",
            "sid": 1,
            "seq": 1,
            "msg": {
                "market_ticker": "A",
                "event_type": "determined",
                "settlement_value": 100,
                "result": "yes",
                "determination_ts": 1700000000,
                "brand_new_field": {"x": 1},
            },
        }
    )
    assert isinstance(f, MarketLifecycle)
    assert f.settlement_value == Decimal(1)
    assert f.raw["brand_new_field"] == {"x": 1}
    g = frame(
        {
            "type": "market_lifecycle_v2",
            "msg": {"market_ticker": "A", "event_type": "paused", "is_deactivated": True},
        }
    )
    assert isinstance(g, MarketLifecycle)
    assert g.event_type == "paused"
    assert g.is_deactivated
    with pytest.raises(ProtocolError):
        frame({"type": "market_lifecycle_v2", "msg": {"market_ticker": "A"}})
    with pytest.raises(ProtocolError):
        frame({"type": "market_lifecycle_v2", "msg": None})


def test_event_lifecycle_sub_title_variant() -> None:
    f = frame(
        {
            "type": "event_lifecycle",
            "msg": {"event_ticker": "E", "sub_title": "s", "strike_date": 1700000000},
        }
    )
    assert isinstance(f, EventLifecycle)
    assert f.subtitle == "s"
    assert f.strike_date == datetime.fromtimestamp(1700000000, UTC)


def test_unknown_type_and_fields_are_counted() -> None:
    stats = DecodeStats(field_sample_every=1)
    f = frame({"type": "fill", "sid": 4, "seq": 1, "msg": {"a": 1}}, stats)
    assert isinstance(f, UnknownFrame)
    assert (f.type, f.sid, f.seq, f.msg) == ("fill", 4, 1, {"a": 1})
    frame(
        {
            "type": "trade",
            "sid": 1,
            "seq": 1,
            "extra_top": 1,
            "msg": {
                "trade_id": "t",
                "market_ticker": "A",
                "yes_price_dollars": "0.5",
                "count_fp": "1.00",
                "new_thing": True,
            },
        },
        stats,
    )
    assert stats.unknown_types == {"fill": 1}
    assert stats.by_type == {"trade": 1}
    assert stats.unknown_fields == {("trade", "msg.new_thing"): 1, ("trade", "extra_top"): 1}
    assert stats.total == 2


def test_field_sampling_is_periodic() -> None:
    stats = DecodeStats(field_sample_every=10)
    for _ in range(25):
        frame({"type": "unsubscribed", "sid": 1, "seq": 1, "zz": 1}, stats)
    assert stats.unknown_fields == {("unsubscribed", "zz"): 3}  # frames 0, 10, 20


def test_malformed_frames_raise_and_count() -> None:
    stats = DecodeStats()
    for raw in (b"{not json", b"[1,2]", b'{"sid": 1}', b'{"type":"trade","sid":"x"}', b""):
        with pytest.raises(ProtocolError):
            decode_frame(raw, stats)
    assert stats.malformed == 5
    assert stats.by_type == {}


def test_received_at_and_str_input() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    f = decode_frame('{"type":"unsubscribed","sid":1,"seq":2}', received_at=at)
    assert f.received_at == at


def test_frames_are_frozen_and_encodable() -> None:
    f = frame(
        {
            "type": "orderbook_delta",
            "sid": 1,
            "seq": 1,
            "msg": {
                "market_ticker": "A",
                "price_dollars": "0.5000",
                "delta_fp": "2.00",
                "side": "no",
            },
        }
    )
    with pytest.raises(AttributeError):
        f.seq = 3  # type: ignore[misc]
    assert json.loads(msgspec.json.encode(f))["price"] == "0.5000"


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def test_commands() -> None:
    assert json.loads(subscribe_cmd(1, ["orderbook_delta"], ["A", "B"])) == {
        "id": 1,
        "cmd": "subscribe",
        "params": {"channels": ["orderbook_delta"], "market_tickers": ["A", "B"]},
    }
    assert json.loads(
        subscribe_cmd(7, ["ticker"], send_initial_snapshot=True, use_yes_price=None)
    ) == {
        "id": 7,
        "cmd": "subscribe",
        "params": {"channels": ["ticker"], "send_initial_snapshot": True},
    }
    assert json.loads(unsubscribe_cmd(124, [1, 2])) == {
        "id": 124,
        "cmd": "unsubscribe",
        "params": {"sids": [1, 2]},
    }
    assert json.loads(update_subscription_cmd(127, 456, "get_snapshot", ["M-1"])) == {
        "id": 127,
        "cmd": "update_subscription",
        "params": {"sids": [456], "action": "get_snapshot", "market_tickers": ["M-1"]},
    }
    assert json.loads(list_subscriptions_cmd(3)) == {"id": 3, "cmd": "list_subscriptions"}
    with pytest.raises(ValueError):
        subscribe_cmd(1, [])


# ---------------------------------------------------------------------------------------------
# REST
# ---------------------------------------------------------------------------------------------


def test_rest_market_fixed_point_only_and_unknown_fields() -> None:
    body = {
        "markets": [
            {
                "ticker": "A",
                "yes_bid_dollars": "0.0350",
                "volume_fp": "10.50",
                "floor_strike": 95000.5,
                "settlement_value_dollars": "",
                "close_time": "2026-08-24T15:01:53Z",
                "shiny_new_field": [1, 2],
            }
        ],
        "cursor": "",
    }
    page = decode_markets_page(json.dumps(body).encode())
    assert page.cursor is None
    (mk,) = page.markets
    assert mk.yes_bid_dollars == Decimal("0.035")
    assert mk.volume_fp == Decimal("10.5")
    assert mk.floor_strike == Decimal("95000.5")
    assert mk.settlement_value_dollars is None
    assert mk.close_time == datetime(2026, 8, 24, 15, 1, 53, tzinfo=UTC)
    assert mk.raw["shiny_new_field"] == [1, 2]


def test_rest_errors() -> None:
    with pytest.raises(ProtocolError):
        decode_markets_page(b"not json")
    # a page item that cannot be decoded is left out and counted, not fatal to its page
    # (tests/unit/test_decode_fixes.py); a single market response still raises
    assert decode_markets_page({"markets": [{"no_ticker": 1}]}).rejected == 1
    with pytest.raises(ProtocolError):
        decode_market({"nothing": 1})
    with pytest.raises(ProtocolError):
        decode_market({"market": {"ticker": "A", "status": ["x"]}})
    # a non-essential quote without an exact value is null, the market kept
    (m,) = decode_markets_page({"markets": [{"ticker": "A", "yes_bid_dollars": "x"}]}).markets
    assert (m.ticker, m.yes_bid_dollars, m.raw["yes_bid_dollars"]) == ("A", None, "x")


def test_rest_orderbook_fp() -> None:
    book = decode_orderbook(
        {
            "orderbook_fp": {
                "yes_dollars": [["0.4200", "13.00"], ["0.4300", "1.50"]],
                "no_dollars": None,
            }
        }
    )
    assert book.yes == ((Decimal("0.42"), Decimal(13)), (Decimal("0.43"), Decimal("1.5")))
    assert book.no == ()


def test_rest_event_nested_markets_preferred() -> None:
    ev = decode_event(
        {"event": {"event_ticker": "E", "markets": [{"ticker": "N"}]}, "markets": [{"ticker": "T"}]}
    )
    assert ev.markets is not None
    assert [x.ticker for x in ev.markets] == ["N"]
    assert ev.markets[0].raw == {"ticker": "N"}


def test_rest_historical_candle_names() -> None:
    c = decode_candlesticks(
        {
            "ticker": "A",
            "candlesticks": [
                {
                    "end_period_ts": 1,
                    "price": {"open": "0.1000", "close": "0.2000", "mean": None},
                    "yes_bid": {"open": "0.0900"},
                    "volume": "12.00",
                    "open_interest": "3.00",
                }
            ],
        }
    )
    assert c.market_ticker == "A"
    (k,) = c.candlesticks
    assert k.price is not None
    assert k.price.open_dollars == Decimal("0.1")
    assert k.price.close_dollars == Decimal("0.2")
    assert k.price.mean_dollars is None
    assert k.yes_bid is not None
    assert k.yes_bid.open_dollars == Decimal("0.09")
    assert k.volume_fp == Decimal(12)
    assert k.open_interest_fp == Decimal(3)


def test_ticker_keeps_seq_id_and_clock_when_sent() -> None:
    """The ticker is built in two steps when any of these rarely sent fields is present."""
    base = {"market_ticker": "A", "price_dollars": "0.4800", "ts_ms": 1669149841000}
    plain = frame({"type": "ticker", "sid": 3, "msg": base})
    assert isinstance(plain, Ticker)
    assert (plain.seq, plain.id, plain.clock) == (None, None, None)
    full = frame({"type": "ticker", "sid": 3, "seq": 9, "id": 4, "msg": {**base, "Clock": 77}})
    assert isinstance(full, Ticker)
    assert (full.sid, full.seq, full.id, full.clock) == (3, 9, 4, 77)
    assert (full.market_ticker, full.price, full.ts) == ("A", plain.price, plain.ts)


def test_delta_fast_path_matches_the_general_rules() -> None:
    """Cached decimal text, legacy cents, seconds-only time and a missing ticker."""

    def delta(**msg: Any) -> Frame:
        body = {"market_ticker": "A", "side": "yes", **msg}
        return frame({"type": "orderbook_delta", "sid": 1, "seq": 2, "msg": body})

    for _ in range(2):  # the second decode hits the decimal cache
        d = delta(price_dollars="0.4500", delta_fp="-3.50", ts_ms=1669149841000)
        assert isinstance(d, OrderbookDelta)
        assert (d.price, d.delta) == (Decimal("0.45"), Decimal("-3.5"))
        assert d.ts == utc(2022, 11, 22, 20, 44, 1)
    legacy = delta(price=45, delta=-3, ts=1669149841)
    assert isinstance(legacy, OrderbookDelta)
    assert (legacy.price, legacy.delta, legacy.ts) == (
        Decimal("0.45"),
        Decimal(-3),
        utc(2022, 11, 22, 20, 44, 1),
    )
    with pytest.raises(ProtocolError, match="without market_ticker"):
        delta(market_ticker="", price_dollars="0.45", delta_fp="1")
    with pytest.raises(ProtocolError, match="without price or delta"):
        delta(price_dollars="", delta_fp="1")


def test_field_sampling_counts_every_nth_frame_of_a_type() -> None:
    stats = DecodeStats(field_sample_every=3)
    for i in range(7):
        frame({"type": "ticker", "sid": 3, "msg": {"market_ticker": "A", f"new{i}": 1}}, stats)
    assert stats.by_type["ticker"] == 7
    # frames 1, 4 and 7 of the type are sampled: their unknown field is counted
    assert sorted(k[1] for k in stats.unknown_fields) == ["msg.new0", "msg.new3", "msg.new6"]


def test_a_time_beyond_year_9999_is_a_malformed_frame() -> None:
    """Not an OverflowError escaping the decoder (which would end the WebSocket session)."""
    stats = DecodeStats()
    msg = {"market_ticker": "A", "side": "yes", "price_dollars": "0.45", "delta_fp": "1"}
    with pytest.raises(ProtocolError):
        frame(
            {"type": "orderbook_delta", "sid": 1, "seq": 2, "msg": {**msg, "ts_ms": 10**15}}, stats
        )
    assert stats.malformed == 1
