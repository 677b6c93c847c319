"""API keys: issued per (organization, user), shown once, stored as a SHA-256 hash."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from clove.auth.service import AuthContext, hash_secret
from clove.errors import object_not_found
from clove.kit.dates import iso_utc, utcnow
from clove.kit.ids import new_id, new_secret
from clove.models import ApiKey


def create_api_key(
    session: Session, organization_id: str, user_id: str, name: str = ""
) -> tuple[ApiKey, str]:
    """Flushes a new key row; returns it with the secret, which is never stored."""
    secret = new_secret(32)
    key = ApiKey(
        id=new_id("api"),
        organization_id=organization_id,
        user_id=user_id,
        name=name,
        key_hash=hash_secret(secret),
        key_prefix=secret[:8],
    )
    session.add(key)
    session.flush()
    return key, secret


def visible_keys(ctx: AuthContext) -> Select[tuple[ApiKey]]:
    """Admins see every key of their organization, others only their own."""
    query = select(ApiKey).where(ApiKey.organization_id == ctx.organization_id, ApiKey.is_active)
    if not ctx.is_admin:
        query = query.where(ApiKey.user_id == ctx.user_id)
    return query


def find_key(session: Session, ctx: AuthContext, key_or_id: str) -> ApiKey:
    """By id (`api_...`) or by the secret itself, as Close's scripts look keys up."""
    # Both ways: a secret may itself begin with "api_".
    match = (ApiKey.id == key_or_id) | (ApiKey.key_hash == hash_secret(key_or_id))
    key = session.scalars(visible_keys(ctx).where(match)).first()
    if key is None:
        raise object_not_found("ApiKey")
    return key


def revoke(key: ApiKey) -> None:
    key.is_active = False
    key.date_updated = utcnow()


def serialize_api_key(key: ApiKey, secret: str | None = None) -> dict[str, Any]:
    body = {
        "id": key.id,
        "organization_id": key.organization_id,
        "user_id": key.user_id,
        "name": key.name,
        "key_prefix": key.key_prefix,
        "date_created": iso_utc(key.date_created),
        "date_updated": iso_utc(key.date_updated),
    }
    if secret is not None:
        body["key"] = secret  # shown once, on creation
    return body
