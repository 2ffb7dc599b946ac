"""A private primary and its streaming replica (``pg_basebackup -R``) for the replica tests.

Both clusters use the machine's PostgreSQL 15 + TimescaleDB (the build ``scripts/db.sh`` uses),
live under ``.data/test-replicas/`` (or the postgres user's home when that is out of its reach,
as ``scripts/db.sh`` does) and run as the ``postgres`` OS user when the tests run as root. The
shared test cluster is never touched: a base backup copies a whole cluster.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
BIN = Path("/usr/lib/postgresql/15/bin")
ROOT_USER = os.geteuid() == 0


def _as_owner(
    *cmd: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    full = ["runuser", "-u", "postgres", "--", *cmd] if ROOT_USER else list(cmd)
    return subprocess.run(
        full, check=True, capture_output=True, text=True, cwd="/", env=env, timeout=120,
        input=stdin,
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _base_dir(tag: str) -> Path:
    base = ROOT / ".data" / "test-replicas"
    base.mkdir(parents=True, exist_ok=True)
    if ROOT_USER:
        reachable = subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-w", str(base)], cwd="/", check=False
        )
        if reachable.returncode != 0:
            os.chown(base, *_postgres_ids())
            reachable = subprocess.run(
                ["runuser", "-u", "postgres", "--", "test", "-w", str(base)], cwd="/", check=False
            )
        if reachable.returncode != 0:
            base = Path("/var/lib/postgresql/kalshibook-test-replicas")
            _as_owner("mkdir", "-p", str(base))
    path = base / tag
    if ROOT_USER:
        _as_owner("mkdir", "-p", str(path))
    else:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _postgres_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


@dataclass
class Cluster:
    pgdata: Path
    port: int
    password: str

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def read_text(self, name: str) -> str:
        """A file of the cluster's data directory (``pg_hba.conf``)."""
        return _as_owner("cat", str(self.pgdata / name)).stdout

    def write_text(self, name: str, text: str) -> None:
        _as_owner("sh", "-c", f"cat > {self.pgdata / name}", stdin=text)

    def start(self) -> None:
        try:
            _as_owner(
                str(BIN / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.pgdata / "server.log"),
                "-w", "-t", "60", "start",
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            log = _as_owner("tail", "-n", "20", str(self.pgdata / "server.log")).stdout
            raise RuntimeError(f"postgres did not start in {self.pgdata}: {log}") from exc

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists() or ROOT_USER:
            subprocess.run(
                (["runuser", "-u", "postgres", "--"] if ROOT_USER else [])
                + [str(BIN / "pg_ctl"), "-D", str(self.pgdata), "-m", "immediate", "-w", "stop"],
                cwd="/", capture_output=True, check=False, timeout=60,
            )  # fmt: skip


def _settings(port: int, pgdata: Path) -> str:
    return (
        "\n# kalshibook replica test\n"
        "listen_addresses = '127.0.0.1'\n"
        f"port = {port}\n"
        f"unix_socket_directories = '{pgdata}'\n"
        "shared_preload_libraries = 'timescaledb'\n"
        "timescaledb.telemetry_level = off\n"
        "timescaledb.max_background_workers = 4\n"
        "max_connections = 60\n"
        "shared_buffers = 64MB\n"
        "max_locks_per_transaction = 256\n"
        "wal_level = replica\n"
        "hot_standby = on\n"
    )


def start_primary(tag: str) -> Cluster:
    base = _base_dir(tag)
    pgdata = base / "primary"
    password = secrets.token_hex(12)
    pwfile = base / "pw"
    if ROOT_USER:
        _as_owner("sh", "-c", f"umask 077 && printf '%s\\n' {password} > {pwfile}")
    else:
        pwfile.write_text(password + "\n")
    _as_owner(
        str(BIN / "initdb"), "-D", str(pgdata), "-U", "postgres", f"--pwfile={pwfile}",
        "-A", "scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8",
    )  # fmt: skip
    port = _free_port()
    _as_owner("sh", "-c", f"cat >> {pgdata}/postgresql.conf <<'EOF'{_settings(port, pgdata)}EOF")
    cluster = Cluster(pgdata, port, password)
    cluster.start()
    return cluster


def start_replica(primary: Cluster, tag: str) -> Cluster:
    """A hot standby of ``primary`` streaming from it (``pg_basebackup -R``), on its own port."""
    pgdata = primary.pgdata.parent / "replica"
    env = {"PGPASSWORD": primary.password, "PATH": os.environ.get("PATH", "")}
    _as_owner(
        str(BIN / "pg_basebackup"), "-D", str(pgdata), "-R", "-X", "stream", "-c", "fast",
        "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
        env=env,
    )  # fmt: skip
    port = _free_port()
    conf = f"\nport = {port}\nunix_socket_directories = '{pgdata}'\n"
    _as_owner("sh", "-c", f"cat >> {pgdata}/postgresql.auto.conf <<'EOF'{conf}EOF")
    replica = Cluster(pgdata, port, primary.password)
    replica.start()
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(replica.url(), connect_timeout=3) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if row and row[0]:
                return replica
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the replica did not come up in 60 s")
        time.sleep(0.5)


def remove(tag: str) -> None:
    base = _base_dir(tag)
    if ROOT_USER:
        _as_owner("rm", "-rf", str(base))
    shutil.rmtree(base, ignore_errors=True)
