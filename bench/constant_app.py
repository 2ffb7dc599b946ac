"""The benches' HTTP baseline: a minimal Litestar app under uvicorn, in its own process.

- ``GET /constant``: a constant JSON object (the cheapest route Litestar serves);
- ``GET /bytes?n=``: a body of ``n`` bytes, made once per size: what HTTP alone costs for a body
  of that size (no auth, no database, no JSON encoding).

    python bench/constant_app.py --port PORT

The benches start it with :class:`ConstantServer` (imported as a sibling module, like
``benchlib``; not named ``bench_*.py``, which ``scripts/bench.sh`` would run).
"""

from __future__ import annotations

import argparse
import http.client
import logging
import subprocess
import sys
import time

from benchlib import ROOT, free_port, http_get, stop_process


def serve(port: int) -> None:
    import uvicorn
    from litestar import Litestar, get

    logging.basicConfig(level=logging.WARNING)

    @get("/constant", sync_to_thread=False)
    def constant() -> dict[str, bool]:
        return {"ok": True}

    bodies: dict[int, bytes] = {}

    @get("/bytes", sync_to_thread=False, media_type="application/json")
    def fixed_bytes(n: int) -> bytes:
        return bodies.setdefault(n, b" " * n)

    app = Litestar([constant, fixed_bytes])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class ConstantServer:
    """The app on a free local port, with one keep-alive ``http.client`` connection to it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, __file__, "--port", str(self.port)], cwd=ROOT)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.get("/constant")[0] == 200:
                    return
            except OSError:
                self.conn.close()
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise SystemExit("the constant server did not start")
            time.sleep(0.1)

    def get(self, target: str) -> tuple[int, bytes]:
        return http_get(self.conn, target)

    def stop(self) -> None:
        self.conn.close()
        stop_process(self.proc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--port", type=int, required=True)
    serve(p.parse_args(argv).port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
