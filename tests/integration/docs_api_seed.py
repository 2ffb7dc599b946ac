"""The sample data of docs/api.md: NYC's high temperature on 8 March 2026, as recorded.

Every example response in docs/api.md was produced by the API over exactly these rows, and
tests/integration/test_docs_api.py replays every example against them. Change the story and the
examples must be regenerated.

The story: market ``KXHIGHNY-26MAR08-B49.5`` ("49° to 50°") opens on 7 March at 15:00 UTC, trades
quietly, reprices on the morning of 8 March (the US spring-forward day, a 23-hour New York day),
loses its order-book stream twice (a sequence gap repaired by a resync snapshot in the same epoch,
then a disconnect repaired by a snapshot on a new connection, i.e. a new epoch), and settles YES.

The book is driven by a list of events (snapshots, resting-order changes, trades); the seed
derives what the collector would have written: trade rows, the deltas a trade causes (it takes
liquidity from the opposite side), top-of-book ``quotes`` rows whenever the top changes, and
``market_stats`` rows (volume, open interest) after each trade.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from kalshibook.storage.api_keys import create_key, hash_secret

__all__ = ("EMPTY_PREFIX", "MARKET", "START_CREDITS", "create_docs_keys", "insert_docs_seed")

D = Decimal
MARKET = "KXHIGHNY-26MAR08-B49.5"
EVENT = "KXHIGHNY-26MAR08"
OTHER = "KXHIGHNY-26MAR08-B51.5"
ABOVE = "KXHIGHNY-26MAR08-T53"
CHI_EVENT = "KXHIGHCHI-26MAR08"
CHI = "KXHIGHCHI-26MAR08-B44.5"
RECEIVE_DELAY = timedelta(milliseconds=35)
REST_DELAY = timedelta(seconds=5, milliseconds=712)
STATS_DELAY = timedelta(milliseconds=180)


def ts(text: str) -> datetime:
    """``"03-08 14:25:06.2"`` → 2026-03-08T14:25:06.200Z."""
    day, clock = text.split(" ")
    month, dom = (int(x) for x in day.split("-"))
    hms, _, frac = clock.partition(".")
    h, m, s = (int(x) for x in hms.split(":"))
    micro = int((frac or "0").ljust(6, "0"))
    return datetime(2026, month, dom, h, m, s, micro, tzinfo=UTC)


def epoch_of(at: datetime) -> int:
    """Epochs are microseconds since the Unix epoch (the collector's EpochClock)."""
    return int(at.timestamp()) * 1_000_000 + at.microsecond


# -- the book of MARKET --------------------------------------------------------------------------

Levels = list[tuple[str, str]]


@dataclass(frozen=True)
class Snapshot:
    at: datetime
    source: str  # snapshot | resync | checkpoint
    epoch: int
    sid: int
    yes: Levels | None = None  # None: the current book (checkpoints)
    no: Levels | None = None


@dataclass(frozen=True)
class Order:
    """A resting-order change seen as a delta: ``size`` contracts added (negative: removed)."""

    at: datetime
    side: str
    price: str
    size: str


@dataclass(frozen=True)
class Fill:
    """A trade. ``taker`` buys ``taker`` contracts at ``yes_price`` (YES) or 1 - yes_price (NO),
    taking the resting bids of the other side unless it happened while the stream was down."""

    at: datetime
    taker: str
    yes_price: str
    count: str
    oi_change: str
    trade_id: str
    source: str = "ws"


@dataclass(frozen=True)
class Gap:
    from_ts: datetime
    to_ts: datetime
    reason: str
    sid: int


EPOCH_1 = epoch_of(ts("03-07 14:59:58.5123"))
EPOCH_2 = epoch_of(ts("03-08 14:25:05.903117"))
SID = 4  # lifecycle, trade and ticker take sids 1-3 on each connection

BOOK_EVENTS: list[Snapshot | Order | Fill | Gap] = [
    Snapshot(
        ts("03-07 15:00:00.0"),
        "snapshot",
        EPOCH_1,
        SID,
        yes=[("0.18", "150"), ("0.20", "100"), ("0.22", "50")],
        no=[("0.74", "80"), ("0.75", "40")],
    ),
    Fill(
        ts("03-07 15:02:11.25"), "yes", "0.25", "10", "10", "0b7c3e52-4f0a-4d7e-9a51-3c2f1e8d6a01"
    ),
    Order(ts("03-07 15:40:00.0"), "yes", "0.23", "25"),
    Fill(ts("03-07 16:05:30.5"), "no", "0.23", "25", "25", "1d4e9f63-5a1b-4e8f-8b62-4d3a2f9e7b12"),
    Order(ts("03-07 18:20:00.0"), "no", "0.76", "60"),
    Fill(ts("03-07 20:45:12.0"), "yes", "0.24", "30", "20", "2e5fa074-6b2c-4f90-9c73-5e4b3a0f8c23"),
    # the morning forecast moves the market: NO bids pulled, new prices posted
    Order(ts("03-08 11:15:00.0"), "no", "0.76", "-30"),
    Order(ts("03-08 11:15:01.0"), "no", "0.75", "-30"),
    Order(ts("03-08 11:15:01.5"), "no", "0.74", "-80"),
    Order(ts("03-08 11:15:03.0"), "no", "0.62", "50"),
    Order(ts("03-08 11:15:05.0"), "yes", "0.33", "40"),
    Snapshot(ts("03-08 11:20:05.0"), "checkpoint", EPOCH_1, SID),
    Fill(
        ts("03-08 13:05:00.125"), "yes", "0.38", "20", "20", "3f60b185-7c3d-40a1-8d84-6f5c4b1a9d34"
    ),
    Fill(ts("03-08 13:20:44.0"), "yes", "0.38", "30", "30", "40718296-8d4e-41b2-9e95-706d5c2bae45"),
    Order(ts("03-08 13:21:00.0"), "no", "0.58", "45"),
    # a sequence gap on sid 4: deltas were lost; a resync snapshot repairs the book (same epoch)
    Gap(ts("03-08 13:21:00.0"), ts("03-08 13:29:58.4"), "seq_gap", SID),
    Snapshot(
        ts("03-08 13:29:58.4"),
        "resync",
        EPOCH_1,
        SID,
        yes=[("0.18", "150"), ("0.20", "100"), ("0.22", "50"), ("0.33", "40")],
        no=[("0.58", "60")],
    ),
    Fill(ts("03-08 13:47:09.9"), "no", "0.33", "15", "-5", "5182a3a7-9e5f-42c3-8fa6-817e6d3cbf56"),
    Order(ts("03-08 14:02:00.0"), "yes", "0.36", "60"),
    Fill(ts("03-08 14:10:30.0"), "yes", "0.42", "45", "40", "6293b4b8-af60-43d4-90b7-928f7e4dc067"),
    Order(ts("03-08 14:10:31.0"), "no", "0.55", "70"),
    # the connection drops; a trade during the outage is backfilled from REST; a new connection
    # gives the market a new subscription (a new epoch) and a fresh snapshot
    Gap(ts("03-08 14:25:00.0"), ts("03-08 14:25:06.2"), "disconnect", SID),
    Fill(
        ts("03-08 14:25:03.5"),
        "yes",
        "0.45",
        "15",
        "15",
        "73a4c5c9-b071-44e5-a1c8-a3a08f5ed178",
        source="rest",
    ),
    Snapshot(
        ts("03-08 14:25:06.2"),
        "snapshot",
        EPOCH_2,
        SID,
        yes=[("0.18", "150"), ("0.20", "100"), ("0.22", "50"), ("0.36", "60"), ("0.40", "35")],
        no=[("0.55", "55"), ("0.57", "20")],
    ),
    # 15:00-16:00: nothing at all happens in this market
    Order(ts("03-08 16:12:00.0"), "yes", "0.40", "15"),
    Fill(ts("03-08 16:30:15.0"), "yes", "0.43", "20", "20", "84b5d6da-c182-45f6-b2d9-b4b1907fe289"),
    Fill(
        ts("03-08 16:30:15.004"), "yes", "0.45", "30", "30", "95c6e7eb-d293-4607-83ea-c5c2a18000a0"
    ),
    Order(ts("03-08 16:31:00.0"), "yes", "0.44", "40"),
    Fill(ts("03-08 17:05:00.0"), "no", "0.44", "40", "-10", "a6d7f8fc-e3a4-4718-94fb-d6d3b29111b1"),
    # the afternoon high comes in at 50°F
    Order(ts("03-08 19:30:00.0"), "no", "0.55", "-25"),
    Order(ts("03-08 19:30:01.0"), "no", "0.10", "100"),
    Order(ts("03-08 19:30:02.0"), "yes", "0.85", "80"),
    Fill(ts("03-08 19:45:10.0"), "yes", "0.90", "50", "50", "b7e8090d-f4b5-4829-a50c-e7e4c3a222c2"),
    Fill(ts("03-08 22:00:00.0"), "no", "0.85", "30", "-20", "c8f91a1e-05c6-493a-b61d-f8f5d4b333d3"),
]

# trades of the other markets (no book recorded for them in the sample)
OTHER_TRADES = [
    (OTHER, ts("03-08 13:12:40.5"), "yes", "0.31", "12", "d90a2b2f-16d7-4a4b-87e2-09a6e5c444e4"),
    (OTHER, ts("03-08 18:02:00.0"), "no", "0.12", "40", "ea1b3c30-27e8-4b5c-98f3-1ab7f6d555f5"),
    (CHI, ts("03-08 15:30:00.0"), "yes", "0.27", "8", "fb2c4d41-38f9-4c6d-a904-2bc807e666a6"),
]


@dataclass
class Derived:
    trades: list[tuple[Any, ...]] = field(default_factory=list)
    snapshots: list[tuple[Any, ...]] = field(default_factory=list)
    deltas: list[tuple[Any, ...]] = field(default_factory=list)
    quotes: list[tuple[Any, ...]] = field(default_factory=list)
    stats: list[tuple[Any, ...]] = field(default_factory=list)
    gaps: list[tuple[Any, ...]] = field(default_factory=list)


def _levels_json(levels: dict[Decimal, Decimal]) -> str:
    return json.dumps([[str(p), str(s)] for p, s in sorted(levels.items())]).replace('"', "")


def derive() -> Derived:
    out = Derived()
    book: dict[str, dict[Decimal, Decimal]] = {"yes": {}, "no": {}}
    epoch: int | None = None
    first_ts = datetime(2026, 1, 1, tzinfo=UTC)
    seq = n = 0
    streaming = True
    top: tuple[Any, ...] | None = None
    volume = oi = D(0)

    def next_seq(at: datetime) -> int:
        # seq counts every message of the subscription (all its markets), so per market it grows
        # with holes; this stand-in grows with time
        nonlocal n
        n += 1
        return 2 + int((at - first_ts).total_seconds() // 2) + n

    def quote(at: datetime) -> None:
        nonlocal top
        yes = max(book["yes"]) if book["yes"] else None
        no = max(book["no"]) if book["no"] else None
        now = (
            yes,
            None if yes is None else book["yes"][yes],
            None if no is None else 1 - no,
            None if no is None else book["no"][no],
        )
        if now != top:
            top = now
            out.quotes.append((at, MARKET, at + RECEIVE_DELAY, *now))

    def delta(at: datetime, side: str, price: Decimal, size: Decimal) -> None:
        nonlocal seq
        level = book[side].get(price, D(0)) + size
        assert level >= 0, (at, side, price)
        if level:
            book[side][price] = level
        else:
            book[side].pop(price, None)
        seq = next_seq(at)
        out.deltas.append((at, MARKET, at + RECEIVE_DELAY, side, price, size, epoch, SID, seq))
        quote(at)

    for ev in BOOK_EVENTS:
        if isinstance(ev, Snapshot):
            if ev.yes is not None and ev.no is not None:
                book = {
                    "yes": {D(p): D(s) for p, s in ev.yes},
                    "no": {D(p): D(s) for p, s in ev.no},
                }
                if ev.epoch != epoch:  # a new subscription: Kalshi's seq restarts
                    epoch, first_ts, n, seq = ev.epoch, ev.at, 0, 2
                else:  # a resync on the same subscription
                    seq = next_seq(ev.at)
                streaming = True
            out.snapshots.append(
                (
                    ev.at,
                    MARKET,
                    ev.at + RECEIVE_DELAY,
                    ev.source,
                    ev.epoch,
                    ev.sid,
                    seq,
                    _levels_json(book["yes"]),
                    _levels_json(book["no"]),
                )
            )
            quote(ev.at)
        elif isinstance(ev, Gap):
            streaming = False
            out.gaps.append(
                (ev.from_ts, ev.to_ts, MARKET, ev.reason, ev.sid, ev.to_ts + RECEIVE_DELAY)
            )
        elif isinstance(ev, Order):
            assert streaming
            delta(ev.at, ev.side, D(ev.price), D(ev.size))
        else:
            price, count = D(ev.yes_price), D(ev.count)
            out.trades.append(
                (
                    ev.at,
                    uuid.UUID(ev.trade_id),
                    MARKET,
                    price,
                    1 - price,
                    count,
                    ev.taker,
                    "bid" if ev.taker == "yes" else "ask",
                    ev.source,
                    ev.at + (RECEIVE_DELAY if ev.source == "ws" else REST_DELAY),
                )
            )
            volume += count
            oi += D(ev.oi_change)
            if not streaming:  # the ticker channel was down too
                continue
            # the taker empties resting bids of the other side
            if ev.taker == "yes":
                delta(ev.at, "no", 1 - price, -count)
            else:
                delta(ev.at, "yes", price, -count)
            bid = max(book["yes"]) if book["yes"] else None
            ask = 1 - max(book["no"]) if book["no"] else None
            at = ev.at + STATS_DELAY
            out.stats.append((at, MARKET, at + RECEIVE_DELAY, price, bid, ask, volume, oi))
    for ticker, at, taker, yes_price, count, trade_id in OTHER_TRADES:
        price = D(yes_price)
        out.trades.append(
            (
                at,
                uuid.UUID(trade_id),
                ticker,
                price,
                1 - price,
                D(count),
                taker,
                "bid" if taker == "yes" else "ask",
                "ws",
                at + RECEIVE_DELAY,
            )
        )
    return out


# -- reference data ------------------------------------------------------------------------------

SERIES = [
    ("KXHIGHNY", "Highest temperature in NYC", ts("02-20 17:03:12.0")),
    ("KXHIGHCHI", "Highest temperature in Chicago", ts("02-20 17:03:12.0")),
]
EVENTS = [
    (EVENT, "KXHIGHNY", "Highest temperature in NYC on Mar 8, 2026?"),
    (CHI_EVENT, "KXHIGHCHI", "Highest temperature in Chicago on Mar 8, 2026?"),
]
# ticker, event, series, strike type, floor, cap, subtitle, result
MARKETS = [
    (MARKET, EVENT, "KXHIGHNY", "between", "49", "50", "49° to 50°", "yes"),
    (OTHER, EVENT, "KXHIGHNY", "between", "51", "52", "51° to 52°", "no"),
    (ABOVE, EVENT, "KXHIGHNY", "greater", "52", None, "53° or above", "no"),
    (CHI, CHI_EVENT, "KXHIGHCHI", "between", "44", "45", "44° to 45°", "no"),
]
CREATED = ts("03-06 15:00:00.0")
SEEN = ts("03-06 15:00:04.117")
UPDATED = ts("03-09 14:00:02.35")
DETERMINED = ts("03-09 13:05:00.0")
SETTLED = ts("03-09 14:00:00.0")


def insert_docs_seed(url: str) -> None:
    """Insert the sample data into a migrated, empty database."""
    d = derive()
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            _insert_reference(conn)
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price,"
                    " count, taker_outcome_side, taker_book_side, source, received_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    d.trades,
                )
                cur.executemany(
                    "INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at,"
                    " source, epoch, sid, seq, yes_bids, no_bids)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    d.snapshots,
                )
                cur.executemany(
                    "INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side,"
                    " price, delta, epoch, sid, seq) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    d.deltas,
                )
                cur.executemany(
                    "INSERT INTO market.quotes (ts, market_ticker, received_at, yes_bid,"
                    " yes_bid_size, yes_ask, yes_ask_size) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    d.quotes,
                )
                cur.executemany(
                    "INSERT INTO market.market_stats (ts, market_ticker, received_at, price,"
                    " yes_bid, yes_ask, volume, open_interest)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    d.stats,
                )
                cur.executemany(
                    "INSERT INTO market.book_gaps (from_ts, to_ts, market_ticker, reason, sid,"
                    " detected_at) VALUES (%s, %s, %s, %s, %s, %s)",
                    d.gaps,
                )
                for kind, at in (("determined", DETERMINED), ("settled", SETTLED)):
                    cur.execute(
                        "INSERT INTO market.lifecycle_events (ts, market_ticker, event_ticker,"
                        " received_at, kind, event_type, result, settlement_value,"
                        " determination_ts, settled_ts, payload)"
                        " VALUES (%s, %s, %s, %s, 'market', %s, 'yes', 1, %s, %s, '{}')",
                        (
                            at,
                            MARKET,
                            EVENT,
                            at + RECEIVE_DELAY,
                            kind,
                            DETERMINED,
                            SETTLED if kind == "settled" else None,
                        ),
                    )
        conn.execute("ANALYZE")


def _insert_reference(conn: psycopg.Connection[Any]) -> None:
    for ticker, title, seen in SERIES:
        conn.execute(
            "INSERT INTO market.series (ticker, title, category, frequency, tags, fee_type,"
            " fee_multiplier, raw, first_seen_at, updated_at)"
            " VALUES (%s, %s, 'Climate and Weather', 'daily', %s, 'quadratic', 1, '{}', %s, %s)",
            (ticker, title, ["Weather"], seen, UPDATED),
        )
    for event, series, title in EVENTS:
        conn.execute(
            "INSERT INTO market.events (event_ticker, series_ticker, title, sub_title, category,"
            " mutually_exclusive, collateral_return_type, strike_date, raw, first_seen_at,"
            " updated_at) VALUES (%s, %s, %s, 'On Mar 8, 2026', 'Climate and Weather', true,"
            " 'MECNET', %s, '{}', %s, %s)",
            (event, series, title, ts("03-09 03:59:00.0"), SEEN, UPDATED),
        )
    ranges = json.dumps([{"start": "0.0000", "end": "1.0000", "step": "0.0100"}])
    for ticker, event, series, strike, floor, cap, sub, result in MARKETS:
        city = "NYC" if series == "KXHIGHNY" else "Chicago"
        between = f"{floor}-{cap}°" if cap else f">{floor}°"
        conn.execute(
            "INSERT INTO market.markets (ticker, event_ticker, series_ticker, market_type, title,"
            " yes_sub_title, no_sub_title, status, created_time, open_time, close_time,"
            " expected_expiration_time, latest_expiration_time, strike_type, floor_strike,"
            " cap_strike, price_level_structure, price_ranges, result, settlement_value, raw,"
            " first_seen_at, updated_at) VALUES (%s, %s, %s, 'binary', %s, %s, %s, 'finalized',"
            " %s, %s, %s, %s, %s, %s, %s, %s, 'linear_cent', %s, %s, %s, '{}', %s, %s)",
            (
                ticker,
                event,
                series,
                f"Will the high temp in {city} be {between} on Mar 8, 2026?",
                sub,
                sub,
                CREATED,
                ts("03-07 15:00:00.0"),
                ts("03-09 04:59:00.0"),
                ts("03-09 14:00:00.0"),
                ts("03-16 14:00:00.0"),
                strike,
                D(floor),
                None if cap is None else D(cap),
                ranges,
                result,
                D(1) if result == "yes" else D(0),
                SEEN,
                UPDATED,
            ),
        )
        conn.execute(
            "INSERT INTO market.settlements (market_ticker, event_ticker, series_ticker, result,"
            " settlement_value, determined_at, settled_at, source, confirmed)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, true)",
            (
                ticker,
                event,
                series,
                result,
                D(1) if result == "yes" else D(0),
                DETERMINED,
                SETTLED if ticker != CHI else ts("03-09 15:00:00.0"),
                "ws" if ticker != CHI else "rest",
            ),
        )


# -- API keys of the examples --------------------------------------------------------------------

START_CREDITS = 100_000
"""The main key's balance before the first example (``make api-key``'s default)."""
EMPTY_PREFIX = "5ca1ab1e"
"""The public prefix of the examples' key without credits (``$KB_EMPTY_KEY``)."""


def create_docs_keys(url: str) -> dict[str, str]:
    """``{"$KB_KEY": key with START_CREDITS, "$KB_EMPTY_KEY": key with 0 credits}``."""
    key = create_key(url, name="docs examples", credits=START_CREDITS).key
    secret = secrets.token_urlsafe(32)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO private.api_keys (name, prefix, key_hash, credits)"
            " VALUES ('docs examples, no credits', %s, %s, 0)",
            (EMPTY_PREFIX, hash_secret(secret)),
        )
    return {"$KB_KEY": key, "$KB_EMPTY_KEY": f"kb_{EMPTY_PREFIX}_{secret}"}
