"""Every numeric setting is checked at start: a value out of range fails with one line naming the
variable and the range (exit 2), never later as a traceback or a 500 on every request."""

from __future__ import annotations

import math

import msgspec
import pytest
from cli_support import run_cli

from kalshibook.api.auth import KeyRateLimited
from kalshibook.api.problems import RETRY_AFTER_MAX, quota_headers
from kalshibook.errors import ConfigError
from kalshibook.settings import BOUNDS, Settings, env_var


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("KALSHIBOOK_API_PORT", "70000", "0 (any free port) or 1 to 65535"),
        ("KALSHIBOOK_API_PORT", "-1", "0 (any free port) or 1 to 65535"),
        ("KALSHIBOOK_COLLECTOR_METRICS_PORT", "99999", "0 (disabled) or 1 to 65535"),
        ("KALSHIBOOK_COLLECTOR_ORDERBOOK_SUB_SIZE", "0", "expected 1 to"),
        ("KALSHIBOOK_WRITER_CONNECTIONS", "0", "expected 1 to 64"),
        ("KALSHIBOOK_WRITER_BATCH_ROWS", "0", "expected 1 to"),
        ("KALSHIBOOK_WRITER_QUEUE_ROWS", "0", "expected 1 to"),
        ("KALSHIBOOK_WRITER_MEMORY_ROWS", "-1", "expected 0 to"),
        ("KALSHIBOOK_API_MAX_LIMIT", "0", "expected 1 to"),
        ("KALSHIBOOK_API_MAX_LIMIT", "-5", "expected 1 to"),
        ("KALSHIBOOK_API_MAX_CANDLES", "0", "expected 1 to"),
        ("KALSHIBOOK_API_RATE_LIMIT_PER_SECOND", "0", "requests per second"),
        ("KALSHIBOOK_API_RATE_LIMIT_PER_SECOND", "inf", "requests per second"),
        ("KALSHIBOOK_KALSHI_REST_BURST", "0", "expected 1 to"),
        ("KALSHIBOOK_KALSHI_REST_MAX_RETRIES", "-1", "expected 0 to"),
        ("KALSHIBOOK_KALSHI_REST_TIMEOUT", "0", "seconds"),
        ("KALSHIBOOK_KALSHI_RECONNECT_INITIAL", "0", "seconds"),
        ("KALSHIBOOK_COLLECTOR_CHECKPOINT_SECONDS", "inf", "seconds"),
        ("KALSHIBOOK_REPLICA_MAX_LAG_SECONDS", "0", "seconds"),
    ],
)
def test_out_of_range_fails_at_start_naming_variable_and_range(
    var: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({var: value})
    message = str(info.value)
    assert message.startswith(f"{var}=")
    assert "is invalid: expected" in message
    assert expected in message
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_default_limit_above_max_limit_is_refused() -> None:
    with pytest.raises(ConfigError, match="KALSHIBOOK_API_DEFAULT_LIMIT=200") as info:
        Settings.from_env(
            {"KALSHIBOOK_API_MAX_LIMIT": "150", "KALSHIBOOK_API_DEFAULT_LIMIT": "200"}
        )
    assert "KALSHIBOOK_API_MAX_LIMIT (150)" in str(info.value)
    ok = Settings.from_env(
        {"KALSHIBOOK_API_MAX_LIMIT": "150", "KALSHIBOOK_API_DEFAULT_LIMIT": "150"}
    )
    assert (ok.api.default_limit, ok.api.max_limit) == (150, 150)


def test_zero_where_it_has_a_meaning() -> None:
    s = Settings.from_env(
        {
            "KALSHIBOOK_COLLECTOR_METRICS_PORT": "0",  # metrics server disabled
            "KALSHIBOOK_API_PORT": "0",  # any free port, as `serve --port 0`
            "KALSHIBOOK_KALSHI_REST_RATE": "0",  # no REST rate limit
            "KALSHIBOOK_KALSHI_WS_SILENCE_TIMEOUT": "0",  # never
            "KALSHIBOOK_API_SECONDS_PER_CREDIT": "0",  # disabled
            "KALSHIBOOK_WRITER_MEMORY_ROWS": "0",
            "KALSHIBOOK_KALSHI_REST_MAX_RETRIES": "0",
        }
    )
    assert (s.collector.metrics_port, s.api.port, s.kalshi.rest_rate) == (0, 0, 0.0)


def _cases() -> list[tuple[str, str, float, float]]:
    return [
        (section, name, bound.low, bound.high)
        for section, fields in BOUNDS.items()
        for name, bound in fields.items()
    ]


@pytest.mark.parametrize(("section", "name", "low", "high"), _cases())
def test_every_bound_accepts_its_range_and_refuses_beyond(
    section: str, name: str, low: float, high: float
) -> None:
    var = env_var(section, name)
    field_type = next(
        f.type for f in msgspec.structs.fields(type(getattr(Settings(), section))) if f.name == name
    )
    assert field_type in (int, float), (var, field_type)
    default = getattr(getattr(Settings(), section), name)
    assert low <= default <= high, f"{var}'s default {default} is outside its own range"
    others: dict[str, str] = {}
    if var == "KALSHIBOOK_API_DEFAULT_LIMIT":
        others = {"KALSHIBOOK_API_MAX_LIMIT": str(int(high))}
    if var == "KALSHIBOOK_API_MAX_LIMIT":
        others = {"KALSHIBOOK_API_DEFAULT_LIMIT": "1"}
    for good in (low, high):
        text = str(int(good)) if field_type is int else repr(float(good))
        assert getattr(getattr(Settings.from_env({var: text, **others}), section), name) == good
    bad = [low - 1 if field_type is int else low / 2, high + 1 if field_type is int else high * 2]
    if field_type is float:
        bad.append(math.inf)
    for value in bad:
        if value == 0 and BOUNDS[section][name].zero:
            continue
        text = str(int(value)) if field_type is int else repr(float(value))
        with pytest.raises(ConfigError, match=f"^{var}=.* is invalid: expected "):
            Settings.from_env({var: text, **others})


def test_a_zero_api_rate_limit_is_refused() -> None:
    with pytest.raises(ConfigError, match="KALSHIBOOK_API_RATE_LIMIT_PER_SECOND=0 is invalid"):
        Settings.from_env({"KALSHIBOOK_API_RATE_LIMIT_PER_SECOND": "0"})


def test_an_infinite_wait_never_breaks_the_retry_after_header() -> None:
    # whatever the wait, the 429 keeps its headers (it was an OverflowError, so a 500)
    for wait, shown in ((math.inf, RETRY_AFTER_MAX), (math.nan, RETRY_AFTER_MAX), (0.2, 1)):
        exc = KeyRateLimited("slow down", retry_after=wait)
        assert quota_headers(exc) == {"Retry-After": str(shown)}
    assert quota_headers(KeyRateLimited("x", retry_after=1e12)) == {
        "Retry-After": str(RETRY_AFTER_MAX)
    }
    assert quota_headers(KeyRateLimited("x", retry_after=2.5)) == {"Retry-After": "3"}


@pytest.mark.parametrize(
    ("command", "var", "value"),
    [
        ("serve", "KALSHIBOOK_API_PORT", "70000"),
        ("serve", "KALSHIBOOK_API_RATE_LIMIT_PER_SECOND", "0"),
        ("collect", "KALSHIBOOK_COLLECTOR_ORDERBOOK_SUB_SIZE", "0"),
        ("collect", "KALSHIBOOK_WRITER_CONNECTIONS", "0"),
    ],
)
def test_the_cli_refuses_to_start_with_one_line(command: str, var: str, value: str) -> None:
    proc = run_cli(command, url="postgresql://u:p@127.0.0.1:9/none", **{var: value})
    assert proc.returncode == ConfigError.exit_code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"kalshibook {command}: {var}={value} is invalid: expected ")
    assert "Traceback" not in proc.stderr


