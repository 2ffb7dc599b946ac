"""Per-route request deadlines: most routes have ``api.request_timeout``; a route marked
``opt={"deadline": "export"}`` (a streamed export file) has ``api.export_timeout``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from kalshibook.settings import ApiSettings

__all__ = ("EXPORT", "route_timeout")

EXPORT: Final = "export"


def route_timeout(opt: Mapping[str, Any], api: ApiSettings) -> float:
    """Seconds a request of the route with handler options ``opt`` may take in all."""
    return api.export_timeout if opt.get("deadline") == EXPORT else api.request_timeout
