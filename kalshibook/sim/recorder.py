"""Writes the simulator's ground truth (format: :mod:`kalshibook.sim.truth`)."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import msgspec

from kalshibook.sim.entities import Market, Series
from kalshibook.sim.model import Exchange
from kalshibook.sim.records import DELTA, EVENT_LIFECYCLE, LIFECYCLE, Emit
from kalshibook.sim.rest import event_json, market_json, series_json
from kalshibook.sim.wire import PRICE_STR, size_str

__all__ = ("TruthWriter",)

TRUTH_VERSION = 1


class TruthWriter:
    """Appends truth lines for everything the exchange publishes.

    ``record`` takes the emitted records with their already-encoded ``msg`` bodies (the same bytes
    that go on the wire), so truth costs one formatted line per record.
    """

    def __init__(
        self,
        path: str | Path,
        ex: Exchange,
        *,
        checkpoint_every: int = 200,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[bytes] = self.path.open("wb", buffering=1 << 20)
        self._ex = ex
        self._every = max(1, checkpoint_every)
        self._ckpt: dict[str, int] = {}
        self._enc = msgspec.json.Encoder()
        now = ex.now_ms
        head = {
            "k": "meta",
            "ts": now,
            "version": TRUTH_VERSION,
            "seed": ex.config.seed,
            "start_ms": ex.config.start_ms,
            "config": meta or {},
        }
        w = self._f.write
        w(self._enc.encode(head) + b"\n")
        for s in ex.series.values():
            w(self._line_obj("series", now, series_json(s)))
        for ev in ex.event_list:
            w(self._line_obj("event", now, event_json(ev, ex, False)))
        for m in ex.market_list:
            w(self._line_obj("market", now, market_json(m, ex)))
        for m in ex.market_list:
            if m.status == "active":
                self._checkpoint(m, now)

    def series_changed(self, s: Series, ts: int) -> None:
        """A series was edited: its new REST object (the latest ``series`` line wins)."""
        self._f.write(self._line_obj("series", ts, series_json(s)))

    def _line_obj(self, kind: str, ts: int, obj: dict[str, Any]) -> bytes:
        return b'{"k":"%s","ts":%d,"%s":%s}\n' % (
            kind.encode(),
            ts,
            kind.encode(),
            self._enc.encode(obj),
        )

    def _checkpoint(self, m: Market, ts: int) -> None:
        self._ckpt[m.ticker] = m.changes
        yes = [[PRICE_STR[p], size_str(s)] for p, s in sorted(m.yes.items())]
        no = [[PRICE_STR[p], size_str(s)] for p, s in sorted(m.no.items())]
        self._f.write(
            b'{"k":"book","ts":%d,"cid":%d,"t":%s,"yes":%s,"no":%s}\n'
            % (
                ts,
                self._ex.cid,
                self._enc.encode(m.ticker),
                self._enc.encode(yes),
                self._enc.encode(no),
            )
        )

    def record(self, out: list[Emit], bodies: list[bytes]) -> None:
        ex = self._ex
        w = self._f.write
        touched: dict[str, None] = {}
        fresh: dict[str, None] = {}
        for e, body in zip(out, bodies, strict=True):
            kind = e.kind
            if kind == DELTA:
                w(
                    b'{"k":"orderbook_delta","ts":%d,"cid":%d,"t":"%s","msg":%s}\n'
                    % (e.ts_ms, e.cid, e.ticker.encode(), body)
                )
                touched[e.ticker] = None
                continue
            if kind == EVENT_LIFECYCLE:
                ev = ex.events[e.ticker]
                w(self._line_obj("event", e.ts_ms, event_json(ev, ex, False)))
            w(
                b'{"k":"%s","ts":%d,"t":"%s","msg":%s}\n'
                % (kind.encode(), e.ts_ms, e.ticker.encode(), body)
            )
            if kind == LIFECYCLE:
                et = e.msg.get("event_type")
                if et == "created":
                    w(self._line_obj("market", e.ts_ms, market_json(ex.markets[e.ticker], ex)))
                elif et == "activated":
                    fresh[e.ticker] = None
                elif et == "settled":
                    m = ex.markets[e.ticker]
                    assert m.settlement_value is not None
                    w(
                        self._enc.encode(
                            {
                                "k": "settlement",
                                "ts": e.ts_ms,
                                "t": m.ticker,
                                "result": m.result,
                                "settlement_value": PRICE_STR[m.settlement_value],
                                "determined_ts": m.event.determined_ms,
                                "settled_ts": m.event.settled_ms,
                            }
                        )
                        + b"\n"
                    )
        now = ex.now_ms
        for t in fresh:
            self._checkpoint(ex.markets[t], now)
        every = self._every
        ckpt = self._ckpt
        for t in touched:
            if t in fresh:
                continue
            m = ex.markets[t]
            if m.changes - ckpt.get(t, 0) >= every:
                self._checkpoint(m, now)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            self._f.close()
