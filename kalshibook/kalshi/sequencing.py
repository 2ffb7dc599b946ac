"""Per-subscription sequence tracking (pure).

Kalshi numbers frames per subscription id (``sid``), not per market: one orderbook sid covering N
markets interleaves them on one counter. The first frame seen on a sid is accepted whatever its
number (the first snapshot may be seq 1 or 2). After a gap the tracker continues from the number
received, so one lost frame is reported once.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

import msgspec

__all__ = ("GapDetected", "SeqResult", "SeqStatus", "SeqTracker")

SeqStatus = Literal["ok", "gap", "stale"]
"""``ok`` = next in order (or first on the sid); ``gap`` = numbers skipped; ``stale`` = duplicate or
older than the last one seen (not applied)."""


class SeqResult(msgspec.Struct, frozen=True, gc=False):
    """Outcome of :meth:`SeqTracker.observe`."""

    status: SeqStatus
    sid: int
    got: int
    expected: int | None = None
    """The number that was due (``None`` on the first frame of a sid)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def is_gap(self) -> bool:
        return self.status == "gap"

    @property
    def is_stale(self) -> bool:
        return self.status == "stale"

    @property
    def missing(self) -> int:
        """How many numbers were skipped (0 unless a gap)."""
        if self.status != "gap" or self.expected is None:
            return 0
        return self.got - self.expected


class GapDetected(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A subscription skipped sequence numbers; every book on ``sid`` is suspect."""

    kind: ClassVar[str] = "gap"
    sid: int
    expected: int
    got: int
    received_at: datetime | None = None

    @property
    def seq(self) -> int:
        return self.got


class SeqTracker:
    """Last sequence number per sid."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[int, int] = {}

    def observe(self, sid: int, seq: int) -> SeqResult:
        last = self._last.get(sid)
        if last is None:
            self._last[sid] = seq
            return SeqResult("ok", sid, seq, None)
        expected = last + 1
        if seq == expected:
            self._last[sid] = seq
            return SeqResult("ok", sid, seq, expected)
        if seq > expected:
            self._last[sid] = seq
            return SeqResult("gap", sid, seq, expected)
        return SeqResult("stale", sid, seq, expected)

    def advance(self, sid: int | None, seq: int) -> bool:
        """The per-frame fast path: when ``seq`` is exactly the next number of ``sid``, record
        it and return True (no result object); otherwise record nothing and return False (call
        :meth:`observe`)."""
        last = self._last.get(sid)  # type: ignore[arg-type]
        if last is not None and seq == last + 1:
            self._last[sid] = seq  # type: ignore[index]
            return True
        return False

    def last(self, sid: int) -> int | None:
        return self._last.get(sid)

    def reset(self, sid: int) -> None:
        """Forget a sid: its next frame is accepted as the first. The session calls it when a
        ``subscribed`` ack names the sid (a sid number may be handed out again), after a
        terminal error on it (10/25) and when it is unsubscribed."""
        self._last.pop(sid, None)

    def reset_all(self) -> None:
        """Forget every sid (a new connection restarts all sequences)."""
        self._last.clear()

    def __contains__(self, sid: object) -> bool:
        return sid in self._last

    def __len__(self) -> int:
        return len(self._last)
