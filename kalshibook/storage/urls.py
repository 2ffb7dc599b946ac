"""Database URL helpers."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from kalshibook.errors import DatabaseUnavailable


def sqlalchemy_url(url: str) -> str:
    """``postgresql://…`` → ``postgresql+psycopg://…`` (alembic goes through SQLAlchemy)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def with_database(url: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def redact(url: str) -> str:
    """The URL without its password, for messages and logs (also when the URL is malformed)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_USERINFO_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def scrub(text: str) -> str:
    """``scheme://user:secret@`` → ``scheme://user:***@`` wherever it occurs in ``text``."""
    return _USERINFO_PASSWORD.sub(r"\1***@", text)


def unreachable(url: str, exc: BaseException) -> DatabaseUnavailable:
    """One readable line for a failed connection: the redacted URL and the first line of the
    driver's message (libpq appends hints on further lines)."""
    text = str(exc).strip()
    reason = scrub(text.splitlines()[0]) if text else type(exc).__name__
    return DatabaseUnavailable(f"cannot connect to {redact(url)}: {reason}")
