"""API test fixtures: seeded databases, app clients with a key, live uvicorn servers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from api_support import LiveServer, api_settings, insert_seed
from litestar.testing import AsyncTestClient
from psycopg import sql

from kalshibook.api.app import create_app
from kalshibook.api.auth import create_key
from kalshibook.settings import Settings
from kalshibook.storage.urls import with_database


def _fresh_db(server_url: str, template_db: str, tag: str) -> str:
    name = f"kb_api_{tag}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    return name


def _drop_db(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def seeded_url(server_url: str, template_db: str) -> Iterator[str]:
    """A seeded database shared by one module's read-only tests."""
    name = _fresh_db(server_url, template_db, "ro")
    url = with_database(server_url, name)
    insert_seed(url)
    yield url
    _drop_db(server_url, name)


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
