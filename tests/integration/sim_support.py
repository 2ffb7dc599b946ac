"""Helpers for the simulator's integration tests (plain websockets + httpx clients)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from websockets.asyncio.client import ClientConnection, connect

from kalshibook.kalshi.auth import PrivateKey, generate_key_pair, signed_headers
from kalshibook.kalshi.ws import KalshiWebSocket
from kalshibook.settings import KalshiSettings
from kalshibook.sim import SimConfig, SimServer

KEY_ID = "0f3c9b52-6f5e-4d52-9d7a-3c1f2b7e8a01"
ED_KEY_ID = "ed25519-key"


@functools.cache
def rsa_pair() -> tuple[bytes, bytes]:
    return generate_key_pair("rsa")


@functools.cache
def ed_pair() -> tuple[bytes, bytes]:
    return generate_key_pair("ed25519")


def private_key(kind: str = "rsa") -> PrivateKey:
    pem = rsa_pair()[0] if kind == "rsa" else ed_pair()[0]
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return key


def keys_config() -> dict[str, str]:
    return {KEY_ID: rsa_pair()[1].decode(), ED_KEY_ID: ed_pair()[1].decode()}


def sim_websocket(sim: SimServer, command_timeout: float) -> KalshiWebSocket:
    """kalshibook's WebSocket client of ``sim`` (started with ``no_auth=True``)."""
    return KalshiWebSocket(
        KalshiSettings(rest_url=sim.rest_url, ws_url=sim.ws_url),
        command_timeout=command_timeout,
        open_timeout=5.0,
    )


@contextlib.asynccontextmanager
async def running_sim(**fields: Any) -> AsyncIterator[SimServer]:
    """A started simulator; auth on with both test keys unless ``no_auth=True``."""
    fields.setdefault("markets", 20)
    fields.setdefault("autopump", False)
    if not fields.get("no_auth"):
        fields.setdefault("public_keys", keys_config())
    async with SimServer(SimConfig(**fields)) as sim:
        yield sim


def ws_headers(key_id: str = KEY_ID, kind: str = "rsa", **kw: Any) -> dict[str, str]:
    return signed_headers(key_id, private_key(kind), "GET", "/trade-api/ws/v2", **kw)


class Signer(httpx.Auth):
    """httpx auth that signs every request like Kalshi's clients do."""

    def __init__(self, key_id: str = KEY_ID, kind: str = "rsa") -> None:
        self.key_id = key_id
        self.key = private_key(kind)

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers.update(
            signed_headers(self.key_id, self.key, request.method, request.url.path)
        )
        yield request


@contextlib.asynccontextmanager
async def rest_client(sim: SimServer, signed: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=sim.rest_url, auth=Signer() if signed else None, timeout=10
    ) as client:
        yield client


@contextlib.asynccontextmanager
async def ws_client(sim: SimServer, signed: bool = True) -> AsyncIterator[ClientConnection]:
    headers = ws_headers() if signed and not sim.config.no_auth else None
    async with connect(
        sim.ws_url,
        additional_headers=headers,
        max_size=None,
        max_queue=None,
        open_timeout=5,
        close_timeout=2,
    ) as ws:
        yield ws


async def send(ws: ClientConnection, cmd: dict[str, Any]) -> None:
    await ws.send(msgspec.json.encode(cmd).decode())


async def recv(ws: ClientConnection, within: float = 2.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        raw = await ws.recv()
    frame = msgspec.json.decode(raw)
    assert isinstance(frame, dict)
    return frame


async def recv_all(ws: ClientConnection, quiet: float = 0.2) -> list[dict[str, Any]]:
    """Every frame until none arrives for ``quiet`` seconds."""
    out: list[dict[str, Any]] = []
    while True:
        try:
            out.append(await recv(ws, quiet))
        except TimeoutError:
            return out


async def recv_raw_all(ws: ClientConnection, quiet: float = 0.2) -> list[str | bytes]:
    out: list[str | bytes] = []
    while True:
        try:
            async with asyncio.timeout(quiet):
                out.append(await ws.recv())
        except TimeoutError:
            return out


def seq_gaps(frames: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """``(sid, expected, got)`` for every seq discontinuity per sid."""
    last: dict[int, int] = {}
    gaps = []
    for f in frames:
        if "seq" not in f:
            continue
        sid, seq = f["sid"], f["seq"]
        if sid in last and seq != last[sid] + 1:
            gaps.append((sid, last[sid] + 1, seq))
        last[sid] = seq
    return gaps


__all__ = [
    "ED_KEY_ID",
    "KEY_ID",
    "Signer",
    "recv",
    "recv_all",
    "recv_raw_all",
    "rest_client",
    "running_sim",
    "send",
    "seq_gaps",
    "ws_client",
    "ws_headers",
]
