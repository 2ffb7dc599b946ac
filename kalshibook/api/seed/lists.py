"""The seed's unpaged lists (markets, events, settlements): one response, bounded.

The SDK's ``list_markets``/``list_events``/``list_settlements`` read a single response and no
cursor. These routes return up to :data:`SEED_LIST_LIMIT` rows (also the default) and, like every
kalshibook list, ``has_more``/``next_cursor`` for the rest (with ``limit``/``cursor`` query
parameters the SDK does not send): never an unbounded response, never a silent cut.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from litestar import Request
from litestar.params import Parameter

from kalshibook.api.routes._paging import Pager
from kalshibook.settings import Settings

__all__ = ("SEED_LIST_LIMIT", "ListCursor", "ListLimit", "list_pager")

SEED_LIST_LIMIT: Final = 5000

ListLimit = Annotated[
    int | None,
    Parameter(description=f"rows per response, 1 to {SEED_LIST_LIMIT} (default {SEED_LIST_LIMIT})"),
]
ListCursor = Annotated[
    str | None, Parameter(description="`next_cursor` of the previous response, unchanged")
]


def list_pager(
    request: Request[Any, Any, Any], settings: Settings, limit: int | None, kind: str
) -> Pager:
    """A :class:`Pager` over ``/v1``'s listing ``kind`` with the seed's list bound."""
    api = msgspec.structs.replace(
        settings.api, default_limit=SEED_LIST_LIMIT, max_limit=SEED_LIST_LIMIT
    )
    return Pager(request, msgspec.structs.replace(settings, api=api), limit, kind)
