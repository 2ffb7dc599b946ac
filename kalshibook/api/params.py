"""Parsing of query parameters shared by every endpoint. Errors name the parameter."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from kalshibook.errors import BadRequest

_UNIX = re.compile(r"^-?\d+(\.\d+)?$")
MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2200, 1, 1, tzinfo=UTC)


def parse_time(value: str, name: str) -> datetime:
    """RFC 3339 (offset required; ``Z`` allowed) or Unix seconds → aware UTC datetime."""
    text = value.strip()
    try:
        if _UNIX.match(text):
            out = datetime.fromtimestamp(float(text), tz=UTC)
        else:
            out = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
            if out.tzinfo is None:
                raise BadRequest(
                    f"{name}: {value!r} has no UTC offset; use RFC 3339 (e.g. "
                    "2026-01-15T00:00:00Z) or Unix seconds",
                    parameter=name,
                )
            out = out.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise BadRequest(
            f"{name}: {value!r} is not a time; use RFC 3339 (e.g. 2026-01-15T00:00:00Z) "
            "or Unix seconds",
            parameter=name,
        ) from None
    if not MIN_TIME <= out < MAX_TIME:
        raise BadRequest(f"{name}: {value!r} is out of range", parameter=name)
    return out


def parse_range(
    start: str | None, end: str | None, *, start_name: str = "start", end_name: str = "end"
) -> tuple[datetime | None, datetime | None]:
    """Start-inclusive, end-exclusive range; an inverted or empty range is an error."""
    s = parse_time(start, start_name) if start is not None else None
    e = parse_time(end, end_name) if end is not None else None
    if s is not None and e is not None and e <= s:
        raise BadRequest(
            f"{end_name} must be after {start_name} (ranges are [start, end))", parameter=end_name
        )
    return s, e


def parse_limit(value: int | None, *, default: int, maximum: int, name: str = "limit") -> int:
    if value is None:
        return default
    if not 1 <= value <= maximum:
        raise BadRequest(f"{name} must be between 1 and {maximum}, got {value}", parameter=name)
    return value
