"""Test harness: a real TimescaleDB, a migrated template database cloned per test.

Where the database server comes from, in order:
1. ``KALSHIBOOK_TEST_DATABASE_URL`` (any database on the server; we create our own next to it);
2. testcontainers with the pinned ``timescale/timescaledb`` image, when a Docker engine answers;
3. the local cluster of ``scripts/db.sh`` (installed and started on demand).
If none works the session stops with one clear error.

Editions: that server runs the TimescaleDB edition users run (Community: continuous aggregates,
policies, compression). Tests marked ``both_editions`` run a second time on an Apache-2 edition
server of the same build (``KALSHIBOOK_TEST_APACHE_DATABASE_URL``, else
``KALSHIBOOK_DB_EDITION=apache scripts/db.sh start``), the fallback path the product supports.

Every database a test uses comes from one factory (:class:`Databases`): created from the
edition's migrated template (or empty), dropped afterwards.

The suite never reads outside the repository: an audit hook records every file opened (or
directory listed) beside the repository root and fails the session if there is one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from kalshibook.settings import CoreSettings, Settings
from kalshibook.storage import migrate
from kalshibook.storage.urls import redact, with_database

ROOT = Path(__file__).resolve().parents[1]
TIMESCALE_IMAGE = "timescale/timescaledb:2.19.3-pg16"
SESSION_TAG = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
EDITIONS = ("community", "apache")


# -- the suite stays inside the repository --------------------------------------------------------

_TEMP = Path(tempfile.gettempdir()).resolve()
if _TEMP in ROOT.parents:
    # A checkout inside the temporary directory (a clone in /tmp): what the suite and the code
    # under test make there would lie beside the repository, where the suite must not read, so
    # the session's temporary directory (TMPDIR, inherited by workers and subprocesses) moves
    # inside the repository's ignored .data/.
    _OWN_TEMP = ROOT / ".data" / "tmp"
    _OWN_TEMP.mkdir(parents=True, exist_ok=True)
    _OWN_TEMP.chmod(0o1777)  # like /tmp: the postgres user's clusters live there too
    os.environ["TMPDIR"] = str(_OWN_TEMP)
    tempfile.tempdir = None

OUTSIDE_READS: list[str] = []
_ROOT_PREFIX = str(ROOT) + os.sep
_WATCHED = str(ROOT.parent) + os.sep
_ALLOWED = tuple(
    str(Path(p).resolve()) + os.sep
    for p in {sys.prefix, sys.base_prefix, tempfile.gettempdir(), *sys.path}
    if p and not (str(ROOT.parent) + os.sep).startswith(str(Path(p).resolve()) + os.sep)
)
_AUDITED = frozenset({"open", "os.listdir", "os.scandir", "glob.glob"})


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in _AUDITED or not args or not isinstance(args[0], str | bytes | os.PathLike):
        return
    path = os.path.abspath(os.fsdecode(args[0]))
    if (
        (path + os.sep).startswith(_WATCHED)
        and not (path + os.sep).startswith(_ROOT_PREFIX)
        and not path.startswith(_ALLOWED)
    ):
        OUTSIDE_READS.append(path)


if str(ROOT.parent) != ROOT.anchor:  # a repository at the filesystem root has no "beside"
    sys.addaudithook(_audit)


@pytest.fixture
def outside_reads() -> list[str]:
    """Paths beside the repository the suite opened so far (the audit hook's record)."""
    return OUTSIDE_READS


@pytest.fixture(scope="session", autouse=True)
def _reads_stay_inside_the_repository() -> Iterator[None]:
    """An error at the end of the session (of each pytest-xdist worker too: the controller does
    not look at a worker's exit status) when anything outside the repository was read. Set up
    first, so torn down after every other session fixture."""
    yield
    if OUTSIDE_READS:
        listed = "\n  ".join(sorted(set(OUTSIDE_READS)))
        pytest.fail(f"the test suite read outside the repository:\n  {listed}", pytrace=False)


# -- database servers, one per edition ------------------------------------------------------------


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


def _local_cluster(edition: str) -> str:
    env = {**os.environ, "KALSHIBOOK_DB_EDITION": edition}
    proc = subprocess.run(
        [str(ROOT / "scripts" / "db.sh"), "start"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        pytest.exit(
            f"no {edition}-edition test database: scripts/db.sh start failed:\n"
            f"{proc.stderr.strip()[-2000:]}",
            returncode=3,
        )
    return with_database(proc.stdout.strip().splitlines()[-1], "postgres")


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """Admin URL (database ``postgres``) of the Community-edition TimescaleDB server."""
    explicit = os.environ.get("KALSHIBOOK_TEST_DATABASE_URL")
    if explicit:
        yield with_database(explicit, "postgres")
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-untyped]

        with PostgresContainer(TIMESCALE_IMAGE, driver=None) as pg:
            yield with_database(pg.get_connection_url(), "postgres")
        return
    yield _local_cluster("community")


@pytest.fixture(scope="session")
def apache_server_url() -> Iterator[str]:
    """Admin URL of a server running the same build as the Apache-2 edition."""
    explicit = os.environ.get("KALSHIBOOK_TEST_APACHE_DATABASE_URL")
    if explicit:
        yield with_database(explicit, "postgres")
        return
    if os.environ.get("KALSHIBOOK_TEST_DATABASE_URL") or _docker_answers():
        pytest.skip("no Apache-edition server: set KALSHIBOOK_TEST_APACHE_DATABASE_URL")
    yield _local_cluster("apache")


# -- the one database factory ---------------------------------------------------------------------


JOB_STATS = "SELECT to_regclass('_timescaledb_internal.bgw_job_stat')"


class Databases:
    """Creates and drops the test databases of one server (migrated from a template, or empty)."""

    def __init__(self, server: str) -> None:
        self.server = server
        self._template: str | None = None

    def _admin(self, statement: sql.Composable) -> None:
        with psycopg.connect(self.server, autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)

    def template(self) -> str:
        """Name of a database migrated to head, the template of every migrated test database.

        The template is closed to connections once migrated: TimescaleDB's job scheduler would
        otherwise sit in it and make every ``CREATE DATABASE ... TEMPLATE`` fail.
        """
        if self._template is None:
            name = f"kb_tpl_{SESSION_TAG}"
            try:
                self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.Error as exc:
                pytest.exit(f"cannot use test database server {redact(self.server)}: {exc}", 3)
            try:
                migrate.upgrade(with_database(self.server, name))
            except Exception as exc:
                self._admin(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                pytest.exit(f"cannot migrate a template on {redact(self.server)}: {exc}", 3)
            self._forget_job_runs(name)
            self._admin(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                    sql.Identifier(name)
                )
            )
            with psycopg.connect(self.server, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
            self._template = name
        return self._template

    def _forget_job_runs(self, name: str) -> None:
        """Stop the template's job scheduler and clear its job statistics (Community edition):
        policies that ran while it was migrated (or lost a deadlock to the migration, which
        retries) are no runs of the test databases cloned from it."""
        with psycopg.connect(with_database(self.server, name), autocommit=True) as conn:
            stats = conn.execute(JOB_STATS).fetchone()
            if stats is not None and stats[0] is not None:
                conn.execute("SELECT _timescaledb_functions.stop_background_workers()")
                conn.execute("DELETE FROM _timescaledb_internal.bgw_job_stat")
                conn.execute("DELETE FROM _timescaledb_internal.bgw_job_stat_history")

    def create(self, tag: str = "t", *, migrated: bool = True) -> str:
        """URL of a new database (a copy of the migrated template, or empty)."""
        name = f"kb_{tag}_{SESSION_TAG}_{uuid.uuid4().hex[:8]}"
        if migrated:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(self.template())
            )
        else:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        self._admin(statement)
        return with_database(self.server, name)

    def drop(self, url: str) -> None:
        name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        self._admin(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
        )

    @contextmanager
    def database(self, tag: str = "t", *, migrated: bool = True) -> Iterator[str]:
        url = self.create(tag, migrated=migrated)
        try:
            yield url
        finally:
            self.drop(url)

    def close(self) -> None:
        if self._template is not None:
            self.drop(with_database(self.server, self._template))


@pytest.fixture(scope="session")
def databases(server_url: str) -> Iterator[Databases]:
    """The database factory of the Community-edition server."""
    factory = Databases(server_url)
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def apache_databases(apache_server_url: str) -> Iterator[Databases]:
    """The database factory of the Apache-edition server."""
    factory = Databases(apache_server_url)
    yield factory
    factory.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "edition" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_editions"
    ):
        metafunc.parametrize("edition", EDITIONS, indirect=True)


@pytest.fixture
def edition(request: pytest.FixtureRequest) -> str:
    """The TimescaleDB edition of this test's database (both for ``both_editions`` tests)."""
    return str(getattr(request, "param", "community"))


@pytest.fixture
def edition_databases(request: pytest.FixtureRequest, edition: str) -> Databases:
    name = "databases" if edition == "community" else "apache_databases"
    factory: Databases = request.getfixturevalue(name)
    return factory


@pytest.fixture
def db_url(edition_databases: Databases) -> Iterator[str]:
    """URL of a fresh, migrated database private to this test."""
    with edition_databases.database() as url:
        yield url


@pytest.fixture
def empty_db_url(edition_databases: Databases) -> Iterator[str]:
    """URL of a fresh database with no schema at all (for migration tests)."""
    with edition_databases.database("e", migrated=False) as url:
        yield url


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """Settings pointing at this test's database and a private data directory."""
    return Settings(core=CoreSettings(database_url=db_url, data_dir=str(tmp_path / "data")))
