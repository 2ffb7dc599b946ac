"""Order book and BookSet: literal cases plus hypothesis properties against a Decimal reference."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kalshibook.domain.book import BookSet, OrderBook, Quote
from kalshibook.errors import BookError

D = Decimal

# -- literal cases ---------------------------------------------------------------------------


def test_yes_ask_is_one_minus_best_no_bid_with_its_size() -> None:
    book = OrderBook()
    assert book.apply_snapshot(
        [(D("0.08"), D("300")), (D("0.42"), D("13"))], [(D("0.54"), D("10"))]
    )
    assert book.top() == Quote(D("0.42"), D("13"), D("0.46"), D("10"))
    assert book.best_yes_bid() == (D("0.42"), D("13"))
    assert book.best_no_bid() == (D("0.54"), D("10"))
    q = book.top()
    assert (str(q.yes_bid), str(q.yes_ask), str(q.yes_ask_size)) == ("0.4200", "0.4600", "10.00")


def test_empty_sides_give_none() -> None:
    book = OrderBook()
    assert book.top() == Quote(None, None, None, None)
    book.apply_snapshot([(D("0.10"), D("1"))], [])
    assert book.top() == Quote(D("0.10"), D("1"), None, None)
    assert book.best_no_bid() is None


def test_level_netting_to_zero_disappears_with_fractional_sizes() -> None:
    book = OrderBook()
    book.apply_snapshot([(D("0.30"), D("1.25"))], [])
    assert book.apply_delta("yes", D("0.31"), D("74.77"))  # new best
    assert book.apply_delta("yes", D("0.31"), D("-74.76"))  # best size changed
    assert book.best_yes_bid() == (D("0.31"), D("0.01"))
    assert book.apply_delta("yes", D("0.31"), D("-0.01"))  # best removed
    assert book.levels("yes") == [(D("0.30"), D("1.25"))]
    assert not book.apply_delta("yes", D("0.10"), D("0.50"))  # below the best: top unchanged
    assert not book.apply_delta("yes", D("0.10"), D("-0.50"))
    assert book.levels("yes") == [(D("0.30"), D("1.25"))]


def test_negative_size_raises_and_leaves_book_unchanged() -> None:
    book = OrderBook()
    book.apply_snapshot([(D("0.30"), D("5"))], [(D("0.60"), D("2"))])
    before = book.copy()
    with pytest.raises(BookError, match="negative"):
        book.apply_delta("no", D("0.60"), D("-2.01"))
    with pytest.raises(BookError, match="negative"):
        book.apply_delta("yes", D("0.20"), D("-1"))
    assert book == before


def test_invalid_inputs_raise_book_error() -> None:
    book = OrderBook()
    with pytest.raises(BookError, match="side"):
        book.apply_delta("maybe", D("0.5"), D("1"))
    with pytest.raises(BookError, match="decimal places"):
        book.apply_delta("yes", D("0.1234567"), D("1"))
    with pytest.raises(BookError, match="decimal places"):
        book.apply_delta("yes", D("0.5"), D("1.001"))
    with pytest.raises(BookError, match="outside"):
        book.apply_delta("yes", D("1.5"), D("1"))
    with pytest.raises(BookError, match="negative"):
        book.apply_snapshot([(D("0.5"), D("-1"))], [])


def test_snapshot_skips_zero_and_sums_repeats() -> None:
    book = OrderBook()
    book.apply_snapshot([(D("0.5"), D("0")), (D("0.4"), D("1")), (D("0.4"), D("2.5"))], [])
    assert book.levels("yes") == [(D("0.4"), D("3.5"))]


def test_levels_ascending_with_depth_and_json_round_trip() -> None:
    book = OrderBook()
    book.apply_snapshot(
        [(D("0.45"), D("1")), (D("0.0125"), D("2.50")), (D("0.3"), D("100"))],
        [(D("0.999"), D("0.01"))],
    )
    assert book.levels("yes") == [
        (D("0.0125"), D("2.5")),
        (D("0.3"), D("100")),
        (D("0.45"), D("1")),
    ]
    assert book.levels("yes", depth=2) == [(D("0.3"), D("100")), (D("0.45"), D("1"))]
    assert book.levels("yes", depth=0) == []
    yes_json, no_json = book.to_json_levels()
    assert yes_json == b"[[0.0125,2.50],[0.3000,100.00],[0.4500,1.00]]"
    assert no_json == b"[[0.9990,0.01]]"
    assert json.loads(yes_json, parse_float=Decimal)[0] == [D("0.0125"), D("2.50")]
    assert OrderBook.from_rows(yes_json, no_json) == book
    assert OrderBook.from_rows(yes_json.decode(), [["0.999", "0.01"]]) == book
    assert OrderBook.from_rows([[0.0125, 2.5], [0.3, 100], [0.45, 1]], [[D("0.999"), 0.01]]) == book
    assert OrderBook.from_rows(b"[]", b"[]") == OrderBook()
    with pytest.raises(BookError):
        OrderBook.from_rows(b"[[0.1]]", b"[]")
    with pytest.raises(BookError):
        OrderBook.from_rows(b"not json", b"[]")


def test_copy_is_independent() -> None:
    book = OrderBook()
    book.apply_snapshot([(D("0.5"), D("1"))], [])
    other = book.copy()
    other.apply_delta("yes", D("0.6"), D("1"))
    assert book.top().yes_bid == D("0.5")
    assert other.top().yes_bid == D("0.6")


def test_bookset_drops_deltas_before_snapshot_and_while_dirty() -> None:
    books = BookSet()
    assert books.apply_delta("M", "yes", D("0.5"), D("1")) is None
    assert books.dropped_before_snapshot == 1
    assert not books.is_ready("M")

    q = books.apply_snapshot("M", [], [], now=0.0)
    assert q == Quote(None, None, None, None)  # the first snapshot always gives a quote
    assert books.apply_snapshot("M", [], [], now=0.0) is None  # same top: no quote
    assert books.apply_delta("M", "yes", D("0.5"), D("1")) == Quote(D("0.5"), D("1"), None, None)
    assert books.apply_delta("M", "yes", D("0.4"), D("1")) is None

    assert books.mark_dirty(["M", "unknown"]) == ["M"]
    assert books.mark_dirty(["M"]) == []
    assert books.apply_delta("M", "yes", D("0.6"), D("1")) is None
    assert books.dropped_dirty == 1
    assert books.book("M") is not None
    assert books.book("M").top().yes_bid == D("0.5")  # type: ignore[union-attr]

    assert books.apply_snapshot("M", [(D("0.5"), D("1"))], [], now=1.0) is None  # top unchanged
    assert books.is_ready("M")
    assert books.apply_snapshot("M", [(D("0.5"), D("2"))], [], now=1.0) == Quote(
        D("0.5"), D("2"), None, None
    )


def test_a_zero_delta_changes_nothing_and_gives_no_quote() -> None:
    books = BookSet()
    books.apply_snapshot("M", [(D("0.5"), D("1"))], [(D("0.3"), D("2"))], now=0.0)
    held = books.get("M")
    assert held is not None
    for side, price in (("yes", "0.5"), ("no", "0.3"), ("yes", "0.6"), ("no", "0.2")):
        assert books.apply_delta("M", side, D(price), D("0")) is None
        assert books.apply_delta_to(held, side, D(price), D("-0.00")) is None
    assert books.book("M").levels("yes") == [(D("0.5"), D("1"))]  # type: ignore[union-attr]
    assert books.quote("M") == Quote(D("0.5"), D("1"), D("0.7"), D("2"))


def test_bookset_negative_delta_marks_dirty_and_raises() -> None:
    books = BookSet()
    books.apply_snapshot("M", [(D("0.5"), D("1"))], [], now=0.0)
    with pytest.raises(BookError):
        books.apply_delta("M", "yes", D("0.5"), D("-2"))
    assert books.is_dirty("M")
    assert books.rejected_deltas == 1
    assert books.apply_delta("M", "yes", D("0.5"), D("-1")) is None
    assert books.dropped_dirty == 1


def test_checkpoint_due_by_count_or_time() -> None:
    books = BookSet()
    books.apply_snapshot("A", [], [], now=100.0)
    books.apply_snapshot("B", [], [], now=100.0)
    assert books.due_for_checkpoint(1000.0, 3, 60.0) == []  # no deltas since the snapshot
    for _ in range(3):
        books.apply_delta("A", "yes", D("0.1"), D("1"))
    books.apply_delta("B", "yes", D("0.1"), D("1"))
    assert books.due_for_checkpoint(101.0, 3, 60.0) == ["A"]
    assert sorted(books.due_for_checkpoint(160.0, 3, 60.0)) == ["A", "B"]
    books.mark_checkpoint("A", 101.0)
    assert books.due_for_checkpoint(101.0, 3, 60.0) == []
    books.mark_dirty(["B"])
    assert books.due_for_checkpoint(1000.0, 3, 60.0) == []
    assert books.remove("B") is not None
    assert "B" not in books
    assert len(books) == 1
    assert books.tickers() == ["A"]


# -- properties against a reference model ----------------------------------------------------

PRICES = [D(x) for x in ("0.01", "0.02", "0.1", "0.3", "0.45", "0.5", "0.55", "0.9", "0.99")] + [
    D("0.001"),
    D("0.0125"),
    D("0.999"),
    D("0.123456"),
]
sizes = st.integers(1, 10_000_00).map(lambda n: D(n).scaleb(-2))
deltas = st.one_of(sizes, st.just(D("0.00")))  # a zero delta changes nothing
prices = st.sampled_from(PRICES)
sides = st.sampled_from(["yes", "no"])
levels = st.lists(st.tuples(prices, sizes), max_size=8)


class RefBook:
    """Plain Decimal dicts: the obviously-correct model."""

    def __init__(self) -> None:
        self.sides: dict[str, dict[Decimal, Decimal]] = {"yes": {}, "no": {}}

    def snapshot(
        self, yes: list[tuple[Decimal, Decimal]], no: list[tuple[Decimal, Decimal]]
    ) -> None:
        for name, lv in (("yes", yes), ("no", no)):
            side: dict[Decimal, Decimal] = {}
            for p, s in lv:
                side[p] = side.get(p, D(0)) + s
            self.sides[name] = side

    def delta(self, side: str, price: Decimal, delta: Decimal) -> bool:
        """False (model unchanged) when the result would be negative."""
        new = self.sides[side].get(price, D(0)) + delta
        if new < 0:
            return False
        if new == 0:
            self.sides[side].pop(price, None)
        else:
            self.sides[side][price] = new
        return True

    def top(self) -> Quote:
        yes, no = self.sides["yes"], self.sides["no"]
        by = max(yes) if yes else None
        bn = max(no) if no else None
        return Quote(
            by,
            yes[by] if by is not None else None,
            D(1) - bn if bn is not None else None,
            no[bn] if bn is not None else None,
        )

    def levels(self, side: str) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.sides[side].items())


def check_same(book: OrderBook, ref: RefBook) -> None:
    for side in ("yes", "no"):
        got = book.levels(side)
        assert got == ref.levels(side)
        assert all(s > 0 for _, s in got)  # never a zero or negative level
        assert all(s == s.quantize(D("0.01")) for _, s in got)  # hundredths, exact
    assert book.top() == ref.top()
    assert OrderBook.from_rows(*book.to_json_levels()) == book


@settings(max_examples=300, deadline=None)
@given(data=st.data(), yes=levels, no=levels)
def test_book_matches_reference(data: st.DataObject, yes: list[Any], no: list[Any]) -> None:
    book, ref = OrderBook(), RefBook()
    book.apply_snapshot(yes, no)
    ref.snapshot(yes, no)
    check_same(book, ref)
    for _ in range(data.draw(st.integers(0, 60))):
        before = ref.top()
        side = data.draw(sides)
        existing = list(ref.sides[side].items())
        kind = data.draw(st.sampled_from(["add", "remove", "partial", "overdraw", "random"]))
        if kind == "remove" and existing:
            price, size = data.draw(st.sampled_from(existing))
            delta = -size
        elif kind == "partial" and existing:
            price, size = data.draw(st.sampled_from(existing))
            delta = -data.draw(st.integers(1, int(size * 100)).map(lambda n: D(n).scaleb(-2)))
        elif kind == "overdraw":
            price = data.draw(prices)
            delta = -(ref.sides[side].get(price, D(0)) + data.draw(sizes))
        elif kind == "random":
            price = data.draw(prices)
            delta = data.draw(sizes) * data.draw(st.sampled_from([1, -1]))
        else:
            price, delta = data.draw(prices), data.draw(sizes)
        if ref.delta(side, price, delta):
            changed = book.apply_delta(side, price, delta)
            assert changed == (ref.top() != before)
        else:
            snapshot = book.copy()
            with pytest.raises(BookError):
                book.apply_delta(side, price, delta)
            assert book == snapshot
        check_same(book, ref)


ops = st.one_of(
    st.tuples(st.just("snapshot"), st.sampled_from("AB"), levels, levels),
    st.tuples(st.just("delta"), st.sampled_from("AB"), sides, prices, deltas, st.booleans()),
    st.tuples(st.just("dirty"), st.sampled_from("AB")),
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(ops, max_size=80))
def test_bookset_quotes_emitted_iff_top_changed(steps: list[Any]) -> None:
    books = BookSet()
    refs: dict[str, RefBook] = {}
    dirty: set[str] = set()
    last: dict[str, Quote] = {}
    dropped_before = dropped_dirty = 0
    for step in steps:
        kind, ticker = step[0], step[1]
        if kind == "snapshot":
            _, _, yes, no = step
            ref = refs.setdefault(ticker, RefBook())
            ref.snapshot(yes, no)
            dirty.discard(ticker)
            got = books.apply_snapshot(ticker, yes, no, now=0.0)
        elif kind == "dirty":
            books.mark_dirty([ticker])
            if ticker in refs:
                dirty.add(ticker)
            continue
        else:
            _, _, side, price, size, negative = step
            delta = -size if negative else size
            if ticker not in refs:
                dropped_before += 1
                assert books.apply_delta(ticker, side, price, delta) is None
                assert books.dropped_before_snapshot == dropped_before
                continue
            if ticker in dirty:
                dropped_dirty += 1
                assert books.apply_delta(ticker, side, price, delta) is None
                assert books.dropped_dirty == dropped_dirty
                continue
            if not refs[ticker].delta(side, price, delta):
                with pytest.raises(BookError):
                    books.apply_delta(ticker, side, price, delta)
                dirty.add(ticker)
                continue
            if negative:  # both entry points: by ticker, and on the book the caller holds
                got = books.apply_delta(ticker, side, price, delta)
            else:
                held = books.get(ticker)
                assert held is not None
                assert held.ready
                got = books.apply_delta_to(held, side, price, delta)
        expected = refs[ticker].top()
        if ticker not in last or last[ticker] != expected:
            assert got == expected
            last[ticker] = expected
        else:
            assert got is None
        assert books.quote(ticker) == last[ticker]
        assert books.book(ticker).top() == expected  # type: ignore[union-attr]
    for ticker, ref in refs.items():
        check_same(books.book(ticker), ref)  # type: ignore[arg-type]
        assert books.is_dirty(ticker) == (ticker in dirty)
