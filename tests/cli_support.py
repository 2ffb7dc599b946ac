"""The kalshibook CLI in a subprocess, as an operator runs it: ``python -m kalshibook``, in this
environment without any ``KALSHIBOOK_*`` variable of the test run (a developer's settings never
leak in), plus the variables a test gives."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(
    *args: str, url: str | None = None, timeout: float = 60, **env_vars: str
) -> subprocess.CompletedProcess[str]:
    """``kalshibook *args``; ``url`` is ``KALSHIBOOK_DATABASE_URL``, ``env_vars`` more variables.
    Never raises for the exit status: the test reads it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALSHIBOOK_")}
    if url is not None:
        env["KALSHIBOOK_DATABASE_URL"] = url
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, "-m", "kalshibook", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
