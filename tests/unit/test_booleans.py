"""kalshibook.domain.booleans: the one boolean-word parser (settings, API, simulator)."""

from __future__ import annotations

import pytest

from kalshibook.domain.booleans import parse_bool


@pytest.mark.parametrize("text", ["1", "true", "TRUE", " True ", "yes", "on"])
def test_true_words(text: str) -> None:
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["0", "false", "False", " no", "off"])
def test_false_words(text: str) -> None:
    assert parse_bool(text) is False


@pytest.mark.parametrize("text", ["", "2", "t", "nope", "truee"])
def test_other_text_is_not_a_boolean(text: str) -> None:
    assert parse_bool(text) is None
