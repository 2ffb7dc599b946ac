"""Request signing and key loading (kalshibook.kalshi.auth)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kalshibook.errors import ConfigError, KeyFileError
from kalshibook.kalshi import auth


@pytest.fixture(scope="module", params=["rsa", "ed25519"])
def key_pair(request: pytest.FixtureRequest) -> tuple[str, bytes, bytes]:
    private_pem, public_pem = auth.generate_key_pair(request.param)
    return request.param, private_pem, public_pem


def _write(tmp_path: Path, data: bytes, name: str = "key.pem") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_presign_text_strips_query() -> None:
    text = auth.presign_text(1703123456789, "get", "/trade-api/v2/portfolio/orders?limit=5")
    assert text == "1703123456789GET/trade-api/v2/portfolio/orders"
    assert auth.presign_text(1, "GET", "https://h/trade-api/v2/markets?x=1") == (
        "1GET/trade-api/v2/markets"
    )
    assert auth.WS_PATH == "/trade-api/ws/v2"


def test_generated_pem_formats(key_pair: tuple[str, bytes, bytes]) -> None:
    kind, private_pem, public_pem = key_pair
    if kind == "rsa":
        assert private_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")  # PKCS#1
    else:
        assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")


def test_sign_verifies_with_public_key(tmp_path: Path, key_pair: tuple[str, bytes, bytes]) -> None:
    _, private_pem, public_pem = key_pair
    key = auth.load_private_key(_write(tmp_path, private_pem))
    public = auth.load_public_key(public_pem)
    sig = auth.sign(key, 1703123456789, "GET", "/trade-api/v2/portfolio/orders?limit=5")
    base64.b64decode(sig, validate=True)  # standard base64
    assert auth.verify(public, sig, 1703123456789, "GET", "/trade-api/v2/portfolio/orders")
    assert not auth.verify(public, sig, 1703123456790, "GET", "/trade-api/v2/portfolio/orders")
    assert not auth.verify(public, sig, 1703123456789, "POST", "/trade-api/v2/portfolio/orders")
    assert not auth.verify(public, sig, 1703123456789, "GET", "/trade-api/v2/markets")
    assert not auth.verify(public, "not base64!", 1703123456789, "GET", "/x")


def test_rsa_signature_is_pss_with_digest_salt(tmp_path: Path) -> None:
    """Verify independently with cryptography's PSS and salt length 32 (digest length)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    private_pem, public_pem = auth.generate_key_pair("rsa")
    key = auth.load_private_key(_write(tmp_path, private_pem))
    sig = base64.b64decode(auth.sign(key, 5, "GET", auth.WS_PATH))
    public = serialization.load_pem_public_key(public_pem)
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(
        sig,
        b"5GET/trade-api/ws/v2",
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )


def test_signed_headers(tmp_path: Path, key_pair: tuple[str, bytes, bytes]) -> None:
    _, private_pem, public_pem = key_pair
    key = auth.load_private_key(_write(tmp_path, private_pem))
    headers = auth.signed_headers("key-id", key, "GET", auth.WS_PATH, now_ms=1703123456789)
    assert set(headers) == {
        "KALSHI-ACCESS-KEY",
        "KALSHI-ACCESS-TIMESTAMP",
        "KALSHI-ACCESS-SIGNATURE",
    }
    assert headers["KALSHI-ACCESS-KEY"] == "key-id"
    assert headers["KALSHI-ACCESS-TIMESTAMP"] == "1703123456789"
    assert auth.verify(
        auth.load_public_key(public_pem),
        headers["KALSHI-ACCESS-SIGNATURE"],
        1703123456789,
        "GET",
        auth.WS_PATH,
    )


def test_signed_headers_default_clock_is_ms(tmp_path: Path) -> None:
    key = auth.load_private_key(_write(tmp_path, auth.generate_key_pair("ed25519")[0]))
    ts = int(auth.signed_headers("k", key, "GET", "/")["KALSHI-ACCESS-TIMESTAMP"])
    assert ts > 1_600_000_000_000


def test_rsa_pkcs8_private_key_loads(tmp_path: Path) -> None:
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = k.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert isinstance(auth.load_private_key(_write(tmp_path, pem)), rsa.RSAPrivateKey)


def test_load_public_key_from_path_and_private_pem(tmp_path: Path) -> None:
    private_pem, public_pem = auth.generate_key_pair("ed25519")
    p = _write(tmp_path, public_pem, "pub.pem")
    a = auth.load_public_key(p)
    b = auth.load_public_key(str(p))
    c = auth.load_public_key(public_pem.decode())
    d = auth.load_public_key(private_pem)
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert a.public_bytes(*raw) == b.public_bytes(*raw) == c.public_bytes(*raw)
    assert d.public_bytes(*raw) == a.public_bytes(*raw)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        auth.load_private_key(tmp_path / "nope.pem")


def test_key_path_unset() -> None:
    with pytest.raises(KeyFileError, match="PRIVATE_KEY_PATH"):
        auth.load_private_key("")


def test_key_path_is_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="directory"):
        auth.load_private_key(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_key_file(tmp_path: Path) -> None:
    p = _write(tmp_path, auth.generate_key_pair("ed25519")[0])
    p.chmod(0)
    with pytest.raises(KeyFileError, match="not readable"):
        auth.load_private_key(p)


def test_permission_denied_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write(tmp_path, b"x")

    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(KeyFileError, match="permission denied"):
        auth.load_private_key(p)


def test_not_a_key_never_echoes_content(tmp_path: Path) -> None:
    secret = b"-----BEGIN RSA PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END RSA PRIVATE KEY-----\n"
    with pytest.raises(KeyFileError, match="not a PEM private key") as info:
        auth.load_private_key(_write(tmp_path, secret))
    assert "TOPSECRET" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_public_key_is_not_a_private_key(tmp_path: Path) -> None:
    _, public_pem = auth.generate_key_pair("rsa")
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        auth.load_private_key(_write(tmp_path, public_pem))


def test_wrong_key_type(tmp_path: Path) -> None:
    k = ec.generate_private_key(ec.SECP256R1())
    pem = k.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyFileError, match="RSA or Ed25519") as info:
        auth.load_private_key(_write(tmp_path, pem))
    assert "BEGIN" not in str(info.value)


def test_encrypted_key(tmp_path: Path) -> None:
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = k.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(KeyFileError, match="encrypted"):
        auth.load_private_key(_write(tmp_path, pem))


def test_key_file_error_is_config_error() -> None:
    assert issubclass(KeyFileError, ConfigError)


def test_invalid_public_key() -> None:
    with pytest.raises(KeyFileError):
        auth.load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


def test_generate_unknown_kind() -> None:
    with pytest.raises(ValueError):
        auth.generate_key_pair("dsa")  # type: ignore[arg-type]
