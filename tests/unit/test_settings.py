"""Settings: parsing, clear errors, and docs that match the code."""

from __future__ import annotations

import pytest

from kalshibook import settings_doc
from kalshibook.errors import ConfigError
from kalshibook.settings import Settings, all_env_vars


def test_defaults_and_overrides() -> None:
    s = Settings.from_env(
        {
            "KALSHIBOOK_DATABASE_URL": "postgresql://x",
            "KALSHIBOOK_API_PORT": "9001",
            "KALSHIBOOK_API_REQUIRE_AUTH": "false",
            "KALSHIBOOK_WRITER_BATCH_AGE": "0.5",
        }
    )
    assert s.core.database_url == "postgresql://x"
    assert s.api.port == 9001
    assert s.api.require_auth is False
    assert s.writer.batch_age == 0.5


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("KALSHIBOOK_API_PORT", "eighty"),
        ("KALSHIBOOK_API_REQUIRE_AUTH", "maybe"),
        ("KALSHIBOOK_WRITER_BATCH_AGE", "-1"),
        ("KALSHIBOOK_KALSHI_REST_RATE", "nan"),
        ("KALSHIBOOK_LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: value})


def test_missing_database_url_is_explained() -> None:
    with pytest.raises(ConfigError, match="KALSHIBOOK_DATABASE_URL"):
        Settings.from_env({}).require_database()


def test_readme_and_env_example_match_the_code() -> None:
    readme = (settings_doc.ROOT / "README.md").read_text()
    assert settings_doc.render_readme(readme) == readme, "run: python -m kalshibook.settings_doc"
    env = (settings_doc.ROOT / ".env.example").read_text()
    assert env == settings_doc.env_example(), "run: python -m kalshibook.settings_doc"
    for var, _ in all_env_vars():
        assert var in readme
        assert var in env


def test_request_deadline_and_concurrency_are_bounded() -> None:
    import pytest

    from kalshibook.errors import ConfigError
    from kalshibook.settings import Settings

    ok = Settings.from_env(
        {"KALSHIBOOK_API_REQUEST_TIMEOUT": "2.5", "KALSHIBOOK_API_MAX_CONCURRENT_PER_KEY": "8"}
    )
    assert (ok.api.request_timeout, ok.api.max_concurrent_per_key) == (2.5, 8)
    for var, value in (
        ("KALSHIBOOK_API_REQUEST_TIMEOUT", "0"),
        ("KALSHIBOOK_API_REQUEST_TIMEOUT", "nan"),
        ("KALSHIBOOK_API_REQUEST_TIMEOUT", "1e9"),
        ("KALSHIBOOK_API_MAX_CONCURRENT_PER_KEY", "0"),
    ):
        with pytest.raises(ConfigError, match=var):
            Settings.from_env({var: value})
