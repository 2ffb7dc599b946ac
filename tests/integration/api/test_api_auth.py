"""API keys, credits, rate limits, usage, and keeping secrets out of logs and storage."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
import psycopg
import pytest
from api_support import B45, api_settings, assert_problem, key_credits, key_usage
from litestar.testing import AsyncTestClient

from kalshibook import cli
from kalshibook.api.app import check_request, create_app
from kalshibook.api.auth import create_key
from kalshibook.api.middleware import await_charge
from kalshibook.storage import api_keys

pytestmark = [pytest.mark.db, pytest.mark.asyncio(loop_scope="session")]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_missing_malformed_unknown_and_revoked_keys(seeded_rw_url: str) -> None:
    issued = create_key(seeded_rw_url, name="alice", credits=100)
    prefix = issued.prefix
    async with AsyncTestClient(app=create_app(api_settings(seeded_rw_url))) as client:
        r = await client.get("/v1/markets")
        body = assert_problem(r, 401, "Authorization")
        assert "Bearer" in r.headers["www-authenticate"]
        assert "keys create" in body["detail"]
        for header in ("Basic abc", "Bearer", "Bearer kb_nothex!_x", f"Token {issued.key}"):
            assert_problem(
                await client.get("/v1/markets", headers={"Authorization": header}),
                401,
                "Authorization",
            )
        unknown = "kb_0123abcd_" + "A" * 43
        assert_problem(
            await client.get("/v1/markets", headers=bearer(unknown)), 401, "Authorization"
        )
        wrong_secret = f"kb_{prefix}_" + "B" * 43
        assert_problem(
            await client.get("/v1/markets", headers=bearer(wrong_secret)), 401, "Authorization"
        )
        r = await client.get("/v1/markets", headers=bearer(issued.key))
        assert r.status_code == 200
        assert r.headers["x-credits-remaining"] == "99"
        # revocation takes effect on the next request, even with the key cached
        api_keys.revoke_key(seeded_rw_url, prefix)
        body = assert_problem(
            await client.get("/v1/markets", headers=bearer(issued.key)), 401, "Authorization"
        )
        assert "revoked" in body["detail"]
        # public routes need no key
        for path in ("/health", "/metrics", "/schema/openapi.json"):
            assert (await client.get(path)).status_code == 200, path


async def test_credits_costs_and_usage(seeded_rw_url: str) -> None:
    issued = create_key(seeded_rw_url, name="bob", credits=7)
    async with AsyncTestClient(app=create_app(api_settings(seeded_rw_url))) as client:
        client.headers.update(bearer(issued.key))
        r = await client.get(f"/v1/markets/{B45}/orderbook")  # 5 credits
        assert r.status_code == 200
        assert r.headers["x-credits-remaining"] == "2"
        r = await client.get("/v1/trades", params={"limit": 1})  # 2 credits
        assert r.headers["x-credits-remaining"] == "0"
        r = await client.get("/v1/markets")  # 1 credit: none left
        body = assert_problem(r, 402, None)
        assert r.headers["x-credits-remaining"] == "0"
        assert f"keys topup {issued.prefix}" in body["detail"]
        # 0-credit routes still work with an empty balance
        assert (await client.get("/v1/status")).status_code == 200
        assert (await client.get(f"/v1/markets/{B45}/gaps")).status_code == 200
        assert api_keys.topup_key(seeded_rw_url, issued.prefix, 1) == 1
        r = await client.get("/v1/markets")
        assert r.status_code == 200
        assert r.headers["x-credits-remaining"] == "0"
        metrics = (await client.get("/metrics")).text
    lines = metrics.splitlines()
    assert 'kalshibook_api_credits_spent_total{route="/v1/markets/{ticker}/orderbook"} 5.0' in lines
    assert 'kalshibook_api_auth_rejections_total{reason="out_of_credits"} 1.0' in lines
    assert key_usage(seeded_rw_url, issued.prefix) == [
        ("/v1/markets/{ticker}/orderbook", 200, 5),
        ("/v1/trades", 200, 2),
        ("/v1/status", 200, 0),
        ("/v1/markets/{ticker}/gaps", 200, 0),
        ("/v1/markets", 200, 1),
    ]
    assert key_credits(seeded_rw_url, issued.prefix) == 0


async def test_concurrent_requests_spend_exactly_the_balance(seeded_rw_url, live_server_factory):
    """50 concurrent requests on a 10-credit key through a real uvicorn server and pool (the
    per-key concurrency cap lifted: the property here is the atomic charge)."""
    issued = create_key(seeded_rw_url, name="burst", credits=10)
    server = live_server_factory(api_settings(seeded_rw_url, max_concurrent_per_key=50))
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.get("/v1/markets", headers=bearer(issued.key)) for _ in range(50))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 10, statuses
    assert statuses.count(402) == 40, statuses
    remaining = sorted(
        int(r.headers["x-credits-remaining"]) for r in responses if r.status_code == 200
    )
    assert remaining == list(range(10))
    assert key_credits(seeded_rw_url, issued.prefix) == 0
    assert key_usage(seeded_rw_url, issued.prefix) == [("/v1/markets", 200, 1)] * 10


# The API's sessions (data pool "kalshibook-api", control pool "kalshibook-api-control") that
# connected during the test, and what they ran last.
API_SESSIONS = """
SELECT application_name, state, wait_event_type, query FROM pg_stat_activity
WHERE application_name LIKE 'kalshibook-api%%' AND backend_start >= %(since)s
"""


async def _sessions(url: str, since: object) -> list[tuple[str, str, str | None, str]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(API_SESSIONS, {"since": since})
        return [tuple(r) for r in await cur.fetchall()]  # type: ignore[misc]


def _charge_waits(rows: list[tuple[str, str, str | None, str]]) -> bool:
    return any(w == "Lock" and "UPDATE private.api_keys" in q for _, _, w, q in rows)


def _data_read(rows: list[tuple[str, str, str | None, str]], table: str) -> bool:
    return any(a == "kalshibook-api" and f"market.{table}" in q for a, _, _, q in rows)


async def _until(probe, within: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if await probe():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_charge_runs_beside_the_handler_only_for_a_covered_key(
    seeded_rw_url: str, live_server_factory
) -> None:
    """A key's first request (no balance known in this process) is charged before its handler
    runs; once its balance covers the request for every slot, the handler reads while the charge
    is in flight. Shown with the key's row locked by another transaction: the charge waits on
    the lock, and PostgreSQL shows whether the handler's read ran meanwhile. (A real server: the
    in-process test client blocks the test's event loop while a request runs.)"""
    issued = create_key(seeded_rw_url, name="overlap", credits=100)
    lock = "SELECT 1 FROM private.api_keys WHERE prefix = %s FOR UPDATE"
    async with await psycopg.AsyncConnection.connect(seeded_rw_url, autocommit=True) as admin:
        since = (await (await admin.execute("SELECT now()")).fetchone())[0]  # type: ignore[index]
        server = live_server_factory(api_settings(seeded_rw_url))
        async with httpx.AsyncClient(
            base_url=server.url, headers=bearer(issued.key), timeout=30
        ) as client:

            async def charge_waits() -> bool:
                return _charge_waits(await _sessions(seeded_rw_url, since))

            async def request_while_locked(path: str, table: str) -> tuple[httpx.Response, bool]:
                async with admin.transaction():
                    await admin.execute(lock, (issued.prefix,))
                    sent = asyncio.create_task(client.get(path))
                    assert await _until(charge_waits)
                    await asyncio.sleep(0.3)  # room for a read that must not happen
                    read = _data_read(await _sessions(seeded_rw_url, since), table)
                return await sent, read

            # first request: charged first, no read while the charge waits
            r, read = await request_while_locked(f"/v1/markets/{B45}/trades?limit=1", "trades")
            assert r.status_code == 200
            assert r.headers["x-credits-remaining"] == "98"
            assert not read
            # balance 98 >= 5 credits x 4 slots: the book is read while the charge waits
            r, read = await request_while_locked(f"/v1/markets/{B45}/orderbook", "orderbook")
            assert r.status_code == 200
            assert r.headers["x-credits-remaining"] == "93"
            assert read
            assert r.json()["data"]["ticker"] == B45


