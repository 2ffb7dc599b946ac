"""Parsing of user-given instants (pure): RFC 3339 with an offset, or Unix seconds.

Shared by the API's query parameters (``start``, ``end``, ``at``; the exports' ``date`` through
:func:`parse_day`) and the command line (``refresh-candles --start``); errors are
:class:`~kalshibook.errors.InvalidInput` naming the input, and each edge words them as its own
(HTTP 400, exit 2).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Final

from kalshibook.errors import InvalidInput

__all__ = ("LAST_DAY", "MAX_TIME", "MIN_TIME", "parse_day", "parse_time")

_UNIX: Final = re.compile(r"^-?\d+(\.\d+)?$")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MIN_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""Earliest accepted instant (inclusive)."""
MAX_TIME: Final = datetime(2200, 1, 1, tzinfo=UTC)
"""Latest accepted instant (exclusive)."""
LAST_DAY: Final = MAX_TIME.date() - timedelta(days=1)
"""Latest accepted UTC day (its end is :data:`MAX_TIME`)."""
_DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_time(value: str, name: str) -> datetime:
    """RFC 3339 (offset required; ``Z`` allowed) or Unix seconds → aware UTC datetime.

    ``name`` is the input's name as the user wrote it; it starts every error message.
    """
    text = value.strip()
    try:
        if _UNIX.match(text):
            # exact, truncated to the microsecond as the RFC 3339 form is (a float rounds:
            # 1772974800.0009996 became .001000, after an event at .001 it was asked before)
            micros = (Decimal(text) * 1_000_000).to_integral_value(rounding=ROUND_FLOOR)
            out = _EPOCH + timedelta(microseconds=int(micros))
        else:
            out = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
            if out.tzinfo is None:
                raise InvalidInput(
                    f"{name}: {value!r} has no UTC offset; use RFC 3339 (e.g. "
                    "2026-01-15T00:00:00Z) or Unix seconds",
                    name,
                )
            out = out.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidInput(
            f"{name}: {value!r} is not a time; use RFC 3339 (e.g. 2026-01-15T00:00:00Z) "
            "or Unix seconds",
            name,
        ) from None
    if not MIN_TIME <= out < MAX_TIME:
        raise InvalidInput(f"{name}: {value!r} is out of range", name)
    return out


def parse_day(value: str, name: str) -> date:
    """A UTC day written ``YYYY-MM-DD`` (nothing else ISO 8601 allows: no ``20260308``, no
    ``2026-W10-7``) lying in the range of :func:`parse_time`: from ``MIN_TIME``'s day to
    :data:`LAST_DAY`, so the day's start and end are instants the rest of kalshibook handles."""
    bad = InvalidInput(
        f"{name} must be a UTC day YYYY-MM-DD (e.g. 2026-01-15), got {value!r}", name
    )
    if not _DAY.fullmatch(value):
        raise bad
    try:
        out = date.fromisoformat(value)
    except ValueError:
        raise bad from None
    if not MIN_TIME.date() <= out <= LAST_DAY:
        raise InvalidInput(
            f"{name}: {value!r} is out of range ({MIN_TIME.date()} to {LAST_DAY})", name
        )
    return out
