"""API keys and credits in ``private.api_keys`` / ``private.api_usage``.

A key reads ``kb-<prefix>-<secret>`` (the form the kalshibook SDK requires: it refuses keys not
starting with ``kb-``); keys issued before read ``kb_<prefix>_<secret>`` and keep working, in
either form: the separators are not part of the secret. The prefix (8 hex digits) is public and
identifies the key (``keys list``, ``keys revoke PREFIX``); the secret (32 random bytes,
base64url) is shown once at creation and stored only as its SHA-256, which is safe for a
high-entropy secret. Credits are
spent atomically by one ``UPDATE … WHERE credits >= cost RETURNING credits``. Nothing here logs or
returns a secret except :func:`create_key`'s result.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection, Connection

from kalshibook.errors import InvalidInput, UnknownObject

__all__ = (
    "IssuedKey",
    "KeyInfo",
    "create_key",
    "format_key",
    "hash_secret",
    "list_keys",
    "parse_key",
    "revoke_key",
    "topup_key",
)

KEY_SCHEME = "kb"
KEY_SEPARATOR = "-"
"""Separator of issued keys; ``_`` (the first format) is accepted too."""
_SEPARATORS = frozenset("-_")
_PREFIX_LEN = 8
_PREFIX_RE = re.compile(r"^[0-9a-f]{8}$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
MAX_CREDITS = 10**15

INSERT_KEY = """
INSERT INTO private.api_keys (name, prefix, key_hash, credits)
VALUES (%(name)s, %(prefix)s, %(hash)s, %(credits)s)
"""

LIST_KEYS = """
SELECT prefix, name, credits, created_at, revoked_at, last_used_at,
       (SELECT count(*) FROM private.api_usage u WHERE u.key_id = k.id) AS requests
FROM private.api_keys k
ORDER BY created_at, prefix
"""

REVOKE_KEY = """
UPDATE private.api_keys SET revoked_at = COALESCE(revoked_at, now())
WHERE prefix = %(prefix)s
RETURNING revoked_at
"""

TOPUP_KEY = """
UPDATE private.api_keys SET credits = credits + %(credits)s
WHERE prefix = %(prefix)s
RETURNING credits
"""

LOOKUP_KEY = "SELECT id, key_hash FROM private.api_keys WHERE prefix = %(prefix)s"

CHARGE = """
UPDATE private.api_keys SET credits = credits - %(cost)s, last_used_at = now()
WHERE id = %(id)s AND revoked_at IS NULL AND credits >= %(cost)s
RETURNING credits
"""
"""Spend credits atomically: concurrent requests serialise on the row; none overdraws."""

KEY_STATE = "SELECT credits, revoked_at IS NOT NULL FROM private.api_keys WHERE id = %(id)s"

RECORD_USAGE = """
WITH settle AS (
    UPDATE private.api_keys SET credits = GREATEST(credits + %(refund)s - %(extra)s, 0)
    WHERE id = %(key_id)s AND (%(refund)s > 0 OR %(extra)s > 0)
    RETURNING credits
)
INSERT INTO private.api_usage (key_id, endpoint, cost, status, request_id)
VALUES (%(key_id)s, %(endpoint)s, %(cost)s, %(status)s, %(request_id)s)
"""
"""One row per charged request. ``refund`` gives back the cost of a request that failed on our
side (database unavailable, internal error); ``extra`` charges the time a slow request held the
database beyond its listed cost (never below a zero balance)."""


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly created key. ``key`` is the only copy of the secret: print it once."""

    prefix: str
    name: str
    credits: int
    key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    prefix: str
    name: str
    credits: int
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    requests: int


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def format_key(prefix: str, secret: str) -> str:
    return f"{KEY_SCHEME}{KEY_SEPARATOR}{prefix}{KEY_SEPARATOR}{secret}"


def parse_key(token: str) -> tuple[str, str] | None:
    """``kb-<prefix>-<secret>`` or ``kb_<prefix>_<secret>`` → ``(prefix, secret)``; ``None`` if
    it is not shaped like a key (mixed separators included)."""
    scheme, sep = token[: len(KEY_SCHEME)], token[len(KEY_SCHEME) : len(KEY_SCHEME) + 1]
    start = len(KEY_SCHEME) + 1
    prefix = token[start : start + _PREFIX_LEN]
    if scheme != KEY_SCHEME or sep not in _SEPARATORS or token[start + _PREFIX_LEN :][:1] != sep:
        return None
    secret = token[start + _PREFIX_LEN + 1 :]
    if not _PREFIX_RE.match(prefix) or not _SECRET_RE.match(secret):
        return None
    return prefix, secret


