"""`kalshibook status` against a real TimescaleDB: freshness, gaps, sizes, exit codes, --json."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from kalshibook import cli
from kalshibook.ops import status
from kalshibook.storage import status_reads

pytestmark = [pytest.mark.db, pytest.mark.both_editions]

TICKERS = ("KXTEST-26NOV26-A", "KXTEST-26NOV26-B", "KXTEST-26NOV26-C")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, db_url: str) -> str:
    """Point the CLI at this test's database and at a closed collector port."""
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", db_url)
    monkeypatch.setenv("KALSHIBOOK_COLLECTOR_METRICS_HOST", "127.0.0.1")
    monkeypatch.setenv("KALSHIBOOK_COLLECTOR_METRICS_PORT", str(_free_port()))
    monkeypatch.setenv("KALSHIBOOK_LOG_LEVEL", "WARNING")
    return db_url


def run_status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["status", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, _err = run_status(capsys, "--json", *args)
    return code, json.loads(out)


def insert_channels(url: str, age: timedelta, n_trades: int = 5) -> None:
    """One market's worth of rows in every channel, received ``age`` ago."""
    with psycopg.connect(url, autocommit=True) as conn:
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        received = now - age
        ts = received - timedelta(milliseconds=150)
        t = TICKERS[0]
        for i in range(n_trades):
            conn.execute(
                "INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, "
                "count, taker_outcome_side, taker_book_side, source, received_at) "
                "VALUES (%s, %s, %s, 0.42, 0.58, 10, 'yes', 'bid', 'ws', %s)",
                (ts - timedelta(seconds=i), uuid.uuid4(), t, received - timedelta(seconds=i)),
            )
        conn.execute(
            "INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, "
            "epoch, sid, seq, yes_bids, no_bids) VALUES (%s, %s, %s, 'snapshot', 1, 1, 1, "
            "'[[0.41, 100]]', '[[0.57, 50]]')",
            (ts - timedelta(minutes=1), t, received - timedelta(minutes=1)),
        )
        for seq in (2, 3):
            conn.execute(
                "INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, "
                "delta, epoch, sid, seq) VALUES (%s, %s, %s, 'yes', 0.41, 5, 1, 1, %s)",
                (ts - timedelta(seconds=10 - seq), t, received - timedelta(seconds=10 - seq), seq),
            )
        conn.execute(
            "INSERT INTO market.quotes (ts, market_ticker, received_at, yes_bid, yes_bid_size, "
            "yes_ask, yes_ask_size) VALUES (%s, %s, %s, 0.41, 110, 0.43, 50)",
            (ts - timedelta(seconds=5), t, received - timedelta(seconds=5)),
        )
        conn.execute(
            "INSERT INTO market.market_stats (ts, market_ticker, received_at, price, "
            "open_interest, volume) VALUES (%s, %s, %s, 0.42, 1000, 5000)",
            (ts - timedelta(seconds=20), t, received - timedelta(seconds=20)),
        )
        conn.execute(
            "INSERT INTO market.lifecycle_events (ts, market_ticker, received_at, kind, "
            "event_type, payload) VALUES (%s, %s, %s, 'market', 'activated', '{}')",
            (ts - timedelta(hours=2), t, received - timedelta(hours=2)),
        )


def insert_gaps(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = [
            (timedelta(hours=1), TICKERS[0], "seq_gap"),
            (timedelta(hours=2), TICKERS[0], "seq_gap"),
            (timedelta(hours=3), TICKERS[1], "disconnect"),
            (timedelta(hours=3), TICKERS[2], "disconnect"),
            (timedelta(hours=30), TICKERS[2], "silence"),  # outside the 24 h window
        ]
        for ago, ticker, reason in rows:
            conn.execute(
                "INSERT INTO market.book_gaps (from_ts, to_ts, market_ticker, reason) "
                "VALUES (now() - %s, now() - %s + interval '5 seconds', %s, %s)",
                (ago, ago, ticker, reason),
            )


# -- tests ----------------------------------------------------------------------------------------


def test_fresh_data_is_healthy_and_numbers_match(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    insert_channels(env, age=timedelta(seconds=3), n_trades=7)
    insert_gaps(env)
    code, doc = run_json(capsys)
    assert code == 0, doc["problems"]
    assert doc["healthy"] is True
    assert doc["exit_code"] == 0
    assert doc["problems"] == []
    assert doc["database"]["reachable"] is True
    assert doc["database"]["edition"] in ("apache", "timescale")
    assert doc["database"]["schema_revision"]

    channels = {c["channel"]: c for c in doc["channels"]}
    assert list(channels) == list(status_reads.CHANNELS)
    assert 2.5 <= channels["trades"]["age_seconds"] < 60
    assert channels["trades"]["state"] == "fresh"
    assert channels["lifecycle_events"]["state"] == "old"  # 2 h old: shown, not a failure
    assert all(c["last_received_at"] for c in channels.values())

    rows = {r["name"]: r for r in doc["hypertables"]}
    assert rows["trades"]["rows"] == 7
    assert rows["trades"]["rows_exact"] is True
    assert rows["orderbook_deltas"]["rows"] == 2
    assert rows["orderbook_snapshots"]["rows"] == 1
    assert rows["quotes"]["rows"] == 1
    assert rows["market_stats"]["rows"] == 1
    assert rows["lifecycle_events"]["rows"] == 1
    assert rows["book_gaps"]["rows"] == 5
    assert all(r["total_bytes"] > 0 for r in rows.values())
    if doc["database"]["edition"] == "apache":
        assert rows["trades"]["compression"] == "n/a (apache edition)"

    gaps = doc["gaps"]
    assert gaps["count"] == 4
    assert gaps["markets"] == 3
    assert {g["reason"]: (g["gaps"], g["markets"]) for g in gaps["by_reason"]} == {
        "disconnect": (2, 2),
        "seq_gap": (2, 1),
    }

    candles = {c["name"]: c for c in doc["candles"]}
    assert list(candles)[:3] == ["candles_trades_1m", "candles_trades_1h", "candles_trades_1d"]
    assert "candles_trades_1m" in candles
    assert "candles_stats_1d" in candles
    if doc["database"]["edition"] == "apache":
        assert all(c["kind"] == "view" for c in candles.values())
        assert all(c["note"] == "view (computed on read)" for c in candles.values())
        assert doc["policies"] == []
        assert doc["database"]["job_scheduler"] is None
    else:
        assert all(c["kind"] == "continuous aggregate" for c in candles.values())
        assert rows["trades"]["compression"].startswith("enabled, 0/")
        # the aggregates' materialisations: compression enabled except on 1d (never compressed)
        assert candles["candles_trades_1m"]["compression"].startswith("enabled, ")
        assert candles["candles_trades_1d"]["compression"] == "not enabled"
        # every refresh policy (9) and the default compression policies are listed
        kinds = {(p["relation"], p["policy"]) for p in doc["policies"]}
        assert ("candles_trades_1m", "refresh") in kinds
        assert ("candles_stats_1d", "refresh") in kinds
        assert ("orderbook_deltas", "compression") in kinds
        assert sum(1 for p in doc["policies"] if p["policy"] == "refresh") == 9
        assert doc["database"]["job_scheduler"] in (
            "running",
            "not running for this database yet (starts within a minute)",
        )
        assert not [p for p in doc["policies"] if p["last_status"] == "Failed"]

    assert doc["collector"]["state"] == "unreachable"


def test_human_output(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    insert_channels(env, age=timedelta(seconds=1), n_trades=3)
    insert_gaps(env)
    code, out, err = run_status(capsys)
    assert code == 0, out + err
    assert "collector  unreachable" in out
    assert "database   reachable" in out
    assert "gaps (last 24 h): 4 gaps in 3 markets" in out
    assert "seq_gap 2 (1 market)" in out
    lines = [line.split() for line in out.splitlines()]
    fresh = next(cells for cells in lines if cells[:1] == ["trades"] and "fresh" in cells)
    assert fresh[-1] == "fresh"
    storage = next(cells for cells in lines if cells[:2] == ["trades", "hypertable"])
    assert storage[2] == "3"
    assert "candles_trades_1h" in out
    assert "verdict: OK (exit 0)" in out
    # quiet: nothing at all when healthy
    code, out, _ = run_status(capsys, "--quiet")
    assert (code, out) == (0, "")


def test_old_data_is_stale(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    insert_channels(env, age=timedelta(minutes=10))
    code, doc = run_json(capsys)
    assert code == status.EXIT_STALE
    assert doc["healthy"] is False
    assert any(p.startswith("stale:") for p in doc["problems"])
    assert {c["state"] for c in doc["channels"]} == {"old"}
    # a longer threshold makes the same data healthy again
    code, _doc = run_json(capsys, "--stale-after", "3600")
    assert code == 0
    code, out, _ = run_status(capsys, "--quiet")
    assert code == status.EXIT_STALE
    assert out.startswith("kalshibook status: stale: the newest data")


def test_required_channel(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    insert_channels(env, age=timedelta(seconds=2))
    # lifecycle_events is 2 h old: fine by default, stale once required
    assert run_json(capsys)[0] == 0
    code, doc = run_json(capsys, "--channel", "lifecycle_events", "--channel", "trades")
    assert code == status.EXIT_STALE
    assert doc["problems"] == [doc["problems"][0]]
    assert doc["problems"][0].startswith("channel lifecycle_events: last received 2 h")


def test_empty_database_says_no_data_yet(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_status(capsys)
    assert code == status.EXIT_STALE
    assert "PROBLEM: no data yet" in out
    code, doc = run_json(capsys)
    assert code == status.EXIT_STALE
    assert all(c["state"] == "empty" for c in doc["channels"])
    assert doc["gaps"]["count"] == 0


class _Health(BaseHTTPRequestHandler):
    body = b'{"status":"ok","ws_connected":true,"books":12}'
    code = 200

    def do_GET(self) -> None:
        self.send_response(self.code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[ThreadingHTTPServer, type[_Health]]]:
    handler = type("Handler", (_Health,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_collector_health(
    env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    health_server: tuple[ThreadingHTTPServer, type[_Health]],
) -> None:
    server, handler = health_server
    insert_channels(env, age=timedelta(seconds=1))
    # unreachable collector: reported, not fatal unless required
    assert run_json(capsys)[0] == 0
    code, doc = run_json(capsys, "--require-collector")
    assert code == status.EXIT_COLLECTOR
    assert doc["problems"][0].startswith("collector unreachable")

    monkeypatch.setenv("KALSHIBOOK_COLLECTOR_METRICS_PORT", str(server.server_address[1]))
    code, doc = run_json(capsys, "--require-collector")
    assert code == 0
    assert doc["collector"]["state"] == "ok"
    assert doc["collector"]["body"] == {"status": "ok", "ws_connected": True, "books": 12}
    code, out, _ = run_status(capsys)
    assert "collector  ok (" in out
    assert "ws_connected=true books=12" in out

    handler.code, handler.body = 503, b"writer stopped"
    code, doc = run_json(capsys, "--require-collector")
    assert code == status.EXIT_COLLECTOR
    assert doc["collector"] == {
        "url": f"http://127.0.0.1:{server.server_address[1]}/health",
        "state": "unhealthy",
        "http_status": 503,
        "body": "writer stopped",
        "error": None,
    }


def test_unreachable_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _free_port()
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", f"postgresql://u:secret@127.0.0.1:{port}/x")
    monkeypatch.setenv("KALSHIBOOK_COLLECTOR_METRICS_PORT", "0")
    code, out, err = run_status(capsys)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "cannot connect to" in err
    assert "secret" not in err
    code, out, err = run_status(capsys, "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["database"]["reachable"] is False
    assert doc["collector"]["state"] == "disabled"
    assert doc["exit_code"] == 1


def test_bad_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KALSHIBOOK_DATABASE_URL", raising=False)
    code, _out, err = run_status(capsys)
    assert code == 2
    assert "KALSHIBOOK_DATABASE_URL is not set" in err
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", "host=localhost port")
    code, _out, err = run_status(capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert "not a valid connection URL" in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["status", "--stale-after", "-5"])
    assert exc.value.code == 2


def test_unmigrated_database(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", empty_db_url)
    monkeypatch.setenv("KALSHIBOOK_COLLECTOR_METRICS_PORT", "0")
    code, _out, err = run_status(capsys)
    assert code == 1
    assert "kalshibook migrate" in err


def test_status_now_is_database_clock(env: str) -> None:
    """Ages are measured with the database's clock, not this host's."""
    with psycopg.connect(env, autocommit=True) as conn:
        snap = status_reads.read_database(conn, url="x", gap_window=timedelta(hours=24))
    assert abs(snap.now - datetime.now(UTC)) < timedelta(seconds=30)


def test_big_tables_use_estimates(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the size threshold: TimescaleDB's estimate, 'unknown' until ANALYZE has run."""
    monkeypatch.setattr(status_reads, "EXACT_COUNT_MAX_BYTES", 0)
    insert_channels(env, age=timedelta(seconds=1), n_trades=40)
    with psycopg.connect(env, autocommit=True) as conn:
        rows = {
            r.name: r
            for r in status_reads.read_database(
                conn, url="x", gap_window=timedelta(hours=1)
            ).hypertables
        }
        assert (rows["trades"].rows, rows["trades"].rows_exact) == (None, False)
        assert status.format_rows(rows["trades"]) == "unknown"
        conn.execute("ANALYZE market.trades")
        rows = {
            r.name: r
            for r in status_reads.read_database(
                conn, url="x", gap_window=timedelta(hours=1)
            ).hypertables
        }
    assert (rows["trades"].rows, rows["trades"].rows_exact) == (40, False)
    assert status.format_rows(rows["trades"]) == "~40"
