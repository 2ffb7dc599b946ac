"""Ground truth of a simulator run: the file format and a small pure reader.

The simulator (``--truth PATH`` / ``SimConfig(truth_path=...)``) writes JSON Lines. Every line is an
object with ``k`` (kind) and ``ts`` (exchange time, Unix **ms** — the same ``ts_ms`` the frames
carry). Lines are written in exchange order; ``cid`` (book change id) is strictly increasing over
the whole exchange, so "the book at instant T" is well defined even when many changes share a ms.

=====================  ===========================================================================
``k``                  other keys
=====================  ===========================================================================
``meta``               ``version``, ``seed``, ``start_ms``, ``config`` (the simulator settings)
``series``             ``series``: the REST ``GET /series/{t}`` object
``event``              ``event``: the REST event object (at creation)
``market``             ``market``: the REST market object (at creation)
``book``               ``t``, ``cid`` (changes included), ``yes``/``no``: ``[[price, size], ...]``
                       ascending Kalshi strings — a full checkpoint of the true book
``orderbook_delta``    ``t``, ``cid``, ``msg`` (the frame's msg: ``side``, ``price_dollars``,
                       ``delta_fp`` signed, ...)
``trade``              ``t``, ``msg`` (the trade frame's msg)
``ticker``             ``t``, ``msg`` (the ticker frame's msg)
``market_lifecycle_v2`` ``t``, ``msg`` (``event_type`` created/activated/close_date_updated/
                       determined/settled, ...)
``event_lifecycle``    ``t`` (event ticker), ``msg``
``closed``             ``t``, ``msg`` — trading closed (the book was cancelled just before; Kalshi
                       publishes no lifecycle frame for it)
``settlement``         ``t``, ``result``, ``settlement_value`` (dollar string),
                       ``determined_ts``, ``settled_ts`` (ms)
=====================  ===========================================================================

A book checkpoint is written for every open market at start and at activation, and then after
every ``checkpoint_every`` changes of a market; deltas in between reconstruct any instant.
:class:`Truth` indexes everything but ``ticker`` lines (written for people reading the file).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

__all__ = (
    "BookState",
    "Quote",
    "Settlement",
    "Truth",
    "TruthTrade",
    "load_truth",
)

_PRICE_Q = Decimal("0.0001")
_SIZE_Q = Decimal("0.01")


class BookState(msgspec.Struct, frozen=True, kw_only=True):
    """A market's true book: bids ascending by price (best bid last), Decimal dollars/contracts."""

    ticker: str
    ts: int
    cid: int
    """The last change included."""
    yes: list[tuple[Decimal, Decimal]]
    no: list[tuple[Decimal, Decimal]]
    """NO bids in NO-leg prices (Kalshi's default)."""

    @property
    def yes_bid(self) -> Decimal | None:
        return self.yes[-1][0] if self.yes else None

    @property
    def yes_ask(self) -> Decimal | None:
        """1 - best NO bid."""
        return Decimal(1) - self.no[-1][0] if self.no else None


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    """Top of book after a change; a side with no bids is ``None``."""

    ts: int
    cid: int
    yes_bid: Decimal | None
    yes_bid_size: Decimal | None
    yes_ask: Decimal | None
    """1 - best NO bid."""
    yes_ask_size: Decimal | None


class TruthTrade(msgspec.Struct, frozen=True, kw_only=True):
    trade_id: str
    ticker: str
    ts: int
    """Exchange time, ms."""
    yes_price: Decimal
    no_price: Decimal
    count: Decimal
    taker_outcome_side: str
    taker_book_side: str
    taker_side: str
    is_block_trade: bool


class Settlement(msgspec.Struct, frozen=True, kw_only=True):
    ticker: str
    result: str
    settlement_value: Decimal
    determined_ts: int
    settled_ts: int


class _Line(msgspec.Struct, kw_only=True):
    k: str
    ts: int
    t: str = ""
    cid: int = 0
    msg: dict[str, Any] | None = None
    yes: list[tuple[str, str]] | None = None
    no: list[tuple[str, str]] | None = None
    result: str = ""
    settlement_value: str = ""
    determined_ts: int = 0
    settled_ts: int = 0
    market: dict[str, Any] | None = None
    event: dict[str, Any] | None = None
    series: dict[str, Any] | None = None
    seed: int | None = None
    start_ms: int | None = None


def _units(text: str, scale: int) -> int:
    whole, _, frac = text.partition(".")
    neg = whole.startswith("-")
    digits = len(str(scale)) - 1
    value = abs(int(whole or "0")) * scale + int((frac + "0" * digits)[:digits] or "0")
    return -value if neg else value


