"""Decoding defects found by review: taker sides, ticker times, tolerant REST markets, price grids.

Each test feeds the exact input the review used (/tmp/rt_proto/decode1.py, rest1.py,
t/test_rt_router.py) and KALSHI_API.md's definitions (§2.3 frames, §3.2 markets).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from kalshibook.collector.router import Router
from kalshibook.collector.work import WorkQueues
from kalshibook.errors import ProtocolError
from kalshibook.kalshi.rest_decode import (
    decode_event,
    decode_market,
    decode_markets_page,
    decode_trades_page,
)
from kalshibook.kalshi.ws_decode import decode_frame
from kalshibook.kalshi.ws_frames import Ticker, Trade
from kalshibook.storage.tables import MarketRow

FIXTURES = Path(__file__).parents[1] / "fixtures" / "kalshi"
T0 = datetime(2026, 8, 1, tzinfo=UTC)
TRADE_ID = "d91bc706-ee49-470d-82d8-11418bda6fed"


def frame(obj: dict[str, Any], k: int = 0) -> Any:
    return decode_frame(json.dumps(obj).encode(), received_at=T0 + timedelta(microseconds=k))


# -- 2. taker_outcome_side from taker_book_side (§2.3: "taker_book_side bid|ask (bid ≡ yes)") --


@pytest.mark.parametrize(("book", "outcome"), [("bid", "yes"), ("ask", "no")])
def test_ws_trade_with_only_the_book_side_gets_its_outcome_side(book: str, outcome: str) -> None:
    msg = {
        "trade_id": TRADE_ID,
        "market_ticker": "A",
        "yes_price_dollars": "0.3600",
        "count_fp": "136.00",
        "taker_book_side": book,
        "ts_ms": 1784501722123,
    }
    t = frame({"type": "trade", "sid": 2, "seq": 1, "msg": msg})
    assert isinstance(t, Trade)
    assert (t.taker_outcome_side, t.taker_book_side, t.taker_side) == (outcome, book, None)


@pytest.mark.parametrize(("book", "outcome"), [("bid", "yes"), ("ask", "no")])
def test_rest_trade_with_only_the_book_side_gets_its_outcome_side(book: str, outcome: str) -> None:
    trade = {
        "trade_id": TRADE_ID,
        "ticker": "A",
        "count_fp": "43.00",
        "yes_price_dollars": "0.0800",
        "no_price_dollars": "0.9200",
        "taker_book_side": book,
        "created_time": "2026-08-24T15:01:57.667166Z",
        "is_block_trade": False,
    }
    (t,) = decode_trades_page({"trades": [trade], "cursor": None}).trades
    assert (t.taker_outcome_side, t.taker_book_side) == (outcome, book)


def test_an_unknown_book_side_derives_nothing() -> None:
    msg = {
        "trade_id": TRADE_ID,
        "market_ticker": "A",
        "yes_price_dollars": "0.36",
        "count_fp": "1.00",
        "taker_book_side": "sideways",
        "ts_ms": 1784501722123,
    }
    t = frame({"type": "trade", "sid": 2, "seq": 1, "msg": msg})
    assert isinstance(t, Trade)
    assert t.taker_outcome_side is None


# -- 3. ticker time: ts_ms, then the RFC 3339 ``time`` when finer, then whole-second ``ts`` ------


def ticker(**times: Any) -> Ticker:
    msg = {"market_ticker": "A", "price_dollars": "0.4800", **times}
    t = frame({"type": "ticker", "sid": 4, "msg": msg})
    assert isinstance(t, Ticker)
    return t


def test_ticker_without_ts_ms_takes_the_finer_time_field() -> None:
    whole = datetime(2026, 7, 19, 22, 55, 22, tzinfo=UTC)
    fine = whole.replace(microsecond=123456)
    assert ticker(ts=1784501722, time="2026-07-19T22:55:22.123456789Z").ts == fine
    assert ticker(time="2026-07-19T22:55:22.123456Z", ts=1784501722).ts == fine
    assert ticker(ts=1784501722, time="2026-07-19T22:55:22Z").ts == whole  # no finer: same
    assert ticker(ts=1784501722).ts == whole
    assert ticker(time="2026-07-19T22:55:22.5Z").ts == whole.replace(microsecond=500000)
    # ts_ms first, as before
    assert ticker(ts_ms=1784501722001, ts=1784501722, time="2026-07-19T22:55:22.9Z").ts == (
        whole.replace(microsecond=1000)
    )


def test_a_malformed_deprecated_time_does_not_hide_a_usable_ts() -> None:
    assert ticker(ts=1784501722, time="not a time").ts == datetime(
        2026, 7, 19, 22, 55, 22, tzinfo=UTC
    )
    with pytest.raises(ProtocolError):
        ticker(time="not a time")


# -- 4. REST markets: non-essential fields tolerant, one bad item never stops a page ------------


def live_market() -> dict[str, Any]:
    base = json.loads((FIXTURES / "rest_post_migration_live_samples_2026-08-24.json").read_text())
    m: dict[str, Any] = base["market (GET /markets -> .markets[i])"]
    return m


@pytest.mark.parametrize(
    ("field", "sent", "decoded"),
    [
        ("expiration_value", 3462.8, "3462.8"),  # the float's repr, not its binary value
        ("expiration_value", 0.1, "0.1"),
        ("expiration_value", 12, "12"),
        ("early_close_condition", {"x": 1}, '{"x":1}'),
        ("early_close_condition", ["a", 2.5], '["a",2.5]'),
        ("settlement_timer_seconds", "5", 5),
        ("settlement_timer_seconds", 5.0, 5),
        ("settlement_timer_seconds", "300", 300),
        ("tick_size", 1.0, 1),
        ("tick_size", "1", 1),
        ("exchange_index", "0", 0),
        ("can_close_early", "true", True),
        ("is_provisional", 0, False),
    ],
)
def test_market_non_essential_fields_accept_other_json_forms(
    field: str, sent: Any, decoded: Any
) -> None:
    page = decode_markets_page({"markets": [{**live_market(), field: sent}], "cursor": ""})
    (m,) = page.markets
    assert getattr(m, field) == decoded
    assert type(getattr(m, field)) is type(decoded)
    assert m.raw[field] == sent  # the original is kept
    assert page.rejected == 0


def test_market_money_from_json_numbers_is_exact() -> None:
    m = decode_market({"market": {**live_market(), "yes_bid_dollars": 0.1, "volume_fp": 1.1}})
    assert m.yes_bid_dollars == Decimal("0.1")
    assert m.volume_fp == Decimal("1.1")


def test_unconvertible_non_essential_values_become_null_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent = {
        **live_market(),
        "tick_size": 0.5,  # not a whole number: no exact int
        "settlement_timer_seconds": "soon",
        "yes_bid_dollars": "x",
        "occurrence_datetime": "someday",
        "can_close_early": "maybe",
    }
    with caplog.at_level(logging.WARNING, "kalshibook.kalshi.rest_decode"):
        (m,) = decode_markets_page({"markets": [sent]}).markets
    assert (m.tick_size, m.settlement_timer_seconds, m.yes_bid_dollars) == (None, None, None)
    assert (m.occurrence_datetime, m.can_close_early) == (None, None)
    assert m.status == "finalized"  # what the collector needs is there
    assert m.raw["tick_size"] == 0.5
    text = caplog.text
    for field in ("tick_size", "settlement_timer_seconds", "yes_bid_dollars", "can_close_early"):
        assert field in text


def test_one_undecodable_market_does_not_stop_its_page(caplog: pytest.LogCaptureFixture) -> None:
    good = live_market()
    bad_status = {**good, "ticker": "BAD-1", "status": {"not": "a status"}}
    no_ticker = {k: v for k, v in good.items() if k != "ticker"}
    body = {"markets": [bad_status, good, no_ticker, "junk"], "cursor": "next"}
    with caplog.at_level(logging.WARNING, "kalshibook.kalshi.rest_decode"):
        page = decode_markets_page(json.dumps(body).encode())
    assert [m.ticker for m in page.markets] == [good["ticker"]]
    assert page.cursor == "next"
    assert page.rejected == 3
    assert "BAD-1" in caplog.text
    assert caplog.text.count("undecodable market") == 3


def test_a_single_market_response_still_raises() -> None:
    with pytest.raises(ProtocolError):
        decode_market({"market": {**live_market(), "status": {"x": 1}}})


def test_an_events_nested_bad_market_is_skipped_not_fatal() -> None:
    good = live_market()
    ev = decode_event(
        {"event": {"event_ticker": "E", "markets": [{"ticker": "X", "status": 5}, good]}}
    )
    assert ev.markets is not None
    assert [m.ticker for m in ev.markets] == [good["ticker"]]


# -- 5. price_level_structure_updated refreshes the markets row --------------------------------


def test_price_level_structure_update_writes_the_grid_and_queues_enrichment() -> None:
    work = WorkQueues()
    r = Router(effects=work)
    r.catalog.note_market("A", "EV", "SER", "active", T0)
    trade = {
        "trade_id": TRADE_ID,
        "market_ticker": "A",
        "yes_price_dollars": "0.36",
        "count_fp": "1.00",
        "ts_ms": 1785542400000,
    }
    r.handle(frame({"type": "trade", "sid": 2, "seq": 1, "msg": trade}))
    r.drain()
    ranges = [{"start": "0.0000", "end": "1.0000", "step": "0.0010"}]
    msg = {
        "market_ticker": "A",
        "event_type": "price_level_structure_updated",
        "price_level_structure": "deci_cent",
        "price_ranges": ranges,
    }
    r.handle(frame({"type": "market_lifecycle_v2", "sid": 5, "seq": 1, "msg": msg}, 1))
    rows = r.drain()
    assert [t for t, _ in rows] == ["lifecycle_events", "markets"]
    market = rows[1][1]
    assert isinstance(market, MarketRow)
    assert (market.ticker, market.status, market.price_level_structure) == (
        "A",
        "active",
        "deci_cent",
    )
    assert market.price_ranges is not None
    assert json.loads(market.price_ranges) == ranges
    assert "A" in work.enrich_markets  # the REST view follows (what else the change moved)
