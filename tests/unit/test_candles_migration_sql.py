"""Static checks of migration 0002's SQL, for the Community (continuous aggregate) branch above all.

CI only has the Apache edition, where the same SELECT bodies run as plain views (see
tests/integration/test_candles_migration.py). The continuous-aggregate statements cannot run here,
so they are checked against TimescaleDB 2.19's documented rules and the checks of its source
(tsl/src/continuous_aggs/common.c, tsl/src/bgw_policy/continuous_aggregate_api.c; the migration's
comments cite each): WITH NO DATA, real-time (materialized_only = false), chain order, one source
per level, GROUP BY time_bucket + ticker, only first/last/min/max/sum/count, no window
functions/joins/DISTINCT/ORDER BY/FILTER, hierarchical bucket widths (>= and a multiple of the
parent, no fixed-width bucket on a variable-width one, same origin/offset), policies whose window
spans at least two buckets computed the way TimescaleDB computes it, grants on every level, and
the downgrade's drop order.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import pytest

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "0002_candles.py"
SOURCES = {"trades": "market.trades", "quotes": "market.quotes", "stats": "market.market_stats"}
LEVELS = ("1m", "1h", "1d")
MAX_BUCKET = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(hours=25)}
ALLOWED_CALLS = {"time_bucket", "first", "last", "min", "max", "sum", "count"}


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_0002_candles", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mig = _load()
COMMUNITY = mig.candle_ddl("timescale")
APACHE = mig.candle_ddl("apache")
NAMES = [f"candles_{s}_{lvl}" for s in SOURCES for lvl in LEVELS]


def _interval(text: str) -> timedelta:
    n, unit = text.split()
    unit = unit.rstrip("s")
    return timedelta(**{{"minute": "minutes", "hour": "hours", "day": "days"}[unit]: int(n)})


def _creates(statements: list[str], header: str) -> dict[str, tuple[int, str]]:
    """relation -> (position, SELECT body) for statements starting with header."""
    out: dict[str, tuple[int, str]] = {}
    for i, stmt in enumerate(statements):
        m = re.match(header, stmt)
        if m:
            out[m.group(1)] = (i, stmt[m.end() :])
    return out


COMMUNITY_CREATES = _creates(
    COMMUNITY,
    r"CREATE MATERIALIZED VIEW market\.(\w+)\n"
    r"WITH \(timescaledb\.continuous, timescaledb\.materialized_only = false\) AS",
)
APACHE_CREATES = _creates(APACHE, r"CREATE VIEW market\.(\w+) AS")


def _body(name: str) -> str:
    return COMMUNITY_CREATES[name][1].removesuffix("WITH NO DATA")


def _select_list(body: str) -> list[str]:
    """Output column names, in order (one item per line: `expr AS name,` or a bare column)."""
    select = re.search(r"SELECT(.*?)\nFROM", body, re.S)
    assert select is not None
    names = []
    for line in select.group(1).strip().splitlines():
        item = line.strip().rstrip(",")
        alias = re.search(r"\bAS (\w+)$", item)
        names.append(alias.group(1) if alias else item)
        assert re.fullmatch(r"\w+", names[-1]), item
    return names


def test_every_relation_is_a_real_time_cagg_created_with_no_data() -> None:
    assert sorted(COMMUNITY_CREATES) == sorted(NAMES)
    for name, (pos, rest) in COMMUNITY_CREATES.items():
        assert rest.rstrip().endswith("WITH NO DATA"), name
        assert "timescaledb.materialized_only = false" in COMMUNITY[pos]
    assert not any("WITH DATA" in s.replace("WITH NO DATA", "") for s in COMMUNITY)


def test_apache_views_have_identical_names_and_bodies() -> None:
    assert sorted(APACHE_CREATES) == sorted(NAMES)
    for name in NAMES:
        assert APACHE_CREATES[name][1] == _body(name), name
    assert not any("add_continuous_aggregate_policy" in s for s in APACHE)
    assert not any("MATERIALIZED" in s for s in APACHE)


@pytest.mark.parametrize("source", list(SOURCES))
def test_chain_order_and_sources(source: str) -> None:
    m, h, d = (f"candles_{source}_{lvl}" for lvl in LEVELS)
    for creates in (COMMUNITY_CREATES, APACHE_CREATES):
        assert creates[m][0] < creates[h][0] < creates[d][0]
    froms = {name: re.findall(r"\bFROM\s+([\w.]+)", _body(name)) for name in (m, h, d)}
    assert froms[m] == [SOURCES[source]]
    assert froms[h] == [f"market.{m}"]
    assert froms[d] == [f"market.{h}"]


@pytest.mark.parametrize("name", NAMES)
def test_bodies_follow_the_cagg_rules(name: str) -> None:
    body = _body(name)
    upper = body.upper()
    for forbidden in (
        "TIME_BUCKET_GAPFILL",
        " OVER ",
        "OVER(",
        " JOIN ",
        "DISTINCT",
        "ORDER BY",
        "LIMIT",
        "FILTER",
        "WITH RECURSIVE",
        "(SELECT",
        "UNION",
        "HAVING",
        "NOW()",
        "RANDOM(",
        "CURRENT_",
        "LOCF",
        "INTERPOLATE",
    ):
        assert forbidden not in upper, (name, forbidden)
    assert len(re.findall(r"\bFROM\b", upper)) == 1
    calls = {c.lower() for c in re.findall(r"\b(\w+)\s*\(", body)}
    assert calls <= ALLOWED_CALLS, calls - ALLOWED_CALLS
    assert body.count("time_bucket(") == 1
    # grouped by the bucket and the ticker only, the bucket first (hierarchical caggs need the
    # time column at the same position in the parent's view and its materialisation)
    assert re.search(r"GROUP BY 1, 2\s*$", body)
    columns = _select_list(body)
    assert columns[:2] == ["bucket", "market_ticker"]
    level = name.rsplit("_", 1)[1]
    bucket_expr = re.search(r"SELECT (time_bucket\(.*?\)) AS bucket", body)
    assert bucket_expr is not None
    expected = {
        "1m": "time_bucket(INTERVAL '1 minute', ts)",
        "1h": "time_bucket(INTERVAL '1 hour', bucket)",
        "1d": "time_bucket(INTERVAL '1 day', bucket, 'America/New_York')",
    }[level]
    assert bucket_expr.group(1) == expected


@pytest.mark.parametrize("source", list(SOURCES))
def test_levels_of_one_source_have_the_same_columns(source: str) -> None:
    cols = [_select_list(_body(f"candles_{source}_{lvl}")) for lvl in LEVELS]
    assert cols[0] == cols[1] == cols[2]


@pytest.mark.parametrize("source", list(SOURCES))
def test_rollups_use_the_first_and_last_times_of_the_level_below(source: str) -> None:
    for lvl in ("1h", "1d"):
        body = _body(f"candles_{source}_{lvl}")
        for call in re.findall(r"\b(first|last)\((\w+), (\w+)\)", body):
            fn, _value, key = call
            assert key.endswith("_ts"), (lvl, call)  # never the bucket: ties inside it
            if fn == "first":
                assert key == "first_ts"


def test_one_policy_per_cagg_after_it_is_created_with_a_window_of_two_buckets() -> None:
    pattern = re.compile(
        r"SELECT add_continuous_aggregate_policy\('market\.(\w+)', "
        r"start_offset => INTERVAL '([^']+)', end_offset => INTERVAL '([^']+)', "
        r"schedule_interval => INTERVAL '([^']+)'\)"
    )
    policies = {}
    for i, stmt in enumerate(COMMUNITY):
        m = pattern.fullmatch(stmt)
        if m:
            policies[m.group(1)] = (i, *(_interval(g) for g in m.groups()[1:]))
        else:
            assert "add_continuous_aggregate_policy" not in stmt
    assert sorted(policies) == sorted(NAMES)
    for name, (pos, start, end, schedule) in policies.items():
        level = name.rsplit("_", 1)[1]
        assert pos > COMMUNITY_CREATES[name][0]
        assert start - end >= 2 * MAX_BUCKET[level], name
        assert end > timedelta(0), name  # the bucket being written is never materialised
        assert schedule <= start - end, name  # consecutive runs overlap: nothing is skipped
    # a level materialises only after the level below had the chance to: growing lags
    for source in SOURCES:
        lags = [policies[f"candles_{source}_{lvl}"][2] for lvl in LEVELS]
        assert lags == sorted(lags)


def test_reader_is_granted_every_relation_on_both_editions() -> None:
    for statements in (COMMUNITY, APACHE):
        grants = [s for s in statements if s.startswith("GRANT SELECT ON market.")]
        assert sorted(g.split()[3].removeprefix("market.") for g in grants) == sorted(NAMES)


def test_unknown_edition_is_refused() -> None:
    with pytest.raises(ValueError, match=r"timescaledb\.license"):
        mig.candle_ddl("enterprise")


def test_downgrade_order_is_reverse_chain_order() -> None:
    order = [name for name, _lvl, _body in mig.CANDLE_RELATIONS]
    assert sorted(order) == sorted(NAMES)
    for source in SOURCES:
        idx = [order.index(f"candles_{source}_{lvl}") for lvl in LEVELS]
        assert idx == sorted(idx)  # created in chain order; downgrade walks reversed(...)


# --- hierarchical rules (common.c cagg_validate_query; docs: Hierarchical continuous aggregates) --

BUCKET_CALL = re.compile(
    r"time_bucket\(INTERVAL '(\d+) (minute|hour|day)', (\w+)(?:, '([^']+)')?\)"
)


def _bucket(name: str) -> tuple[timedelta, str, str | None]:
    """(width with a day counted as 24 h, time column, time zone) of the level's time_bucket."""
    m = BUCKET_CALL.search(_body(name))
    assert m is not None, name
    n, unit, column, tz = m.groups()
    return _interval(f"{n} {unit}"), column, tz


