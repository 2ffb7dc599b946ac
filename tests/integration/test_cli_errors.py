"""Every database subcommand reports an unset, unreachable or malformed URL in one line, exits
non-zero and never echoes the password."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALSHIBOOK_")}
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, "-m", "kalshibook", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


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
