"""Parsing of user-given instants (pure): RFC 3339 with an offset, or Unix seconds.

Shared by the API's query parameters (``start``, ``end``, ``at``) and the command line
(``refresh-candles --start``); errors are :class:`~kalshibook.errors.InvalidInput` naming the
input, and each edge words them as its own (HTTP 400, exit 2).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

from kalshibook.errors import InvalidInput

__all__ = ("MAX_TIME", "MIN_TIME", "parse_time")

_UNIX: Final = re.compile(r"^-?\d+(\.\d+)?$")
MIN_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""Earliest accepted instant (inclusive)."""
MAX_TIME: Final = datetime(2200, 1, 1, tzinfo=UTC)
"""Latest accepted instant (exclusive)."""


def parse_time(value: str, name: str) -> datetime:
    """RFC 3339 (offset required; ``Z`` allowed) or Unix seconds → aware UTC datetime.

    ``name`` is the input's name as the user wrote it; it starts every error message.
    """
    text = value.strip()
    try:
        if _UNIX.match(text):
            out = datetime.fromtimestamp(float(text), tz=UTC)
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
