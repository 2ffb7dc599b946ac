"""Pure parts of the API: cursors, token bucket, key parsing, metrics text, SQL-user inputs."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kalshibook.api.auth import TokenBucket
from kalshibook.api.cursors import CursorCodec
from kalshibook.api.metrics import ApiMetrics
from kalshibook.errors import BadRequest, InvalidInput
from kalshibook.storage.api_keys import hash_secret, parse_key
from kalshibook.storage.sql_users import normalise_timeout, validate_role_name

codec = CursorCodec(b"unit-test-cursor-secret-0123456789")


@given(
    ts=st.datetimes(
        min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
        max_value=datetime(2199, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    tid=st.uuids(),
)
def test_cursor_round_trip(ts: datetime, tid: uuid.UUID) -> None:
    cursor = codec.encode("trades", (ts, tid))
    assert codec.decode(cursor, "trades", tuple[datetime, uuid.UUID]) == (ts, tid)
    assert all(c.isalnum() or c in "-_" for c in cursor)


@given(data=st.binary(min_size=0, max_size=80))
def test_random_cursors_are_rejected_with_the_parameter_named(data: bytes) -> None:
    text = base64.urlsafe_b64encode(data).decode().rstrip("=")
    with pytest.raises(BadRequest) as err:
        codec.decode(text, "trades", tuple[datetime, uuid.UUID])
    assert err.value.parameter == "cursor"


def test_cursor_bound_to_kind_type_and_secret() -> None:
    cursor = codec.encode("markets", ("KX-A",))
    assert codec.decode(cursor, "markets", tuple[str]) == ("KX-A",)
    for kind, typ in (("events", tuple[str]), ("markets", tuple[int])):
        with pytest.raises(BadRequest):
            codec.decode(cursor, kind, typ)
    with pytest.raises(BadRequest):
        CursorCodec(b"another-deployment-cursor-secret-0123").decode(cursor, "markets", tuple[str])
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0x40
        text = base64.urlsafe_b64encode(bytes(flipped)).decode().rstrip("=")
        with pytest.raises(BadRequest):
            codec.decode(text, "markets", tuple[str])
    for bad in ("", "!!!!", "a" * 600, "=" * 8):
        with pytest.raises(BadRequest):
            codec.decode(bad, "markets", tuple[str])


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2.0, capacity=2.0, now=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0  # refilled one token
    assert not bucket.full(0.5)
    assert bucket.full(10.0)
    assert bucket.take(100.0) == 0.0
    assert bucket.tokens == pytest.approx(1.0)


def test_parse_key() -> None:
    secret = "A" * 43
    assert parse_key(f"kb_0123abcd_{secret}") == ("0123abcd", secret)
    assert parse_key(f"kb_0123abcd_{'x_y' * 12}") == ("0123abcd", "x_y" * 12)
    for bad in (
        "",
        "kb",
        f"xx_0123abcd_{secret}",
        f"kb_0123ABCD_{secret}",
        "kb_0123abcd_short",
        f"kb_0123abc_{secret}",
        f"kb_0123abcd_{secret}!",
    ):
        assert parse_key(bad) is None, bad
    assert len(hash_secret(secret)) == 32


def test_metrics_text() -> None:
    m = ApiMetrics()
    m.observe("/v1/markets/{ticker}", "GET", 200, 0.004, 1)
    m.observe("/v1/markets/{ticker}", "GET", 404, 20.0, 1)
    m.reject("unauthorized")
    text = m.render()
    lines = text.splitlines()
    route = 'route="/v1/markets/{ticker}"'
    assert f'kalshibook_api_requests_total{{method="GET",{route},status="200"}} 1.0' in lines
    assert f'kalshibook_api_request_duration_seconds_bucket{{le="0.005",{route}}} 1.0' in lines
    assert f'kalshibook_api_request_duration_seconds_bucket{{le="+Inf",{route}}} 2.0' in lines
    assert f"kalshibook_api_credits_spent_total{{{route}}} 2.0" in lines
    assert 'kalshibook_api_auth_rejections_total{reason="unauthorized"} 1.0' in lines
    assert text.endswith("\n")


def test_metrics_registry_per_app() -> None:
    """Each ApiMetrics has its own registry: one app's requests never show in another's."""
    a, b = ApiMetrics(), ApiMetrics()
    a.observe("/v1/trades", "GET", 200, 0.01, 2)
    assert "kalshibook_api_requests_total{" in a.render()
    assert "kalshibook_api_requests_total{" not in b.render()
    assert "# TYPE kalshibook_api_requests_total counter" in b.render()


def test_sql_user_inputs() -> None:
    assert normalise_timeout("30s") == "30s"
    assert normalise_timeout("1500") == "1500ms"
    assert normalise_timeout(" 2min ") == "2min"
    for bad in ("0", "-1s", "1 day", "30s; DROP ROLE x", ""):
        with pytest.raises(InvalidInput):
            normalise_timeout(bad)
    assert validate_role_name("alice_1") == "alice_1"
    for bad in ("Alice", "1x", "a-b", "pg_x", "kalshibook_reader", 'x"; --'):
        with pytest.raises(InvalidInput):
            validate_role_name(bad)


def test_openapi_document_has_valid_examples_for_every_operation() -> None:
    import json

    import jsonschema
    import msgspec

    from kalshibook.api.app import create_app
    from kalshibook.settings import ApiSettings, CoreSettings, Settings

    app = create_app(
        Settings(
            core=CoreSettings(database_url="postgresql://u@localhost/x"),
            api=ApiSettings(cursor_secret="x" * 32),
        )
    )
    doc = json.loads(msgspec.json.encode(app.openapi_schema.to_schema()))
    checked = 0
    for path, item in doc["paths"].items():
        for op in item.values():
            ok = op["responses"]["200"]
            assert any(c.get("examples") for c in ok.get("content", {}).values()), path
            for response in op["responses"].values():
                for content in response.get("content", {}).values():
                    for example in content.get("examples", {}).values():
                        root = {"components": doc["components"], **content["schema"]}
                        jsonschema.validate(example["value"], root)
                        checked += 1
    assert checked > 50
