"""API-key authentication, per-key rate limiting and credit charging.

Contract: a request to a priced route sends ``Authorization: Bearer kb-<prefix>-<secret>`` (keys
of the first format, ``kb_<prefix>_<secret>``, too); the
route's cost is declared on its handler as ``opt={"cost": N}`` (``opt={"public": True}`` for
routes that need no key). Order of checks: key shape → known prefix → constant-time comparison
of the secret's hash → rate limit (in-process token bucket per key) → concurrency (at most
``max_concurrent`` requests of one key at once) (:meth:`Authenticator.admit`) → one atomic
``UPDATE`` that spends the credits (:meth:`Authenticator.spend`; the middleware may run it beside
the handler, see :class:`Admission`).
Failures: 401 (missing, unknown or revoked key), 429 (rate or concurrency), 402 (credits). The
database work is done on connections of the pool passed in (the API's small control pool), checked
out only when needed: a malformed header never takes one. :meth:`Authenticator.admit` takes one of
the key's slots; the caller gives it back with :meth:`Authenticator.release` when the request
ends, whatever became of its charge.
Keys for tests and tools come from :func:`create_key` (``kalshibook keys create`` on the CLI).
Secrets are never logged; only the public prefix may appear in messages.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from kalshibook.api.credentials import KALSHI_KEY_HEADER
from kalshibook.errors import PaymentRequired, RateLimited, Unauthorized
from kalshibook.storage import api_keys
from kalshibook.storage.api_keys import IssuedKey, create_key

__all__ = (
    "Admission",
    "Authenticator",
    "Charge",
    "IssuedKey",
    "KeyBusy",
    "KeyRateLimited",
    "OutOfCredits",
    "TokenBucket",
    "create_key",
)

_MAX_CACHED_KEYS = 10_000


class TokenBucket:
    """``rate`` tokens per second, holding at most ``capacity``; starts full."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def take(self, now: float, amount: float = 1.0) -> float:
        """Take ``amount`` tokens: 0.0 if granted, else the seconds until they would be."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= amount:
            self.tokens -= amount
            return 0.0
        return (amount - self.tokens) / self.rate if self.rate > 0 else float("inf")

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.updated) * self.rate >= self.capacity


class KeyRateLimited(RateLimited):
    """Too many requests for this API key."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class KeyBusy(KeyRateLimited):
    """This API key already has its most requests in flight."""


class OutOfCredits(PaymentRequired):
    """The API key has no credits left."""

    def __init__(self, message: str, *, credits_remaining: int) -> None:
        super().__init__(message)
        self.credits_remaining = credits_remaining


@dataclass(frozen=True, slots=True)
class Admission:
    """A request whose key passed every check but the credits, holding one of the key's slots.
    ``covered``: the key's balance after its last charge in this process covered the request
    (with room for every slot of the key), so its handler may run while the credits are spent.
    Otherwise (first request of the key here, low balance, last charge refused) the charge comes
    first. So a key this process has seen without credits reaches no handler; a key drained or
    revoked elsewhere since its last charge here reaches one once, and its result is dropped. A
    route that costs 0 is always covered (only a revoked key is refused there)."""

    key_id: int
    prefix: str
    cost: int
    covered: bool


@dataclass(frozen=True, slots=True)
class Charge:
    key_id: int
    cost: int
    remaining: int


