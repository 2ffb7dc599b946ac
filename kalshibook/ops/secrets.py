"""Deployment secrets kept in files: read one, or create it once, readable by its owner only.

:func:`secret_file` is the one way a secret file is made or read: created atomically (written to a
private temporary file, then hard-linked into place, so two processes starting at once agree on
one value), mode ``0600`` in a ``0700`` directory; an existing file that group or others can read is
refused (:class:`ConfigError` naming ``chmod 600``) rather than trusted.
:func:`cursor_secret` is the key that signs pagination cursors.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from kalshibook.errors import ConfigError
from kalshibook.settings import Settings

__all__ = ("CURSOR_SECRET_FILE", "MIN_SECRET_CHARS", "cursor_secret", "secret_file")

CURSOR_SECRET_FILE = "cursor_secret"  # noqa: S105 - a file name
MIN_SECRET_CHARS = 32


def _check(text: str, origin: str) -> bytes:
    value = text.strip()
    if len(value) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"{origin} must hold at least {MIN_SECRET_CHARS} characters "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return value.encode()


def secret_file(path: Path) -> bytes:
    """The secret in ``path``, generated (32 random bytes, url-safe text) if the file is missing."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32) + "\n")
            with contextlib.suppress(FileExistsError):  # another process got there first
                os.link(tmp, path)  # atomic
        finally:
            tmp.unlink(missing_ok=True)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} is readable by other users (mode {stat.filemode(mode)}): "
            f"run `chmod 600 {path}` (it holds a secret)"
        )
    return _check(path.read_text(), str(path))


def cursor_secret(settings: Settings) -> bytes:
    """``KALSHIBOOK_API_CURSOR_SECRET``, else ``<data_dir>/cursor_secret`` (created if missing)."""
    if settings.api.cursor_secret:
        return _check(settings.api.cursor_secret, "KALSHIBOOK_API_CURSOR_SECRET")
    return secret_file(Path(settings.core.data_dir) / CURSOR_SECRET_FILE)
