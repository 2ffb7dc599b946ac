"""refresh_candles and `kalshibook refresh-candles` (late rows after a REST backfill)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import UTC, datetime

import psycopg
import pytest

from kalshibook.cli import refresh_candles as refresh_candles_cli
from kalshibook.errors import ConfigError, StorageError
from kalshibook.settings import CoreSettings, Settings
from kalshibook.storage.candles import refresh_candles

pytestmark = [pytest.mark.db, pytest.mark.both_editions]

START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 3, 9, tzinfo=UTC)


async def test_refresh_needs_autocommit_and_a_window(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        with pytest.raises(StorageError, match="autocommit"):
            await refresh_candles(conn, START, END)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        with pytest.raises(ValueError, match="empty"):
            await refresh_candles(conn, END, START)
        edition = await (await conn.execute("SHOW timescaledb.license")).fetchone()
        done = await refresh_candles(conn, START, END)
    if edition == ("apache",):
        assert done == []
    else:  # Community: every cagg, in chain order
        assert [n.rsplit("_", 1)[1] for n in done] == ["1m"] * 3 + ["1h"] * 3 + ["1d"] * 3


def _cli(db_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALSHIBOOK_")}
    if db_url is not None:
        env["KALSHIBOOK_DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "kalshibook", "refresh-candles", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_cli_refreshes_a_window_and_reports_bad_input_in_one_line(db_url: str) -> None:
    ok = _cli(db_url, "--start", "2026-03-01T00:00:00Z", "--end", "1773014400")
    assert ok.returncode == 0, ok.stderr
    assert "candle" in ok.stdout
    bad = _cli(db_url, "--start", "yesterday")
    assert bad.returncode == 2
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, bad.stderr
    assert "--start" in lines[0]
    assert "Traceback" not in bad.stderr
    with pytest.raises(ConfigError, match="after"):
        refresh_candles_cli.run(
            argparse.Namespace(start="2026-03-09T00:00:00Z", end="2026-03-01T00:00:00Z"),
            Settings(core=CoreSettings(database_url=db_url)),
        )