def _check_credits(credits: int, *, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if (
        isinstance(credits, bool)
        or not isinstance(credits, int)
        or not low <= credits <= MAX_CREDITS
    ):
        raise InvalidInput(f"credits must be an integer between {low} and {MAX_CREDITS}", "credits")


def _connect(target: Connection[Any] | str) -> tuple[Connection[Any], bool]:
    if isinstance(target, str):
        return psycopg.connect(target, autocommit=True), True
    return target, False


def create_key(target: Connection[Any] | str, *, name: str, credits: int) -> IssuedKey:
    """Create a key with ``credits`` credits on a connection or database URL.

    This is the function tests and tools use to get a working key.
    """
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("name must be 1-200 characters", "name")
    _check_credits(credits, allow_zero=True)
    conn, owned = _connect(target)
    try:
        for _ in range(5):
            prefix = secrets.token_hex(4)
            secret = secrets.token_urlsafe(32)
            try:
                with conn.transaction():
                    conn.execute(
                        INSERT_KEY,
                        {
                            "name": name,
                            "prefix": prefix,
                            "hash": hash_secret(secret),
                            "credits": credits,
                        },
                    )
            except psycopg.errors.UniqueViolation:
                continue  # a prefix collision (1 in 4 billion): draw again
            return IssuedKey(
                prefix=prefix, name=name, credits=credits, key=format_key(prefix, secret)
            )
        raise RuntimeError("could not draw a unique key prefix")  # pragma: no cover
    finally:
        if owned:
            conn.close()


def list_keys(target: Connection[Any] | str) -> list[KeyInfo]:
    conn, owned = _connect(target)
    try:
        return [KeyInfo(*row) for row in conn.execute(LIST_KEYS).fetchall()]
    finally:
        if owned:
            conn.close()


def revoke_key(target: Connection[Any] | str, prefix: str) -> datetime:
    """Revoke a key (idempotent); returns when it was revoked."""
    conn, owned = _connect(target)
    try:
        row = conn.execute(REVOKE_KEY, {"prefix": prefix}).fetchone()
    finally:
        if owned:
            conn.close()
    if row is None:
        raise UnknownObject(f"no API key with prefix {prefix!r}", "prefix")
    return row[0]  # type: ignore[no-any-return]


def topup_key(target: Connection[Any] | str, prefix: str, credits: int) -> int:
    """Add credits to a key; returns the new balance."""
    _check_credits(credits, allow_zero=False)
    conn, owned = _connect(target)
    try:
        row = conn.execute(TOPUP_KEY, {"prefix": prefix, "credits": credits}).fetchone()
    finally:
        if owned:
            conn.close()
    if row is None:
        raise UnknownObject(f"no API key with prefix {prefix!r}", "prefix")
    return int(row[0])


# -- request path (async) ------------------------------------------------------------------------


async def lookup(conn: AsyncConnection[Any], prefix: str) -> tuple[int, bytes] | None:
    cur = await conn.execute(LOOKUP_KEY, {"prefix": prefix})
    row = await cur.fetchone()
    return None if row is None else (int(row[0]), bytes(row[1]))


async def charge(conn: AsyncConnection[Any], key_id: int, cost: int) -> int | None:
    """Spend ``cost`` credits; the remaining balance, or ``None`` if revoked/insufficient/gone."""
    cur = await conn.execute(CHARGE, {"id": key_id, "cost": cost})
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def key_state(conn: AsyncConnection[Any], key_id: int) -> tuple[int, bool] | None:
    """``(credits, revoked)`` of a key, ``None`` if it no longer exists."""
    cur = await conn.execute(KEY_STATE, {"id": key_id})
    row = await cur.fetchone()
    return None if row is None else (int(row[0]), bool(row[1]))


async def record_usage(
    conn: AsyncConnection[Any],
    *,
    key_id: int,
    endpoint: str,
    cost: int,
    refund: int,
    status: int,
    request_id: str,
    extra: int = 0,
) -> None:
    await conn.execute(
        RECORD_USAGE,
        {
            "key_id": key_id,
            "endpoint": endpoint,
            "cost": cost - refund + extra,
            "refund": refund,
            "extra": extra,
            "status": status,
            "request_id": request_id,
        },
    )
