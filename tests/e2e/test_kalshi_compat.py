"""Issue #18: a real third-party Kalshi client, ``pykalshi==2.0.0`` from PyPI, reads kalshibook's
history through ``/trade-api/v2`` by changing its base URL.

The simulator feeds the collector (tests/e2e/test_seed_sdk.py's recording); ``kalshibook serve``
serves it on a local port. pykalshi, installed into its own virtual environment (cached under
``.data/test-cache``), signs every request with an RSA key as it does for Kalshi, its
``KALSHI-ACCESS-KEY`` being a kalshibook API key; it runs from a subprocess
(tests/e2e/kalshi_client_driver.py). What it reads must equal ``/v1``'s answers for the same data.
The runnable example of docs/api.md "Point your Kalshi code at kalshibook" runs too.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from test_seed_sdk import iso, record, sdk_env, serve, walk, when

from kalshibook.storage.api_keys import create_key

pytestmark = [pytest.mark.e2e, pytest.mark.db]

ROOT = Path(__file__).resolve().parents[2]
CLIENT_VERSION = "2.0.0"
CLIENT_ENV = ROOT / ".data" / "test-cache" / f"pykalshi-{CLIENT_VERSION}"
DRIVER = Path(__file__).with_name("kalshi_client_driver.py")
API_DOC = ROOT / "docs" / "api.md"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def client_python() -> Path:
    """Python of a virtual environment holding pykalshi and pandas (made once)."""
    python = CLIENT_ENV / "bin" / "python"
    ready = CLIENT_ENV / f".ready-{CLIENT_VERSION}"
    if not ready.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(CLIENT_ENV)], check=True)
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             f"pykalshi=={CLIENT_VERSION}", "pandas"],
            capture_output=True, text=True, env=sdk_env(), timeout=600, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.fail(f"cannot install pykalshi=={CLIENT_VERSION} from PyPI:\n{proc.stderr}")
        ready.write_text("ok\n")
    return python


def documented_example() -> str:
    """The ```py block of docs/api.md's section "Point your Kalshi code at kalshibook"."""
    text = API_DOC.read_text("utf-8")
    section = text[text.index("## Point your Kalshi code at kalshibook") :]
    match = re.search(r"^```py\n(.*?)^```\n", section, re.MULTILINE | re.DOTALL)
    assert match is not None, "docs/api.md: no example in 'Point your Kalshi code at kalshibook'"
    return match.group(1)


def rsa_pem(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return path


def unix(t: datetime) -> int:
    return int((t - EPOCH).total_seconds())


def mean4(value: str | None) -> str | None:
    if value is None:
        return None
    return str(Decimal(value).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN))


def kalshi_view(v1: dict[str, Any]) -> dict[str, Any]:
    """/v1's Kalshi fields of a candle, nulls dropped, mean at Kalshi's 4 places."""
    price = {k: v for k, v in v1["price"].items() if v is not None}
    if "mean_dollars" in price:
        price["mean_dollars"] = mean4(price["mean_dollars"])
    out = {
        "end_period_ts": v1["end_period_ts"],
        "price": price,
        "yes_bid": {k: v for k, v in v1["yes_bid"].items() if v is not None},
        "yes_ask": {k: v for k, v in v1["yes_ask"].items() if v is not None},
        "volume_fp": v1["volume_fp"],
    }
    if v1["open_interest_fp"] is not None:
        out["open_interest_fp"] = v1["open_interest_fp"]
    return out


def pykalshi_view(c: dict[str, Any]) -> dict[str, Any]:
    out = {
        "end_period_ts": c["end_period_ts"],
        "price": {k: v for k, v in c["price"].items() if v is not None},
        "yes_bid": {k: v for k, v in (c["yes_bid"] or {}).items() if v is not None},
        "yes_ask": {k: v for k, v in (c["yes_ask"] or {}).items() if v is not None},
        "volume_fp": c["volume_fp"],
    }
    if c["open_interest_fp"] is not None:
        out["open_interest_fp"] = c["open_interest_fp"]
    return out


def test_pykalshi_reads_kalshibook(db_url: str, tmp_path: Path, client_python: Path) -> None:
    start_ms, last_ms = asyncio.run(record(db_url, tmp_path))
    key = create_key(db_url, name="pykalshi e2e", credits=10**9)
    start = EPOCH + timedelta(milliseconds=start_ms) - timedelta(seconds=1)
    end = EPOCH + timedelta(milliseconds=last_ms) + timedelta(seconds=2)
    pem = rsa_pem(tmp_path / "kalshi.pem")

    with (
        serve(db_url, tmp_path / "serve.log", 1_000_000.0) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key.key}"}) as http,
    ):
        markets = walk(http, "/v1/markets")
        events = walk(http, "/v1/events")
        series = walk(http, "/v1/series")
        counts = {
            m["ticker"]: len(
                walk(http, f"/v1/markets/{m['ticker']}/trades", start=iso(start), end=iso(end))
            )
            for m in markets
        }
        ticker = max(counts, key=lambda t: counts[t])
        other = next(t for t in counts if t != ticker)
        min_ts, max_ts = unix(start), unix(end)
        trades = walk(
            http,
            f"/v1/markets/{ticker}/trades",
            start=iso(EPOCH + timedelta(seconds=min_ts)),
            end=iso(EPOCH + timedelta(seconds=max_ts + 1)),
        )
        assert len(trades) > 40
        deltas = walk(http, f"/v1/markets/{ticker}/deltas", start=iso(start), end=iso(end))
        first, last = when(deltas[0]["ts"]), when(deltas[-1]["ts"])
        instants = [iso(first + (last - first) * k / 3) for k in range(4)]
        books = [
            http.get(f"/v1/markets/{ticker}/orderbook", params={"at": t}).json()["data"]
            for t in instants
        ]
        latest = http.get(f"/v1/markets/{ticker}/orderbook").json()["data"]
        cstart, cend = start - timedelta(hours=2), end + timedelta(minutes=1)
        v1_candles = {
            iv: http.get(
                f"/v1/markets/{ticker}/candles",
                params={"interval": iv, "start": iso(cstart - timedelta(hours=1)),
                        "end": iso(cend)},
            ).json()["data"]
            for iv in ("1m", "1h")
        }  # fmt: skip
        v1_market = http.get(f"/v1/markets/{ticker}").json()["data"]

        spec = {
            "api_base": f"{url}/trade-api/v2",
            "key": key.key,
            "pem": str(pem),
            "ticker": ticker,
            "other": other,
            "min_ts": min_ts,
            "max_ts": max_ts,
            "start_ts": unix(cstart),
            "end_ts": unix(cend),
            "instants": instants,
        }
        proc = subprocess.run(
            [str(client_python), str(DRIVER)],
            input=json.dumps(spec), capture_output=True, text=True, env=sdk_env(),
            cwd=tmp_path, timeout=120, check=False,
        )  # fmt: skip
        asked_at = datetime.now(UTC)
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        example = subprocess.run(
            [str(client_python), "-c", documented_example()],
            capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
            env={**sdk_env(), "KALSHIBOOK_API_KEY": key.key, "KALSHIBOOK_URL": url,
                 "KALSHI_PRIVATE_KEY_PATH": str(pem)},
        )  # fmt: skip
    assert example.returncode == 0, example.stderr
    assert example.stdout.split()[0] == markets[0]["ticker"], example.stdout
    assert "trades" in example.stdout

    assert str(CLIENT_ENV) in got["module"]  # the published client, not ours
    # reference
    assert got["markets"] == [m["ticker"] for m in markets]
    assert got["markets_status"] == [m["status"] for m in markets]
    assert got["markets_df"]["rows"] == len(markets)
    m = got["market"]
    assert (m["ticker"], m["event_ticker"], m["status"]) == (
        ticker, v1_market["event_ticker"], v1_market["status"],
    )  # fmt: skip
    assert when(m["close_time"]) == when(v1_market["close_time"])
    assert got["series"]["ticker"] == v1_market["series_ticker"]
    assert got["all_series"] == [s["ticker"] for s in series]
    assert got["events"] == [e["event_ticker"] for e in events]
    assert ticker in got["event_markets"]
    # trades: every page to the end, newest first = /v1's rows reversed
    assert [t["trade_id"] for t in got["trades"]] == [t["trade_id"] for t in reversed(trades)]
    for g, w in zip(got["trades"], reversed(trades), strict=True):
        assert when(g["created_time"]) == when(w["created_time"])
        assert (g["yes_price_dollars"], g["no_price_dollars"], g["count_fp"]) == (
            w["yes_price_dollars"], w["no_price_dollars"], w["count_fp"],
        )  # fmt: skip
        assert g["taker_outcome_side"] == w["taker_outcome_side"]
        assert g["taker_book_side"] == w["taker_book_side"]
    assert got["trades_df"]["rows"] == len(trades)
    assert got["hist_trades"][: len(trades)] == [t["trade_id"] for t in reversed(trades)]
    # order books: at instants, latest, depth, batch
    for g, w in zip(got["orderbooks_at"], books, strict=True):
        assert g["orderbook_fp"] == {"yes_dollars": w["yes_bids"], "no_dollars": w["no_bids"]}
    book = got["orderbook_latest"]["orderbook"]
    assert [list(x) for x in book["yes_dollars"]] == latest["yes_bids"]
    assert [list(x) for x in book["no_dollars"]] == latest["no_bids"]
    top = got["orderbook_depth1"]["orderbook"]["yes_dollars"]
    assert [list(x) for x in top] == latest["yes_bids"][-1:]
    assert [b["ticker"] for b in got["orderbooks"]["orderbooks"]] == [ticker, other]
    # candlesticks: Kalshi's rule over /v1's candles (end in [start_ts, end_ts], period ended)
    for iv in ("1m", "1h"):
        want = [
            kalshi_view(c)
            for c in v1_candles[iv]
            if spec["start_ts"]
            <= unix(when(c["start"])) + (60 if iv == "1m" else 3600)
            <= spec["end_ts"]
            and when(c["end"]) <= asked_at
        ]
        ours = [pykalshi_view(c) for c in got[f"candles_{iv}"]["candlesticks"]]
        assert ours == want[: len(ours)], iv
        assert len(want) - len(ours) <= 1, iv  # a period may end between the two reads
        assert got[f"candles_{iv}_df"]["rows"] == len(ours)
        assert got[f"candles_{iv}"]["ticker"] == ticker
    assert len(got["candles_1m"]["candlesticks"]) > 0
    batch = got["batch"]
    assert set(batch) == {ticker, other}
    assert batch[ticker]["candlesticks"] == got["candles_1m"]["candlesticks"]
    ev = got["event_candles"]
    i = ev["market_tickers"].index(ticker)
    assert [pykalshi_view({**c, "open_interest_fp": c.get("open_interest_fp"),
                           "yes_bid": c.get("yes_bid"), "yes_ask": c.get("yes_ask")})
            for c in ev["market_candlesticks"][i]] == [
        pykalshi_view(c) for c in got["candles_1m"]["candlesticks"]
    ]  # fmt: skip
    assert ev["adjusted_end_ts"] == spec["end_ts"]
    # historical: nothing is only historical; the same record in the historical shapes
    assert set(got["cutoff"].values()) == {"1970-01-01T00:00:00Z"}
    assert got["hist_market"] == got["market"]
    assert got["hist_markets"] == got["markets"]
    hist = got["hist_candles"]
    assert [h["end_period_ts"] for h in hist] == [
        c["end_period_ts"] for c in got["candles_1m"]["candlesticks"]
    ]
    for h, c in zip(hist, got["candles_1m"]["candlesticks"], strict=True):
        assert h["volume"] == c["volume_fp"]
        assert h["price"]["close"] == c["price"]["close_dollars"]
        assert h["price"]["mean"] == c["price"]["mean_dollars"]
    assert got["not_found"] == {"class": "ResourceNotFoundError", "status": 404}
