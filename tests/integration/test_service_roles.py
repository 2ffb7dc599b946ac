"""Least privilege (issue 16, point 5): the collector and the API run as their own logins, each
with only the grants it needs; as a superuser they refuse to start or warn loudly.

The collector's login runs the real writer over every table (the writer's own exact-values tests,
on a database URL of that login); the API's login serves every endpoint kind through the real app.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
import test_writer

from kalshibook import cli
from kalshibook.cli import serve
from kalshibook.cli.collect import _check_schema
from kalshibook.cli.service_user import login_url
from kalshibook.collector.backfill import Backfill as CollectorBackfill
from kalshibook.errors import ConfigError, InvalidInput
from kalshibook.settings import CoreSettings, Settings
from kalshibook.storage.pool import make_pool
from kalshibook.storage.service_roles import create_service_login, superuser_refusal

pytestmark = pytest.mark.db


def service_login(db_url: str, service: str) -> str:
    name = f"kb_{service}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        password = create_service_login(conn, service, name)
    return login_url(db_url, name, password)


async def test_collector_login_writes_every_table(db_url: str, tmp_path: Path) -> None:
    collector = service_login(db_url, "collector")
    await test_writer.test_rows_of_every_table_land_exactly(collector, tmp_path)
    await test_writer.test_reference_upserts_and_settlement_confirmation(
        collector, tmp_path / "ref"
    )
    with psycopg.connect(collector, autocommit=True) as conn:
        assert conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone() == (False,)
        conn.execute("CREATE TEMP TABLE stage (x int)")  # the COPY staging table of trades
        for forbidden in (
            "SELECT * FROM private.api_keys",
            "INSERT INTO private.api_usage (key_id, endpoint, cost, status, request_id)"
            " VALUES (1, 'x', 0, 200, 'x')",
            "CREATE TABLE market.mine (x int)",
            "DROP TABLE market.trades",
            "TRUNCATE market.trades",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(forbidden)


def test_api_login_reads_market_and_settles_credits_only(db_url: str) -> None:
    api = service_login(db_url, "api")
    with psycopg.connect(db_url, autocommit=True) as owner:
        owner.execute(
            "INSERT INTO private.api_keys (name, prefix, key_hash, credits)"
            " VALUES ('k', 'abcdef12', '\\x00', 10)"
        )
        key_id = owner.execute("SELECT id FROM private.api_keys").fetchone()
    with psycopg.connect(api, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM market.trades").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM market.candles_trades_1m").fetchone() == (0,)
        conn.execute("UPDATE private.api_keys SET credits = credits - 1, last_used_at = now()")
        conn.execute(
            "INSERT INTO private.api_usage (key_id, endpoint, cost, status, request_id)"
            " VALUES (%s, '/v1/series', 1, 200, 'r')",
            key_id,
        )
        for forbidden in (
            "INSERT INTO market.series (ticker, raw) VALUES ('X', '{}')",
            "UPDATE market.markets SET status = 'x'",
            "UPDATE private.api_keys SET key_hash = '\\x01'",
            "UPDATE private.api_keys SET revoked_at = NULL",
            "INSERT INTO private.api_keys (name, prefix, key_hash, credits)"
            " VALUES ('x', 'deadbeef', '\\x00', 1000000)",
            "DELETE FROM private.api_usage",
            "SELECT * FROM private.writer_progress",
            "CREATE TEMP TABLE t (x int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="denied"):
                conn.execute(forbidden)


def test_service_login_validation(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(InvalidInput):
            create_service_login(conn, "admin", "kb_x")
        for bad in ("Robert'); --", "pg_x", "kalshibook_api", "postgres"):
            with pytest.raises(InvalidInput):
                create_service_login(conn, "api", bad)


async def test_collector_warns_or_refuses_as_superuser(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        await _check_schema(db_url, refuse_superuser=False)
    assert any("superuser" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigError, match="refuses to run as the database superuser"):
        await _check_schema(db_url, refuse_superuser=True)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        await _check_schema(service_login(db_url, "collector"), refuse_superuser=True)
    assert not [r for r in caplog.records if "superuser" in r.getMessage()]


def test_serve_refuses_a_superuser_when_told_to(db_url: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", db_url)
    monkeypatch.setenv("KALSHIBOOK_REFUSE_SUPERUSER", "true")
    assert cli.main(["serve", "--port", "0"]) == 2  # a configuration error
    err = capsys.readouterr().err
    assert "refuses to run as the database superuser" in err
    assert "service-user create api" in err


def test_service_user_cli_writes_a_private_url_file(
    db_url: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", db_url)
    target = tmp_path / "api_url"
    name = f"kb_cli_{uuid.uuid4().hex[:8]}"
    assert cli.main(["service-user", "create", "api", name, "--url-file", str(target)]) == 0
    out = capsys.readouterr().out
    assert target.stat().st_mode & 0o777 == 0o600
    url = target.read_text().strip()
    assert url.split("@")[0].split(":")[-1] not in out  # the password is not printed
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (name,)
    assert cli.main(["service-user", "create", "api", name + "x", "--url-file", str(target)]) == 2


def test_superuser_refusal_text() -> None:
    assert superuser_refusal("api", "kb", superuser=False, refuse=True) is None
    warn = superuser_refusal("api", "postgres", superuser=True, refuse=False)
    assert warn is not None
    assert "is running as the database superuser 'postgres'" in warn
    assert "KALSHIBOOK_REFUSE_SUPERUSER=true" in warn


class _DrainedWriter:
    async def drain(self) -> None:
        return None


async def test_the_collectors_refresh_says_what_to_run_as_the_owner(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The collector's login may not refresh the candle aggregates (only their owner may): after
    a trade backfill its warning names the command the owner is to run."""
    login = service_login(db_url, "collector")
    settings = Settings(core=CoreSettings(database_url=login))
    pool = make_pool(settings, min_size=1, max_size=1, name="test-refresh")
    await pool.open(wait=True)
    try:
        task = CollectorBackfill(
            rest=cast(Any, None),
            writer=cast(Any, _DrainedWriter()),
            pool=pool,
            work=cast(Any, None),
            catalog=cast(Any, None),
            metrics=cast(Any, None),
            stop=asyncio.Event(),
        )
        start = datetime(2026, 1, 10, 14, 30, 10, tzinfo=UTC)
        with caplog.at_level(logging.WARNING):
            await task.refresh_candles(start, start + timedelta(hours=2))
    finally:
        await pool.close()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "candles not refreshed after the trade backfill" in warning
    assert "must be owner of view candles_trades_1m" in warning
    assert warning.endswith(
        "owner runs: kalshibook refresh-candles --start 2026-01-10T14:29:00Z "
        "--end 2026-01-10T16:32:00Z --source trades"
    ), warning


def test_serve_refuses_a_superuser_replica_login_too(db_url: str) -> None:
    """The primary's login is the API's service login; a replica URL with the superuser is
    refused as well (reads there would run with every privilege); an unreachable replica is
    only warned about (the API skips it until it answers)."""
    api_url = service_login(db_url, "api")
    with pytest.raises(ConfigError, match="refuses to run as the database superuser"):
        serve._preflight(api_url, True, [db_url])
    serve._preflight(api_url, True, ["postgresql://nobody:x@127.0.0.1:1/none"])
