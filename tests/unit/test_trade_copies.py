"""Which copy of a trade stored twice stays (kalshibook.domain.trade_copies)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kalshibook.domain.trade_copies import StoredCopy, plan_merges

T = datetime(2026, 3, 2, 12, 0, 5, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def copy(trade: str, ts: datetime, source: str, received: datetime, m: str = "M") -> StoredCopy:
    return StoredCopy(
        m, trade, ts.replace(microsecond=ts.microsecond // 1000 * 1000), ts, source, received
    )


def test_rest_time_with_the_first_receipt() -> None:
    ws = copy("a", T, "ws", T + 200 * MS)  # whole second, received first
    rest = copy("a", T + timedelta(microseconds=437_250), "rest", T + timedelta(hours=2))
    [merge] = plan_merges([rest, ws])
    assert merge.keep_ts == rest.ts
    assert (merge.source, merge.received_at) == ("ws", ws.received_at)
    assert merge.drop_ts == (ws.ts,)


def test_single_copies_and_other_markets_are_left() -> None:
    one = copy("a", T, "ws", T)
    same_id_other_market = copy("a", T + MS, "ws", T, m="N")
    assert plan_merges([one, same_id_other_market]) == []


def test_without_rest_the_finer_time_stays() -> None:
    coarse = copy("b", T, "ws", T + MS)
    fine = copy("b", T + 300 * MS, "ws", T + 2 * MS)
    [merge] = plan_merges([coarse, fine])
    assert merge.keep_ts == fine.ts
    assert merge.received_at == coarse.received_at
    assert merge.drop_ts == (coarse.ts,)


def test_three_copies_and_order_of_merges() -> None:
    later = [
        copy("z", T + timedelta(seconds=9), "ws", T),
        copy("z", T + timedelta(seconds=9, milliseconds=5), "rest", T + timedelta(hours=1)),
    ]
    three = [
        copy("c", T, "ws", T + 5 * MS),
        copy("c", T + 7 * MS, "rest", T + 9 * MS),
        copy("c", T + timedelta(seconds=1), "ws", T + 6 * MS),
    ]
    merges = plan_merges(later + three)
    assert [m.trade_id for m in merges] == ["c", "z"]
    assert merges[0].keep_ts == T + 7 * MS
    assert merges[0].drop_ts == (T, T + timedelta(seconds=1))
    assert merges[0].received_at == T + 5 * MS


def test_taker_sides_and_block_flag_merge() -> None:
    """The kept (REST) copy's sides, those it lacks from the first copy received that has them;
    a block trade flagged by any copy."""
    ws = StoredCopy("M", "d", T, T, "ws", T + MS, "no", "ask", True)
    later_ws = StoredCopy("M", "d", T + timedelta(seconds=1), T, "ws", T + 5 * MS, "yes", "bid")
    rest = StoredCopy("M", "d", T + 3 * MS, T + 3 * MS, "rest", T + 9 * MS, None, "bid", False)
    [merge] = plan_merges([later_ws, rest, ws])
    assert merge.keep_ts == rest.ts
    assert (merge.taker_outcome_side, merge.taker_book_side) == ("no", "bid")
    assert merge.is_block_trade is True
    [plain] = plan_merges([copy("e", T, "ws", T), copy("e", T + 3 * MS, "rest", T + MS)])
    assert (plain.taker_outcome_side, plain.taker_book_side, plain.is_block_trade) == (
        None,
        None,
        False,
    )
