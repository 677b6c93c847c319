"""User objects as Close renders them."""

from __future__ import annotations

import hashlib
from typing import Any

from clove.kit.dates import iso_utc
from clove.models import User


def gravatar(email: str) -> str:
    digest = hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()
    return f"https://secure.gravatar.com/avatar/{digest}"


def serialize_user(user: User, organization_ids: list[str]) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "image": gravatar(user.email),
        "date_created": iso_utc(user.date_created),
        "date_updated": iso_utc(user.date_updated),
        "organizations": organization_ids,
    }


def full_name(user: User) -> str:
    return " ".join(p for p in (user.first_name, user.last_name) if p)
