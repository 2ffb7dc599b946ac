"""Property-based API test from the OpenAPI document: schemathesis against a live uvicorn server.

Every operation gets up to 20 generated requests (plus the documented examples, whose tickers are
the seeded ones); no response may be a 5xx, and every response must match the documented status
codes, content types and schemas.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from api_support import LiveServer, api_settings
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kalshibook.api.app import create_app

pytestmark = pytest.mark.db

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def live_api(seeded_url: str, module_key: str) -> Iterator[tuple[str, str]]:
    with LiveServer(create_app(api_settings(seeded_url))) as server:
        yield server.url, module_key


@pytest.fixture(scope="module")
def api_schema(live_api: tuple[str, str]) -> Any:
    url, _ = live_api
    return schemathesis.openapi.from_url(f"{url}/schema/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_schema(case: Any, live_api: tuple[str, str]) -> None:
    _, key = live_api
    case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)
