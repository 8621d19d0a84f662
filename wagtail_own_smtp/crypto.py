"""Encryption of stored SMTP passwords: Fernet keys, MultiFernet for rotation."""

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from . import conf
from .exceptions import UndecryptablePassword

_HKDF_INFO = b"wagtail-own-smtp password encryption v1"


def derive_key(secret: str) -> bytes:
    """A Fernet key derived from a Django secret key with HKDF-SHA256."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret.encode()
    )
    return base64.urlsafe_b64encode(raw)


def derived_keys() -> list[bytes]:
    """Keys derived from SECRET_KEY and SECRET_KEY_FALLBACKS, in that order."""
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [derive_key(s) for s in secrets]


def keys_are_derived() -> bool:
    return not conf.get("ENCRYPTION_KEYS")


def configured_keys() -> list[bytes]:
    """The keys in order: the first encrypts, all decrypt."""
    keys = conf.get("ENCRYPTION_KEYS")
    if keys:
        return [k.encode() if isinstance(k, str) else k for k in keys]
    return derived_keys()


def malformed_keys() -> list[int]:
    """Positions (from 1) of WAGTAIL_OWN_SMTP_ENCRYPTION_KEYS entries that are no Fernet key."""
    if keys_are_derived():
        return []
    bad = []
    for position, key in enumerate(configured_keys(), start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            bad.append(position)
    return bad


def _fernet(keys=None) -> MultiFernet:
    # Fernet() raises ValueError for a malformed key; checks.py reports it as an error.
    return MultiFernet([Fernet(k) for k in keys or configured_keys()])


def _migration_keys() -> list[bytes]:
    """The configured keys, then (when explicit keys are set) the SECRET_KEY-derived ones.

    Lets ``own_smtp_rotate_keys`` move passwords from derived keys to explicit keys; everyday
    decryption uses the configured keys only.
    """
    keys = configured_keys()
    return keys if keys_are_derived() else keys + derived_keys()


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
        raise UndecryptablePassword() from None


def can_decrypt(ciphertext: bytes | memoryview) -> bool:
    try:
        decrypt(ciphertext)
    except UndecryptablePassword:
        return False
    return True


def needs_migration(ciphertext: bytes | memoryview) -> bool:
    """True when only a SECRET_KEY-derived key (not the configured keys) decrypts it."""
    ciphertext = bytes(ciphertext or b"")
    if not ciphertext or keys_are_derived() or can_decrypt(ciphertext):
        return False
    try:
        _fernet(derived_keys()).decrypt(ciphertext)
    except InvalidToken:
        return False
    return True


def rotate(ciphertext: bytes | memoryview) -> bytes:
    """Re-encrypt under the first key (raises UndecryptablePassword if no key fits).

    Besides the configured keys, the SECRET_KEY-derived keys are tried, so that switching to
    explicit keys needs nothing but this.
    """
    ciphertext = bytes(ciphertext or b"")
    if not ciphertext:
        return b""
    try:
        return _fernet(_migration_keys()).rotate(ciphertext)
    except InvalidToken:
        raise UndecryptablePassword() from None
