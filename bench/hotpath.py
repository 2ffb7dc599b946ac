"""The collector's per-frame CPU path in one process, for comparing hot-path changes.

Runs what the feed process does to every data frame, minus sockets, the event loop and the
database: decode (with counters), the per-sid sequence check, the router (books, quotes, rows),
and per table per burst the writer's encoding of the run (``batches.items_of``, as
``put_table_nowait`` does), joined into a batch body every ``batch_rows`` rows. Frames come from
the simulator's model (the same mix as ``bench_collector.py``).

Wall-clock time on a shared 2-vCPU VM varies 10-20 % run to run, more than most single changes
gain, so there are two ways to measure:

    python bench/hotpath.py --frames 100000           # CPU microseconds per frame (best of 3)
    python bench/hotpath.py --instructions            # instructions per frame under callgrind

``--instructions`` runs this script twice under ``valgrind --tool=callgrind`` (with
``PYTHONHASHSEED=0``) with two frame counts and reports the difference per frame: start-up and
generation cancel out and the count repeats to within a few hundred instructions, so a 1 %
change is visible. Compare two commits (from this one on: it uses the per-burst router and
writer helpers) by running it in two work trees (``git worktree add``).
Needs valgrind (``apt-get install valgrind``); not part of ``make bench``.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]


def frames(markets: int, count: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_collector

    snaps, data, _ = bench_collector.generate(markets, count, seed)
    return snaps, data


def run(snaps: list[bytes], data: list[bytes], mode: str) -> float:
    """Process ``data`` once; CPU seconds spent."""
    from kalshibook.collector.router import Router
    from kalshibook.kalshi.sequencing import SeqTracker
    from kalshibook.kalshi.ws_decode import DecodeStats, decode_frame
    from kalshibook.settings import WriterSettings
    from kalshibook.storage.batches import array_head, items_of

    batch_rows = WriterSettings().batch_rows
    now = datetime.now(UTC)
    router = Router(checkpoint_deltas=500)
    stats = DecodeStats()
    for raw in snaps:
        router.handle(decode_frame(raw, stats, received_at=now))
    router.take()
    seq = SeqTracker()
    queued: dict[str, list[bytes]] = {}
    counts: dict[str, int] = {}

    def failed(item: Any) -> None:
        raise RuntimeError(f"the router failed on {type(item).__name__}")

    gc.collect()
    gc.freeze()
    started = time.process_time()
    for i in range(0, len(data), 400):  # one socket read's worth of frames
        items = []
        for raw in data[i : i + 400]:
            frame = decode_frame(raw, stats, received_at=now)
            if frame.seq is not None and not seq.advance(frame.sid, frame.seq):
                seq.observe(frame.sid, frame.seq)  # type: ignore[arg-type]
            items.append(frame)
        if mode == "decode":
            continue
        router.handle_all(items, failed)
        for table, rows in router.take():
            encoded = items_of(rows)
            assert encoded is not None
            queued.setdefault(table, []).append(encoded)
            n = counts[table] = counts.get(table, 0) + len(rows)
            if n >= batch_rows:  # a batch body, as the writer sends it
                array_head(n) + b"".join(queued.pop(table))
                counts[table] = 0
    return time.process_time() - started


def instructions(args: argparse.Namespace) -> int:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    snaps, data = frames(args.markets, args.frames, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frames.msgpack"
        path.write_bytes(msgspec.msgpack.encode([snaps, data]))
        counts = []
        for n in (args.frames // 4, args.frames):
            proc = subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    "--callgrind-out-file=/dev/null",
                    sys.executable,
                    __file__,
                    "--child",
                    str(path),
                    str(n),
                    args.mode,
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)},
                check=True,
            )
            line = next(x for x in proc.stderr.splitlines() if "Collected" in x)
            counts.append(int(line.split()[-1]))
    per_frame = (counts[1] - counts[0]) / (args.frames - args.frames // 4)
    print(f"{args.mode}: {per_frame:,.0f} instructions per frame ({ROOT})")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--markets", type=int, default=2000)
    p.add_argument("--frames", type=int, default=40_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mode", choices=["decode", "full"], default="full")
    p.add_argument("--instructions", action="store_true", help="count under callgrind")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        path, n, mode = args.child
        snaps, data = msgspec.msgpack.decode(Path(path).read_bytes())
        run(snaps, data[: int(n)], mode)
        return 0
    if args.instructions:
        return instructions(args)
    snaps, data = frames(args.markets, args.frames, args.seed)
    best = min(run(snaps, data, args.mode) for _ in range(3))
    print(f"{args.mode}: {best / len(data) * 1e6:.2f} CPU us per frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
