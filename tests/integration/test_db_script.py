"""scripts/db.sh start: concurrent starts of one fresh cluster, and a later start that returns.

The suite's workers may all start the same cluster on a fresh clone (tests/conftest.py), so two
``start`` runs at once must give one cluster and the same URL, not two initdb runs in one
directory. A lock serialises them; the server must not inherit it, or every later ``start``
waits forever (a regression seen on a fresh clone). Both are run here on a cluster of its own
(Apache edition: no background workers), in a data directory under ``.data``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
DB_SH = ROOT / "scripts" / "db.sh"


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(DB_SH), "start"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_concurrent_starts_make_one_cluster_and_release_the_lock() -> None:
    data = ROOT / ".data" / f"test-dbsh-{secrets.token_hex(4)}"
    env = {**os.environ, "KALSHIBOOK_DATA_DIR": str(data), "KALSHIBOOK_DB_EDITION": "apache"}
    pgdata = subprocess.run(
        [str(DB_SH), "dir"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        first, second = _start(env), _start(env)
        outs = [p.communicate(timeout=180) for p in (first, second)]
        assert [p.returncode for p in (first, second)] == [0, 0], [o[1][-2000:] for o in outs]
        urls = {o[0].strip().splitlines()[-1] for o in outs}
        assert len(urls) == 1, urls
        # the lock is free once the starts are done: a third start returns (it hung when the
        # postmaster inherited the lock's descriptor)
        third = subprocess.run(
            [str(DB_SH), "start"], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        assert third.stdout.strip().splitlines()[-1] in urls
        with psycopg.connect(urls.pop(), connect_timeout=10) as conn:
            row = conn.execute("SELECT current_setting('timescaledb.license')").fetchone()
        assert row == ("apache",)
    finally:
        subprocess.run([str(DB_SH), "stop"], env=env, capture_output=True, timeout=120, check=False)
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(pgdata, ignore_errors=True)
