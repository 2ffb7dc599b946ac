"""`kalshibook export` edge cases: candle days, markets without a reference row, settlements of
narrower re-runs, selection unions, stale temp files, the output lock, bad values and flags."""

from __future__ import annotations

import asyncio
import csv
import fcntl
import gzip
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pyarrow.parquet as pq
import pytest
from api_support import B45, B47, RAIN, T0

from kalshibook.cli import main as cli_main
from kalshibook.export.run import ExportRequest, run_export
from kalshibook.storage.candles import refresh_candles

pytestmark = [pytest.mark.db, pytest.mark.asyncio(loop_scope="session")]

EVENING = "CANDLE-1"


def _trade(conn: psycopg.Connection[Any], ticker: str, ts: datetime, count: str = "3") -> None:
    conn.execute(
        "INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count,"
        " source, received_at) VALUES (%s, gen_random_uuid(), %s, 0.5, 0.5, %s, 'ws', %s)",
        (ts, ticker, count, ts),
    )


async def test_daily_candle_of_an_evening_is_exported(seeded_rw_url: str, tmp_path: Path) -> None:
    """Trades only between 00:00 and 05:00 UTC (the New York evening before): their 1d candle
    starts at New York midnight of the previous UTC day, and lands in that day's file (once)."""
    with psycopg.connect(seeded_rw_url, autocommit=True) as conn:
        _trade(conn, EVENING, datetime(2026, 12, 2, 2, 0, tzinfo=UTC))
        _trade(conn, EVENING, datetime(2026, 12, 2, 2, 30, tzinfo=UTC))
    async with await psycopg.AsyncConnection.connect(seeded_rw_url, autocommit=True) as conn:
        await refresh_candles(
            conn, datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC)
        )
        req = ExportRequest(
            tables=("candles_1d", "candles_1h"),
            start=datetime(2026, 11, 30, tzinfo=UTC),
            end=datetime(2026, 12, 3, tzinfo=UTC),
            tickers=(EVENING,),
        )
        out = tmp_path / "out"
        summary = await run_export(conn, req, out)
    assert sorted(summary.written) == [
        f"candles_1d/{EVENING}/2026-12-01.parquet",
        f"candles_1h/{EVENING}/2026-12-02.parquet",
    ]
    rows = pq.read_table(out / "candles_1d" / EVENING / "2026-12-01.parquet").to_pylist()
    assert [(r["start"], r["trade_count"]) for r in rows] == [
        (datetime(2026, 12, 1, 5, tzinfo=UTC), 2)
    ]
    # a range starting on the candle's own UTC day still holds it; one starting after does not
    req2 = msgspec.structs.replace(req, start=datetime(2026, 12, 2, tzinfo=UTC))
    async with await psycopg.AsyncConnection.connect(seeded_rw_url, autocommit=True) as conn:
        again = await run_export(conn, req2, tmp_path / "out2")
    assert [w for w in again.written if w.startswith("candles_1d")] == []


START = datetime(2026, 1, 15, tzinfo=UTC)
END = datetime(2026, 1, 18, tzinfo=UTC)
DAY = T0.date().isoformat()
NOREF = "NOREF-1"


async def _cli(capsys: Any, *argv: str) -> tuple[int, str]:
    code = await asyncio.to_thread(cli_main, ["export", *argv])
    return code, capsys.readouterr().err


def _days(*extra: str) -> list[str]:
    return ["--start", START.date().isoformat(), "--end", END.date().isoformat(), *extra]