async def test_a_deadline_during_the_charge_stops_the_request_not_its_charge(
    seeded_rw_url: str, live_server_factory
) -> None:
    """A covered request whose handler is done but whose charge still waits (the key's row is
    locked) when its 1 s deadline strikes: the client gets the 504, and the charge, once the lock
    is gone, is spent and recorded with it (a timed-out request is not free), the slot given
    back; the 504 says the balance, like any charged response."""
    issued = create_key(seeded_rw_url, name="late charge", credits=100)
    lock = "SELECT 1 FROM private.api_keys WHERE prefix = %s FOR UPDATE"
    server = live_server_factory(api_settings(seeded_rw_url, request_timeout=1.0))
    async with (
        await psycopg.AsyncConnection.connect(seeded_rw_url, autocommit=True) as admin,
        httpx.AsyncClient(base_url=server.url, headers=bearer(issued.key), timeout=30) as client,
    ):
        first = await client.get("/v1/markets")
        assert first.headers["x-credits-remaining"] == "99"
        async with admin.transaction():
            await admin.execute(lock, (issued.prefix,))
            sent = asyncio.create_task(client.get(f"/v1/markets/{B45}/orderbook"))
            await asyncio.sleep(1.5)  # past the deadline, the charge still waiting on the lock
        r = await sent
        assert_problem(r, 504, None)
        # rendered outside the route (the middleware raised it), once the charge had run
        assert r.headers["x-credits-remaining"] == "94"
        assert (await client.get("/v1/markets")).headers["x-credits-remaining"] == "93"
    usage = key_usage(seeded_rw_url, issued.prefix)
    assert usage[1] == ("/v1/markets/{ticker}/orderbook", 504, 5), usage


