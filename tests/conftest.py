"""Test harness: a real TimescaleDB, a migrated template database cloned per test.

Where the database comes from, in order:
1. ``KALSHIBOOK_TEST_DATABASE_URL`` (any database on the server; we create our own next to it);
2. testcontainers with the pinned ``timescale/timescaledb`` image, when a Docker engine answers;
3. the local cluster of ``scripts/db.sh`` (installed and started on demand).
If none works the session stops with one clear error.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from kalshibook.settings import CoreSettings, Settings
from kalshibook.storage import migrate
from kalshibook.storage.urls import redact, with_database

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "kalshi"
TIMESCALE_IMAGE = "timescale/timescaledb:2.19.3-pg16"
SESSION_TAG = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"


def _docker_answers() -> bool:
    """True when a Docker engine answers a ping on its socket."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True  # a remote engine: let testcontainers try it
    path = host.removeprefix("unix://")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(3)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(256)
    except OSError:
        return False


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """Admin URL of a TimescaleDB server (database ``postgres``)."""
    explicit = os.environ.get("KALSHIBOOK_TEST_DATABASE_URL")
    if explicit:
        yield with_database(explicit, "postgres")
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-untyped]

        with PostgresContainer(TIMESCALE_IMAGE, driver=None) as pg:
            yield with_database(pg.get_connection_url(), "postgres")
        return
    proc = subprocess.run(
        [str(ROOT / "scripts" / "db.sh"), "start"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.exit(
            "no test database: KALSHIBOOK_TEST_DATABASE_URL is unset, no Docker engine answers, "
            f"and scripts/db.sh start failed:\n{proc.stderr.strip()[-2000:]}",
            returncode=3,
        )
    yield with_database(proc.stdout.strip().splitlines()[-1], "postgres")


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    """Name of a database migrated to head, used as the template of every test database."""
    name = f"kb_tpl_{SESSION_TAG}"
    try:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        pytest.exit(f"cannot use test database server {redact(server_url)}: {exc}", returncode=3)
    migrate.upgrade(with_database(server_url, name))
    yield name
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _create_from_template(server_url: str, template: str) -> str:
    name = f"kb_t_{SESSION_TAG}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return name


@pytest.fixture
def db_url(server_url: str, template_db: str) -> Iterator[str]:
    """URL of a fresh, migrated database private to this test."""
    name = _create_from_template(server_url, template_db)
    yield with_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """URL of a fresh database with no schema at all (for migration tests)."""
    name = f"kb_e_{SESSION_TAG}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield with_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """Settings pointing at this test's database and a private data directory."""
    return Settings(core=CoreSettings(database_url=db_url, data_dir=str(tmp_path / "data")))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
