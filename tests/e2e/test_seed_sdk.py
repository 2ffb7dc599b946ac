"""Issue #17: kalshibook's published Python SDK (``kalshibook==0.1.0`` from PyPI) works against
this server unchanged.

The simulator feeds the collector for 40 s of exchange time (markets open, trade and settle; some
on sub-penny price grids); ``kalshibook serve`` serves the database on real local ports (one
server with the normal rate limit, one allowing one request per second). The SDK, installed from
PyPI into its own virtual environment (it is also named ``kalshibook``; the environment is cached
under ``.data/test-cache``), runs every public method, sync and async, from a subprocess
(tests/e2e/seed_sdk_driver.py). Its answers must equal what ``/v1`` answers for the same
questions, and each of its error classes must be raised for its cause.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from e2e_harness import drive, run_daemon, settings_for, settle

from kalshibook.sim.server import SimConfig, SimServer
from kalshibook.storage.api_keys import create_key
from kalshibook.storage.candles import refresh_candles

pytestmark = [pytest.mark.e2e, pytest.mark.db]

ROOT = Path(__file__).resolve().parents[2]
SDK_VERSION = "0.1.0"
SDK_ENV = ROOT / ".data" / "test-cache" / f"kalshibook-sdk-{SDK_VERSION}"
DRIVER = Path(__file__).with_name("seed_sdk_driver.py")
API_DOC = ROOT / "docs" / "api.md"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
D = Decimal


def at(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def iso(t: datetime) -> str:
    return t.isoformat()


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def num(value: Any) -> Decimal:
    return D(str(value))


def cents(dollars: str) -> Decimal:
    return D(dollars) * 100


def sdk_env() -> dict[str, str]:
    """The environment of the SDK's processes: nothing of ours on the import path."""
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """Python of a virtual environment holding the published SDK and pandas (made once)."""
    python = SDK_ENV / "bin" / "python"
    ready = SDK_ENV / f".ready-{SDK_VERSION}"
    if not ready.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(SDK_ENV)], check=True)
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             f"kalshibook=={SDK_VERSION}", "pandas"],
            capture_output=True, text=True, env=sdk_env(), timeout=600, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.fail(f"cannot install kalshibook=={SDK_VERSION} from PyPI:\n{proc.stderr}")
        ready.write_text("ok\n")
    return python


