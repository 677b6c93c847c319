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
    "acti": LONG,
    "tmpl": LONG,
    "emailacct": LONG,
    "bulkseqsub": LONG,
    "bulkemail": LONG,
    "bulkedit": LONG,
    "bulkdelete": LONG,
    "seq": SHORT,
    "seqstep": SHORT,
    "sub": SHORT,
    "whsub": SHORT,
    "ev": SHORT,
    "req": SHORT,
}


def new_id(prefix: str) -> str:
    """A fresh random id for an object of the type named by `prefix`."""
    length = PREFIX_LENGTHS[prefix]
    return f"{prefix}_" + "".join(secrets.choice(ALPHABET) for _ in range(length))


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret (API keys, OAuth tokens and codes)."""
    return secrets.token_urlsafe(nbytes)