def test_unknown_kalshibook_variables_are_named_with_the_closest_setting() -> None:
    from kalshibook.settings import unknown_variables

    env = {
        "KALSHIBOOK_API_RATE_LIMIT": "5",  # cut short
        "KALSHIBOOK_WRITER_BACH_ROWS": "10",  # misspelt
        "KALSHIBOOK_FOO": "1",
        "KALSHIBOOK_API_PORT": "8000",  # a setting
        "KALSHIBOOK_DEMO_MARKETS": "50",  # the demo's
        "KALSHIBOOK_TEST_DATABASE_URL": "x",  # the tests'
        "KALSHIBOOK_DB_EDITION": "apache",  # scripts/db.sh's
        "PATH": "/bin",
    }
    assert unknown_variables(env) == [
        ("KALSHIBOOK_API_RATE_LIMIT", "KALSHIBOOK_API_RATE_LIMIT_PER_SECOND"),
        ("KALSHIBOOK_FOO", None),
        ("KALSHIBOOK_WRITER_BACH_ROWS", "KALSHIBOOK_WRITER_BATCH_ROWS"),
    ]


def test_the_cli_warns_of_an_unknown_variable_and_goes_on() -> None:
    done = run_cli("keys", "list", KALSHIBOOK_API_RATE_LIMIT="5")
    assert done.returncode == 2  # no database URL: the command itself still runs its checks
    assert "KALSHIBOOK_API_RATE_LIMIT is not a kalshibook setting" in done.stderr
    assert "did you mean KALSHIBOOK_API_RATE_LIMIT_PER_SECOND?" in done.stderr
