"""The export manifest: one entry per file written (pure data + JSON load/save).

``manifest.json`` at the export root maps each file's path (relative, ``/``-separated) to its
table, market, UTC day, row count, time range, sha256, size and the source fingerprint it was
written from (kalshibook/export/run.py). A re-run skips a file whose fingerprint is unchanged and
whose size still matches; it computes the rest again and replaces those whose bytes changed.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Final

import msgspec

__all__ = ("MANIFEST_NAME", "Entry", "Manifest", "load", "save")

MANIFEST_NAME: Final = "manifest.json"
VERSION: Final = 1


class Entry(msgspec.Struct, frozen=True):
    table: str
    market_ticker: str | None
    date: str | None
    format: str
    rows: int
    first_ts: datetime | None
    last_ts: datetime | None
    sha256: str
    bytes: int
    fingerprint: str | None


class Manifest(msgspec.Struct):
    version: int = VERSION
    files: dict[str, Entry] = msgspec.field(default_factory=dict)


def load(root: Path) -> Manifest:
    path = root / MANIFEST_NAME
    if not path.exists():
        return Manifest()
    return msgspec.json.decode(path.read_bytes(), type=Manifest)


def save(root: Path, manifest: Manifest) -> None:
    root.mkdir(parents=True, exist_ok=True)
    data = msgspec.to_builtins(manifest)
    data["files"] = dict(sorted(data["files"].items()))
    tmp = root / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(root / MANIFEST_NAME)
