"""Every example of docs/api.md runs against the real app, so the page cannot drift from the code.

Convention of docs/api.md: an ```http block is one exchange::

    GET /v1/markets/KXHIGHNY-26MAR08-B49.5/trades?limit=x     the request line (GET only)
    Authorization: Bearer $KB_KEY                             request headers, sent as written
                                                              ($KB_KEY, $KB_EMPTY_KEY: test keys)
                                                              optional from here: a blank line,
    HTTP/1.1 400 Bad Request                                  the status (default 200),
    Content-Type: application/problem+json                    response headers to check

A ```json block right after it is the response body, abbreviated: ``…`` stands for omitted object
members or list items, and an object or list written without ``…`` is complete. Values of the
fields that change on every request (``request_id``, ``response_time``, ``now``, ``lag_seconds``,
``approx_rows``) are not compared. A ```text block right after it (``/metrics``) must share its
``# TYPE`` lines with the response.

The examples run in document order in one app, on the sample data of ``docs_api_seed`` (the data
the page was generated from), with a key holding ``START_CREDITS`` credits, so even the
``X-Credits-Remaining`` headers shown are checked. Cursors are signed with
``KALSHIBOOK_API_CURSOR_SECRET``; the app gets the fixed :data:`DOCS_CURSOR_SECRET` there, so the
cursors printed in the page are the ones the test gets.

The page's credit table is checked against the costs the handlers declare, every endpoint must
have at least one successful example, and the ```python recipes are executed against the app.

A failure names the line of the example and the JSON path that differs; when the API changed on
purpose, update the example (and the prose around it) from it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from docs_api_seed import MARKET, START_CREDITS, create_docs_keys, insert_docs_seed
from litestar.testing import AsyncTestClient, TestClient

from kalshibook.api.app import create_app
from kalshibook.api.auth import create_key
from kalshibook.api.routes import ROUTE_HANDLERS
from kalshibook.settings import ApiSettings, CoreSettings, Settings
from kalshibook.storage.pool import make_pool

pytestmark = pytest.mark.db

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
CURSOR_SECRET_URL = "postgresql://kalshibook@localhost:5432/kalshibook"
"""Stands in for the database URL when the real database comes as an injected pool."""
DOCS_CURSOR_SECRET = "kalshibook-docs-example-cursor-secret"
"""The cursor secret the page's examples were signed with (see the docstring)."""
VOLATILE = frozenset({"request_id", "response_time", "now", "lag_seconds", "approx_rows"})
ELLIPSIS = "…"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
REQUEST_LINE = re.compile(r"^GET (/\S*)$")
STATUS_LINE = re.compile(r"^HTTP/1\.1 (\d{3})\b")


# -- the page ------------------------------------------------------------------------------------


@dataclass
class Exchange:
    line: int
    target: str
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    response_headers: dict[str, str] = field(default_factory=dict)
    body_kind: str | None = None
    body: str | None = None

    @property
    def where(self) -> str:
        return f"docs/api.md:{self.line} GET {self.target}"


def _headers(lines: list[str]) -> dict[str, str]:
    out = {}
    for text in lines:
        name, sep, value = text.partition(":")
        assert sep, f"not a header line: {text!r}"
        out[name.strip()] = value.strip()
    return out


def parse_exchanges(text: str) -> list[Exchange]:
    blocks = list(FENCE.finditer(text))
    out: list[Exchange] = []
    for i, block in enumerate(blocks):
        if block.group(1) != "http":
            continue
        lines = block.group(2).rstrip("\n").split("\n")
        request = REQUEST_LINE.match(lines[0])
        assert request, f"docs/api.md: an http block must start with `GET /path`: {lines[0]!r}"
        blank = lines.index("") if "" in lines else len(lines)
        ex = Exchange(
            line=text.count("\n", 0, block.start()) + 2,
            target=request.group(1),
            headers=_headers(lines[1:blank]),
        )
        rest = lines[blank + 1 :]
        if rest:
            status = STATUS_LINE.match(rest[0])
            assert status, f"{ex.where}: expected `HTTP/1.1 <status>` after the blank line"
            ex.status = int(status.group(1))
            ex.response_headers = _headers(rest[1:])
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        adjacent = following is not None and not text[block.end() : following.start()].strip()
        if adjacent and following.group(1) in ("json", "text"):
            ex.body_kind = following.group(1)
            ex.body = following.group(2)
        out.append(ex)
    return out


def load_abbreviated(text: str) -> Any:
    """JSON in which a bare ``…`` stands for omitted members (objects) or items (lists)."""
    out: list[str] = []
    stack: list[str] = []
    in_string = escaped = False
    for i, ch in enumerate(text):
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}":
            stack.pop()
        elif ch == ELLIPSIS:
            assert stack, "… outside of an object or list"
            out.append(f'"{ELLIPSIS}"' if stack[-1] == "[" else f'"{ELLIPSIS}": null')
            following = text[i + 1 :].lstrip()
            if following and following[0] not in ",]}":
                out.append(",")
            continue
        out.append(ch)
    return json.loads("".join(out))