@pytest.mark.parametrize("source", list(SOURCES))
def test_hierarchical_bucket_widths_follow_timescaledb_rules(source: str) -> None:
    levels = [f"candles_{source}_{lvl}" for lvl in LEVELS]
    buckets = [_bucket(name) for name in levels]
    assert buckets[0][1] == "ts"  # the hypertable's time dimension column
    for (parent_width, _c, parent_tz), (width, column, tz) in itertools.pairwise(buckets):
        # the parent's time column is its bucket (first column, same attno in its mat table)
        assert column == "bucket"
        # "should be greater or equal than" / "should be multiple of" the parent's width
        assert width >= parent_width
        assert width % parent_width == timedelta(0)
        # no fixed-width bucket on top of a variable-width (time zone) one
        assert parent_tz is None or tz is not None
    # only the top level is variable-width; its zone is a real IANA name, not an offset string
    assert [tz for _w, _c, tz in buckets[:-1]] == [None, None]
    tz = buckets[-1][2]
    assert tz in available_timezones()
    # every UTC offset of that zone is a whole number of hours, so 1h UTC buckets nest in its days
    zone = ZoneInfo(tz)
    t = datetime(2020, 1, 1, tzinfo=UTC)
    while t < datetime(2031, 1, 1, tzinfo=UTC):
        offset = t.astimezone(zone).utcoffset()
        assert offset is not None
        assert offset % timedelta(hours=1) == timedelta(0)
        t += timedelta(days=7)


