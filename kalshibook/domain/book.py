"""The collector's live order books (pure: no I/O, no clock, no asyncio).

One :class:`OrderBook` per market holds Kalshi's two bid ladders in integer units: prices in
micro-dollars and sizes in hundredths of a contract (:mod:`kalshibook.domain.prices`), so signed
deltas accumulate exactly and fractional sizes never leave phantom levels. Kalshi books are bids
only: the YES ask is ``1 − best NO bid`` with that NO level's size (NO levels are in NO-leg prices).

:class:`BookSet` keeps one book per market ticker plus the state the collector needs around it:
whether the market's snapshot has arrived (a delta before it is dropped and counted, never
applied), whether the book is dirty after a gap (deltas dropped until a fresh snapshot), how many
deltas were applied since the last checkpoint, and the last top of book, so that every ``apply_*``
returns the new :class:`Quote` exactly when the top of book changed (the collector writes a
``quotes`` row then) and ``None`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Literal, NamedTuple

import msgspec

from kalshibook.domain.prices import (
    PRICE_SCALE,
    parse_count,
    parse_dollars,
    price_to_units,
    size_to_units,
    units_to_price,
    units_to_size,
)
from kalshibook.errors import BookError, KalshibookError

__all__ = (
    "BookSet",
    "MarketBook",
    "OrderBook",
    "Quote",
    "Side",
)

Side = Literal["yes", "no"]
DecimalLevel = tuple[Decimal, Decimal]
"""``(price in dollars, size in contracts)``."""
UnitLevel = tuple[int, int]
"""``(price in micro-dollars, size in hundredths)``."""

_EMPTY = -1
"""Best price of an empty side (real prices are >= 0)."""
_TopKey = tuple[int, int, int, int]
"""``(best yes price, its size, best no price, its size)`` in units; ``_EMPTY`` where empty."""

_levels_decoder = msgspec.json.Decoder(list[tuple[Decimal, Decimal]])


class Quote(NamedTuple):
    """Top of book on the YES scale; ``None`` where the side is empty.

    ``yes_ask = 1 − best NO bid`` and ``yes_ask_size`` is that NO level's size.
    """

    yes_bid: Decimal | None
    yes_bid_size: Decimal | None
    yes_ask: Decimal | None
    yes_ask_size: Decimal | None


# Memoised conversions: prices sit on a small grid and sizes repeat, so a dict lookup (the Decimal
# hash is cached) replaces most exact conversions. Bounded; only valid values are stored.
_CACHE_MAX = 1 << 16
_price_cache: dict[Decimal, int] = {}
_size_cache: dict[Decimal, int] = {}


def _units_miss(
    cache: dict[Decimal, int],
    value: Decimal,
    to_units: Callable[[Decimal], int],
    what: str,
    check: Callable[[int], bool] | None = None,
) -> int:
    """The cache-miss path of :func:`_price_units` / :func:`_size_units`: convert, validate, and
    memoise while the cache has room."""
    try:
        units = to_units(value)
    except KalshibookError as exc:
        raise BookError(f"invalid {what} {value!r}: {exc}") from None
    if check is not None and not check(units):
        raise BookError(f"{what} {value} is outside [0, 1]")
    if len(cache) < _CACHE_MAX:
        cache[value] = units
    return units


# The reverse, for quotes: integer units -> Decimal, memoised the same way (bounded, cleared when
# full). Sharing the Decimal objects also lets the writer reuse their encoded form.
_price_dec_cache: dict[int, Decimal] = {}
_size_dec_cache: dict[int, Decimal] = {}


def _price_dec(units: int) -> Decimal:
    d = _price_dec_cache.get(units)
    if d is None:
        if len(_price_dec_cache) >= _CACHE_MAX:
            _price_dec_cache.clear()
        d = _price_dec_cache[units] = units_to_price(units)
    return d


def _size_dec(units: int) -> Decimal:
    d = _size_dec_cache.get(units)
    if d is None:
        if len(_size_dec_cache) >= _CACHE_MAX:
            _size_dec_cache.clear()
        d = _size_dec_cache[units] = units_to_size(units)
    return d


def _price_in_range(units: int) -> bool:
    return 0 <= units <= PRICE_SCALE


def _price_units(price: Decimal) -> int:
    units = _price_cache.get(price)
    if units is not None:
        return units
    return _units_miss(_price_cache, price, price_to_units, "price", _price_in_range)


def _size_units(size: Decimal) -> int:
    units = _size_cache.get(size)
    if units is not None:
        return units
    return _units_miss(_size_cache, size, size_to_units, "size")


def _check_side(side: str) -> None:
    if side != "yes" and side != "no":
        raise BookError(f"invalid book side {side!r} (expected 'yes' or 'no')")


def _json_side(levels: Sequence[UnitLevel]) -> bytes:
    parts = [f"[{units_to_price(p)},{units_to_size(s)}]" for p, s in levels]
    return ("[" + ",".join(parts) + "]").encode()


class OrderBook:
    """Bids of one market, exact, in integer units. Every stored size is strictly positive."""

    __slots__ = ("_best_no", "_best_yes", "_no", "_yes")

    def __init__(self) -> None:
        self._yes: dict[int, int] = {}
        self._no: dict[int, int] = {}
        self._best_yes = _EMPTY
        self._best_no = _EMPTY

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_rows(
        cls,
        yes_bids: bytes | str | Iterable[Sequence[Decimal | str | int | float]],
        no_bids: bytes | str | Iterable[Sequence[Decimal | str | int | float]],
    ) -> OrderBook:
        """Load a stored snapshot (``orderbook_snapshots.yes_bids`` / ``no_bids``).

        Each side is either the jsonb text (``[[price, size], ...]``, numbers parsed exactly) or
        already-decoded pairs; JSON floats are accepted through their shortest text form.
        """
        book = cls()
        book.apply_snapshot_units(_unit_levels(yes_bids), _unit_levels(no_bids))
        return book

    def copy(self) -> OrderBook:
        other = OrderBook()
        other._yes = self._yes.copy()
        other._no = self._no.copy()
        other._best_yes = self._best_yes
        other._best_no = self._best_no
        return other

    # -- updates ----------------------------------------------------------------------------

    def apply_snapshot(
        self, yes_levels: Iterable[DecimalLevel], no_levels: Iterable[DecimalLevel]
    ) -> bool:
        """Replace the whole book with snapshot levels; True when the top of book changed.

        Zero sizes are skipped, a repeated price adds up, a negative size raises
        :class:`BookError` (and leaves the book unchanged).
        """
        return self.apply_snapshot_units(
            [(_price_units(p), _size_units(s)) for p, s in yes_levels],
            [(_price_units(p), _size_units(s)) for p, s in no_levels],
        )

    def apply_snapshot_units(
        self, yes_levels: Iterable[UnitLevel], no_levels: Iterable[UnitLevel]
    ) -> bool:
        """:meth:`apply_snapshot` with integer units."""
        yes = _ladder(yes_levels)
        no = _ladder(no_levels)
        before = self._top_key()
        self._yes = yes
        self._no = no
        self._best_yes = max(yes) if yes else _EMPTY
        self._best_no = max(no) if no else _EMPTY
        return self._top_key() != before

    def apply_delta(self, side: str, price: Decimal, delta: Decimal) -> bool:
        """Add the signed ``delta`` to the resting size at (``side``, ``price``).

        Returns True when the top of book changed. A level that nets to zero disappears; a
        negative resulting size raises :class:`BookError` and leaves the book unchanged.
        """
        return self.apply_delta_units(side, _price_units(price), _size_units(delta))

    def apply_delta_units(self, side: str, price: int, delta: int) -> bool:
        """:meth:`apply_delta` with integer units."""
        if side == "yes":
            ladder = self._yes
            best = self._best_yes
        elif side == "no":
            ladder = self._no
            best = self._best_no
        else:
            raise BookError(f"invalid book side {side!r} (expected 'yes' or 'no')")
        if price < 0 or price > PRICE_SCALE:
            raise BookError(f"price units {price} outside [0, 1 dollar]")
        if not delta:  # changes nothing (so True below always means a new top of book)
            return False
        old = ladder.get(price, 0)
        new = old + delta
        if new > 0:
            ladder[price] = new
            if price < best:
                return False
            if price > best:
                self._set_best(side, price)
            return True  # a new best level, or the size of the best level changed
        if new < 0:
            raise BookError(
                f"{side} level {units_to_price(price)}: size {units_to_size(old)} "
                f"+ delta {units_to_size(delta)} is negative"
            )
        del ladder[price]  # new == 0 with delta != 0: the level existed
        if price != best:
            return False
        self._set_best(side, max(ladder) if ladder else _EMPTY)
        return True

    def _set_best(self, side: str, price: int) -> None:
        if side == "yes":
            self._best_yes = price
        else:
            self._best_no = price

    # -- reads ------------------------------------------------------------------------------

    def _top_key(self) -> _TopKey:
        by, bn = self._best_yes, self._best_no
        return (
            by,
            self._yes[by] if by != _EMPTY else 0,
            bn,
            self._no[bn] if bn != _EMPTY else 0,
        )

    def best_yes_bid_units(self) -> UnitLevel | None:
        by = self._best_yes
        return None if by == _EMPTY else (by, self._yes[by])

    def best_no_bid_units(self) -> UnitLevel | None:
        bn = self._best_no
        return None if bn == _EMPTY else (bn, self._no[bn])

    def best_yes_bid(self) -> DecimalLevel | None:
        """``(price, size)`` of the best YES bid, or None."""
        by = self._best_yes
        if by == _EMPTY:
            return None
        return units_to_price(by), units_to_size(self._yes[by])

    def best_no_bid(self) -> DecimalLevel | None:
        """``(price, size)`` of the best NO bid (NO-leg price), or None."""
        bn = self._best_no
        if bn == _EMPTY:
            return None
        return units_to_price(bn), units_to_size(self._no[bn])

    def top(self) -> Quote:
        """Top of book on the YES scale (YES ask = 1 − best NO bid)."""
        by, bn = self._best_yes, self._best_no
        # cache hits by one C call each (a zero price misses harmlessly: the helper returns it)
        pget = _price_dec_cache.get
        sget = _size_dec_cache.get
        if by == _EMPTY:
            yes_bid = yes_bid_size = None
        else:
            n = self._yes[by]
            yes_bid = pget(by) or _price_dec(by)
            yes_bid_size = sget(n) or _size_dec(n)
        if bn == _EMPTY:
            yes_ask = yes_ask_size = None
        else:
            n = self._no[bn]
            yes_ask = pget(PRICE_SCALE - bn) or _price_dec(PRICE_SCALE - bn)
            yes_ask_size = sget(n) or _size_dec(n)
        return tuple.__new__(Quote, (yes_bid, yes_bid_size, yes_ask, yes_ask_size))

    def levels_units(self, side: str, depth: int | None = None) -> list[UnitLevel]:
        """Levels of one side ascending by price (best bid last), the best ``depth`` if given."""
        _check_side(side)
        ladder = self._yes if side == "yes" else self._no
        prices = sorted(ladder)
        if depth is not None:
            prices = prices[-depth:] if depth > 0 else []
        return [(p, ladder[p]) for p in prices]

    def levels(self, side: str, depth: int | None = None) -> list[DecimalLevel]:
        """Levels of one side as Kalshi lists them: ascending by price, best bid last."""
        return [(units_to_price(p), units_to_size(s)) for p, s in self.levels_units(side, depth)]

    def to_json_levels(self) -> tuple[bytes, bytes]:
        """``(yes_bids, no_bids)`` as jsonb text: ``[[price, size], ...]`` exact JSON numbers,
        ascending by price (the ``orderbook_snapshots`` columns)."""
        return _json_side(self.levels_units("yes")), _json_side(self.levels_units("no"))

    def __len__(self) -> int:
        return len(self._yes) + len(self._no)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OrderBook):
            return NotImplemented
        return self._yes == other._yes and self._no == other._no

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"OrderBook(yes={self.levels('yes')!r}, no={self.levels('no')!r})"


def _ladder(levels: Iterable[UnitLevel]) -> dict[int, int]:
    ladder: dict[int, int] = {}
    for price, size in levels:
        if price < 0 or price > PRICE_SCALE:
            raise BookError(f"snapshot price units {price} outside [0, 1 dollar]")
        if size < 0:
            raise BookError(f"snapshot level {units_to_price(price)} has negative size")
        if size:
            ladder[price] = ladder.get(price, 0) + size
    return ladder


def _unit_levels(
    side: bytes | str | Iterable[Sequence[Decimal | str | int | float]],
) -> list[UnitLevel]:
    if isinstance(side, bytes | str):
        try:
            pairs: Iterable[Sequence[Decimal | str | int | float]] = _levels_decoder.decode(side)
        except msgspec.DecodeError as exc:
            raise BookError(f"invalid stored book levels: {exc}") from None
    else:
        pairs = side
    out: list[UnitLevel] = []
    for pair in pairs:
        if len(pair) != 2:
            raise BookError(f"invalid stored book level {pair!r}")
        try:
            price = parse_dollars(pair[0])
            size = parse_count(pair[1])
        except KalshibookError as exc:
            raise BookError(f"invalid stored book level {pair!r}: {exc}") from None
        if price is None or size is None:
            raise BookError(f"invalid stored book level {pair!r}")
        out.append((_price_units(price), _size_units(size)))
    return out


class MarketBook:
    """Per-market state kept by :class:`BookSet`."""

    __slots__ = (
        "book",
        "deltas_since_checkpoint",
        "dirty",
        "has_snapshot",
        "last_checkpoint_at",
        "quote",
        "ticker",
    )

    def __init__(self, ticker: str) -> None:
        self.ticker = ticker
        self.book = OrderBook()
        self.has_snapshot = False
        self.dirty = False
        self.deltas_since_checkpoint = 0
        self.last_checkpoint_at: float | None = None
        self.quote: Quote | None = None
        """The last quote returned (None before the first snapshot)."""

    @property
    def ready(self) -> bool:
        """True when deltas are applied: snapshot received and not dirty."""
        return self.has_snapshot and not self.dirty

    def due_for_checkpoint(self, now: float, every_n: int, every_seconds: float) -> bool:
        """A clean book with at least one delta since its last stored snapshot, and either
        ``every_n`` deltas or ``every_seconds`` seconds since then."""
        n = self.deltas_since_checkpoint
        if n == 0 or not self.ready:
            return False
        if n >= every_n:
            return True
        last = self.last_checkpoint_at
        return last is None or now - last >= every_seconds


class BookSet:
    """Live books keyed by market ticker, with snapshot/dirty/checkpoint/quote state.

    ``now`` values are seconds on any clock the caller uses consistently (e.g.
    ``time.monotonic()``).
    """

    __slots__ = ("_markets", "dropped_before_snapshot", "dropped_dirty", "rejected_deltas")

    def __init__(self) -> None:
        self._markets: dict[str, MarketBook] = {}
        self.dropped_before_snapshot = 0
        """Deltas dropped because their market's snapshot had not arrived."""
        self.dropped_dirty = 0
        """Deltas dropped because their book was dirty (waiting for a fresh snapshot)."""
        self.rejected_deltas = 0
        """Deltas that raised :class:`BookError` (the book was marked dirty)."""

    # -- updates ----------------------------------------------------------------------------

    def apply_snapshot(
        self,
        ticker: str,
        yes_levels: Iterable[DecimalLevel],
        no_levels: Iterable[DecimalLevel],
        *,
        now: float,
    ) -> Quote | None:
        """Replace ``ticker``'s book; the market becomes ready (clean) and its checkpoint clock
        restarts at ``now`` (a snapshot is itself a stored book). Returns the new quote when the
        top of book changed (always for a market's first snapshot), else None."""
        return self.apply_snapshot_units(
            ticker,
            [(_price_units(p), _size_units(s)) for p, s in yes_levels],
            [(_price_units(p), _size_units(s)) for p, s in no_levels],
            now=now,
        )

    def apply_snapshot_units(
        self,
        ticker: str,
        yes_levels: Iterable[UnitLevel],
        no_levels: Iterable[UnitLevel],
        *,
        now: float,
    ) -> Quote | None:
        """:meth:`apply_snapshot` with integer units."""
        m = self._markets.get(ticker)
        if m is None:
            m = self._markets[ticker] = MarketBook(ticker)
        m.book.apply_snapshot_units(yes_levels, no_levels)
        m.has_snapshot = True
        m.dirty = False
        m.deltas_since_checkpoint = 0
        m.last_checkpoint_at = now
        return self._after_change(m)

    def apply_delta(self, ticker: str, side: str, price: Decimal, delta: Decimal) -> Quote | None:
        """Apply one WS delta; the new quote when the top of book changed, else None.

        Dropped (and counted) when the market has no snapshot yet or is dirty. A delta that would
        leave a negative size raises :class:`BookError` after marking the market dirty: the
        collector treats it as a gap (gap row + ``get_snapshot``).
        """
        m = self._markets.get(ticker)
        if m is None or not m.has_snapshot:
            self.dropped_before_snapshot += 1
            return None
        if m.dirty:
            self.dropped_dirty += 1
            return None
        return self._apply(m, side, _price_units(price), _size_units(delta))

    def apply_delta_to(
        self, m: MarketBook, side: str, price: Decimal, delta: Decimal
    ) -> Quote | None:
        """:meth:`apply_delta` for a market the caller already holds (``m`` from :meth:`get`)
        and has checked is ready: the collector's per-delta path, without a second look-up."""
        pu = _price_cache.get(price)
        if pu is None:
            pu = _price_units(price)
        su = _size_cache.get(delta)
        if su is None:
            su = _size_units(delta)
        return self._apply(m, side, pu, su)

    def _apply(self, m: MarketBook, side: str, price: int, delta: int) -> Quote | None:
        try:
            changed = m.book.apply_delta_units(side, price, delta)
        except BookError:
            m.dirty = True
            self.rejected_deltas += 1
            raise
        m.deltas_since_checkpoint += 1
        if not changed:
            return None
        m.quote = q = m.book.top()  # changed means the top of book changed
        return q

    def _after_change(self, m: MarketBook) -> Quote | None:
        """The new quote when the top of book differs from the last one returned, else None."""
        q = m.book.top()
        if q == m.quote:
            return None
        m.quote = q
        return q

    def mark_dirty(self, tickers: Iterable[str]) -> list[str]:
        """Mark books dirty after a gap (deltas dropped until their next snapshot).

        Returns the tickers that were ready before (the ones whose gap starts now).
        """
        hit: list[str] = []
        for ticker in tickers:
            m = self._markets.get(ticker)
            if m is not None and m.has_snapshot:
                if not m.dirty:
                    hit.append(ticker)
                m.dirty = True
        return hit

    def mark_checkpoint(self, ticker: str, now: float) -> None:
        """Record that ``ticker``'s book was just stored as a checkpoint snapshot."""
        m = self._markets[ticker]
        m.deltas_since_checkpoint = 0
        m.last_checkpoint_at = now

    def remove(self, ticker: str) -> MarketBook | None:
        """Forget a market (settled or unsubscribed)."""
        return self._markets.pop(ticker, None)

    # -- reads ------------------------------------------------------------------------------

    def get(self, ticker: str) -> MarketBook | None:
        return self._markets.get(ticker)

    def book(self, ticker: str) -> OrderBook | None:
        m = self._markets.get(ticker)
        return None if m is None else m.book

    def quote(self, ticker: str) -> Quote | None:
        m = self._markets.get(ticker)
        return None if m is None else m.quote

    def is_ready(self, ticker: str) -> bool:
        m = self._markets.get(ticker)
        return m is not None and m.ready

    def is_dirty(self, ticker: str) -> bool:
        m = self._markets.get(ticker)
        return m is not None and m.dirty

    def due_for_checkpoint(self, now: float, every_n: int, every_seconds: float) -> list[str]:
        """Tickers whose book should be written as a checkpoint now (see
        :meth:`MarketBook.due_for_checkpoint`)."""
        return [
            t for t, m in self._markets.items() if m.due_for_checkpoint(now, every_n, every_seconds)
        ]

    def tickers(self) -> list[str]:
        return list(self._markets)

    def __contains__(self, ticker: object) -> bool:
        return ticker in self._markets

    def __len__(self) -> int:
        return len(self._markets)

    def __iter__(self) -> Iterator[MarketBook]:
        return iter(self._markets.values())
