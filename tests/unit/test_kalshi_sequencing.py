"""Per-sid sequence tracking (kalshibook.kalshi.sequencing)."""

from __future__ import annotations

from kalshibook.kalshi.sequencing import GapDetected, SeqTracker


def test_first_frame_of_a_sid_is_accepted_whatever_its_number() -> None:
    t = SeqTracker()
    r = t.observe(1, 2)  # first snapshot may be seq 1 or 2
    assert r.ok
    assert r.expected is None
    assert r.missing == 0
    assert t.observe(1, 3).ok


def test_gap_reports_expected_and_got_once() -> None:
    t = SeqTracker()
    t.observe(7, 1)
    t.observe(7, 2)
    r = t.observe(7, 5)
    assert r.is_gap
    assert (r.sid, r.expected, r.got, r.missing) == (7, 3, 5, 2)
    assert t.observe(7, 6).ok  # continues from the number received
    assert t.last(7) == 6


def test_duplicate_and_old_are_stale_and_not_applied() -> None:
    t = SeqTracker()
    for s in (1, 2, 3):
        t.observe(1, s)
    dup = t.observe(1, 3)
    old = t.observe(1, 1)
    assert dup.is_stale
    assert dup.expected == 4
    assert old.is_stale
    assert t.last(1) == 3
    assert t.observe(1, 4).ok


def test_sequences_are_per_sid_not_per_market() -> None:
    t = SeqTracker()
    assert t.observe(1, 1).ok
    assert t.observe(2, 10).ok
    assert t.observe(1, 2).ok
    assert t.observe(2, 11).ok
    assert t.observe(2, 13).is_gap
    assert t.observe(1, 3).ok


def test_reset() -> None:
    t = SeqTracker()
    t.observe(1, 5)
    t.observe(2, 5)
    t.reset(1)
    assert 1 not in t
    assert 2 in t
    assert t.observe(1, 1).ok  # new subscription restarts numbering
    t.reset_all()
    assert len(t) == 0
    assert t.observe(2, 1).ok
    t.reset(99)  # unknown sid: no error


def test_gap_event_shape() -> None:
    g = GapDetected(sid=3, expected=4, got=9)
    assert g.kind == "gap"
    assert g.seq == 9
    assert g.received_at is None


def test_advance_takes_only_the_exact_next_number() -> None:
    t = SeqTracker()
    assert not t.advance(1, 5)  # unknown sid: observe() decides
    assert t.last(1) is None
    t.observe(1, 5)
    assert t.advance(1, 6)
    assert t.last(1) == 6
    for seq in (6, 8, 3):  # duplicate, gap, old: nothing recorded
        assert not t.advance(1, seq)
        assert t.last(1) == 6
    assert t.observe(1, 8).is_gap
    assert not t.advance(None, 9)