def _http_scope(path: str, key: str) -> dict[str, object]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"authorization", f"Bearer {key}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
        "state": {},
    }


async def test_a_request_cancelled_while_it_settles_gives_its_slot_back(seeded_rw_url: str) -> None:
    """The ASGI server cancels a request right after its last body message (a server may, on a
    disconnect or at shutdown): the key's slot is free again and the charge spent is recorded,
    as for a request that ended normally. Driven straight through ASGI: no test client cancels."""
    issued = create_key(seeded_rw_url, name="cancelled", credits=100)
    app = create_app(api_settings(seeded_rw_url))
    inbox: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        auth = app.state.services.auth
        loop = asyncio.get_running_loop()
        running: list[asyncio.Task[None]] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                loop.call_soon(running[-1].cancel)

        for n in range(2):  # the second is covered: its charge runs beside the handler
            task = asyncio.create_task(app(_http_scope("/v1/markets", issued.key), receive, send))
            running.append(task)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert task.cancelled(), n
            key_id = next(iter(auth._keys.values()))[0]
            assert auth.in_flight(key_id) == 0, n
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await lifespan
    assert key_usage(seeded_rw_url, issued.prefix) == [("/v1/markets", 200, 1)] * 2
    assert key_credits(seeded_rw_url, issued.prefix) == 98


async def test_an_error_response_carries_the_balance_of_its_charge(seeded_rw_url: str) -> None:
    """A covered request that fails validation at once (its charge still running) is charged and
    says so, like any charged response."""
    issued = create_key(seeded_rw_url, name="bad input", credits=100)
    async with AsyncTestClient(app=create_app(api_settings(seeded_rw_url))) as client:
        client.headers.update(bearer(issued.key))
        assert (await client.get("/v1/markets")).headers["x-credits-remaining"] == "99"
        for expected in ("97", "95"):
            r = await client.get("/v1/trades", params={"start": "yesterday"})
            assert_problem(r, 400, "start")
            assert r.headers["x-credits-remaining"] == expected


