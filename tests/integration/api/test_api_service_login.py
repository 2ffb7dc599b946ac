"""The real app on the API's own least-privilege login (issue 16, point 5): every kind of endpoint
answers, credits are charged and usage recorded, with no grant beyond ``kalshibook_api``'s."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from api_support import B45, T0, api_settings
from litestar.testing import AsyncTestClient

from kalshibook.api.app import create_app
from kalshibook.api.auth import create_key
from kalshibook.cli.service_user import login_url
from kalshibook.storage.service_roles import create_service_login

pytestmark = pytest.mark.db


async def test_every_endpoint_kind_works_on_the_api_login(seeded_rw_url: str) -> None:
    name = f"kb_api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(seeded_rw_url, autocommit=True) as owner:
        api_url = login_url(seeded_rw_url, name, create_service_login(owner, "api", name))
    key = create_key(seeded_rw_url, name="svc", credits=1000)
    at = T0.strftime("%Y-%m-%dT%H:%M:%SZ")
    paths = [
        "/v1/series",
        "/v1/series/KXHIGHNY",
        "/v1/events/KXHIGHNY-26JAN15",
        f"/v1/markets/{B45}",
        f"/v1/markets/{B45}/trades",
        "/v1/settlements",
        f"/v1/markets/{B45}/candles?interval=1h&start={at}",
        f"/v1/markets/{B45}/orderbook?at={at}",
        f"/v1/markets/{B45}/deltas?start={at}",
        f"/v1/markets/{B45}/gaps",
        "/v1/status",
    ]
    async with AsyncTestClient(app=create_app(api_settings(api_url))) as client:
        client.headers["Authorization"] = f"Bearer {key.key}"
        for path in paths:
            r = await client.get(path)
            assert r.status_code == 200, (path, r.text)
        assert (await client.get("/health")).status_code == 200
    with psycopg.connect(seeded_rw_url) as owner:
        used = owner.execute("SELECT count(*), sum(cost) FROM private.api_usage").fetchone()
        credits = owner.execute(
            "SELECT credits FROM private.api_keys WHERE prefix = %s", (key.prefix,)
        ).fetchone()
    assert used is not None
    assert used[0] == len(paths)
    assert credits == (1000 - used[1],)
