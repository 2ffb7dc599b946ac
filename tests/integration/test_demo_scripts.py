"""What the demo's scripts print: the banner's policy count is the refresh and compression
policies `kalshibook status` lists (not TimescaleDB's own telemetry job), and ``scripts/db.sh``
never prints the superuser's password on the terminal (stdout keeps the URL for scripts)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO_SH = ROOT / "scripts" / "demo.sh"
DB_SH = ROOT / "scripts" / "db.sh"


def _edition_sql() -> str:
    """The banner's query, read from demo.sh (a bash double-quoted string without escapes)."""
    match = re.search(r'^EDITION_SQL="(.*?)"$', DEMO_SH.read_text(), re.S | re.M)
    assert match, "EDITION_SQL not found in scripts/demo.sh"
    return match.group(1)


def test_the_banner_counts_only_refresh_and_compression_policies(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('timescaledb.license')").fetchone()
        if row != ("timescale",):
            pytest.skip("the Community edition is not installed (no policies)")
        line = conn.execute(_edition_sql()).fetchone()
        policies = conn.execute(
            "SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name IN "
            "('policy_refresh_continuous_aggregate', 'policy_compression')"
        ).fetchone()
        others = conn.execute(
            "SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name NOT IN "
            "('policy_refresh_continuous_aggregate', 'policy_compression')"
        ).fetchone()
    assert line is not None
    assert policies is not None
    assert others is not None
    shown = re.search(r"(\d+) refresh/compression policies", str(line[0]))
    assert shown, line
    assert int(shown.group(1)) == policies[0] > 0
    # the database has jobs of its own (telemetry, job statistics): they are not counted
    assert others[0] >= 1


def test_db_sh_start_keeps_the_password_off_the_terminal() -> None:
    env = {k: v for k, v in os.environ.items() if k != "KALSHIBOOK_DB_EDITION"}
    if env.get("KALSHIBOOK_TEST_DATABASE_URL") and not (ROOT / ".data" / "database_url").exists():
        pytest.skip("no local cluster of scripts/db.sh")
    proc = subprocess.run(
        [str(DB_SH), "start"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    url_file = Path(env.get("KALSHIBOOK_DATA_DIR", ROOT / ".data")) / "database_url"
    url = url_file.read_text().strip()
    password = psycopg.conninfo.conninfo_to_dict(url)["password"]
    assert password
    assert password not in proc.stderr, proc.stderr
    ready = [ln for ln in proc.stderr.splitlines() if ln.startswith("[db] ready: ")]
    assert len(ready) == 1, proc.stderr
    assert "postgresql://postgres:***@" in ready[0]
    assert str(url_file) in ready[0]
    assert "0600" in ready[0]
    assert oct(url_file.stat().st_mode & 0o777) == oct(0o600)
    # scripts (tests/conftest.py) read the whole URL from stdout's last line
    assert proc.stdout.strip().splitlines()[-1] == url