async def test_an_unknown_query_parameter_is_charged_like_any_bad_input(seeded_rw_url: str) -> None:
    """The query check runs after auth and the charge: without a valid key the answer is the
    401, with one the 400 is charged the route's price and says the balance, like any 400."""
    issued = create_key(seeded_rw_url, name="typo", credits=100)
    async with AsyncTestClient(app=create_app(api_settings(seeded_rw_url))) as client:
        r = await client.get("/v1/trades", params={"ticker": B45})
        assert_problem(r, 401, "Authorization")
        client.headers.update(bearer(issued.key))
        assert (await client.get("/v1/markets")).headers["x-credits-remaining"] == "99"
        for expected in ("97", "95"):
            r = await client.get("/v1/trades", params={"ticker": B45})
            assert_problem(r, 400, "ticker")
            assert r.headers["x-credits-remaining"] == expected
        r = await client.get("/v1/markets", params=[("limit", "1"), ("limit", "2")])
        assert_problem(r, 400, "limit")
        assert r.headers["x-credits-remaining"] == "94"
    assert key_usage(seeded_rw_url, issued.prefix) == [
        ("/v1/markets", 200, 1),
        ("/v1/trades", 400, 2),
        ("/v1/trades", 400, 2),
        ("/v1/markets", 400, 1),
    ]
    assert key_credits(seeded_rw_url, issued.prefix) == 94


async def test_a_refused_charge_drops_the_handlers_result(seeded_rw_url: str) -> None:
    """The credits run out between two requests (another server spent them): the second request
    is admitted on the balance this process last saw, its handler reads, and its charge is
    refused: the client gets the refusal in the surface's own shape (/v1 and Kalshi's 402, the
    seed's 429 credits_exhausted), none of the data, no usage row; the key's next request is
    charged before any handler runs. A key revoked while cached: 401."""
    issued = create_key(seeded_rw_url, name="drained", credits=100)
    set_credits = "UPDATE private.api_keys SET credits = %s WHERE prefix = %s"
    surfaces = [
        (f"/v1/markets/{B45}/trades?limit=1", 402, "topup"),
        (f"/trade-api/v2/markets/trades?ticker={B45}", 402, "topup"),
        ("/markets", 429, "credits_exhausted"),
    ]
    async with AsyncTestClient(app=create_app(api_settings(seeded_rw_url))) as client:
        client.headers.update(bearer(issued.key))
        for path, status, said in surfaces:
            with psycopg.connect(seeded_rw_url, autocommit=True) as conn:
                conn.execute(set_credits, (100, issued.prefix))
            r = await client.get("/v1/markets")  # this process now knows a balance of 99
            assert r.status_code == 200
            assert r.headers["x-credits-remaining"] == "99"
            with psycopg.connect(seeded_rw_url, autocommit=True) as conn:
                conn.execute(set_credits, (0, issued.prefix))
            before = key_usage(seeded_rw_url, issued.prefix)
            r = await client.get(path)
            assert r.status_code == status, (path, r.text)
            assert r.headers["x-credits-remaining"] == "0", path
            assert said in r.text, (path, r.text)
            assert not {"data", "trades", "markets"} & set(r.json()), (path, r.text)
            assert key_usage(seeded_rw_url, issued.prefix) == before
        assert_problem(await client.get("/v1/markets"), 402, None)  # charged first now
        metrics = (await client.get("/metrics")).text
        assert 'kalshibook_api_auth_rejections_total{reason="out_of_credits"} 4.0' in metrics
        with psycopg.connect(seeded_rw_url, autocommit=True) as conn:
            conn.execute(set_credits, (50, issued.prefix))
        r = await client.get("/v1/markets")
        assert r.status_code == 200
        assert r.headers["x-credits-remaining"] == "49"
        api_keys.revoke_key(seeded_rw_url, issued.prefix)  # revoked while cached, balance 49
        for path in ("/v1/markets", "/trade-api/v2/markets", "/v1/series"):
            r = await client.get(path)
            assert r.status_code == 401, (path, r.text)


