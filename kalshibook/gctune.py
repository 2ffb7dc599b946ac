"""Garbage-collector settings for the long-running processes (the collector, its COPY workers and
the API server)."""

from __future__ import annotations

import gc
from typing import Final

__all__ = ("GC_THRESHOLDS", "tune_gc")

GC_THRESHOLDS: Final = (50_000, 20, 100)
"""Generation thresholds (CPython's default is (700, 10, 10))."""


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a process that allocates millions of small,
    acyclic objects (decoded frames, rows) a minute.

    With the default thresholds a young-generation pass runs every 700 allocations and older
    passes keep re-walking long-lived objects (the books and catalog; a batch of decoded rows):
    measured at ~15 % of the collector's CPU at 70k frames/s, and at 80 % of a COPY worker's
    row decoding (bench/bench_collector.py). The API server is the same kind of process (a day of
    1m candles or a 1,000-row page allocates tens of thousands of short-lived rows and strings),
    though there the gain was within the machine's noise at the endpoint (BENCHMARKS.md, candles).
    Objects alive at start-up are frozen (never walked
    again) and passes run 70x less often. Reference counting still frees everything acyclic at
    once, so memory does not grow; only cyclic garbage waits longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