async def test_unfiltered_export_includes_markets_without_a_reference_row(
    seeded_rw_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(seeded_rw_url, autocommit=True) as conn:
        _trade(conn, NOREF, T0)
        assert conn.execute(
            "SELECT count(*) FROM market.markets WHERE ticker = %s", (NOREF,)
        ).fetchone() == (0,)
    req = ExportRequest(tables=("trades",), start=START, end=END)
    async with await psycopg.AsyncConnection.connect(seeded_rw_url, autocommit=True) as conn:
        summary = await run_export(conn, req, tmp_path / "out")
    assert f"trades/{NOREF}/{DAY}.parquet" in summary.written
    assert f"trades/{B45}/{DAY}.parquet" in summary.written
    # a market with data only outside the range is not planned (no file either way)
    req = ExportRequest(tables=("trades",), start=END, end=datetime(2026, 1, 19, tzinfo=UTC))
    async with await psycopg.AsyncConnection.connect(seeded_rw_url, autocommit=True) as conn:
        later = await run_export(conn, req, tmp_path / "later")
    assert not any(NOREF in w for w in later.written)


ORPHAN = "KXORPHAN-26JAN-T1"


async def test_a_series_selects_the_markets_of_its_events(
    seeded_rw_url: str, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    """A market row without a series of its own, whose event is in the series: ``--series``
    exports it (as the API's ``series_ticker`` filter lists it) and the series is not unknown."""
    with psycopg.connect(seeded_rw_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO market.series (ticker, raw) VALUES ('KXORPHAN', '{}');"
            "INSERT INTO market.events (event_ticker, series_ticker, raw)"
            " VALUES ('KXORPHAN-26JAN', 'KXORPHAN', '{}');"
            "INSERT INTO market.markets (ticker, event_ticker, series_ticker, status, raw)"
            " VALUES ('KXORPHAN-26JAN-T1', 'KXORPHAN-26JAN', NULL, 'closed', '{}')"
        )
        _trade(conn, ORPHAN, T0)
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", seeded_rw_url)
    out = tmp_path / "out"
    code, err = await _cli(
        capsys, "--out", str(out), *_days("--tables", "trades"), "--series", "KXORPHAN"
    )
    assert code == 0, err
    assert [p.name for p in (out / "trades").iterdir()] == [ORPHAN]
    assert "unknown" not in err


async def test_market_and_event_select_their_union(
    seeded_rw_url: str, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", seeded_rw_url)
    out = tmp_path / "out"
    code, err = await _cli(
        capsys,
        "--out",
        str(out),
        *_days("--tables", "trades"),
        "--market",
        B45,
        "--event",
        "KXRAIN-26JAN",
        "--series",
        "NOPE-S",
    )
    assert code == 0, err
    assert sorted(p.name for p in (out / "trades").iterdir()) == sorted([B45, "KXRAIN-26JAN-T1"])
    assert "unknown series 'NOPE-S'" in err
    # every unknown name is named, even beside a known event
    code, err = await _cli(
        capsys,
        "--out",
        str(out),
        *_days("--tables", "trades"),
        "--market",
        "NOPE-M",
        "--event",
        "KXRAIN-26JAN",
    )
    assert code == 0, err
    assert "unknown market 'NOPE-M'" in err
    code, err = await _cli(
        capsys,
        "--out",
        str(tmp_path / "none"),
        *_days(),
        "--market",
        "NOPE-M",
        "--event",
        "NOPE-E",
    )
    assert code == 3, err
    assert "unknown market 'NOPE-M'" in err
    assert "unknown event 'NOPE-E'" in err
    assert B47 not in err


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
async def test_narrower_rerun_keeps_earlier_settlements(
    seeded_rw_url: str, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / "out"
    ext = "parquet" if fmt == "parquet" else "csv.gz"
    path = out / "settlements" / f"settlements.{ext}"

    def settled() -> list[str]:
        if fmt == "parquet":
            return [str(t) for t in pq.read_table(path).column("market_ticker").to_pylist()]
        with gzip.open(path, "rt", newline="") as f:
            return [r["market_ticker"] for r in csv.DictReader(f)]

    async with await psycopg.AsyncConnection.connect(seeded_rw_url, autocommit=True) as conn:
        broad = ExportRequest(
            tables=("settlements", "trades"), start=START, end=END, fmt=fmt, tickers=(B47, RAIN)
        )
        await run_export(conn, broad, out)
        assert settled() == sorted([B47, RAIN])
        narrow = msgspec.structs.replace(broad, tickers=(B47,))
        again = await run_export(conn, narrow, out)
        assert f"settlements/settlements.{ext}" in again.skipped  # same markets: unchanged
        assert settled() == sorted([B47, RAIN])
        other = msgspec.structs.replace(broad, tickers=("ORPHAN-M1",))
        third = await run_export(conn, other, out)
        assert f"settlements/settlements.{ext}" in third.written
        assert settled() == sorted([B47, RAIN, "ORPHAN-M1"])
    assert (out / "trades" / RAIN).is_dir()  # the other files of the broad run stay too


SLOW_EXPORT = """
import asyncio, sys, faulthandler; faulthandler.enable()
from kalshibook.export import reads
from kalshibook.cli import main

real = reads.raw_batches

async def slow(*args, **kwargs):
    async for block in real(*args, **kwargs):
        yield block
    await asyncio.sleep(60)  # the file stays half written until SIGTERM

reads.raw_batches = slow
sys.exit(main(sys.argv[1:]))
"""


def _terminated_midway(url: str, out: Path) -> tuple[int, str, list[Path]]:
    """Start a slow export, SIGTERM it while its first file is half written: (exit code, stderr,
    the temporary files left)."""
    env = {**os.environ, "KALSHIBOOK_DATABASE_URL": url}
    argv = ["export", "--out", str(out), *_days("--tables", "trades", "--market", B45)]
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_EXPORT, *argv], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        for _ in range(300):
            if list(out.rglob("*.tmp")):
                break
            time.sleep(0.05)
        assert list(out.rglob("*.tmp")), "the export never started its file"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err, list(out.rglob("*.tmp"))


async def test_sigterm_removes_the_file_being_written(seeded_rw_url: str, tmp_path: Path) -> None:
    code, err, left = await asyncio.to_thread(_terminated_midway, seeded_rw_url, tmp_path / "out")
    assert code == 143, err
    assert "terminated (SIGTERM)" in err
    assert "Traceback" not in err
    assert left == []


async def test_a_run_removes_stale_temporary_files(seeded_rw_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    folder = out / "trades" / B45
    folder.mkdir(parents=True)
    stale = folder / f".{DAY}.parquet.999999.tmp"
    stale.write_bytes(b"half a file")
    other = folder / "notes.tmp"  # not of the export's naming: left alone
    other.write_bytes(b"mine")
    req = ExportRequest(tables=("trades",), start=START, end=END, tickers=(B45,))
    async with await psycopg.AsyncConnection.connect(seeded_rw_url, autocommit=True) as conn:
        await run_export(conn, req, out)
    assert not stale.exists()
    assert other.exists()


@contextmanager
def _held_lock(out: Path) -> Iterator[None]:
    """The output directory's lock held as a running export holds it."""
    with (out / ".export.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242, started 2026-12-03T10:00:00Z\n")
        held.flush()
        yield


def _listing(folder: Path) -> list[Path]:
    return list(folder.iterdir())


async def test_a_second_export_into_the_same_directory_is_refused(
    seeded_rw_url: str, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", seeded_rw_url)
    out = tmp_path / "out"
    out.mkdir()
    with _held_lock(out):
        code, err = await _cli(capsys, "--out", str(out), *_days("--tables", "trades"))
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "another export is writing into" in lines[0]
    assert "pid 4242" in lines[0]
    assert not (out / "manifest.json").exists()
    # the lock released, the next run goes ahead
    code, err = await _cli(capsys, "--out", str(out), *_days("--tables", "trades"))
    assert code == 0, err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--every", "nan"], "--every must be between"),
        (["--every", "inf"], "--every must be between"),
        (["--every", "1e400"], "--every must be between"),
        (["--every", "-1"], "--every must be between"),
        (["--every", "soon"], "--every must be a number"),
        (["--tables", ","], "--tables ',': empty name"),
        (["--tables", "trades,,quotes"], "--tables 'trades,,quotes': empty name"),
        (["--market", ","], "--market ',': empty name"),
        (["--event", " , "], "--event ' , ': empty name"),
        (["--series", ","], "--series ',': empty name"),
    ],
)
async def test_bad_flags_are_one_line_exit_2(
    seeded_rw_url: str,
    tmp_path: Path,
    monkeypatch: Any,
    capsys: Any,
    args: list[str],
    says: str,
) -> None:
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", seeded_rw_url)
    out = tmp_path / "out"
    code, err = await _cli(capsys, "--out", str(out), *_days(*args))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert says in err
    assert not out.exists()


async def test_empty_out_is_refused(
    seeded_rw_url: str, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", seeded_rw_url)
    monkeypatch.chdir(tmp_path)
    code, err = await _cli(capsys, "--out", "", *_days("--tables", "trades"))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "--out is empty" in err
    assert _listing(tmp_path) == []


async def test_a_value_off_its_scale_names_table_market_day_and_value(
    seeded_rw_url: str, client_rw: Any, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    bad_day = datetime(2026, 1, 17, 9, tzinfo=UTC)
    with psycopg.connect(seeded_rw_url, autocommit=True) as conn:
        _trade(conn, B45, bad_day, count="1.005")
    async with await psycopg.AsyncConnection.connect(seeded_rw_url, autocommit=True) as conn:
        await refresh_candles(conn, START, END)
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", seeded_rw_url)
    out = tmp_path / "out"
    code, err = await _cli(
        capsys, "--out", str(out), *_days("--tables", "trades,candles_1h", "--market", B45)
    )
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("kalshibook export:")]
    assert len(lines) == 2, err  # the raw COPY path and the candle (row tuples) path
    assert "Traceback" not in err
    trades = next(line for line in lines if "trades of" in line)
    assert f"trades of {B45} on 2026-01-17" in trades
    assert "column 'count' holds 1.005" in trades
    assert "decimal128(18, 2)" in trades
    candles = next(line for line in lines if "candles_1h of" in line)
    assert f"candles_1h of {B45} on 2026-01-17" in candles
    assert "1.005" in candles
    # the other files are written, the bad ones are not (nor left half written)
    assert (out / "trades" / B45 / f"{DAY}.parquet").exists()
    assert (out / "candles_1h" / B45 / f"{DAY}.parquet").exists()
    assert not (out / "trades" / B45 / "2026-01-17.parquet").exists()
    assert list(out.rglob("*.tmp")) == []
    manifest = (out / "manifest.json").read_text()
    assert f"trades/{B45}/{DAY}.parquet" in manifest
    assert "2026-01-17" not in manifest

    r = await client_rw.get("/v1/exports/trades", params={"ticker": B45, "date": "2026-01-17"})
    assert r.status_code == 500, r.text
    detail = r.json()["detail"]
    assert f"trades of {B45} on 2026-01-17" in detail
    assert "column 'count' holds 1.005" in detail
    r = await client_rw.get("/v1/exports/trades", params={"ticker": B45, "date": DAY})
    assert r.status_code == 200, r.text
