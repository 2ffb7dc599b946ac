"""Keyset pagination shared by the list endpoints.

Every list handler does the same steps: check ``limit`` against the settings, decode the
``cursor`` of its page kind, fetch ``limit + 1`` rows, split the extra row off into
``next_cursor``/``has_more`` and wrap the page in its envelope. :class:`Pager` does those steps;
the handler keeps its own query and the order of its parameter checks (``limit`` is checked when
the pager is made, the cursor when :meth:`Pager.after` is called).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from litestar import Request

from kalshibook.api.deps import cursor_codec, envelope_meta, split_page
from kalshibook.api.params import parse_limit
from kalshibook.settings import Settings

__all__ = ("Pager",)

K = TypeVar("K")
R = TypeVar("R")
P = TypeVar("P")


class Pager:
    """One list request: its checked page size and the cursor kind of its endpoint."""

    __slots__ = ("codec", "kind", "limit", "request")

    def __init__(
        self, request: Request[Any, Any, Any], settings: Settings, limit: int | None, kind: str
    ) -> None:
        self.request = request
        self.limit = parse_limit(
            limit, default=settings.api.default_limit, maximum=settings.api.max_limit
        )
        self.codec = cursor_codec(request)
        self.kind = kind

    @property
    def fetch(self) -> int:
        """Rows to ask the database for: one more than the page, to learn ``has_more``."""
        return self.limit + 1

    def after(self, cursor: str | None, position_type: type[K]) -> K | None:
        """The position to resume after (``None`` on the first page)."""
        return None if cursor is None else self.codec.decode(cursor, self.kind, position_type)

    def split(self, rows: list[R], key: Callable[[R], Any]) -> tuple[list[R], str | None, bool]:
        """``(page, next_cursor, has_more)`` of rows fetched with :attr:`fetch`."""
        return split_page(rows, self.limit, self.codec, self.kind, key)

    def page(
        self,
        envelope: Callable[..., P],
        rows: list[R],
        out: Callable[[R], Any],
        key: Callable[[R], Any],
        **extra: Any,
    ) -> P:
        """The envelope of the first ``limit`` rows; ``key`` gives the cursor of the last one."""
        page, next_cursor, has_more = split_page(rows, self.limit, self.codec, self.kind, key)
        return envelope(
            data=[out(r) for r in page],
            next_cursor=next_cursor,
            has_more=has_more,
            **extra,
            **envelope_meta(self.request),
        )