def documented_example() -> str:
    """The ```py block of docs/api.md's section "Using the kalshibook SDK"."""
    text = API_DOC.read_text("utf-8")
    section = text[text.index("## Using the kalshibook SDK") :]
    match = re.search(r"^```py\n(.*?)^```\n", section, re.MULTILINE | re.DOTALL)
    assert match is not None, "docs/api.md: no example in 'Using the kalshibook SDK'"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(db_url: str, log: Path, rate: float) -> Iterator[str]:
    """``kalshibook serve`` on a free local port; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "KALSHIBOOK_DATABASE_URL": db_url,
        "KALSHIBOOK_API_RATE_LIMIT_PER_SECOND": str(rate),
        "KALSHIBOOK_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    cmd = [sys.executable, "-m", "kalshibook", "serve", "--port", str(port), "--no-access-log"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"kalshibook serve did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def walk(http: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        r = http.get(path, params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        rows.extend(body["data"])
        if not body["has_more"]:
            return rows
        cursor = body["next_cursor"]


async def record(db_url: str, tmp_path: Path) -> tuple[int, int]:
    """Simulator → collector → database; returns the exchange window driven (ms)."""
    cfg = SimConfig(
        no_auth=True,
        markets=12,
        start_behind_s=900.0,  # the driven time lies in the past: candles serve every period
        lifetime=20.0,  # markets close and settle within the run
        autopump=False,
        heartbeat=1.0,
    )
    async with SimServer(cfg) as sim:
        start_ms = sim.model.now_ms
        async with run_daemon(settings_for(db_url, tmp_path / "data", sim)) as daemon:
            last = await drive(sim, 40.0, step_ms=100, frames_per_step=20)
            await settle(daemon, sim, last)
            await daemon.stop()
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await refresh_candles(conn, at(start_ms) - timedelta(days=1), at(last) + timedelta(days=1))
    return start_ms, last


def v1_book_levels(levels: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
    return [(cents(p), D(s)) for p, s in reversed(levels)]


def sdk_levels(levels: list[dict[str, Any]]) -> list[tuple[Decimal, Decimal]]:
    return [(num(lv["price"]), num(lv["quantity"])) for lv in levels]


def test_published_sdk_works_unchanged(db_url: str, tmp_path: Path, sdk_python: Path) -> None:
    start_ms, last_ms = asyncio.run(record(db_url, tmp_path))
    key = create_key(db_url, name="sdk e2e", credits=10**9)
    empty = create_key(db_url, name="sdk e2e, no credits", credits=0)
    start, end = at(start_ms) - timedelta(seconds=1), at(last_ms) + timedelta(seconds=1)

    with (
        serve(db_url, tmp_path / "serve.log", 1_000_000.0) as url,
        serve(db_url, tmp_path / "strict.log", 1.0) as strict_url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key.key}"}) as http,
    ):
        # -- what /v1 says ----------------------------------------------------------------------
        markets = walk(http, "/v1/markets")
        events = walk(http, "/v1/events")
        open_events = walk(http, "/v1/events", status="open")
        settlements = walk(http, "/v1/settlements")
        settled = {s["ticker"] for s in settlements}
        assert len(markets) >= 12
        assert settlements, "no market settled during the run"
        counts = {}
        for m in markets:
            rows = walk(http, f"/v1/markets/{m['ticker']}/trades", start=iso(start), end=iso(end))
            counts[m["ticker"]] = len(rows)
        ticker = max(counts, key=lambda t: counts[t])  # the busiest market
        trades = walk(http, f"/v1/markets/{ticker}/trades", start=iso(start), end=iso(end))
        deltas = walk(http, f"/v1/markets/{ticker}/deltas", start=iso(start), end=iso(end))
        assert len(trades) > 30
        assert len(deltas) > 100
        first, last = when(deltas[0]["ts"]), when(deltas[-1]["ts"])
        instants = [first + (last - first) * k / 4 for k in range(5)]  # the market's book lives
        books = {
            iso(t): http.get(f"/v1/markets/{ticker}/orderbook", params={"at": iso(t)}).json()
            for t in instants
        }
        cstart, cend = start - timedelta(days=1), end + timedelta(days=1)
        candles = {
            iv: http.get(
                f"/v1/markets/{ticker}/candles",
                params={"interval": iv, "start": iso(cstart), "end": iso(cend)},
            ).json()["data"]
            for iv in ("1m", "1h", "1d")
        }
        event = next(m["event_ticker"] for m in markets if m["ticker"] == ticker)
        v1_event = http.get(f"/v1/events/{event}").json()["data"]
        v1_market = http.get(f"/v1/markets/{ticker}").json()["data"]
        unsettled = next(m["ticker"] for m in markets if m["ticker"] not in settled)

        # -- what the SDK says ------------------------------------------------------------------
        spec = {
            "sdk_version": SDK_VERSION,
            "base_url": url,
            "strict_url": strict_url,
            "key": key.key,
            "empty_key": empty.key,
            "unknown_key": "kb-0badc0de-" + "A" * 43,
            "ticker": ticker,
            "start": iso(start),
            "end": iso(end),
            "cstart": iso(cstart),
            "cend": iso(cend),
            "books": [[ticker, t] for t in books],
            "early": iso(at(start_ms) - timedelta(minutes=5)),
            "event": event,
            "settled": settlements[0]["ticker"],
            "unsettled": unsettled,
            "page": 37,  # pages end mid-millisecond: the cursor must carry the exchange order
        }
        proc = subprocess.run(
            [str(sdk_python), str(DRIVER)],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            env=sdk_env(),
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        metrics = httpx.get(f"{strict_url}/metrics").text

        example = subprocess.run(
            [str(sdk_python), "-c", documented_example()],
            capture_output=True,
            text=True,
            env={**sdk_env(), "KALSHIBOOK_API_KEY": key.key, "KALSHIBOOK_BASE_URL": url},
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
    assert example.returncode == 0, example.stderr
    assert example.stdout.startswith(markets[0]["ticker"]), example.stdout
    assert "credits left" in example.stdout

    assert str(SDK_ENV) in got["module"]  # the published SDK, not this package
    assert got["bad_form"]["class"] == "AuthenticationError"  # kb_ refused by the SDK itself
    sync, asyn = got["sync"], got["async"]
    for name, value in asyn.items():
        assert sync[name] == value, f"sync and async differ on {name}"
    assert sync["cost"] == {"orderbook": 5, "markets": 1, "candles": 3}
    assert 0 < sync["remaining"] < 10**9

    # order book at an instant = /v1's book at the same instant
    for got_book, (instant, v1) in zip(sync["orderbook"], books.items(), strict=True):
        want = v1["data"]
        assert got_book["market_ticker"] == ticker
        assert when(got_book["timestamp"]) == when(instant)
        assert when(got_book["snapshot_basis"]) == when(want["snapshot"]["ts"])
        assert got_book["deltas_applied"] == want["deltas_applied"]
        assert sdk_levels(got_book["yes"]) == v1_book_levels(want["yes_bids"])
        assert sdk_levels(got_book["no"]) == v1_book_levels(want["no_bids"])
    assert sync["orderbook_depth1"]["yes"] == sync["orderbook"][0]["yes"][:1]

    # every page of deltas and trades = /v1's rows
    assert len(sync["deltas"]) == len(deltas)
    for g, w in zip(sync["deltas"], deltas, strict=True):
        assert (g["market_ticker"], g["seq"], g["side"]) == (ticker, w["seq"], w["side"])
        assert when(g["ts"]) == when(w["ts"])
        assert num(g["price_cents"]) == cents(w["price_dollars"])
        assert num(g["delta_amount"]) == D(w["delta_fp"])
    assert [g["trade_id"] for g in sync["trades"]] == [w["trade_id"] for w in trades]
    for g, w in zip(sync["trades"], trades, strict=True):
        assert when(g["ts"]) == when(w["created_time"])
        assert num(g["yes_price"]) == cents(w["yes_price_dollars"])
        assert num(g["no_price"]) == cents(w["no_price_dollars"])
        assert num(g["count"]) == D(w["count_fp"])
        assert g["taker_side"] == w["taker_outcome_side"]
    # fractional contracts reach the SDK as exact JSON numbers, whole ones as integers
    assert any(isinstance(g["delta_amount"], float) for g in sync["deltas"])
    assert any(isinstance(g["delta_amount"], int) for g in sync["deltas"])
    assert sync["deltas_df"]["rows"] == len(deltas)
    assert sync["trades_df"]["rows"] == len(trades)
    assert "price_cents" in sync["deltas_df"]["columns"]

    # candles 1m / 1h / 1d = /v1's periods with trades
    for iv, v1_rows in candles.items():
        want = [c for c in v1_rows if c["trade_count"] > 0]
        rows = sync[f"candles_{iv}"]
        assert len(rows) == len(want) > 0, iv
        assert sync[f"candles_{iv}_df"]["rows"] == len(want)
        for g, w in zip(rows, want, strict=True):
            assert when(g["bucket"]) == when(w["start"])
            assert [num(g[f]) for f in ("open", "high", "low", "close")] == [
                cents(w[f]) for f in ("open", "high", "low", "close")
            ]
            assert num(g["volume"]) == D(w["volume"])
            assert g["trade_count"] == w["trade_count"]
    assert sum(c["trade_count"] for c in sync["candles_1d"]) == len(trades)

    # markets, events, settlements
    assert [m["ticker"] for m in sync["markets"]] == [m["ticker"] for m in markets]
    assert [m["status"] for m in sync["markets"]] == [m["status"] for m in markets]
    assert sync["markets_df"]["rows"] == len(markets)
    market = sync["market"]
    assert market["metadata"] == v1_market
    assert market["snapshot_count"] > 0
    assert market["delta_count"] >= len(deltas)
    assert when(market["first_data_at"]) <= when(trades[0]["created_time"])
    assert [e["event_ticker"] for e in sync["events"]] == [e["event_ticker"] for e in events]
    assert sync["events_df"]["rows"] == len(events)
    assert [e["event_ticker"] for e in sync["events_open"]] == [
        e["event_ticker"] for e in open_events
    ]
    assert [m["ticker"] for m in sync["event"]["markets"]] == [
        m["ticker"] for m in v1_event["markets"]
    ]
    assert sync["event"]["market_count"] == len(v1_event["markets"])
    assert [s["market_ticker"] for s in sync["settlements"]] == [s["ticker"] for s in settlements]
    assert sync["settlements_df"]["rows"] == len(settlements)
    for g, w in zip(sync["settlements"], settlements, strict=True):
        assert g["result"] == w["result"]
        value = w["settlement_value_dollars"]
        assert (g["settlement_value"] is None) == (value is None)
        if value is not None:
            assert num(g["settlement_value"]) == cents(value)
    assert {s["market_ticker"] for s in sync["settlements_yes"]} == {
        s["ticker"] for s in settlements if s["result"] == "yes"
    }
    assert sync["settlement"]["market_ticker"] == settlements[0]["ticker"]

    # each error class for its cause
    errors = got["errors"]
    expected = {
        "bad_key": ("AuthenticationError", 401, "invalid_api_key"),
        "no_credits": ("CreditsExhaustedError", 429, "credits_exhausted"),
        "unknown_market": ("MarketNotFoundError", 404, "market_not_found"),
        "unknown_book": ("MarketNotFoundError", 404, "market_not_found"),
        "no_book_yet": ("MarketNotFoundError", 404, "no_data_available"),
        "unknown_event": ("MarketNotFoundError", 404, "event_not_found"),
        "unsettled": ("MarketNotFoundError", 404, "settlement_not_found"),
        "unknown_candles": ("MarketNotFoundError", 404, "market_not_found"),
        "inverted_trades": ("ValidationError", 422, "invalid_timestamp"),
        "inverted_deltas": ("ValidationError", 422, "invalid_timestamp"),
        "inverted_candles": ("ValidationError", 422, "invalid_timestamp"),
        "bad_depth": ("ValidationError", 422, "validation_error"),
        "bad_interval": ("ValidationError", 422, "validation_error"),
        "rate_limited": ("RateLimitError", 429, "rate_limit_exceeded"),
    }
    for name, (cls, status, code) in expected.items():
        e = errors[name]
        assert (e["class"], e["status"], e["body"]["error"]["code"]) == (cls, status, code), name
    for name in ("unknown_market", "inverted_trades"):
        a, b = errors["async"][name], errors[name]
        assert (a["class"], a["status"], a["body"]["error"]) == (
            b["class"],
            b["status"],
            b["body"]["error"],
        )
    retried = errors["retried"]
    assert retried["tickers"] == [ticker, ticker]
    assert retried["seconds"] >= 0.9  # waited for Retry-After, then succeeded
    rejected = [
        line for line in metrics.splitlines()
        if line.startswith("kalshibook_api_auth_rejections_total") and "rate_limited" in line
    ]  # fmt: skip
    assert rejected
    assert float(rejected[0].split()[-1]) >= 2
