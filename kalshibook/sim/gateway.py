"""HTTP plumbing of the simulator's one port: signature check, REST dispatch and 429 bursts.

``websockets``' server calls :meth:`HttpGateway.process_request` for every request: plain REST
requests under ``/trade-api/v2`` are answered here (one response per connection,
``Connection: close``), the upgrade to ``/trade-api/ws/v2`` is let through. Both check Kalshi's
signature headers unless auth is off.
"""

from __future__ import annotations

import http
import time
import urllib.parse
from collections.abc import Mapping

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from kalshibook.kalshi.auth import (
    HEADER_KEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    WS_PATH,
    PublicKey,
    verify,
)
from kalshibook.sim import rest
from kalshibook.sim.session import SessionHost, decode, encode

__all__ = ("HttpGateway", "wall_ms")


def wall_ms() -> int:
    """The simulator's wall clock, Unix ms (exchange time and signature timestamps)."""
    return time.time_ns() // 1_000_000


class HttpGateway:
    """Answers HTTP requests for a server (``host``): auth, REST, and the 429 fault."""

    def __init__(
        self,
        host: SessionHost,
        keys: Mapping[str, PublicKey],
        *,
        no_auth: bool,
        auth_window: float,
    ) -> None:
        self.host = host
        self.keys = keys
        self.no_auth = no_auth
        self.auth_window = auth_window
        """Largest accepted |now - KALSHI-ACCESS-TIMESTAMP|, seconds."""
        self.rest_429_left = 0
        """REST requests still to answer with 429."""
        self.rest_corrupt_left = 0
        """REST list responses still to have their first item corrupted."""

    def auth_error(self, headers: Headers, path: str) -> str | None:
        """Why a request's signature headers are refused, or ``None`` when they are fine."""
        if self.no_auth:
            return None
        key_id = headers.get(HEADER_KEY)
        ts_text = headers.get(HEADER_TIMESTAMP)
        signature = headers.get(HEADER_SIGNATURE)
        if not key_id or not ts_text or not signature:
            return "missing KALSHI-ACCESS-KEY, KALSHI-ACCESS-TIMESTAMP or KALSHI-ACCESS-SIGNATURE"
        try:
            ts = int(ts_text)
        except ValueError:
            return "KALSHI-ACCESS-TIMESTAMP must be Unix milliseconds"
        if abs(wall_ms() - ts) > self.auth_window * 1000:
            return "KALSHI-ACCESS-TIMESTAMP is too far from the server clock"
        key = self.keys.get(key_id)
        if key is None:
            return "unknown API key"
        if not verify(key, signature, ts, "GET", path):
            return "invalid signature"
        return None

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """``websockets``' ``process_request`` hook: a REST response, or ``None`` to upgrade."""
        path, _, query = request.path.partition("?")
        if path.rstrip("/") == WS_PATH:
            err = self.auth_error(request.headers, path)
            if err is not None:
                self.host.stats["auth_rejected"] += 1
                return _response(401, _auth_body(err))
            return None
        if path.startswith(rest.REST_PREFIX + "/"):
            self.host.stats["rest_requests"] += 1
            if self.rest_429_left > 0:
                self.rest_429_left -= 1
                self.host.stats["rest_429"] += 1
                return _response(429, b'{"error":"too many requests"}')
            err = self.auth_error(request.headers, path)
            if err is not None:
                self.host.stats["auth_rejected"] += 1
                return _response(401, _auth_body(err))
            q = urllib.parse.parse_qs(query, keep_blank_values=True)
            status, body = rest.handle(self.host.model, path, q, self.host.model.now_ms)
            if status == 200 and self.rest_corrupt_left > 0:
                body, corrupted = _corrupt_first_item(body)
                self.rest_corrupt_left -= corrupted
            return _response(status, body)
        return _response(404, b'{"error":{"code":"not_found","message":"not found","details":""}}')


LISTS: tuple[str, ...] = ("markets", "events", "series", "trades")
"""The keys of REST list responses whose first item a corruption fault replaces."""


def _corrupt_first_item(body: bytes) -> tuple[bytes, int]:
    """``body`` with the first item of its list replaced by a number (no object: undecodable as
    any item), and 1; or ``body`` unchanged and 0 when it has no non-empty list."""
    obj = decode(body)
    if isinstance(obj, dict):
        for key in LISTS:
            items = obj.get(key)
            if isinstance(items, list) and items:
                items[0] = 42
                return encode(obj), 1
    return body, 0


def _auth_body(message: str) -> bytes:
    return encode({"error": {"code": "authentication_error", "message": message, "details": ""}})


def _response(status: int, body: bytes) -> Response:
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)
