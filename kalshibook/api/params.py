"""Parsing of query parameters shared by every endpoint. Errors name the parameter."""

from __future__ import annotations

from datetime import date, datetime

from kalshibook.domain import times
from kalshibook.errors import BadRequest, InvalidInput


def parse_time(value: str, name: str) -> datetime:
    """RFC 3339 (offset required; ``Z`` allowed) or Unix seconds → aware UTC datetime (else 400)."""
    try:
        return times.parse_time(value, name)
    except InvalidInput as exc:
        raise BadRequest(exc.message, parameter=name) from None


def parse_day(value: str, name: str) -> date:
    """A UTC day ``YYYY-MM-DD`` within the range of :func:`parse_time` (else 400)."""
    try:
        return times.parse_day(value, name)
    except InvalidInput as exc:
        raise BadRequest(exc.message, parameter=name) from None


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
