"""API test fixtures: seeded databases, app clients with a key, live uvicorn servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from api_support import LiveServer, api_settings, insert_seed
from litestar.testing import AsyncTestClient

from kalshibook.api.app import create_app
from kalshibook.api.auth import create_key
from kalshibook.settings import Settings


@pytest.fixture(scope="module")
def seeded_url(databases: Any) -> Iterator[str]:
    """A seeded database shared by one module's read-only tests."""
    with databases.database("api_ro") as url:
        insert_seed(url)
        yield url


@pytest.fixture
def seeded_rw_url(db_url: str) -> str:
    """A seeded database private to one test (for tests that write)."""
    insert_seed(db_url)
    return db_url


@pytest.fixture(scope="module")
def module_key(seeded_url: str) -> str:
    return create_key(seeded_url, name="module tests", credits=10**9).key


@pytest.fixture
async def client(seeded_url: str, module_key: str) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(api_settings(seeded_url))
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {module_key}"
        yield c


@pytest.fixture
def live_server_factory() -> Iterator[Any]:
    servers: list[LiveServer] = []

    def start(settings: Settings) -> LiveServer:
        server = LiveServer(create_app(settings))
        server.__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
async def client_rw(seeded_rw_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    """An app client with a key on the test's private seeded database."""
    key = create_key(seeded_rw_url, name="rw tests", credits=10**9).key
    app = create_app(api_settings(seeded_rw_url))
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {key}"
        yield c