def _segments(items: list[Any]) -> list[list[Any]]:
    """Split a documented list at its ``…`` items."""
    segs: list[list[Any]] = [[]]
    for item in items:
        if item == ELLIPSIS:
            segs.append([])
        else:
            segs[-1].append(item)
    return segs


def _run_mismatches(doc: list[Any], actual: list[Any], offset: int, path: str) -> list[str]:
    """``doc`` against ``actual[offset:offset + len(doc)]``, item by item."""
    return [
        error
        for i, item in enumerate(doc)
        for error in mismatches(item, actual[offset + i], f"{path}[{offset + i}]")
    ]


def _list_mismatches(doc: list[Any], actual: list[Any], path: str) -> list[str]:
    segs = _segments(doc)
    if len(segs) == 1:
        if len(doc) != len(actual):
            return [f"{path}: documented {len(doc)} items, got {len(actual)}"]
        return _run_mismatches(doc, actual, 0, path)
    # the items before the first … start the list, those after the last … end it, and the
    # runs between them must appear in that order in between
    head, *middle, tail = segs
    if len(head) + len(tail) > len(actual):
        return [f"{path}: documented more items than the {len(actual)} returned"]
    stop = len(actual) - len(tail)
    errors = _run_mismatches(head, actual, 0, path) + _run_mismatches(tail, actual, stop, path)
    pos = len(head)
    for run in middle:
        while pos + len(run) <= stop and _run_mismatches(run, actual, pos, path):
            pos += 1
        if pos + len(run) > stop:
            return [*errors, f"{path}: documented items {run!r} not found in this order"]
        pos += len(run)
    return errors


def mismatches(doc: Any, actual: Any, path: str = "$") -> list[str]:
    """Where the documented value ``doc`` (with ``…``) differs from the real response."""
    if isinstance(doc, dict):
        if not isinstance(actual, dict):
            return [f"{path}: documented an object, got {actual!r}"]
        keys = set(doc) - {ELLIPSIS}
        errors = [f"{path}.{k}: documented but absent" for k in sorted(keys - set(actual))]
        if ELLIPSIS not in doc:
            extra = sorted(set(actual) - keys)
            errors += [f"{path}.{k}: returned but not documented (add it or …)" for k in extra]
        for k in sorted(keys & set(actual)):
            if k not in VOLATILE:
                errors += mismatches(doc[k], actual[k], f"{path}.{k}")
        return errors
    if isinstance(doc, list):
        if not isinstance(actual, list):
            return [f"{path}: documented a list, got {actual!r}"]
        return _list_mismatches(doc, actual, path)
    if doc != actual or type(doc) is not type(actual):
        return [f"{path}: documented {doc!r}, got {actual!r}"]
    return []


def exchanges() -> list[Exchange]:
    return parse_exchanges(DOC.read_text(encoding="utf-8"))


# -- running the examples ------------------------------------------------------------------------


def docs_settings(url: str = CURSOR_SECRET_URL) -> Settings:
    return Settings(
        core=CoreSettings(database_url=url),
        api=ApiSettings(rate_limit_per_second=1_000_000.0, cursor_secret=DOCS_CURSOR_SECRET),
    )


@pytest.fixture(scope="module")
def docs_db(databases: Any) -> Iterator[str]:
    """A database with the docs' sample data, shared by this module."""
    with databases.database("docs") as url:
        insert_docs_seed(url)
        yield url


async def run_exchange(
    client: AsyncTestClient[Any], ex: Exchange, keys: dict[str, str]
) -> tuple[Any, list[str]]:
    """Send one example; the response and what differs from the page."""
    headers = dict(ex.headers)
    for name, value in headers.items():
        for placeholder, key in keys.items():
            value = value.replace(placeholder, key)
        headers[name] = value
    r = await client.get(ex.target, headers=headers)
    errors: list[str] = []
    if r.status_code != ex.status:
        errors.append(f"status {r.status_code}, documented {ex.status}: {r.text[:300]}")
    for name, value in ex.response_headers.items():
        if r.headers.get(name) != value:
            errors.append(f"header {name}: {r.headers.get(name)!r}, documented {value!r}")
    if ex.body_kind == "json" and ex.body is not None:
        try:
            documented = load_abbreviated(ex.body)
        except (ValueError, AssertionError) as exc:
            errors.append(f"the documented body is not (abbreviated) JSON: {exc}")
        else:
            errors += mismatches(documented, r.json())
    elif ex.body_kind == "text" and ex.body is not None:
        types = [ln for ln in ex.body.splitlines() if ln.startswith("# TYPE")]
        errors += [f"missing line {ln!r}" for ln in types if ln not in r.text.splitlines()]
    return r, errors


