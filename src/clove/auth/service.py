"""Who is calling: API keys (Basic) and OAuth access tokens (Bearer)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clove.kit.dates import utcnow
from clove.models import ApiKey, Membership, OAuthToken


@dataclass(frozen=True)
class AuthContext:
    """The caller of one request. Every query is scoped by `organization_id`."""

    organization_id: str
    user_id: str
    membership_id: str
    role_id: str
    api_key_id: str | None = None
    oauth_client_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role_id == "admin"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_authorization(header: str | None) -> tuple[str, str] | None:
    """`("key", secret)` for Basic `key:`, `("bearer", token)` for Bearer, else None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, _, _password = decoded.partition(":")
        return ("key", username) if username else None
    if scheme == "bearer" and value:
        return ("bearer", value)
    return None


class Authenticator:
    """Resolves credentials to an AuthContext, trusting a result for at most `cache_seconds`."""

    def __init__(self, session_factory: sessionmaker[Session], cache_seconds: float) -> None:
        self._session_factory = session_factory
        self._cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, AuthContext | None]] = {}
        self._lock = threading.Lock()
        # Bumped by forget(): a lookup that started before it must not cache what it read.
        self._generation = 0

    def cached(self, credential: tuple[str, str]) -> tuple[bool, AuthContext | None]:
        """(hit, context) without touching the database."""
        entry = self._cache.get(credential)
        if entry is not None and entry[0] > time.monotonic():
            return True, entry[1]
        return False, None

    def authenticate(self, credential: tuple[str, str]) -> AuthContext | None:
        hit, ctx = self.cached(credential)
        if hit:
            return ctx
        kind, secret = credential
        generation = self._generation
        with self._session_factory() as session:
            ctx = (
                lookup_api_key(session, secret) if kind == "key" else lookup_token(session, secret)
            )
        if self._cache_seconds > 0:
            with self._lock:
                if generation != self._generation:
                    return ctx
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[credential] = (time.monotonic() + self._cache_seconds, ctx)
        return ctx

    def forget(self) -> None:
        """Drops every cached credential (call after committing a change to credentials)."""
        with self._lock:
            self._generation += 1
            self._cache.clear()


def lookup_api_key(session: Session, key: str) -> AuthContext | None:
    row = session.execute(
        select(
            ApiKey.id,
            Membership.id,
            Membership.organization_id,
            Membership.user_id,
            Membership.role_id,
        )
        .join(
            Membership,
            (Membership.organization_id == ApiKey.organization_id)
            & (Membership.user_id == ApiKey.user_id),
        )
        .where(ApiKey.key_hash == hash_secret(key), ApiKey.is_active, Membership.is_active)
    ).first()
    if row is None:
        return None
    key_id, membership_id, org_id, user_id, role_id = row
    return AuthContext(org_id, user_id, membership_id, role_id, api_key_id=key_id)


def lookup_token(session: Session, token: str) -> AuthContext | None:
    row = session.execute(
        select(
            OAuthToken.client_id,
            Membership.id,
            Membership.organization_id,
            Membership.user_id,
            Membership.role_id,
        )
        .join(
            Membership,
            (Membership.organization_id == OAuthToken.organization_id)
            & (Membership.user_id == OAuthToken.user_id),
        )
        .where(
            OAuthToken.access_hash == hash_secret(token),
            OAuthToken.revoked.is_(False),
            OAuthToken.expires_at > utcnow(),
            Membership.is_active,
        )
    ).first()
    if row is None:
        return None
    client_id, membership_id, org_id, user_id, role_id = row
    return AuthContext(org_id, user_id, membership_id, role_id, oauth_client_id=client_id)
