"""Close-style object ids: `<prefix>_<base62>` with a per-type suffix length."""

from __future__ import annotations

import secrets
import string

ALPHABET = string.ascii_letters + string.digits

# Legacy objects carry a 43-character suffix, newer services 22 (close-api.md §2.2).
LONG = 43
SHORT = 22

PREFIX_LENGTHS: dict[str, int] = {
    "orga": LONG,
    "user": LONG,
    "memb": LONG,
    "role": LONG,
    "api": LONG,
    "oauthapp": LONG,
    "lead": LONG,
    "cont": LONG,
    "stat": LONG,
    "cf": LONG,
    "save": LONG,
    "acti": LONG,
    "tmpl": LONG,
    "emailacct": LONG,
    "task": LONG,
    "phon": LONG,
    "bulkseqsub": LONG,
    "bulkemail": LONG,
    "bulkedit": LONG,
    "bulkdelete": LONG,
    "seq": SHORT,
    "seqstep": SHORT,
    "sub": SHORT,
    "sdas": SHORT,
    "whsub": SHORT,
    "whdel": SHORT,
    "ev": SHORT,
    "req": SHORT,
}


# Random bytes map onto the alphabet by `bytes.translate` (in C): the 248 values below 4 * 62
# map evenly, the 8 above are dropped, so every character is equally likely.
_TO_BASE62 = bytes(ord(ALPHABET[b % 62]) if b < 248 else 0 for b in range(256))
_DROPPED = bytes(range(248, 256))


def random_base62(length: int) -> str:
    out = b""
    while len(out) < length:
        out += secrets.token_bytes(length + 8).translate(_TO_BASE62, _DROPPED)
    return out[:length].decode()


def new_id(prefix: str) -> str:
    """A fresh random id for an object of the type named by `prefix`."""
    return f"{prefix}_{random_base62(PREFIX_LENGTHS[prefix])}"


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret (API keys, OAuth tokens and codes)."""
    return secrets.token_urlsafe(nbytes)
