"""The one logging setup of every ``kalshibook`` command: ``key=value`` lines, secrets scrubbed.

Nothing in kalshibook logs a key or a signature on purpose; this is the second line of defence
against a library that does at DEBUG level (``websockets`` logs handshake headers, for example):
every record passes :class:`RedactingFilter`, which removes PEM blocks, the values of the
``KALSHI-ACCESS-*`` headers, kalshibook API keys (``kb-<prefix>-<secret>`` or ``kb_…``: the
prefix stays), the values of credential-like query parameters (``?api_key=``, ``token``, ...: a
client may put its key in the URL, and the access log writes every URL) and any registered secret
string.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import urlsplit

from kalshibook.errors import ConfigError
from kalshibook.settings import Settings

__all__ = ("KeyValueFormatter", "RedactingFilter", "configure_logging", "settings_secrets")

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)", re.S)
_HEADER = re.compile(
    r"(KALSHI-ACCESS-(?:KEY|SIGNATURE|TIMESTAMP)['\"]?\s*[:=,]\s*['\"]?)([^\s'\",}]+)",
    re.I,
)
_API_KEY = re.compile(r"\b(kb[-_][A-Za-z0-9]{4,16}[-_])[A-Za-z0-9_-]{8,}")
_QUERY_SECRET = re.compile(
    r"([?&;](?:api[_-]?key|key|token|access[_-]?token|secret|password|authorization)=)[^&\s\"']*",
    re.I,
)
_REDACTED = "[REDACTED]"
_QUIET = ("websockets", "httpx", "httpcore", "hpack", "asyncio")


class RedactingFilter(logging.Filter):
    """Scrubs secrets from the formatted message (and from exception text)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 8]

    def add_secret(self, secret: str) -> None:
        if secret and len(secret) >= 8:
            self.secrets.append(secret)

    def scrub(self, text: str) -> str:
        if "-----BEGIN" in text:
            text = _PEM.sub(_REDACTED, text)
        if "KALSHI-ACCESS" in text.upper():
            text = _HEADER.sub(lambda m: m.group(1) + _REDACTED, text)
        if "kb_" in text or "kb-" in text:
            text = _API_KEY.sub(lambda m: m.group(1) + _REDACTED, text)
        if "=" in text:
            text = _QUERY_SECRET.sub(lambda m: m.group(1) + _REDACTED, text)
        for s in self.secrets:
            if s in text:
                text = text.replace(s, _REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        clean = self.scrub(message)
        if clean != message or record.args:
            record.msg = clean
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.scrub(text)
            record.exc_info = None
            record.msg = f"{record.msg}\n{record.exc_text}"
            record.exc_text = None
        return True


class KeyValueFormatter(logging.Formatter):
    """``ts=… level=… logger=… msg="…"`` (one line; the message keeps its own key=value pairs)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        msg = record.getMessage().replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        line = f'ts={ts} level={record.levelname} logger={record.name} msg="{msg}"'
        if record.exc_info:
            exc = self.formatException(record.exc_info).replace("\n", "\\n").replace('"', "'")
            line += f' exc="{exc}"'
        return line


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time of the record (it may be replaced)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def settings_secrets(settings: Settings) -> list[str]:
    """Strings of the settings no log line may show: the Kalshi key id, the database password,
    the cursor secret."""
    secrets = [settings.kalshi.key_id] if settings.kalshi.key_id else []
    if settings.api.cursor_secret:
        secrets.append(settings.api.cursor_secret)
    try:
        password = urlsplit(settings.core.database_url).password
    except ValueError:  # a malformed URL: the command reports it (redacted) itself
        password = None
    if password:
        secrets.append(password)
    return secrets


def configure_logging(level: str, secrets: Iterable[str] = ()) -> RedactingFilter:
    """Route every log record through one redacting ``key=value`` handler on stderr.

    ``level`` is a level name (``KALSHIBOOK_LOG_LEVEL``); an unknown one is a :class:`ConfigError`.
    Calling it again replaces the handler it installed (handlers installed by others, such as a
    test runner's, stay). Third-party protocol loggers stay at INFO or above whatever ``level``
    is: their DEBUG output includes raw handshake headers.
    """
    name = level.upper()
    if not isinstance(logging.getLevelName(name), int):
        raise ConfigError(
            f"KALSHIBOOK_LOG_LEVEL={level!r} is invalid: use DEBUG, INFO, WARNING or ERROR"
        )
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _StderrHandler):
            root.removeHandler(h)
    handler = _StderrHandler()
    redactor = RedactingFilter(secrets)
    handler.addFilter(redactor)
    handler.setFormatter(KeyValueFormatter())
    root.addHandler(handler)
    root.setLevel(name)
    for name in _QUIET:
        lg = logging.getLogger(name)
        if lg.getEffectiveLevel() < logging.INFO:
            lg.setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request
    return redactor