@pytest.mark.parametrize("name", NAMES)
def test_time_bucket_has_no_origin_or_offset(name: str) -> None:
    # origins/offsets must be equal along a hierarchy ("different bucket origin/offset values"):
    # all levels use the defaults, so at most (width, column, time zone) is passed
    call = re.search(r"time_bucket\(([^)]*)\)", _body(name))
    assert call is not None
    args = [a.strip() for a in call.group(1).split(",")]
    assert len(args) <= 3
    assert not any("=>" in a for a in args)


def test_no_statement_needs_to_run_outside_a_transaction() -> None:
    # the migration runs in one transaction: no refresh, no WITH DATA, no compression at creation
    for stmt in COMMUNITY + APACHE:
        upper = stmt.upper()
        assert "REFRESH" not in upper, stmt
        assert "TIMESCALEDB.COMPRESS" not in upper, stmt
        assert not upper.startswith("CALL"), stmt


# --- policies, the way validate_window_size computes them ----------------------------------------


def _policies() -> dict[str, tuple[int, timedelta, timedelta, timedelta]]:
    pattern = re.compile(
        r"SELECT add_continuous_aggregate_policy\('market\.(\w+)', "
        r"start_offset => INTERVAL '([^']+)', end_offset => INTERVAL '([^']+)', "
        r"schedule_interval => INTERVAL '([^']+)'\)"
    )
    out = {}
    for i, stmt in enumerate(COMMUNITY):
        m = pattern.fullmatch(stmt)
        if m:
            start, end, schedule = (_interval(g) for g in m.groups()[1:])
            out[m.group(1)] = (i, start, end, schedule)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_policy_passes_timescaledb_window_check_with_margin(name: str) -> None:
    _pos, start, end, _schedule = _policies()[name]
    width, _column, tz = _bucket(name)
    # check_valid_interval_values: "start interval should be greater than end interval"
    assert start > end
    # validate_window_size: end_offset + 2 * bucket_width <= start_offset, a day being 24 h
    assert end + 2 * width <= start
    if tz is not None:
        # still true with a 25-hour DST day, or were a version to pad a time-zone bucket by 2 days
        assert end + 2 * (width + timedelta(days=2)) <= start


