"""The WebSocket command protocol of the simulator: subscribe, unsubscribe,
update_subscription and list_subscriptions, with Kalshi's error codes and replies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from kalshibook.sim.model import Exchange
from kalshibook.sim.records import TICKER
from kalshibook.sim.session import CHANNELS, ORDERBOOK, Session, Sub, decode, encode

__all__ = ("on_message",)


def on_message(sess: Session, message: str | bytes) -> None:
    """Run one client command (decoded from ``message``) on ``sess``; replies are queued."""
    try:
        cmd = decode(message)
    except msgspec.DecodeError:
        sess.error(None, 1)
        return
    if not isinstance(cmd, dict):
        sess.error(None, 1)
        return
    raw_id = cmd.get("id")
    cmd_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    name = cmd.get("cmd")
    params = cmd.get("params")
    fate = sess.host.unanswered.get(name) if isinstance(name, str) else None
    if fate and fate.pop(0):
        sess.host.stats["commands_lost"] += 1
        return
    code = _refusal(sess, name, params)
    if code is not None:
        sess.host.stats["commands_refused"] += 1
        _refuse(sess, cmd_id, params, code)
        return
    if name == "subscribe":
        _subscribe(sess, cmd_id, params)
    elif name == "unsubscribe":
        _unsubscribe(sess, cmd_id, params)
    elif name == "update_subscription":
        _update(sess, cmd_id, params)
    elif name == "list_subscriptions":
        subs = [{"channel": s.channel, "sid": s.sid} for s in sess.subs.values()]
        reply: dict[str, Any] = {"id": cmd_id} if cmd_id else {}
        reply["type"] = "ok"
        reply["msg"] = subs
        sess.send(reply)
    else:
        sess.error(cmd_id, 5)


def _refusal(sess: Session, name: Any, params: Any) -> int | None:
    """The error code to answer this command with (SimServer.refuse_next), if any."""
    if not isinstance(name, str):
        return None
    keys = [name]
    if isinstance(params, dict) and isinstance(params.get("action"), str):
        keys.insert(0, f"{name}:{params['action']}")
    for key in keys:
        codes = sess.host.refusals.get(key)
        if codes:
            return codes.pop(0)
    return None


def _refuse(sess: Session, cmd_id: int | None, params: Any, code: int) -> None:
    """Error ``code`` answering the command, on the sid it names (terminal codes end it)."""
    sub: Sub | None = None
    if isinstance(params, dict):
        sid: Any = params.get("sid")
        sids = params.get("sids")
        if sid is None and isinstance(sids, list) and sids:
            sid = sids[0]
        sub = sess.subs.get(sid) if isinstance(sid, int) else None
    sess.error(cmd_id, code, sub)
    if sub is not None and code in (10, 25):
        del sess.subs[sub.sid]
        sess.rebuild_routes()


def _markets_param(model: Exchange, params: dict[str, Any]) -> tuple[list[str] | None, str | None]:
    """Market tickers named by ``market_ticker(s)``/``market_id(s)``: (tickers, error)."""
    given = [
        k
        for k in ("market_ticker", "market_tickers", "market_id", "market_ids")
        if params.get(k) not in (None, "", [])
    ]
    if not given:
        return None, None
    if len(given) > 1:
        return None, "give only one of market_ticker, market_tickers, market_id, market_ids"
    key = given[0]
    value = params[key]
    values: list[Any] = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v for v in values):
        return None, f"{key} must be a string or a list of strings"
    if key in ("market_id", "market_ids"):
        by_id = model.markets_by_id
        unknown = [v for v in values if v not in by_id]
        if unknown:
            return None, "unknown market ids: " + ",".join(unknown[:10])
        values = [by_id[v].ticker for v in values]
    return list(dict.fromkeys(values)), None


def _unknown(model: Exchange, tickers: Iterable[str]) -> list[str]:
    markets = model.markets
    return [t for t in tickers if t not in markets]


def _subscribe(sess: Session, cmd_id: int | None, params: Any) -> None:
    if not isinstance(params, dict):
        sess.error(cmd_id, 2)
        return
    channels = params.get("channels")
    if not channels or not isinstance(channels, list):
        sess.error(cmd_id, 3)
        return
    for ch in channels:
        if ch not in CHANNELS:
            sess.error(cmd_id, 8, channel=ch if isinstance(ch, str) else str(ch))
            return
    tickers, bad = _markets_param(sess.host.model, params)
    if bad is not None:
        sess.error(cmd_id, 11, detail=bad)
        return
    if ORDERBOOK in channels and not tickers:
        sess.error(cmd_id, 14)
        return
    default = sess.host.yes_price_default and ORDERBOOK in channels
    if params.get("use_yes_price", default):
        # NO levels are always NO-leg prices (Kalshi's default today); refuse rather than mislead.
        sess.error(cmd_id, 11, detail="use_yes_price is not supported by the simulator")
        return
    if tickers:
        unknown = _unknown(sess.host.model, tickers)
        if unknown:
            sess.error(cmd_id, 11, market_tickers=unknown)
            return
    skip_ack = bool(params.get("skip_ticker_ack"))
    initial_ticker = bool(params.get("send_initial_snapshot"))
    model = sess.host.model
    new: list[Sub] = []
    for ch in dict.fromkeys(channels):
        markets = None if ch == "market_lifecycle_v2" or not tickers else dict.fromkeys(tickers)
        sub = Sub(sess.next_sid, ch, markets, skip_ack)
        sess.next_sid += 1
        sess.subs[sub.sid] = sub
        new.append(sub)
        reply: dict[str, Any] = {"id": cmd_id} if cmd_id else {}
        reply["type"] = "subscribed"
        reply["msg"] = {"channel": ch, "sid": sub.sid}
        sess.send(reply)
    for sub in new:
        if sub.channel == ORDERBOOK:
            assert sub.markets is not None
            for t in sub.markets:
                sess.snapshot(sub, model.markets[t], None)
        elif sub.channel == "ticker" and initial_ticker:
            targets = (
                list(sub.markets)
                if sub.markets is not None
                else [m.ticker for m in model.market_list if m.status == "active"]
            )
            for t in targets:
                sess.push(TICKER, sub, encode(model.ticker_msg(model.markets[t])))
    sess.rebuild_routes()


def _unsubscribe(sess: Session, cmd_id: int | None, params: Any) -> None:
    if not isinstance(params, dict):
        sess.error(cmd_id, 2)
        return
    sids = params.get("sids")
    if not sids or not isinstance(sids, list):
        sess.error(cmd_id, 4)
        return
    for sid in sids:
        sub = sess.subs.pop(sid, None) if isinstance(sid, int) else None
        if sub is None:
            sess.error(cmd_id, 7)
            continue
        sess.send_scoped(sub, "unsubscribed", cmd_id)
    sess.rebuild_routes()


def _update(sess: Session, cmd_id: int | None, params: Any) -> None:
    if not isinstance(params, dict):
        sess.error(cmd_id, 2)
        return
    sid: Any = params.get("sid")
    sids = params.get("sids")
    if sid is None:
        if not isinstance(sids, list) or len(sids) != 1:
            sess.error(cmd_id, 12)
            return
        sid = sids[0]
    elif sids is not None and sids != [sid]:
        sess.error(cmd_id, 12)
        return
    sub = sess.subs.get(sid) if isinstance(sid, int) else None
    if sub is None:
        sess.error(cmd_id, 7)
        return
    action = params.get("action")
    if not action:
        sess.error(cmd_id, 15, sub)
        return
    if action not in ("add_markets", "delete_markets", "get_snapshot"):
        sess.error(cmd_id, 13, sub)
        return
    if action == "get_snapshot" and sub.channel != ORDERBOOK:
        sess.error(cmd_id, 13, sub)
        return
    if sub.markets is None:  # lifecycle, or ticker/trade for all markets
        sess.error(cmd_id, 13, sub)
        return
    tickers, bad = _markets_param(sess.host.model, params)
    if bad is not None:
        sess.error(cmd_id, 11, sub, detail=bad)
        return
    if not tickers:
        sess.error(cmd_id, 14, sub)
        return
    unknown = _unknown(sess.host.model, tickers)
    if unknown:
        sess.error(cmd_id, 11, sub, market_tickers=unknown)
        return
    model = sess.host.model
    if action == "get_snapshot":
        outside = [t for t in tickers if t not in sub.markets]
        if outside:
            sess.error(cmd_id, 11, sub, market_tickers=outside)
            return
        for t in tickers:
            sess.snapshot(sub, model.markets[t], cmd_id)
        return
    added: list[str] = []
    if action == "add_markets":
        for t in tickers:
            if t not in sub.markets:
                sub.markets[t] = None
                added.append(t)
    else:
        for t in tickers:
            sub.markets.pop(t, None)
    sess.rebuild_routes()
    sess.send_scoped(
        sub, "ok", cmd_id, None if sub.skip_ack else {"market_tickers": list(sub.markets)}
    )
    if sub.channel == ORDERBOOK:
        for t in added:
            sess.snapshot(sub, model.markets[t], None)
    elif sub.channel == "ticker" and params.get("send_initial_snapshot"):
        for t in added:
            sess.push(TICKER, sub, encode(model.ticker_msg(model.markets[t])))