def _p(text: str) -> int:
    return _units(text, 10_000)


def _s(text: str) -> int:
    return _units(text, 100)


def _dec_p(units: int) -> Decimal:
    return (Decimal(units) / 10_000).quantize(_PRICE_Q)


def _dec_s(units: int) -> Decimal:
    return (Decimal(units) / 100).quantize(_SIZE_Q)


class _MarketLog:
    __slots__ = ("ckpt_cids", "ckpts", "delta_cids", "deltas")

    def __init__(self) -> None:
        self.ckpts: list[tuple[int, int, dict[int, int], dict[int, int]]] = []
        self.ckpt_cids: list[int] = []
        self.deltas: list[tuple[int, int, bool, int, int]] = []
        """(cid, ts, is_yes, price, delta)"""
        self.delta_cids: list[int] = []


class Truth:
    """Everything a simulator run published, indexed for questions tests ask."""

    def __init__(self, lines: list[_Line]) -> None:
        self.meta: dict[str, Any] = {}
        self._books: dict[str, _MarketLog] = {}
        self._trades: list[TruthTrade] = []
        self._settlements: list[Settlement] = []
        self._lifecycle: list[tuple[int, str, dict[str, Any]]] = []
        self.series: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.markets: dict[str, dict[str, Any]] = {}
        for ln in lines:
            self._add(ln)

    def _log(self, ticker: str) -> _MarketLog:
        log = self._books.get(ticker)
        if log is None:
            log = self._books[ticker] = _MarketLog()
        return log

    def _add(self, ln: _Line) -> None:
        k = ln.k
        if k == "orderbook_delta":
            assert ln.msg is not None
            m = ln.msg
            log = self._log(ln.t)
            log.deltas.append(
                (ln.cid, ln.ts, m["side"] == "yes", _p(m["price_dollars"]), _s(m["delta_fp"]))
            )
            log.delta_cids.append(ln.cid)
        elif k == "book":
            log = self._log(ln.t)
            yes = {_p(p): _s(s) for p, s in ln.yes or ()}
            no = {_p(p): _s(s) for p, s in ln.no or ()}
            log.ckpts.append((ln.cid, ln.ts, yes, no))
            log.ckpt_cids.append(ln.cid)
        elif k == "trade":
            assert ln.msg is not None
            m = ln.msg
            self._trades.append(
                TruthTrade(
                    trade_id=m["trade_id"],
                    ticker=ln.t,
                    ts=ln.ts,
                    yes_price=Decimal(m["yes_price_dollars"]),
                    no_price=Decimal(m["no_price_dollars"]),
                    count=Decimal(m["count_fp"]),
                    taker_outcome_side=m["taker_outcome_side"],
                    taker_book_side=m["taker_book_side"],
                    taker_side=m["taker_side"],
                    is_block_trade=m["is_block_trade"],
                )
            )
        elif k in ("market_lifecycle_v2", "event_lifecycle", "closed"):
            assert ln.msg is not None
            self._lifecycle.append((ln.ts, k, ln.msg))
        elif k == "settlement":
            self._settlements.append(
                Settlement(
                    ticker=ln.t,
                    result=ln.result,
                    settlement_value=Decimal(ln.settlement_value),
                    determined_ts=ln.determined_ts,
                    settled_ts=ln.settled_ts,
                )
            )
        elif k == "market" and ln.market is not None:
            self.markets[ln.market["ticker"]] = ln.market
        elif k == "event" and ln.event is not None:
            self.events[ln.event["event_ticker"]] = ln.event
        elif k == "series" and ln.series is not None:
            self.series[ln.series["ticker"]] = ln.series
        elif k == "meta":
            self.meta = {"seed": ln.seed, "start_ms": ln.start_ms}

    # --- questions --------------------------------------------------------------------------------

    def tickers(self) -> list[str]:
        """Markets with any book history."""
        return list(self._books)

    def book_at(self, ticker: str, ts: int) -> BookState:
        """The true book of ``ticker`` at instant ``ts`` (ms): every change with ``ts' <= ts``."""
        log = self._books.get(ticker)
        if log is None:
            return BookState(ticker=ticker, ts=ts, cid=0, yes=[], no=[])
        # Changes are in cid order with non-decreasing ts: the first j are those at or before ts.
        j = bisect.bisect_right(log.deltas, ts, key=_delta_ts)
        # The last checkpoint at or before ts includes only changes at or before ts.
        i = bisect.bisect_right(log.ckpts, ts, key=_ckpt_ts)
        if i:
            cid0, _, y0, n0 = log.ckpts[i - 1]
            yes, no = dict(y0), dict(n0)
            cid = cid0
        else:
            yes, no, cid = {}, {}, 0
        start = bisect.bisect_right(log.delta_cids, cid)
        for k in range(start, j):
            dcid, _, is_yes, price, delta = log.deltas[k]
            _apply(yes if is_yes else no, price, delta)
            cid = dcid
        return _book_state(ticker, ts, cid, yes, no)

    def _replay(self, ticker: str) -> Iterator[tuple[int, int, dict[int, int], dict[int, int]]]:
        log = self._books.get(ticker)
        if log is None:
            return
        if log.ckpts and (not log.deltas or log.ckpts[0][0] < log.deltas[0][0]):
            cid, ts0, y0, n0 = log.ckpts[0]
            yes, no = dict(y0), dict(n0)
            yield ts0, cid, yes, no
        else:
            yes, no, cid = {}, {}, 0
        start = bisect.bisect_right(log.delta_cids, cid)
        for dcid, ts, is_yes, price, delta in log.deltas[start:]:
            _apply(yes if is_yes else no, price, delta)
            yield ts, dcid, yes, no

    def quotes_sequence(self, ticker: str) -> list[Quote]:
        """Top-of-book changes of ``ticker`` (yes ask = 1 - best NO bid), first state included."""
        out: list[Quote] = []
        prev: tuple[int, int, int, int] | None = None
        for ts, cid, yes, no in self._replay(ticker):
            if yes:
                bb = max(yes)
                bbs = yes[bb]
            else:
                bb = bbs = -1
            if no:
                bn = max(no)
                bns = no[bn]
            else:
                bn = bns = -1
            top = (bb, bbs, bn, bns)
            if top == prev:
                continue
            prev = top
            out.append(
                Quote(
                    ts=ts,
                    cid=cid,
                    yes_bid=_dec_p(bb) if bb >= 0 else None,
                    yes_bid_size=_dec_s(bbs) if bb >= 0 else None,
                    yes_ask=_dec_p(10_000 - bn) if bn >= 0 else None,
                    yes_ask_size=_dec_s(bns) if bn >= 0 else None,
                )
            )
        return out

    def trades(self, ticker: str | None = None) -> list[TruthTrade]:
        """Every trade (oldest first), optionally of one market."""
        if ticker is None:
            return list(self._trades)
        return [t for t in self._trades if t.ticker == ticker]

    def settlements(self) -> list[Settlement]:
        return list(self._settlements)

    def lifecycle(self, ticker: str | None = None) -> list[tuple[int, str, dict[str, Any]]]:
        """``(ts, kind, msg)`` of lifecycle frames (and ``closed`` records), oldest first."""
        if ticker is None:
            return list(self._lifecycle)
        return [
            x
            for x in self._lifecycle
            if x[2].get("market_ticker", x[2].get("event_ticker")) == ticker
        ]