class Authenticator:
    def __init__(self, rate_per_second: float, max_concurrent: int = 4) -> None:
        self.rate = rate_per_second
        self.capacity = max(1.0, rate_per_second)
        self.max_concurrent = max_concurrent
        self._active: dict[int, int] = {}
        """key id → requests in flight (entries at zero are removed: bounded by in-flight)."""
        self._buckets: dict[int, TokenBucket] = {}
        self._balances: dict[int, int] = {}
        """key id → credits left after its last charge (a hint: the charge decides)."""
        self._keys: dict[str, tuple[int, bytes]] = {}
        """prefix → (key id, secret hash): immutable facts, so safe to cache; revocation and
        credits are checked by the charging UPDATE on every request."""

    def _rate_limit(self, key_id: int) -> None:
        now = time.monotonic()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            if len(self._buckets) >= _MAX_CACHED_KEYS:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full(now)}
            bucket = self._buckets[key_id] = TokenBucket(self.rate, self.capacity, now)
        wait = bucket.take(now)
        if wait > 0:
            raise KeyRateLimited(
                f"more than {self.rate:g} requests per second with this API key; "
                f"retry in {wait:.2f} s",
                retry_after=wait,
            )

    def _hold(self, key_id: int) -> None:
        active = self._active.get(key_id, 0)
        if active >= self.max_concurrent:
            raise KeyBusy(
                f"{active} requests with this API key are already in flight (at most "
                f"{self.max_concurrent}); retry when one has answered",
                retry_after=1.0,
            )
        self._active[key_id] = active + 1

    def release(self, key_id: int) -> None:
        """Give back the slot :meth:`admit` took."""
        active = self._active.get(key_id, 0) - 1
        if active > 0:
            self._active[key_id] = active
        else:
            self._active.pop(key_id, None)

    def _note_balance(self, key_id: int, remaining: int) -> None:
        if key_id not in self._balances and len(self._balances) >= _MAX_CACHED_KEYS:
            self._balances.clear()
        self._balances[key_id] = remaining

    def in_flight(self, key_id: int) -> int:
        return self._active.get(key_id, 0)

    async def admit(
        self,
        pool: AsyncConnectionPool[Any],
        authorization: str | None,
        cost: int,
        *,
        wait: float,
        header: str = "Authorization",
    ) -> Admission:
        """Authenticate the ``Authorization`` header value and take one of its key's slots: every
        check but the credits (:meth:`spend`). The database is asked only for a prefix not yet
        cached. ``header``: the request header the key came in (or should have, see
        :func:`kalshibook.api.credentials.key_header_of`), named by the 401s."""
        kalshi = header == KALSHI_KEY_HEADER
        if not authorization:
            raise Unauthorized(
                (
                    f"missing API key: send your kalshibook key in the header `{header}` "
                    "(where Kalshi's key id goes) or `Authorization: Bearer kb-<prefix>-<secret>`"
                    if kalshi
                    else "missing API key: send the header "
                    "`Authorization: Bearer kb-<prefix>-<secret>`"
                )
                + " (create one with `kalshibook keys create`)",
                parameter=header,
            )
        scheme, _, token = authorization.strip().partition(" ")
        parsed = api_keys.parse_key(token.strip()) if scheme.lower() == "bearer" else None
        if parsed is None:
            raise Unauthorized(
                f"malformed {header} header: expected a kalshibook key `kb-<prefix>-<secret>` "
                "(a Kalshi key id is not one)"
                if kalshi
                else "malformed Authorization header: expected `Bearer kb-<prefix>-<secret>`",
                parameter=header,
            )
        prefix, secret = parsed
        known = self._keys.get(prefix)
        if known is None:
            async with pool.connection(timeout=wait) as conn:
                known = await api_keys.lookup(conn, prefix)
            if known is None:
                raise Unauthorized("unknown API key", parameter=header)
            if len(self._keys) >= _MAX_CACHED_KEYS:
                self._keys.clear()
            self._keys[prefix] = known
        key_id, stored_hash = known
        if not hmac.compare_digest(stored_hash, api_keys.hash_secret(secret)):
            raise Unauthorized("unknown API key", parameter=header)
        self._rate_limit(key_id)
        self._hold(key_id)
        # the last balance covers this request even if every slot of the key spends as much
        covered = self._balances.get(key_id, 0) >= cost * self.max_concurrent
        return Admission(key_id=key_id, prefix=prefix, cost=cost, covered=covered)

    async def spend(
        self, pool: AsyncConnectionPool[Any], admitted: Admission, *, wait: float
    ) -> Charge:
        """Spend the admitted request's cost in one atomic ``UPDATE``; raises when it is refused
        (revoked, out of credits) or the database fails. The key's slot stays taken either way:
        whoever admitted the request gives it back (:meth:`release`) when the request ends."""
        key_id, prefix, cost = admitted.key_id, admitted.prefix, admitted.cost
        try:
            async with pool.connection(timeout=wait) as conn:
                remaining = await api_keys.charge(conn, key_id, cost)
                state = None if remaining is not None else await api_keys.key_state(conn, key_id)
        except BaseException:
            self._balances.pop(key_id, None)
            raise
        if remaining is not None:
            self._note_balance(key_id, remaining)
            return Charge(key_id=key_id, cost=cost, remaining=remaining)
        self._balances.pop(key_id, None)
        if state is None:
            self._keys.pop(prefix, None)
            raise Unauthorized("unknown API key", parameter="Authorization")
        credits, revoked = state
        if revoked:
            raise Unauthorized(f"API key {prefix} was revoked", parameter="Authorization")
        raise OutOfCredits(
            f"API key {prefix} has {credits} credits left and this request costs {cost}; "
            f"top up with `kalshibook keys topup {prefix} --credits N`",
            credits_remaining=credits,
        )
