"""Opaque keyset cursors: base64url of a msgpack tuple, authenticated with HMAC-SHA256.

A cursor carries the sort key of the last row of a page and the name of the listing it belongs to,
so it cannot be replayed against another endpoint. Anything that does not decode, verify and type
check is a 400 naming ``cursor``; a cursor is never trusted to contain anything but a position.

The HMAC key is a deployment secret (:func:`kalshibook.ops.secrets.cursor_secret`), never derived
from anything else. Even a correctly signed position is range-checked field by field before it
reaches SQL (:func:`check_position`): whatever the sort key of an endpoint is, every integer fits a
PostgreSQL ``bigint``, every string is short and free of control characters (PostgreSQL text cannot
hold NUL), every time is timezone-aware and every float finite. So a leaked or guessed secret still
yields a 400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import uuid
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from kalshibook.errors import BadRequest

__all__ = ("MAX_TEXT_CHARS", "CursorCodec", "check_position")

T = TypeVar("T")

_VERSION = 1
_MAC_BYTES = 16
_MAX_CURSOR_CHARS = 512
_encoder = msgspec.msgpack.Encoder()
_MIN_SECRET_BYTES = 32
MAX_TEXT_CHARS = 256
"""Longest string a cursor field may hold (tickers and reasons are far shorter)."""
_BIGINT = (-(2**63), 2**63 - 1)


def _field_ok(value: Any) -> bool:
    if value is None or isinstance(value, bool | uuid.UUID):
        return True
    if isinstance(value, int):
        return _BIGINT[0] <= value <= _BIGINT[1]
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return len(value) <= MAX_TEXT_CHARS and not any(
            ord(ch) < 32 or ch == "\x7f" for ch in value
        )
    if isinstance(value, datetime):
        return value.tzinfo is not None and value.utcoffset() is not None
    if isinstance(value, tuple | list):
        return all(_field_ok(v) for v in value)
    return False  # a type no sort key uses


def check_position(position: Any) -> bool:
    """``True`` when every field of a decoded position can be bound to SQL without an error."""
    return _field_ok(position)


class CursorCodec:
    """Encodes and verifies cursors with a deployment secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < _MIN_SECRET_BYTES:
            raise ValueError(f"cursor secret must be at least {_MIN_SECRET_BYTES} bytes")
        self._key = hmac.new(secret, b"kalshibook cursor v1", hashlib.sha256).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, kind: str, position: tuple[Any, ...]) -> str:
        payload = _encoder.encode((_VERSION, kind, position))
        raw = payload + self._mac(payload)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def decode(self, cursor: str, kind: str, position_type: type[T]) -> T:
        """The position in ``cursor``; :class:`BadRequest` naming ``cursor`` if anything is off."""
        bad = BadRequest(
            "cursor is invalid or was modified; pass back the next_cursor of the previous page "
            "unchanged, with the same endpoint",
            parameter="cursor",
        )
        if not cursor or len(cursor) > _MAX_CURSOR_CHARS:
            raise bad
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise bad from None
        if len(raw) <= _MAC_BYTES:
            raise bad
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise bad
        try:
            version, got_kind, position = msgspec.msgpack.decode(
                payload,
                type=tuple[int, str, position_type],  # type: ignore[valid-type]
            )
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise bad from None
        if version != _VERSION or got_kind != kind or not check_position(position):
            raise bad
        return position
