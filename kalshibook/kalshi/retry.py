"""Whether a failed Kalshi connection or request is worth retrying (pure).

The delays between the attempts come from :class:`kalshibook.backoff.Backoff`.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from kalshibook.errors import ConfigError, FatalFeedError, FeedError

__all__ = ("Verdict", "classify", "http_status_verdict")

Verdict = Literal["retry", "fatal"]


def http_status_verdict(status: int) -> Verdict:
    """429, 408 and 5xx are worth retrying; other statuses (401/403 above all) are not."""
    if status in (408, 429) or status >= 500:
        return "retry"
    return "fatal"


def classify(exc: BaseException) -> Verdict:
    """Whether a WebSocket connect/session error is worth a reconnect.

    Retry: OS/network errors, timeouts, dropped connections, malformed handshakes, 5xx/429/408
    handshake rejections, non-fatal feed errors. Fatal: 401/403 (bad credentials) and other 4xx
    rejections, bad URIs, configuration errors, :class:`FatalFeedError`, anything unexpected.
    """
    if isinstance(exc, FatalFeedError | ConfigError | InvalidURI):
        return "fatal"
    if isinstance(exc, InvalidStatus):
        return http_status_verdict(exc.response.status_code)
    if isinstance(
        exc,
        OSError | TimeoutError | asyncio.TimeoutError | EOFError | ConnectionClosed | FeedError,
    ):
        return "retry"
    if isinstance(exc, InvalidHandshake):
        return "retry"
    return "fatal"
