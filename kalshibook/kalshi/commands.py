"""Kalshi WebSocket commands (pure): ``subscribe``, ``unsubscribe``, ``update_subscription``
and ``list_subscriptions`` as JSON bytes ready to send; ``None`` parameters are dropped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

__all__ = (
    "list_subscriptions_cmd",
    "subscribe_cmd",
    "unsubscribe_cmd",
    "update_subscription_cmd",
)

_ENCODER = msgspec.json.Encoder()


def _cmd(cmd_id: int, cmd: str, params: Mapping[str, Any] | None) -> bytes:
    body: dict[str, Any] = {"id": cmd_id, "cmd": cmd}
    if params is not None:
        body["params"] = {k: v for k, v in params.items() if v is not None}
    return _ENCODER.encode(body)


def subscribe_cmd(
    id: int,
    channels: Sequence[str],
    market_tickers: Sequence[str] | None = None,
    **opts: Any,
) -> bytes:
    """``subscribe``; ``opts`` pass through (``send_initial_snapshot``, ``use_yes_price``,
    ``skip_ticker_ack``, ``market_ticker``, ``market_ids``...); ``None`` options are dropped."""
    if not channels:
        raise ValueError("subscribe needs at least one channel")
    params: dict[str, Any] = {"channels": list(channels)}
    if market_tickers is not None:
        params["market_tickers"] = list(market_tickers)
    params.update(opts)
    return _cmd(id, "subscribe", params)


def unsubscribe_cmd(id: int, sids: Sequence[int]) -> bytes:
    return _cmd(id, "unsubscribe", {"sids": list(sids)})


def update_subscription_cmd(
    id: int,
    sid: int,
    action: Literal["add_markets", "delete_markets", "get_snapshot"],
    market_tickers: Sequence[str] | None = None,
    **opts: Any,
) -> bytes:
    """``update_subscription`` in the ``sids: [sid]`` form of Kalshi's examples."""
    params: dict[str, Any] = {"sids": [sid], "action": action}
    if market_tickers is not None:
        params["market_tickers"] = list(market_tickers)
    params.update(opts)
    return _cmd(id, "update_subscription", params)


def list_subscriptions_cmd(id: int) -> bytes:
    return _cmd(id, "list_subscriptions", None)
