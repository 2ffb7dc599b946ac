"""Kalshi request signing (pure given a key and a clock).

Pre-sign text = ``timestamp_ms + METHOD + path`` with the path's query string removed. RSA keys
sign with RSA-PSS (SHA-256, MGF1(SHA-256), salt = digest length), Ed25519 keys sign the same text
plainly; the signature is standard base64. WebSocket upgrades sign ``GET`` + :data:`WS_PATH`.

Key material is never put into an exception message or a log line.
"""

from __future__ import annotations

import base64
import binascii
import time
from pathlib import Path
from typing import Literal, TypeAlias
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from kalshibook.errors import KeyFileError

__all__ = (
    "HEADER_KEY",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "WS_PATH",
    "PrivateKey",
    "PublicKey",
    "generate_key_pair",
    "load_private_key",
    "load_public_key",
    "presign_text",
    "sign",
    "signed_headers",
    "verify",
)

WS_PATH = "/trade-api/ws/v2"
HEADER_KEY = "KALSHI-ACCESS-KEY"
HEADER_TIMESTAMP = "KALSHI-ACCESS-TIMESTAMP"
HEADER_SIGNATURE = "KALSHI-ACCESS-SIGNATURE"

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def _read_key_file(path: str | Path, what: str) -> bytes:
    if not str(path):
        raise KeyFileError(
            f"no Kalshi {what} path configured (set KALSHIBOOK_KALSHI_PRIVATE_KEY_PATH)"
        )
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"Kalshi {what} file not found: {p}") from None
    except IsADirectoryError:
        raise KeyFileError(f"Kalshi {what} path is a directory, not a file: {p}") from None
    except PermissionError:
        raise KeyFileError(f"Kalshi {what} file is not readable (permission denied): {p}") from None
    except OSError as exc:
        raise KeyFileError(f"Kalshi {what} file cannot be read: {p} ({exc.strerror})") from None


def _key_kind(key: object) -> str:
    name = type(key).__name__
    for prefix in ("_", "Rust"):
        name = name.removeprefix(prefix)
    return name


def load_private_key(path: str | Path) -> PrivateKey:
    """Load an RSA or Ed25519 private key from a PEM file (PKCS#1 or PKCS#8, unencrypted)."""
    data = _read_key_file(path, "private key")
    return _parse_private_pem(data, str(path))


def _parse_private_pem(data: bytes, where: str) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(
            f"Kalshi private key {where} is encrypted; provide an unencrypted PEM key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(
            f"Kalshi private key {where} is not a PEM private key (expected "
            "'-----BEGIN RSA PRIVATE KEY-----' or '-----BEGIN PRIVATE KEY-----')"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        return key
    raise KeyFileError(
        f"Kalshi private key {where} is a {_key_kind(key)}; Kalshi accepts RSA or Ed25519 keys"
    )


def load_public_key(path_or_pem: str | Path | bytes) -> PublicKey:
    """Load an RSA or Ed25519 public key from PEM text/bytes or a file path.

    A private key PEM is accepted too (its public half is returned).
    """
    if isinstance(path_or_pem, bytes):
        data = path_or_pem
        where = "<pem>"
    elif isinstance(path_or_pem, str) and path_or_pem.lstrip().startswith("-----BEGIN"):
        data = path_or_pem.encode()
        where = "<pem>"
    else:
        data = _read_key_file(path_or_pem, "public key")
        where = str(path_or_pem)
    if b"PRIVATE KEY-----" in data:
        return _parse_private_pem(data, where).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"Kalshi public key {where} is not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        return key
    raise KeyFileError(
        f"Kalshi public key {where} is a {_key_kind(key)}; Kalshi accepts RSA or Ed25519 keys"
    )


def _strip_query(path: str) -> str:
    if "://" in path:
        path = urlsplit(path).path
    return path.split("?", 1)[0].split("#", 1)[0]


def presign_text(timestamp_ms: int, method: str, path: str) -> str:
    """The exact text Kalshi signs: ``f"{timestamp_ms}{METHOD}{path-without-query}"``."""
    return f"{int(timestamp_ms)}{method.upper()}{_strip_query(path)}"


def sign(key: PrivateKey, timestamp_ms: int, method: str, path: str) -> str:
    """Sign one request; returns the standard-base64 signature."""
    message = presign_text(timestamp_ms, method, path).encode()
    if isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(message, _PSS, hashes.SHA256())
    else:
        raw = key.sign(message)
    return base64.b64encode(raw).decode("ascii")


def verify(
    public_key: PublicKey, signature_b64: str, timestamp_ms: int, method: str, path: str
) -> bool:
    """True when ``signature_b64`` is a valid Kalshi signature of the request."""
    try:
        raw = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    message = presign_text(timestamp_ms, method, path).encode()
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(raw, message, _PSS, hashes.SHA256())
        else:
            public_key.verify(raw, message)
    except InvalidSignature:
        return False
    return True


def signed_headers(
    key_id: str, key: PrivateKey, method: str, path: str, now_ms: int | None = None
) -> dict[str, str]:
    """The three ``KALSHI-ACCESS-*`` headers for one request (``now_ms`` defaults to the clock)."""
    ts = int(time.time() * 1000) if now_ms is None else int(now_ms)
    return {
        HEADER_KEY: key_id,
        HEADER_TIMESTAMP: str(ts),
        HEADER_SIGNATURE: sign(key, ts, method, path),
    }


def generate_key_pair(kind: Literal["rsa", "ed25519"] = "rsa") -> tuple[bytes, bytes]:
    """A fresh key pair as ``(private_pem, public_pem)``.

    RSA (2048 bit) private keys are PKCS#1 PEM, Ed25519 keys PKCS#8, as Kalshi generates them.
    """
    public_format = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.PEM
    if kind == "rsa":
        rkey = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = rkey.private_bytes(
            enc, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        return private_pem, rkey.public_key().public_bytes(enc, public_format)
    if kind == "ed25519":
        ekey = ed25519.Ed25519PrivateKey.generate()
        private_pem = ekey.private_bytes(
            enc, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return private_pem, ekey.public_key().public_bytes(enc, public_format)
    raise ValueError(f"unknown key kind {kind!r} (expected 'rsa' or 'ed25519')")
