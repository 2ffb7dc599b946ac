"""Forged cursors through the real app: correctly signed (as by someone who learnt the secret) but
holding positions PostgreSQL would reject. Each must be a 400 naming ``cursor`` and be logged as
a client error, never a 500 with a traceback (issue 16, point 4)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from api_support import B45, T0, TEST_CURSOR_SECRET, assert_problem
from litestar.testing import AsyncTestClient

pytestmark = pytest.mark.db


def forged(kind: str, position: Any, secret: str = TEST_CURSOR_SECRET) -> str:
    payload = msgspec.msgpack.encode((1, kind, position))
    key = hmac.new(secret.encode(), b"kalshibook cursor v1", hashlib.sha256).digest()
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode()


T = datetime(2026, 1, 15, 12, tzinfo=UTC)
CASES = [
    (f"/v1/markets/{B45}/deltas", "deltas", (T, 2**64 - 1, 1)),
    (f"/v1/markets/{B45}/deltas", "deltas", (T, 1, 2**63)),
    ("/v1/markets", "markets", ("KX\x00A",)),
    ("/v1/series", "series", ("\x00",)),
    ("/v1/events", "events", ("a" * 10_000,)),
    ("/v1/settlements", "settlements", (None, "KX\x00")),
    (f"/v1/markets/{B45}/gaps", "gaps", (T, T, T, "re\x00sync")),
    (f"/v1/markets/{B45}/trades", "trades", ("2026-01-15T12:00:00", 1, str(uuid.UUID(int=1)))),
    (f"/v1/markets/{B45}/trades", "trades", (T, 2**64 - 1, str(uuid.UUID(int=1)))),
]


@pytest.mark.parametrize(("path", "kind", "position"), CASES)
async def test_forged_cursor_is_a_400_not_a_500(
    client: AsyncTestClient[Any],
    caplog: pytest.LogCaptureFixture,
    path: str,
    kind: str,
    position: Any,
) -> None:
    with caplog.at_level(logging.WARNING):
        r = await client.get(path, params={"cursor": forged(kind, position)})
    assert_problem(r, 400, "cursor")
    assert not [rec for rec in caplog.records if rec.exc_info], "a traceback was logged"


async def test_cursor_of_another_deployment_is_a_400(client: AsyncTestClient[Any]) -> None:
    """The key is the deployment's secret: a cursor signed with the database URL (the old key
    material, known to anyone with the example password) or another secret does not verify."""
    good = forged("deltas", (T0, 1, 1))
    r = await client.get(f"/v1/markets/{B45}/deltas", params={"cursor": good})
    assert r.status_code == 200, r.text
    for other in ("postgresql://kalshibook:kalshibook@localhost:5432/kalshibook", "x" * 40):
        bad = forged("deltas", (T0, 1, 1), secret=other)
        assert_problem(
            await client.get(f"/v1/markets/{B45}/deltas", params={"cursor": bad}), 400, "cursor"
        )