async def test_every_example_of_the_page_is_what_the_api_returns(docs_db: str) -> None:
    examples = exchanges()
    assert len(examples) >= 30, "docs/api.md lost its examples"
    keys = create_docs_keys(docs_db)
    pool = make_pool(
        docs_settings(docs_db),
        min_size=1,
        max_size=4,
        autocommit=True,
        options="-c timezone=UTC",
    )
    await pool.open(wait=True)
    try:
        app = create_app(docs_settings(), pool=pool)
        failures = []
        async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
            for ex in examples:
                _, errors = await run_exchange(client, ex, keys)
                failures += [f"{ex.where}: {e}" for e in errors]
    finally:
        await pool.close()
    assert not failures, "docs/api.md differs from the API:\n" + "\n".join(failures)


# -- the credit table and endpoint coverage ------------------------------------------------------

COST_ROW = re.compile(r"^\| `GET ([^`]+)` \| (\d+) \|", re.MULTILINE)


def _route_pattern(path: str) -> re.Pattern[str]:
    parts = re.split(r"\{[^}]+\}", path)
    return re.compile("^" + "[^/?]+".join(re.escape(p) for p in parts) + r"(\?.*)?$")


def _plain(path: str) -> str:
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def test_credit_table_matches_the_handlers() -> None:
    documented = {path: int(cost) for path, cost in COST_ROW.findall(DOC.read_text("utf-8"))}
    declared = {_plain(path): int(h.opt.get("cost", 0)) for h in ROUTE_HANDLERS for path in h.paths}
    assert documented == declared


def test_every_endpoint_has_a_successful_example() -> None:
    targets = [ex.target for ex in exchanges() if ex.status == 200]
    paths = [_plain(p) for h in ROUTE_HANDLERS for p in h.paths]
    paths += ["/schema", "/schema/openapi.json", "/schema/swagger"]
    missing = [p for p in paths if not any(_route_pattern(p).match(t) for t in targets)]
    assert not missing, f"endpoints without an example in docs/api.md: {missing}"


# -- the python recipes --------------------------------------------------------------------------


def python_blocks() -> list[str]:
    return [m.group(2) for m in FENCE.finditer(DOC.read_text("utf-8")) if m.group(1) == "python"]


def test_python_recipes_work(docs_db: str) -> None:
    namespace: dict[str, Any] = {"__name__": "docs_api_recipes"}
    for code in python_blocks():
        exec(compile(code, str(DOC), "exec"), namespace)  # our own documentation
    fetch_all, replay = namespace["fetch_all"], namespace["replay"]
    kalshi_candlesticks = namespace["kalshi_candlesticks"]
    key = create_key(docs_db, name="recipes", credits=START_CREDITS).key
    with TestClient(app=create_app(docs_settings(docs_db))) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        trades = list(fetch_all(client, f"/v1/markets/{MARKET}/trades", limit=3))
        assert len(trades) == 13
        assert len({t["trade_id"] for t in trades}) == 13
        # from before the resync (13:29:58.4) to after the new epoch (14:25:06.2), and beyond
        for start, end in [
            ("2026-03-08T11:00:00Z", "2026-03-08T20:00:00Z"),
            ("2026-03-07T00:00:00Z", "2026-03-08T14:25:05Z"),  # ends inside the disconnect
            ("2026-03-08T14:00:00Z", "2026-03-08T15:00:00Z"),  # no delta after the repair
        ]:
            book = replay(client, MARKET, start, end, limit=4)
            before_end = datetime.fromisoformat(end) - timedelta(microseconds=1)
            expected = client.get(
                f"/v1/markets/{MARKET}/orderbook", params={"at": before_end.isoformat()}
            ).json()["data"]
            for side in ("yes", "no"):
                levels = {Decimal(p): Decimal(s) for p, s in expected[f"{side}_bids"]}
                assert book[side] == levels, (start, end, side)
        # Kalshi's candles ending 13:00..17:00 UTC, hourly
        kalshi = kalshi_candlesticks(client, MARKET, 1772974800, 1772989200, 60)
        assert kalshi["ticker"] == MARKET
        ends = [c["end_period_ts"] for c in kalshi["candlesticks"]]
        assert ends == list(range(1772974800, 1772989200 + 1, 3600))
        # one export file: the market's trades of the day, in exchange order
        table = namespace["export_table"](client, "trades", MARKET, "2026-03-08")
        of_day = [t for t in trades if t["created_time"].startswith("2026-03-08")]
        of_day.sort(key=lambda t: (t["exchange_seq"], t["trade_id"]))
        assert table.column("trade_id").to_pylist() == [t["trade_id"] for t in of_day]
        assert table.num_rows > 0
