"""What the writer sends its COPY workers: msgpack rows, and errors that keep their class."""

from __future__ import annotations

import msgspec
import psycopg
import pytest

from kalshibook.storage.batches import array_head, items_of
from kalshibook.storage.copyworker import rebuild


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 65535, 65536, 70000])
def test_msgpack_array_head_matches_msgspec(n: int) -> None:
    rows = [(i,) for i in range(n)]
    encoded = msgspec.msgpack.encode(rows)
    assert array_head(n) + (items_of(rows) or b"") == encoded
    halves = array_head(n) + b"".join(
        part for part in (items_of(rows[: n // 2]), items_of(rows[n // 2 :])) if part
    )
    assert msgspec.msgpack.decode(halves) == [list(r) for r in rows]


def test_copy_worker_errors_keep_their_class() -> None:
    """A database error in the worker is raised in the writer as the same psycopg class (so a
    bad row is isolated and a lost connection retried)."""
    assert isinstance(
        rebuild("psycopg", "22P02", "bad input"), psycopg.errors.InvalidTextRepresentation
    )
    assert isinstance(rebuild("psycopg", "23505", "dup"), psycopg.IntegrityError)
    assert isinstance(rebuild("psycopg", None, "gone"), psycopg.OperationalError)
    assert isinstance(rebuild("rows", None, "x"), ValueError)
    assert isinstance(rebuild("internal", None, "bug"), RuntimeError)
