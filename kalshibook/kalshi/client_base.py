"""What the Kalshi REST and WebSocket clients share (:class:`KalshiClientBase`).

Settings, the signing key and its id, the clock, the backoff's random source and the sleep
function, with the two helpers both clients use: signed GET headers and a fresh backoff.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

from kalshibook.backoff import Backoff
from kalshibook.errors import ConfigError
from kalshibook.kalshi.auth import PrivateKey, signed_headers
from kalshibook.settings import KalshiSettings

__all__ = ("KalshiClientBase",)


class KalshiClientBase:
    """What the REST and WebSocket clients share: settings, the signing key, the clock, the
    backoff's random source and the sleep function."""

    def __init__(
        self,
        settings: KalshiSettings,
        key: PrivateKey | None,
        key_id: str | None,
        clock: Callable[[], float],
        rng: random.Random | None,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self._key = key
        self._key_id = settings.key_id if key_id is None else key_id
        if key is not None and not self._key_id:
            raise ConfigError("KALSHIBOOK_KALSHI_KEY_ID is not set (needed to sign with the key)")
        self._clock = clock
        self._rng = rng or random.Random()
        self._sleep = sleep

    def _signed_get_headers(self, key: PrivateKey, path: str) -> dict[str, str]:
        """``KALSHI-ACCESS-*`` headers of a GET of ``path``, signed now."""
        return signed_headers(self._key_id, key, "GET", path, now_ms=int(self._clock() * 1000))

    def _backoff(self) -> Backoff:
        """A fresh retry/reconnect backoff from the settings."""
        return Backoff(self.settings.reconnect_initial, self.settings.reconnect_max, rng=self._rng)
