"""Retry classification of Kalshi connection and request errors (kalshibook.kalshi.retry)."""

from __future__ import annotations

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosedError,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.http11 import Response

from kalshibook.errors import ConfigError, FatalFeedError, FeedError, ProtocolError
from kalshibook.kalshi.retry import classify, http_status_verdict


def _status(code: int) -> InvalidStatus:
    return InvalidStatus(Response(code, "x", Headers()))


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (OSError("connection refused"), "retry"),
        (ConnectionResetError(), "retry"),
        (TimeoutError(), "retry"),
        (EOFError(), "retry"),
        (ConnectionClosedError(None, None), "retry"),
        (InvalidMessage("bad"), "retry"),
        (_status(500), "retry"),
        (_status(503), "retry"),
        (_status(429), "retry"),
        (_status(401), "fatal"),
        (_status(403), "fatal"),
        (_status(404), "fatal"),
        (InvalidURI("x", "bad"), "fatal"),
        (ConfigError("x"), "fatal"),
        (FatalFeedError("x"), "fatal"),
        (ProtocolError("x"), "retry"),
        (FeedError("x"), "retry"),
        (ValueError("bug"), "fatal"),
    ],
)
def test_classify(exc: BaseException, verdict: str) -> None:
    assert classify(exc) == verdict


def test_http_status_verdict() -> None:
    assert http_status_verdict(429) == "retry"
    assert http_status_verdict(502) == "retry"
    assert http_status_verdict(408) == "retry"
    assert http_status_verdict(400) == "fatal"
    assert http_status_verdict(401) == "fatal"
