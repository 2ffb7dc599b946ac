"""Every database subcommand reports an unset, unreachable, malformed or never migrated database,
and an output it cannot write, in one line, exits non-zero and never echoes the password."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from cli_support import run_cli
from psycopg import sql

from kalshibook.cli.common import parse_instant
from kalshibook.cli.service_user import login_url
from kalshibook.errors import InvalidInput
from kalshibook.storage.service_roles import create_service_login
from kalshibook.storage.urls import redact, scrub

SECRET = "s3cretpw"

COMMANDS = [
    ["migrate"],
    ["serve"],
    ["keys", "list"],
    ["sql-user", "drop", "nobody"],
    ["status"],
    ["refresh-candles", "--start", "2026-01-01T00:00:00Z"],
    ["rebuild-extents"],
]

URLS = [
    (None, "KALSHIBOOK_DATABASE_URL is not set"),
    (f"postgresql://u:{SECRET}@127.0.0.1:1/db", "127.0.0.1"),
    (f"postgresql://u:{SECRET}@[broken", "[broken"),
]


def _run(command: list[str], **env_vars: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*command, **env_vars)


def _one_line(proc: subprocess.CompletedProcess[str], command: list[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kalshibook"), lines[0]
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
@pytest.mark.parametrize(("env_url", "expected"), URLS, ids=["unset", "closed-port", "malformed"])
def test_one_line_non_zero_no_password(
    command: list[str], env_url: str | None, expected: str
) -> None:
    proc = _run(command, **({} if env_url is None else {"KALSHIBOOK_DATABASE_URL": env_url}))
    assert expected in _one_line(proc, command)
    assert SECRET not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    ("command", "env", "expected", "code"),
    [
        (["status"], {"KALSHIBOOK_LOG_LEVEL": "LOUD"}, "KALSHIBOOK_LOG_LEVEL", 2),
        (["serve", "--port", "99999"], {}, "port must be 0..65535", 2),
        (["keys", "--bogus"], {}, "required: ACTION", 2),
        (["migrate", "--bogus"], {}, "unrecognized arguments", 2),
    ],
)
def test_bad_configuration_or_argument(
    command: list[str], env: dict[str, str], expected: str, code: int
) -> None:
    proc = _run(command, **env)
    assert expected in _one_line(proc, command)
    assert proc.returncode == code


def test_migrate_unknown_revision(db_url: str) -> None:
    proc = _run(["migrate", "--revision", "nosuch"], KALSHIBOOK_DATABASE_URL=db_url)
    assert "Can't locate revision identified by 'nosuch'" in _one_line(proc, ["migrate"])


def test_redact_and_scrub() -> None:
    assert redact("postgresql://u:pw@h:5/d") == "postgresql://u:***@h:5/d"
    assert redact("postgresql://u@h/d") == "postgresql://u@h/d"
    assert redact("postgresql://u:pw@[bad") == "postgresql://u:***@[bad"
    assert scrub('in URI: "postgres://a:b@c/d" and x://y:z@w') == (
        'in URI: "postgres://a:***@c/d" and x://y:***@w'
    )


# -- a database that was never migrated, files that cannot be written or read ---------------------


def _password(url: str) -> str:
    password = urlsplit(url).password
    assert password
    return password


NOT_MIGRATED = [
    ["export", "--out", "{tmp}/out", "--start", "2026-12-01"],
    ["verify"],
    ["keys", "list"],
    ["sql-user", "create", "kb_never_{tag}"],
    ["service-user", "create", "api", "kb_never_{tag}"],
    ["refresh-candles", "--start", "2026-01-01"],
    ["rebuild-extents"],
    ["backfill", "--all", "--no-auth"],
]


@pytest.mark.parametrize("command", NOT_MIGRATED, ids=lambda c: " ".join(c[:2]))
def test_a_database_not_migrated_says_to_migrate(
    command: list[str], empty_db_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    argv = [a.format(tmp=tmp_path, tag=tag) for a in command]
    proc = _run(argv, KALSHIBOOK_DATABASE_URL=empty_db_url)
    line = _one_line(proc, argv)
    assert proc.returncode == 1
    assert "has no kalshibook schema: run `kalshibook migrate`" in line, line
    assert _password(empty_db_url) not in proc.stderr + proc.stdout
    assert not (tmp_path / "out").exists()
    with psycopg.connect(empty_db_url) as conn:  # nothing was made: no role, no schema
        assert conn.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname = %s", (f"kb_never_{tag}",)
        ).fetchone() == (0,)


def test_export_output_problems_are_one_line(db_url: str, tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "manifest.json").write_text('{"version": 1, "files": {"trades/A')
    cases = [
        ("/proc/nope", 2, "cannot create the output directory /proc/nope"),
        (str(a_file), 2, f"--out {a_file} exists and is not a directory"),
        (str(a_file / "sub"), 2, f"cannot create the output directory {a_file / 'sub'}"),
        (str(truncated), 1, f"{truncated / 'manifest.json'} is not an export manifest"),
    ]
    for out, code, expected in cases:
        argv = ["export", "--out", out, "--start", "2026-12-01"]
        proc = _run(argv, KALSHIBOOK_DATABASE_URL=db_url)
        assert expected in _one_line(proc, argv), proc.stderr
        assert proc.returncode == code
        assert _password(db_url) not in proc.stderr + proc.stdout


def test_a_failed_statement_is_one_line_without_password(monkeypatch, capsys) -> None:
    """What no command translated reaches the top as one line, exit 1 (no traceback)."""
    from kalshibook import cli

    def fail(args: object, settings: object) -> int:
        raise psycopg.errors.UndefinedTable(
            f'relation "x" does not exist in postgresql://u:{SECRET}@h/d\nLINE 1: ...'
        )

    monkeypatch.setattr("kalshibook.cli.keys.run", fail)
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", "postgresql://u@127.0.0.1:1/db")
    assert cli.main(["keys", "list"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        'kalshibook keys: the database refused a statement: relation "x" does not exist in '
        "postgresql://u:***@h/d"
    ]


def test_instants_of_the_time_options() -> None:
    assert parse_instant("2026-01-01", "--start") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_instant(" 2026-01-01 ", "--start") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_instant("2026-01-01T05:00:00+01:00", "--start") == datetime(
        2026, 1, 1, 4, tzinfo=UTC
    )
    assert parse_instant("1767225600", "--end") == datetime(2026, 1, 1, tzinfo=UTC)
    for bad in ("2026-01-01T00:00", "20260101x", "1999-12-31", "2026-02-30", "tomorrow"):
        with pytest.raises(InvalidInput, match=r"--start: .* is not a UTC day YYYY-MM-DD"):
            parse_instant(bad, "--start")


# -- names that match nothing ---------------------------------------------------------------------


def test_verify_names_what_it_cannot_verify(db_url: str) -> None:
    env = {"KALSHIBOOK_DATABASE_URL": db_url}
    proc = _run(["verify"], **env)
    assert proc.returncode == 3
    assert "nothing to verify: market.kalshi_candles is empty" in _one_line(proc, ["verify"])
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO market.markets (ticker, event_ticker, status, raw)"
            " VALUES ('KB-KNOWN', 'KB-E', 'active', '{}')"
        )
    proc = _run(["verify", "--market", "NOPE", "--market", "KB-KNOWN"], **env)
    assert proc.returncode == 3
    assert "unknown market 'NOPE'" in proc.stderr
    assert (
        "market 'KB-KNOWN' has no Kalshi candles: run `kalshibook backfill --market KB-KNOWN`"
        in proc.stderr
    )
    assert "nothing to verify: no named market has Kalshi candles" in proc.stderr
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO market.kalshi_candles (market_ticker, period_minutes, end_ts, volume)"
            " VALUES ('KB-KNOWN', 60, '2026-01-15T13:00:00Z', 0)"
        )
    # One of two verified: the other named on stderr, the verdict is the comparison's.
    proc = _run(["verify", "--market", "NOPE", "--market", "KB-KNOWN"], **env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("verify: markets=1 periods=1 exact=1")
    assert "unknown market 'NOPE'" in proc.stderr
    proc = _run(["verify", "--start", "2026-01-16"], **env)  # a UTC day: its midnight
    assert proc.returncode == 3
    assert "no Kalshi candle ends in the --start / --end range" in proc.stderr


def test_refresh_candles_as_another_login_than_the_owner(db_url: str) -> None:
    """Only the aggregates' owner may refresh them: the collector's login gets one line saying so
    (exit 1), the owner's refreshes."""
    name = f"kb_coll_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        password = create_service_login(conn, "collector", name)
    try:
        argv = ["refresh-candles", "--start", "2026-01-01", "--end", "2026-01-02"]
        proc = _run(argv, KALSHIBOOK_DATABASE_URL=login_url(db_url, name, password))
        line = _one_line(proc, argv)
        assert proc.returncode == 1
        assert line.startswith(f"kalshibook refresh-candles: login '{name}' may not refresh"), line
        assert "must be owner of view candles_trades_1m" in line
        assert "run this command with the database owner's URL" in line
        assert password not in proc.stderr + proc.stdout
        proc = _run(argv, KALSHIBOOK_DATABASE_URL=db_url)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[-1].startswith("refreshed 9 candle aggregates")
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
