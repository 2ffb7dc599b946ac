"""Read-only SQL users: read market data, write nothing, see nothing private, time out."""

from __future__ import annotations

import uuid
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest

from kalshibook import cli
from kalshibook.errors import InvalidInput, UnknownObject
from kalshibook.storage.sql_users import create_sql_user, drop_sql_user, scram_verifier

pytestmark = [pytest.mark.db, pytest.mark.both_editions]


def login_url(db_url: str, role: str, password: str) -> str:
    parts = urlsplit(db_url)
    netloc = f"{role}:{quote(password, safe='')}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@pytest.fixture
def role_name(db_url: str):
    name = f"kb_t_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(db_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        if exists:
            drop_sql_user(conn, name)


def test_sql_user_reads_market_only_and_times_out(db_url: str, role_name: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("INSERT INTO market.series (ticker, raw) VALUES ('KXHIGHNY', '{}'::jsonb)")
        admin.execute(
            "INSERT INTO private.api_keys (name, prefix, key_hash, credits)"
            " VALUES ('x', 'abcdef12', '\\x00', 1)"
        )
        user = create_sql_user(admin, role_name, statement_timeout="300ms", connection_limit=3)
        assert user.password not in repr(user)
        settings = dict(
            admin.execute(
                "SELECT split_part(c, '=', 1), split_part(c, '=', 2)"
                " FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole,"
                " unnest(s.setconfig) c WHERE r.rolname = %s",
                (role_name,),
            ).fetchall()
        )
        assert settings["default_transaction_read_only"] == "on"
        assert settings["statement_timeout"] == "300ms"
        limit = admin.execute(
            "SELECT rolconnlimit, rolcanlogin, rolpassword LIKE 'SCRAM-SHA-256$%%'"
            " FROM pg_authid WHERE rolname = %s",
            (role_name,),
        ).fetchone()
        assert limit == (3, True, True)

    with psycopg.connect(login_url(db_url, role_name, user.password), autocommit=True) as conn:
        assert conn.execute("SELECT ticker FROM market.series").fetchall() == [("KXHIGHNY",)]
        assert conn.execute("SELECT count(*) FROM market.trades").fetchone() == (0,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO market.series (ticker, raw) VALUES ('X', '{}')")
        # even with read-only switched off for the session, privileges forbid writing
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO market.series (ticker, raw) VALUES ('X', '{}')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM market.series")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM private.api_keys")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE market.mine (x int)")
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(2)")
        conn.execute("SELECT pg_sleep(0.05)")  # below the timeout is fine


def test_sql_user_validation_and_drop(db_url: str, role_name: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for bad in ("Robert'); DROP TABLE x;--", "1abc", "a" * 64, "pg_admin", "postgres", ""):
            with pytest.raises(InvalidInput):
                create_sql_user(conn, bad)
        with pytest.raises(InvalidInput):
            create_sql_user(conn, role_name, statement_timeout="forever")
        with pytest.raises(InvalidInput):
            create_sql_user(conn, role_name, connection_limit=0)
        create_sql_user(conn, role_name)
        with pytest.raises(InvalidInput):
            create_sql_user(conn, role_name)  # exists
        with pytest.raises(InvalidInput):
            drop_sql_user(conn, "kalshibook_reader")  # not a SQL user
        drop_sql_user(conn, role_name)
        assert (
            conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role_name,)).fetchone()
            is None
        )
        with pytest.raises(UnknownObject):
            drop_sql_user(conn, role_name)


def test_sql_user_cli(db_url: str, role_name: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", db_url)
    assert cli.main(["sql-user", "create", role_name, "--statement-timeout", "2s"]) == 0
    out = capsys.readouterr().out
    password = next(
        line.split(": ", 1)[1] for line in out.splitlines() if "password (shown once)" in line
    )
    with psycopg.connect(login_url(db_url, role_name, password)) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("2s",)
    assert cli.main(["sql-user", "create", "BAD NAME"]) == 1
    assert "invalid role name" in capsys.readouterr().err
    assert cli.main(["sql-user", "drop", role_name]) == 0


def test_scram_verifier_is_accepted_by_the_server_format() -> None:
    v = scram_verifier("secret", salt=b"0123456789abcdef")
    assert v.startswith("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$")
    assert "secret" not in v
