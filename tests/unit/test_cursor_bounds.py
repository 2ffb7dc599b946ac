"""Correctly signed but hostile cursor positions: every field is range-checked before SQL.

A leaked or guessed secret must still give a 400 naming ``cursor``, never a value PostgreSQL
rejects (a 500): integers beyond ``bigint``, text holding NUL or other control characters, naive or
out-of-range times, non-finite floats. The positions are the sort keys of the real endpoints.
"""

from __future__ import annotations

import math
import os
import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kalshibook.api.cursors import MAX_TEXT_CHARS, CursorCodec, check_position
from kalshibook.errors import BadRequest, ConfigError
from kalshibook.ops.secrets import cursor_secret, secret_file
from kalshibook.settings import ApiSettings, CoreSettings, Settings

SECRET = b"unit-test-cursor-secret-0123456789"
codec = CursorCodec(SECRET)
T = datetime(2026, 1, 15, 12, tzinfo=UTC)
U = uuid.UUID(int=7)

# (kind, the position type its endpoint decodes, a good position)
SORT_KEYS: list[tuple[str, Any, tuple[Any, ...]]] = [
    ("markets", tuple[str], ("KX-A",)),
    ("trades", tuple[datetime, uuid.UUID], (T, U)),
    ("settlements", tuple[datetime | None, str], (T, "KX-A")),
    ("deltas", tuple[datetime, int, int], (T, 3, 9)),
    ("gaps", tuple[datetime, datetime, datetime, str], (T, T, T, "resync")),
]


def forged(kind: str, position: Any) -> str:
    """A cursor signed with the right secret around an arbitrary position (what a secret's
    holder could send): encoded by hand so nothing on the encode side checks it."""
    import base64
    import hashlib
    import hmac

    payload = msgspec.msgpack.encode((1, kind, position))
    key = hmac.new(SECRET, b"kalshibook cursor v1", hashlib.sha256).digest()
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode()


@pytest.mark.parametrize(("kind", "typ", "good"), SORT_KEYS)
def test_good_positions_round_trip(kind: str, typ: Any, good: tuple[Any, ...]) -> None:
    assert codec.decode(forged(kind, good), kind, typ) == good
    assert codec.decode(codec.encode(kind, good), kind, typ) == good


HOSTILE_INTS = [2**64 - 1, 2**63]  # msgpack holds -2**63 .. 2**64-1
HOSTILE_TEXT = ["KX\x00A", "\x00", "a\nb", "\x7f", "x" * (MAX_TEXT_CHARS + 1)]


@pytest.mark.parametrize("value", HOSTILE_INTS)
def test_integers_beyond_bigint_are_a_400(value: int) -> None:
    for position in ((T, value, 1), (T, 1, value)):
        with pytest.raises(BadRequest) as err:
            codec.decode(forged("deltas", position), "deltas", tuple[datetime, int, int])
        assert err.value.parameter == "cursor"
    # the edges of bigint itself are positions, not errors
    edges = (T, 2**63 - 1, -(2**63))
    assert codec.decode(forged("deltas", edges), "deltas", tuple[datetime, int, int]) == edges


@pytest.mark.parametrize("value", HOSTILE_TEXT)
def test_text_with_control_characters_or_too_long_is_a_400(value: str) -> None:
    cases = [
        ("markets", tuple[str], (value,)),
        ("settlements", tuple[datetime | None, str], (None, value)),
        ("gaps", tuple[datetime, datetime, datetime, str], (T, T, T, value)),
    ]
    for kind, typ, position in cases:
        with pytest.raises(BadRequest) as err:
            codec.decode(forged(kind, position), kind, typ)
        assert err.value.parameter == "cursor"


def test_naive_times_and_other_types_are_a_400() -> None:
    for position in (("2026-01-15T12:00:00", str(U)), ("garbage", str(U)), (T, "not-a-uuid")):
        with pytest.raises(BadRequest):
            codec.decode(forged("trades", position), "trades", tuple[datetime, uuid.UUID])


def test_check_position_covers_any_sort_key() -> None:
    """Generic: whatever the sort key of an endpoint becomes, its fields are checked by type."""
    assert check_position((T, 5, "KX", U, None, True, 1.5, (1, 2)))
    for bad in (
        (2**63,),
        ("a\x00",),
        (datetime(2026, 1, 1),),  # noqa: DTZ001 - naive on purpose
        (math.inf,),
        (math.nan,),
        (b"bytes",),
        ((1, 2**64),),
    ):
        assert not check_position(bad), bad


def test_secret_must_be_long() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        CursorCodec(b"short")


# -- the secret itself -----------------------------------------------------------------------------


def test_secret_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "cursor_secret"
    first = secret_file(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert secret_file(path) == first  # stable across restarts
    assert secret_file(tmp_path / "other" / "cursor_secret") != first  # random, not derived
    assert [p.name for p in path.parent.iterdir()] == ["cursor_secret"]  # no temp file left


def test_readable_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cursor_secret"
    secret_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        secret_file(path)


def test_short_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cursor_secret"
    path.write_text("too short\n")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="at least 32"):
        secret_file(path)


def test_cursor_secret_is_the_setting_else_the_data_dir_file(tmp_path: Path) -> None:
    url = "postgresql://kalshibook:kalshibook@localhost:5432/kalshibook"
    explicit = Settings(
        core=CoreSettings(database_url=url, data_dir=str(tmp_path)),
        api=ApiSettings(cursor_secret="s" * 40),
    )
    assert cursor_secret(explicit) == b"s" * 40
    assert not (tmp_path / "cursor_secret").exists()
    with pytest.raises(ConfigError, match="KALSHIBOOK_API_CURSOR_SECRET"):
        cursor_secret(Settings(api=ApiSettings(cursor_secret="short")))
    implicit = Settings(core=CoreSettings(database_url=url, data_dir=str(tmp_path)))
    generated = cursor_secret(implicit)
    assert generated == (tmp_path / "cursor_secret").read_text().strip().encode()
    # two deployments with the same (default) database URL do not share a key
    other = Settings(core=CoreSettings(database_url=url, data_dir=str(tmp_path / "b")))
    assert cursor_secret(other) != generated
