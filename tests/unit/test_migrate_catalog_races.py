"""The post-migration steps run again when they lose a race on a catalog row to a TimescaleDB job
(kalshibook.storage.migrate.retrying_catalog_races)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from kalshibook.errors import SchemaError
from kalshibook.storage import migrate


@pytest.fixture(autouse=True)
def _no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrate.time, "sleep", lambda _: None)


def failing(errors: list[Exception]) -> tuple[list[int], Callable[[], None]]:
    calls: list[int] = []

    def step() -> None:
        calls.append(1)
        if errors:
            raise errors.pop(0)

    return calls, step


def test_a_step_that_lost_a_race_runs_again() -> None:
    race = psycopg.errors.InternalError_("tuple concurrently updated")
    calls, step = failing([race, psycopg.errors.DeadlockDetected("deadlock detected")])
    migrate.retrying_catalog_races(step, "the grants")
    assert len(calls) == 3


def test_other_internal_errors_are_not_retried() -> None:
    calls, step = failing([psycopg.errors.InternalError_("cache lookup failed")])
    with pytest.raises(psycopg.errors.InternalError_):
        migrate.retrying_catalog_races(step, "the grants")
    assert len(calls) == 1


def test_it_gives_up_with_a_clear_error() -> None:
    errors: list[Exception] = [
        psycopg.errors.InternalError_("tuple concurrently updated")
        for _ in range(migrate.CATALOG_RETRIES)
    ]
    calls, step = failing(errors)
    with pytest.raises(SchemaError, match="run `kalshibook migrate` again"):
        migrate.retrying_catalog_races(step, "the grants")
    assert len(calls) == migrate.CATALOG_RETRIES