def _delta_ts(d: tuple[int, int, bool, int, int]) -> int:
    return d[1]


def _ckpt_ts(c: tuple[int, int, dict[int, int], dict[int, int]]) -> int:
    return c[1]


def _apply(book: dict[int, int], price: int, delta: int) -> None:
    new = book.get(price, 0) + delta
    if new > 0:
        book[price] = new
    elif new == 0:
        book.pop(price, None)
    else:
        raise ValueError(f"truth delta makes level {price} negative ({new})")


def _book_state(
    ticker: str, ts: int, cid: int, yes: dict[int, int], no: dict[int, int]
) -> BookState:
    return BookState(
        ticker=ticker,
        ts=ts,
        cid=cid,
        yes=[(_dec_p(p), _dec_s(s)) for p, s in sorted(yes.items())],
        no=[(_dec_p(p), _dec_s(s)) for p, s in sorted(no.items())],
    )


_decoder = msgspec.json.Decoder(_Line)


def parse_truth(data: bytes) -> Truth:
    """Parse truth JSONL text (a partially written last line is ignored)."""
    lines: list[_Line] = []
    raws = data.splitlines()
    for i, raw in enumerate(raws):
        if not raw.strip():
            continue
        try:
            lines.append(_decoder.decode(raw))
        except msgspec.DecodeError:
            if i == len(raws) - 1 and not data.endswith(b"\n"):
                break  # the writer is mid-line
            raise
    return Truth(lines)


def load_truth(path: str | Path) -> Truth:
    """Read a truth file written by the simulator."""
    return parse_truth(Path(path).read_bytes())
