"""Opaque keyset cursors: base64url of a msgpack tuple, authenticated with HMAC-SHA256.

A cursor carries the sort key of the last row of a page and the name of the listing it belongs to,
so it cannot be replayed against another endpoint. Anything that does not decode, verify and type
check is a 400 naming ``cursor``; a cursor is never trusted to contain anything but a position.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any, TypeVar

import msgspec

from kalshibook.errors import BadRequest

__all__ = ("CursorCodec",)

T = TypeVar("T")

_VERSION = 1
_MAC_BYTES = 16
_MAX_CURSOR_CHARS = 512
_encoder = msgspec.msgpack.Encoder()


class CursorCodec:
    """Encodes and verifies cursors with a deployment secret."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("cursor secret must not be empty")
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
        if version != _VERSION or got_kind != kind:
            raise bad
        return position
