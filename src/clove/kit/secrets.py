"""Encryption at rest for stored credentials (SMTP/IMAP passwords): Fernet with one key.

The key comes from `CLOVE_SECRET_KEY`, else from the file `CLOVE_SECRET_KEY_FILE`
(default `./clove.key`), which `clove init` and `clove serve` create when it is absent.
Every process that reads the database must use the same key.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from clove.config import Settings, get_settings


class SecretKeyMissing(RuntimeError):
    pass


def ensure_key_file(settings: Settings | None = None) -> Path | None:
    """Creates the key file (mode 0600) when no key is configured; returns it if created."""
    settings = settings or get_settings()
    path = Path(settings.secret_key_file)
    if settings.secret_key or path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key() + b"\n")
    _fernet.cache_clear()
    return path


@lru_cache
def _fernet(key: str | None, key_file: str) -> Fernet:
    if key:
        return Fernet(key.encode())
    path = Path(key_file)
    if not path.exists():
        raise SecretKeyMissing(
            f"No secret key: set CLOVE_SECRET_KEY, or run `clove init` to create {path}."
        )
    return Fernet(path.read_bytes().strip())


def fernet(settings: Settings | None = None) -> Fernet:
    settings = settings or get_settings()
    return _fernet(settings.secret_key, str(settings.secret_key_file))


def encrypt(plain: str, settings: Settings | None = None) -> str:
    return fernet(settings).encrypt(plain.encode()).decode()


def decrypt(token: str, settings: Settings | None = None) -> str:
    """The clear text of `token`; SecretKeyMissing-style error if the key changed."""
    try:
        return fernet(settings).decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretKeyMissing(
            "A stored password cannot be decrypted: CLOVE_SECRET_KEY (or the key file) is not "
            "the key it was stored with."
        ) from None