# --- grants (#2436, #4555/#4580; cagg_watermark checks SELECT for the calling user) --------------


def test_each_level_is_granted_right_after_creation_on_both_editions() -> None:
    for statements, creates in ((COMMUNITY, COMMUNITY_CREATES), (APACHE, APACHE_CREATES)):
        for name, (pos, _body) in creates.items():
            assert statements[pos + 1] == f"GRANT SELECT ON market.{name} TO kalshibook_reader"


# --- upgrade/downgrade with a stand-in for alembic's op ------------------------------------------


class _Bind:
    def __init__(self, edition: str, first_row: datetime | None, caggs: set[str]) -> None:
        self.edition, self.first_row, self.caggs = edition, first_row, caggs
        self.queries: list[str] = []

    def execute(self, clause: Any, params: dict[str, str] | None = None) -> SimpleNamespace:
        sql = str(clause)
        self.queries.append(sql)
        if "timescaledb.license" in sql:
            value: Any = self.edition
        elif "min(ts)" in sql:
            value = self.first_row
        elif "continuous_aggregates" in sql:
            assert params is not None
            value = int(params["name"] in self.caggs)
        else:  # pragma: no cover - an unexpected query
            raise AssertionError(sql)
        return SimpleNamespace(scalar_one=lambda: value)


def _run(monkeypatch: pytest.MonkeyPatch, step: str, bind: _Bind) -> list[str]:
    executed: list[str] = []
    fake_op = SimpleNamespace(get_bind=lambda: bind, execute=executed.append)
    monkeypatch.setattr(mig, "op", fake_op)
    getattr(mig, step)()
    return executed


def test_downgrade_drops_in_reverse_chain_order_with_the_right_kind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    community = _run(monkeypatch, "downgrade", _Bind("timescale", None, set(NAMES)))
    order = [name for name, _lvl, _body in mig.CANDLE_RELATIONS]
    assert community == [f"DROP MATERIALIZED VIEW IF EXISTS market.{n}" for n in reversed(order)]
    for source in SOURCES:  # a level is dropped before the one it is built on
        idx = [
            community.index(f"DROP MATERIALIZED VIEW IF EXISTS market.candles_{source}_{lvl}")
            for lvl in LEVELS
        ]
        assert idx == sorted(idx, reverse=True)
    apache = _run(monkeypatch, "downgrade", _Bind("apache", None, set()))
    assert apache == [f"DROP VIEW IF EXISTS market.{n}" for n in reversed(order)]


def test_upgrade_warns_when_caggs_are_created_over_existing_data(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = datetime(2026, 3, 1, 12, tzinfo=UTC)
    with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
        executed = _run(monkeypatch, "upgrade", _Bind("timescale", first, set()))
    assert executed == COMMUNITY
    assert "refresh-candles --start 2026-03-01T12:00:00+00:00" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
        _run(monkeypatch, "upgrade", _Bind("timescale", None, set()))  # empty database
        bind = _Bind("apache", first, set())
        assert _run(monkeypatch, "upgrade", bind) == APACHE
    assert caplog.text == ""
    assert not any("min(ts)" in q for q in bind.queries)  # plain views: always current