async def test_rate_limit_per_key(seeded_rw_url: str) -> None:
    issued = create_key(seeded_rw_url, name="fast", credits=1000)
    other = create_key(seeded_rw_url, name="other", credits=1000)
    settings = api_settings(seeded_rw_url, rate_limit_per_second=5.0)
    async with AsyncTestClient(app=create_app(settings)) as client:
        results = [await client.get("/v1/series", headers=bearer(issued.key)) for _ in range(12)]
        statuses = [r.status_code for r in results]
        assert statuses[:5] == [200] * 5
        assert 429 in statuses
        limited = next(r for r in results if r.status_code == 429)
        assert_problem(limited, 429, None)
        assert int(limited.headers["retry-after"]) >= 1
        # another key has its own bucket
        assert (await client.get("/v1/series", headers=bearer(other.key))).status_code == 200
    # rate-limited requests are not charged
    assert key_credits(seeded_rw_url, issued.prefix) == 1000 - statuses.count(200)


async def test_keys_cli_and_secrets_never_logged_or_stored(
    seeded_rw_url, monkeypatch, capsys, caplog, live_server_factory
) -> None:
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", seeded_rw_url)
    caplog.set_level(logging.DEBUG)
    assert cli.main(["keys", "create", "--name", "carol", "--credits", "50"]) == 0
    out = capsys.readouterr().out
    key = out.strip().splitlines()[-1]
    prefix, secret = api_keys.parse_key(key) or ("", "")
    assert prefix
    assert secret
    assert cli.main(["keys", "topup", prefix, "--credits", "25"]) == 0
    assert f"{prefix}: 75 credits" in capsys.readouterr().out

    server = live_server_factory(api_settings(seeded_rw_url))
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/v1/series", headers=bearer(key))).status_code == 200
        bad = f"kb_{prefix}_" + secret[::-1]
        assert (await client.get("/v1/series", headers=bearer(bad))).status_code == 401

    assert cli.main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert prefix in listing
    assert "carol" in listing
    assert "74" in listing
    assert cli.main(["keys", "revoke", prefix]) == 0
    assert cli.main(["keys", "revoke", "ffffffff"]) == 1
    assert cli.main(["keys", "topup", prefix, "--credits", "0"]) == 1
    captured = capsys.readouterr()
    assert "revoked" in captured.out
    assert "no API key with prefix 'ffffffff'" in captured.err

    for text in (caplog.text, captured.out, captured.err, listing):
        assert secret not in text
        assert secret[::-1] not in text
    with psycopg.connect(seeded_rw_url) as conn:
        rows = conn.execute("SELECT k::text FROM private.api_keys k").fetchall()
        usage = conn.execute("SELECT u::text FROM private.api_usage u").fetchall()
        stored = conn.execute(
            "SELECT key_hash FROM private.api_keys WHERE prefix = %s", (prefix,)
        ).fetchone()
    for (row,) in rows + usage:
        assert secret not in row
    assert stored == (api_keys.hash_secret(secret),)


async def test_auth_disabled_for_local_dev(seeded_url: str) -> None:
    settings = api_settings(seeded_url, require_auth=False)
    async with AsyncTestClient(app=create_app(settings)) as client:
        r = await client.get("/v1/markets")
        assert r.status_code == 200
        assert "x-credits-remaining" not in r.headers


async def test_every_route_waits_for_its_charge() -> None:
    """Litestar runs only the innermost layer's ``after_request``: a router, controller or
    handler that set its own would let a covered request's data out before its charge."""
    app = create_app(api_settings("postgresql://nobody@127.0.0.1:1/none"))
    handlers = [h for route in app.routes for h in getattr(route, "route_handlers", [])]
    assert len(handlers) > 40
    for h in handlers:  # the hook Litestar takes is the innermost layer's that sets one
        hooks = [layer.after_request for layer in h.ownership_layers if layer.after_request]
        assert hooks == [await_charge], h
        # the same for before_request: every route checks its parameters (/v1: its query)
        checks = [layer.before_request for layer in h.ownership_layers if layer.before_request]
        assert checks == [check_request], h
