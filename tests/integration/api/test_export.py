"""`kalshibook export`: every table read back with pyarrow and DuckDB equals the API's rows (or,
for tables the API does not serve, the database's rows); re-runs write only what changed."""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow.parquet as pq
import pytest
from api_support import B45, B47, J16, RAIN, T0, walk

from kalshibook.cli import main as cli_main
from kalshibook.export.run import ExportRequest, run_export

pytestmark = [pytest.mark.db, pytest.mark.asyncio(loop_scope="session")]

DAY = T0.date().isoformat()
START = datetime(2026, 1, 15, tzinfo=UTC)
END = datetime(2026, 1, 18, tzinfo=UTC)
D = Decimal


def _extra_rows(url: str) -> None:
    """Quotes, stats and a next-day trade (the seed has none): per-day files and more tables."""
    with psycopg.connect(url, autocommit=True) as conn:
        # the seed's same-millisecond pairs share exchange_seq; give them distinct ranks
        conn.execute(
            "UPDATE market.trades t SET exchange_seq = t.exchange_seq + r.rk FROM ("
            " SELECT trade_id, ts, row_number() OVER (PARTITION BY market_ticker, exchange_seq"
            " ORDER BY trade_id) - 1 AS rk FROM market.trades) r"
            " WHERE t.trade_id = r.trade_id AND t.ts = r.ts AND r.rk > 0"
        )
        for i in range(5):
            ts = T0 + timedelta(seconds=10 * i)
            conn.execute(
                "INSERT INTO market.quotes (ts, market_ticker, received_at, yes_bid, yes_bid_size,"
                " yes_ask, yes_ask_size) VALUES (%s, %s, %s, %s, %s, NULL, NULL)",
                (ts, B45, ts + timedelta(microseconds=i), D("0.4") + D(i) / 100, D("12.5")),
            )
            conn.execute(
                "INSERT INTO market.market_stats (ts, market_ticker, received_at, price, volume,"
                " open_interest, dollar_volume) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (ts, B45, ts, D("0.123456"), D(100 + i), D("7.25"), 1000 + i),
            )
        conn.execute(
            "INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count,"
            " source, received_at) VALUES (%s, gen_random_uuid(), %s, 0.5, 0.5, 3, 'ws', %s)",
            (T0 + timedelta(days=1), B45, T0 + timedelta(days=1)),
        )


async def _export_cli(url: str, out: Path, fmt: str, monkeypatch: Any, *extra: str) -> None:
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", url)
    argv = ["export", "--out", str(out), "--start", START.date().isoformat()]
    argv += ["--end", END.date().isoformat(), "--format", fmt, *extra]
    assert await asyncio.to_thread(cli_main, argv) == 0  # the CLI runs its own event loop


