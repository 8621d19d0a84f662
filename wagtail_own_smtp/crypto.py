"""Encryption of stored SMTP passwords: Fernet keys, MultiFernet for rotation."""

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from . import conf

_HKDF_INFO = b"wagtail-own-smtp password encryption v1"


class UndecryptablePassword(Exception):
    """No configured key decrypts the stored password (a key was removed or SECRET_KEY changed)."""


def derive_key(secret: str) -> bytes:
    """A Fernet key derived from a Django secret key with HKDF-SHA256."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret.encode()
    )
    return base64.urlsafe_b64encode(raw)


def keys_are_derived() -> bool:
    return not conf.get("ENCRYPTION_KEYS")


def configured_keys() -> list[bytes]:
    """The keys in order: the first encrypts, all decrypt."""
    keys = conf.get("ENCRYPTION_KEYS")
    if keys:
        return [k.encode() if isinstance(k, str) else k for k in keys]
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [derive_key(s) for s in secrets]


def _fernet() -> MultiFernet:
    # Fernet() raises ValueError for a malformed key; checks.py reports it as an error.
    return MultiFernet([Fernet(k) for k in configured_keys()])


def encrypt(plaintext: str) -> bytes:
    if not plaintext:
        return b""
    return _fernet().encrypt(plaintext.encode())


def decrypt(ciphertext: bytes | memoryview) -> str:
    ciphertext = bytes(ciphertext or b"")
    if not ciphertext:
        return ""
    try:
        return _fernet().decrypt(ciphertext).decode()
    except InvalidToken:
        raise UndecryptablePassword(
            "The stored SMTP password cannot be decrypted with any configured key."
        ) from None


def can_decrypt(ciphertext: bytes | memoryview) -> bool:
    try:
        decrypt(ciphertext)
    except UndecryptablePassword:
        return False
    return True


def rotate(ciphertext: bytes | memoryview) -> bytes:
    """Re-encrypt under the first key (raises UndecryptablePassword if no key fits)."""
    ciphertext = bytes(ciphertext or b"")
    if not ciphertext:
        return b""
    try:
        return _fernet().rotate(ciphertext)
    except InvalidToken:
        raise UndecryptablePassword(
            "The stored SMTP password cannot be decrypted with any configured key."
        ) from None
