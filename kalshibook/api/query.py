"""The query parameters a ``/v1`` route accepts: those its handler declares, each at most once.

Litestar ignores a query parameter no handler argument reads and keeps the last value of one given
twice, so ``/v1/trades?ticker=X`` (Kalshi's name; ``/v1``'s is ``tickers``) would answer every
market's trades and ``tickers=A&tickers=B`` only B's. On ``/v1`` both are a 400 naming the
parameter instead: :meth:`QueryRules.check`, run by the app's ``before_request`` hook (after the
middleware's auth and charge, so such a 400 is charged like any other), with the rules read once
per handler from its signature and its dependencies' (:meth:`QueryRules.accepted`). A parameter
declared as a list (``tickers`` of ``/v1/trades``) may be repeated: the handler merges the values.
The seed's routes and ``/trade-api/v2`` keep their own rules (``/trade-api/v2`` refuses the Kalshi
filters it does not support by name and ignores other unknown parameters, as Kalshi does).
"""

from __future__ import annotations

import difflib
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

from litestar.constants import RESERVED_KWARGS
from litestar.enums import ParamType
from litestar.params import ParameterKwarg

from kalshibook.errors import BadRequest

if TYPE_CHECKING:
    from litestar import Request
    from litestar.handlers import BaseRouteHandler
    from litestar.typing import FieldDefinition

__all__ = ("STRICT_PREFIX", "QueryRules")

STRICT_PREFIX: Final = "/v1/"
"""Routes under this path accept only their declared query parameters."""


def _query_names(
    parameters: dict[str, FieldDefinition], dependencies: dict[str, Any], out: dict[str, bool]
) -> None:
    """Add the query parameters of one signature to ``out`` (name → may repeat), and those of
    the dependencies it takes."""
    for name, field in parameters.items():
        if name in RESERVED_KWARGS or field.is_di_field:
            continue
        provider = dependencies.get(name)
        if provider is not None:
            signature = getattr(provider, "parsed_fn_signature", None)
            if signature is not None:
                _query_names(signature.parameters, dependencies, out)
            continue
        kwarg = field.kwarg_definition
        if isinstance(kwarg, ParameterKwarg):
            if kwarg.param_type is not ParamType.QUERY:
                continue  # a header or cookie
            name = kwarg.name or name
        out[name] = field.is_non_string_sequence


class QueryRules:
    """The ``/v1`` query rules of one application (``app.state.query_rules``)."""

    __slots__ = ("_accepted",)

    def __init__(self) -> None:
        self._accepted: dict[BaseRouteHandler, dict[str, bool]] = {}

    def accepted(self, handler: BaseRouteHandler) -> dict[str, bool]:
        """``{name: may repeat}`` of the query parameters ``handler`` reads, in the order it
        declares them (path parameters included: :meth:`check` refuses them in the query)."""
        names = self._accepted.get(handler)
        if names is None:
            names = {}
            _query_names(
                handler.parsed_fn_signature.parameters, handler.resolve_dependencies(), names
            )
            self._accepted[handler] = names
        return names

    def check(self, request: Request[Any, Any, Any]) -> None:
        """400 naming the first query parameter a ``/v1`` route does not take, or the first one
        given more than once that is not a list."""
        handler = request.route_handler
        if not handler.paths or not all(p.startswith(STRICT_PREFIX) for p in handler.paths):
            return
        items = request.query_params.multi_items()
        if not items:
            return
        accepted = {
            name: repeats
            for name, repeats in self.accepted(handler).items()
            if name not in request.path_params
        }
        counts = Counter(name for name, _ in items)
        for name, count in counts.items():
            if name not in accepted:
                raise BadRequest(_unknown(request, name, list(accepted)), parameter=name)
            if count > 1 and not accepted[name]:
                raise BadRequest(f"{name} is given {count} times; give it once", parameter=name)


def _unknown(request: Request[Any, Any, Any], name: str, accepted: list[str]) -> str:
    where = f"{request.method} {request.scope.get('path_template') or request.url.path}"
    if not accepted:
        return f"unknown query parameter {name!r}: {where} takes no query parameters"
    close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown query parameter {name!r}{hint}: {where} takes {', '.join(accepted)}"
