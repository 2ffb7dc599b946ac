"""A key sent in the URL (``?api_key=``) never reaches the log (issue 16, point 5): the real
``kalshibook serve`` process with its access log on, its stderr read back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from api_support import TEST_CURSOR_SECRET, free_port

from kalshibook.api.auth import create_key
from kalshibook.cli.logs import RedactingFilter
from kalshibook.storage.api_keys import parse_key

pytestmark = pytest.mark.db


def test_keys_in_urls_are_redacted_in_the_access_log(seeded_url: str, tmp_path: Path) -> None:
    key = create_key(seeded_url, name="logged", credits=100).key
    parsed = parse_key(key)
    assert parsed is not None
    secret = parsed[1]
    port = free_port()
    env = {
        **os.environ,
        "KALSHIBOOK_DATABASE_URL": seeded_url,
        "KALSHIBOOK_DATA_DIR": str(tmp_path),
        "KALSHIBOOK_LOG_LEVEL": "INFO",
        "KALSHIBOOK_API_CURSOR_SECRET": TEST_CURSOR_SECRET,
    }
    cmd = [sys.executable, "-m", "kalshibook", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(400):
                try:
                    client.get("/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            for query in (f"api_key={key}", f"token={secret}", f"limit=1&apikey={key}"):
                assert client.get(f"/v1/series?{query}").status_code == 401
            r = client.get(f"/v1/series/{key}", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert "/v1/series?api_key=" in err  # the access log has the lines ...
    assert secret not in err  # ... without the key
    assert TEST_CURSOR_SECRET not in err


def test_redaction_patterns() -> None:
    scrub = RedactingFilter().scrub
    key = "kb_5ca1ab1e_" + "S3cr3t-value_" * 3
    assert scrub(f"GET /v1/series?api_key={key} HTTP/1.1") == (
        "GET /v1/series?api_key=[REDACTED] HTTP/1.1"
    )
    assert scrub(f"path /v1/markets/{key}") == "path /v1/markets/kb_5ca1ab1e_[REDACTED]"
    dashed = "kb-5ca1ab1e-" + "S3cr3t-value_" * 3
    assert scrub(f"GET /v1/x/{dashed} 401") == "GET /v1/x/kb-5ca1ab1e-[REDACTED] 401"
    assert scrub("GET /x?limit=5&token=abc&ticker=K") == "GET /x?limit=5&token=[REDACTED]&ticker=K"
    assert scrub("GET /v1/markets?limit=5") == "GET /v1/markets?limit=5"  # nothing else touched
