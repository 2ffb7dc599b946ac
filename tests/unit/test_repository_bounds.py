"""The suite reads nothing outside the repository (what a clone with nothing beside it has)."""

from __future__ import annotations

import contextlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_read_beside_the_repository_is_recorded(outside_reads: list[str]) -> None:
    """The audit hook that fails the session sees a file opened beside the repository root."""
    before = len(outside_reads)
    beside = ROOT.parent / "kalshibook-audit-probe" / "fixture.json"
    with contextlib.suppress(OSError):
        beside.read_text()
    assert outside_reads[before:] == [str(beside)]
    del outside_reads[before:]  # the probe itself must not fail the session


def test_reads_inside_the_repository_are_not_recorded(outside_reads: list[str]) -> None:
    before = len(outside_reads)
    (ROOT / "README.md").read_text()
    sorted((ROOT / "tests" / "fixtures" / "kalshi").glob("*.json"))
    assert len(outside_reads) == before


def test_recorded_kalshi_payloads_live_in_the_repository() -> None:
    fixtures = ROOT / "tests" / "fixtures" / "kalshi"
    assert (fixtures / "SOURCES.md").is_file()
    assert len(list(fixtures.glob("*.json*"))) >= 20


def test_test_modules_have_unique_basenames() -> None:
    """pytest imports test modules by basename (rootdir-relative packages are not used): two
    files with one name in different directories stop the whole collection."""
    root = Path(__file__).resolve().parents[1]
    names: dict[str, list[str]] = {}
    for path in root.rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(root)))
    assert {n: p for n, p in names.items() if len(p) > 1} == {}