def _read(path: Path) -> list[dict[str, Any]]:
    if path.name.endswith(".parquet"):
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        return rows
    with gzip.open(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


def _num(v: Any) -> Decimal | None:
    return None if v in (None, "") else Decimal(str(v))


def _ts(v: Any) -> datetime:
    return v if isinstance(v, datetime) else datetime.fromisoformat(str(v).replace(" ", "T"))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
async def test_export_round_trip_equals_api(
    seeded_rw_url: str, client_rw: Any, tmp_path: Path, fmt: str, monkeypatch: Any
) -> None:
    _extra_rows(seeded_rw_url)
    out = tmp_path / "export"
    await _export_cli(
        seeded_rw_url,
        out,
        fmt,
        monkeypatch,
        "--tables",
        "trades,deltas,snapshots,quotes,market_stats,settlements,candles_1m,candles_1h,candles_1d",
        "--series",
        "KXHIGHNY,KXRAIN",
    )
    ext = "parquet" if fmt == "parquet" else "csv.gz"
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    for rel, entry in manifest.items():
        data = (out / rel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(_read(out / rel)) == entry["rows"]

    # trades: one file per market and day, in exchange order, equal to /v1's rows
    for ticker in (B45, B47, J16, RAIN):
        api = await walk(client_rw, f"/v1/markets/{ticker}/trades", limit=1000)
        api.sort(key=lambda r: r["exchange_seq"])
        files = sorted((out / "trades" / ticker).glob(f"*.{ext}"))
        got = [r for f in files for r in _read(f)]
        assert [r["trade_id"] for r in got] == [r["trade_id"] for r in api]
        for g, a in zip(got, api, strict=True):
            assert int(g["exchange_seq"]) == a["exchange_seq"]
            assert _num(g["yes_price"]) == D(a["yes_price_dollars"])
            assert _num(g["no_price"]) == D(a["no_price_dollars"])
            assert _num(g["count"]) == D(a["count_fp"])
            assert _ts(g["ts"]) == datetime.fromisoformat(a["created_time"])
    b45_days = sorted(p.name for p in (out / "trades" / B45).iterdir())
    assert b45_days == [f"{DAY}.{ext}", f"2026-01-16.{ext}"]
    assert manifest[f"trades/{B45}/{DAY}.{ext}"]["rows"] == 120

    # deltas: (ts, epoch, seq) order, equal to /v1's deltas
    api_d = await walk(
        client_rw,
        f"/v1/markets/{B45}/deltas",
        limit=1000,
        start=START.isoformat(),
        end=END.isoformat(),
    )
    got_d = _read(out / "deltas" / B45 / f"{DAY}.{ext}")
    key = [(_ts(g["ts"]), int(g["epoch"]), int(g["seq"])) for g in got_d]
    assert key == sorted(key)
    assert [
        (
            _ts(g["ts"]),
            int(g["epoch"]),
            int(g["seq"]),
            g["side"],
            _num(g["price"]),
            _num(g["delta"]),
        )
        for g in got_d
    ] == [
        (
            datetime.fromisoformat(a["ts"]),
            a["epoch"],
            a["seq"],
            a["side"],
            D(a["price_dollars"]),
            D(a["delta_fp"]),
        )
        for a in api_d
    ]

    # settlements: the selected series' markets, equal to /v1/settlements
    api_s = {r["ticker"]: r for r in await walk(client_rw, "/v1/settlements", limit=100)}
    got_s = _read(out / "settlements" / f"settlements.{ext}")
    assert [g["market_ticker"] for g in got_s] == sorted([B47, RAIN])
    for g in got_s:
        a = api_s[g["market_ticker"]]
        assert (g["result"], _num(g["settlement_value"])) == (
            a["result"],
            D(a["settlement_value_dollars"]),
        )

    # candles: equal to /v1's candles of the same periods
    for interval in ("1m", "1h"):
        r = await client_rw.get(
            f"/v1/markets/{B45}/candles",
            params={
                "interval": interval,
                "start": START.isoformat(),
                "end": (START + timedelta(days=1)).isoformat(),
            },
        )
        assert r.status_code == 200, r.text
        api_c = r.json()["data"]
        got_c = _read(out / f"candles_{interval}" / B45 / f"{DAY}.{ext}")
        assert len(got_c) == len(api_c) > 0
        for g, a in zip(got_c, api_c, strict=True):
            assert _ts(g["start"]) == datetime.fromisoformat(a["start"])
            for col in ("open", "close", "volume", "vwap", "yes_bid_close"):
                assert _num(g[col]) == _num(a[col]), (col, g, a)

    # quotes, stats, snapshots: equal to the database's rows
    with psycopg.connect(seeded_rw_url) as conn:
        q = conn.execute(
            "SELECT ts, yes_bid, yes_bid_size, yes_ask FROM market.quotes ORDER BY ts"
        ).fetchall()
        st = conn.execute(
            "SELECT ts, price, volume, open_interest, dollar_volume FROM market.market_stats"
            " ORDER BY ts"
        ).fetchall()
        sn = conn.execute(
            "SELECT ts, epoch, seq, source, yes_bids FROM market.orderbook_snapshots"
            " ORDER BY ts, epoch, seq"
        ).fetchall()
    got_q = _read(out / "quotes" / B45 / f"{DAY}.{ext}")
    assert [
        (_ts(g["ts"]), _num(g["yes_bid"]), _num(g["yes_bid_size"]), _num(g["yes_ask"]))
        for g in got_q
    ] == q
    got_st = _read(out / "market_stats" / B45 / f"{DAY}.{ext}")
    assert [
        (
            _ts(g["ts"]),
            _num(g["price"]),
            _num(g["volume"]),
            _num(g["open_interest"]),
            int(g["dollar_volume"]),
        )
        for g in got_st
    ] == st
    got_sn = _read(out / "snapshots" / B45 / f"{DAY}.{ext}")
    assert [
        (
            _ts(g["ts"]),
            int(g["epoch"]),
            int(g["seq"]),
            g["source"],
            json.loads(g["yes_bids"], parse_float=Decimal, parse_int=Decimal),
        )
        for g in got_sn
    ] == [
        (
            r[0],
            r[1],
            r[2],
            r[3],
            json.loads(json.dumps(r[4], default=str), parse_float=Decimal, parse_int=Decimal),
        )
        for r in sn
    ]

    # DuckDB reads the tree directly, with exact decimals and UTC microsecond timestamps
    glob = str(out / "trades" / "*" / f"*.{ext}")
    # CSV holds decimals as text: name their type, or DuckDB infers a (rounding) double
    source = (
        f"read_parquet('{glob}')"
        if fmt == "parquet"
        else f"read_csv('{glob}', types={{'count': 'DECIMAL(18,2)'}})"
    )
    con = duckdb.connect()
    n, total = con.execute(f"SELECT count(*), sum(count) FROM {source}").fetchone()
    with psycopg.connect(seeded_rw_url) as conn:
        want = conn.execute(
            "SELECT count(*), sum(count) FROM market.trades WHERE market_ticker = ANY(%s)",
            # J16 has no series_ticker of its own: --series selects it through its event, as the
            # API's series_ticker filter does
            ([B45, B47, J16, RAIN],),
        ).fetchone()
    assert (n, Decimal(str(total))) == (want[0], want[1])
    if fmt == "parquet":
        types = dict(
            con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()[i][:2] for i in range(13)
        )
        assert types["yes_price"] == "DECIMAL(18,6)"
        assert types["ts"] == "TIMESTAMP WITH TIME ZONE"
    else:
        with gzip.open(out / "trades" / B45 / f"{DAY}.{ext}", "rt") as f:
            header, first = next(csv.reader(f)), next(csv.reader(f))
        row = dict(zip(header, first, strict=True))
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}Z", row["ts"]), row
        assert re.fullmatch(r"0\.\d{6}", row["yes_price"])
        assert re.fullmatch(r"\d+\.\d\d", row["count"])


async def test_rerun_writes_only_changed_or_missing(seeded_rw_url: str, tmp_path: Path) -> None:
    out = tmp_path / "export"
    req = ExportRequest(tables=("trades", "deltas"), start=START, end=END, tickers=(B45, B47))
    async with await psycopg.AsyncConnection.connect(seeded_rw_url) as conn:
        first = await run_export(conn, req, out)
        assert sorted(first.written) == sorted(
            [
                f"trades/{B45}/{DAY}.parquet",
                f"trades/{B47}/{DAY}.parquet",
                f"deltas/{B45}/{DAY}.parquet",
            ]
        )
        again = await run_export(conn, req, out)
        assert again.written == []
        assert len(again.skipped) == 3
        # a new trade changes one file; a deleted file is rewritten
        await conn.execute(
            "INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count,"
            " source, received_at) VALUES (%s, gen_random_uuid(), %s, 0.5, 0.5, 3, 'ws', %s)",
            (T0 + timedelta(hours=3), B47, T0 + timedelta(hours=3)),
        )
        await conn.commit()
        (out / "deltas" / B45 / f"{DAY}.parquet").unlink()
        third = await run_export(conn, req, out)
        assert sorted(third.written) == sorted(
            [f"trades/{B47}/{DAY}.parquet", f"deltas/{B45}/{DAY}.parquet"]
        )
        assert pq.read_table(out / "trades" / B47 / f"{DAY}.parquet").num_rows == 61


async def test_export_bad_input_is_one_line(
    seeded_rw_url: str, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", seeded_rw_url)
    code = cli_main(["export", "--out", str(tmp_path), "--start", "2026-13-01"])
    assert code != 0
    assert "--start must be a UTC day" in capsys.readouterr().err
    code = cli_main(["export", "--out", str(tmp_path), "--start", "2026-01-01", "--tables", "nope"])
    assert code != 0
    assert "unknown table" in capsys.readouterr().err


async def _export_argv(capsys: Any, out: Path, *args: str) -> tuple[int, str]:
    days = ["--start", START.date().isoformat(), "--end", END.date().isoformat()]
    code = await asyncio.to_thread(cli_main, ["export", "--out", str(out), *days, *args])
    return code, capsys.readouterr().err


async def test_export_names_what_does_not_exist(
    seeded_rw_url: str, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", seeded_rw_url)
    out = tmp_path / "out"
    # Nothing named exists: each name on stderr, exit 3, nothing written (not even the directory).
    code, err = await _export_argv(capsys, out, "--market", "NOPE-1,NOPE-2")
    assert code == 3, err
    assert "unknown market 'NOPE-1'" in err
    assert "unknown market 'NOPE-2'" in err
    assert not out.exists()
    code, err = await _export_argv(capsys, out, "--event", "NOPE-E", "--series", "NOPE-S")
    assert code == 3, err
    assert "unknown event 'NOPE-E'" in err
    assert "unknown series 'NOPE-S'" in err
    assert not out.exists()
    # --event, --series and --market select their union: an unknown event beside a known series
    # is named, the series exported
    code, err = await _export_argv(
        capsys, out, "--event", "NOPE-E", "--series", "KXHIGHNY", "--tables", "trades"
    )
    assert code == 0, err
    assert "unknown event 'NOPE-E'" in err
    assert "unknown series" not in err  # KXHIGHNY has markets: not reported
    assert (out / "trades" / B47 / f"{DAY}.parquet").exists()
    shutil.rmtree(out)
    # One unknown among known ones: reported, the others exported (exit 0).
    code, err = await _export_argv(capsys, out, "--market", f"{B45},NOPE-1", "--tables", "trades")
    assert code == 0, err
    assert "unknown market 'NOPE-1'" in err
    assert "NOPE-1" not in "".join(p.name for p in out.rglob("*"))
    assert (out / "trades" / B45 / f"{DAY}.parquet").exists()


async def test_export_shows_its_planning(
    seeded_rw_url: str, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    """The fingerprint reads before the first file are progress too (off a terminal: a log line a
    second, and the last step), on stderr before the first file's line."""
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", seeded_rw_url)
    monkeypatch.setenv("KALSHIBOOK_LOG_LEVEL", "INFO")
    tables = ["--tables", "trades,quotes,settlements"]
    code, err = await _export_argv(capsys, tmp_path / "out", "--market", f"{B45},{B47}", *tables)
    assert code == 0, err
    planning = [line for line in err.splitlines() if "export planning: " in line]
    assert planning, err
    assert "export planning: 4/4 " in planning[-1]  # two tables with days x two markets
    assert err.index("export planning: 4/4") < err.index("export 1/")
