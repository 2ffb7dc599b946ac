"""pyproject.toml uses the packaging metadata current setuptools accepts without a warning."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_license_is_an_spdx_expression_and_setuptools_supports_it() -> None:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # a TOML table ({ text = ... }) is deprecated: setuptools warns, and refuses it from 2027-02-18
    assert doc["project"]["license"] == "Apache-2.0"
    classifiers = doc["project"].get("classifiers", [])
    assert not [c for c in classifiers if c.startswith("License ::")], (
        "SPDX or classifier, not both"
    )
    # PEP 639 license expressions need setuptools >= 77
    requires = doc["build-system"]["requires"]
    assert "setuptools>=77" in requires, requires
