"""Decoder-only throughput: ``decode_frame`` on one orderbook_delta and one trade frame, repeated.

A quick manual measurement of :mod:`kalshibook.kalshi.ws_decode` alone (no router, no writer;
``hotpath.py`` measures the whole per-frame path). Not a ``bench_*`` script: ``make bench`` runs
only those that write BENCHMARKS.md.

    PYTHONPATH=. python bench/decode_only.py [--frames 200000]
"""

from __future__ import annotations

import argparse
import time

from kalshibook.kalshi.ws_decode import DecodeStats, decode_frame

DELTA = (
    b'{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"FED-23DEC-T3.00",'
    b'"market_id":"9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1","price_dollars":"0.9600",'
    b'"delta_fp":"-54.00","side":"yes","ts":"2022-11-22T20:44:01Z","ts_ms":1669149841000}}'
)
TRADE = (
    b'{"type":"trade","sid":11,"seq":2,"msg":{"trade_id":"d91bc706-ee49-470d-82d8-11418bda6fed",'
    b'"market_ticker":"HIGHNY-22DEC23-B53.5","yes_price_dollars":"0.3600",'
    b'"no_price_dollars":"0.6400","count_fp":"136.00","taker_side":"no",'
    b'"taker_outcome_side":"no","taker_book_side":"ask","is_block_trade":false,'
    b'"ts":1669149841,"ts_ms":1669149841000}}'
)


def bench(n: int) -> None:
    """Print frames/s per frame type for ``n`` decodes each."""
    stats = DecodeStats()
    for name, raw in (("orderbook_delta", DELTA), ("trade", TRADE)):
        t0 = time.perf_counter()
        for _ in range(n):
            decode_frame(raw, stats)
        dt = time.perf_counter() - t0
        print(f"{name}: {n / dt:,.0f} frames/s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=200_000, help="decodes per frame type")
    bench(p.parse_args().frames)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
