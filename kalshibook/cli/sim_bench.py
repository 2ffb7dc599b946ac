"""``python -m kalshibook.cli.sim_bench``: the simulator's WebSocket throughput, one line per rate.

The measurement itself is :func:`kalshibook.sim.bench.measure`; this module only parses flags and
prints (asked rate, received frames/s, whether the stream stayed whole).
"""

from __future__ import annotations

import argparse
import asyncio
import os

from kalshibook.sim.bench import measure

__all__ = ("main",)

DESCRIPTION = "Measure the simulator's WebSocket throughput."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kalshibook.cli.sim_bench",
        description=DESCRIPTION,
    )
    parser.add_argument(
        "--rate",
        type=float,
        action="append",
        help="frames/s to ask for (repeatable; default 20000 50000 80000)",
    )
    parser.add_argument("--markets", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--truth", action="store_true", help="also write ground truth")
    args = parser.parse_args(argv)
    for rate in args.rate or [20_000.0, 50_000.0, 80_000.0]:
        got, whole = asyncio.run(measure(rate, args.markets, args.seconds, args.truth))
        print(
            f"asked {rate:>9,.0f}/s  received {got:>9,.0f} frames/s  "
            f"{'contiguous' if whole else 'GAP/ERROR/STALL'}  "
            f"({os.cpu_count()} CPUs{', with truth' if args.truth else ''})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
