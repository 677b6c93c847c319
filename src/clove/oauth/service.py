"""OAuth2 (RFC 6749) as Close offers it: apps, one-time authorization codes, rotating tokens.

Every secret (client secret, code, access and refresh token) is stored as its SHA-256 only.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from clove.auth.service import AuthContext, hash_secret
from clove.errors import APIError
from clove.kit.dates import utcnow
from clove.kit.ids import new_id, new_secret
from clove.models import Membership, OAuthApp, OAuthCode, OAuthToken

CODE_SECONDS = 600
FULL_ACCESS = "all.full_access"
OFFLINE_ACCESS = "offline_access"
KNOWN_SCOPES = frozenset({FULL_ACCESS, OFFLINE_ACCESS})
DEFAULT_SCOPE = f"{FULL_ACCESS} {OFFLINE_ACCESS}"
MAX_REDIRECT_URI = 2000  # the width of oauth_code.redirect_uri


class OAuthError(APIError):
    """An RFC 6749 error, rendered as `{"error": code, "error_description": ...}`."""

    def __init__(
        self,
        code: str,
        description: str,
        *,
        status_code: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description, headers=headers)
        self.code = code
        self.status_code = status_code

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.message}


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued token pair; the only moment the plain secrets exist."""

    access_token: str
    refresh_token: str | None
    expires_in: int
    scope: str
    organization_id: str
    user_id: str


# Applications


def register_app(session: Session, name: str, redirect_uris: list[str]) -> tuple[str, str]:
    """Flushes a new app; returns (client_id, client_secret). The secret is stored hashed.

    Raises ValueError for a redirect URI that a browser could not be sent back to.
    """
    if not redirect_uris:
        raise ValueError("An OAuth2 application needs at least one redirect URI.")
    for uri in redirect_uris:
        check_redirect_uri(uri)
    secret = new_secret(32)
    app = OAuthApp(
        id=new_id("oauthapp"),
        name=name,
        client_secret_hash=hash_secret(secret),
        redirect_uris=list(redirect_uris),
    )
    session.add(app)
    session.flush()
    return app.id, secret


def check_redirect_uri(uri: str) -> None:
    """ValueError unless `uri` is absolute and fragment-free (RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    if not parts.scheme or not (parts.netloc or parts.path):
        raise ValueError(f"Redirect URI {uri!r} must be absolute, e.g. https://example.com/cb")
    if parts.fragment or "#" in uri:
        raise ValueError(f"Redirect URI {uri!r} must not contain a fragment (#...)")
    if len(uri) > MAX_REDIRECT_URI or any(c.isspace() or ord(c) < 32 for c in uri):
        raise ValueError(f"Redirect URI {uri!r} is too long or contains whitespace")


def find_app(session: Session, client_id: str) -> OAuthApp | None:
    # PostgreSQL refuses NUL in text parameters; such an id cannot exist anyway.
    if not client_id or "\x00" in client_id:
        return None
    return session.get(OAuthApp, client_id)


def authenticate_client(session: Session, client_id: str, client_secret: str) -> OAuthApp | None:
    """The app if `client_secret` is its secret, else None."""
    app = find_app(session, client_id)
    if app is None or not client_secret:
        return None
    if not hmac.compare_digest(app.client_secret_hash, hash_secret(client_secret)):
        return None
    return app


# Authorization endpoint


def authorization_target(
    session: Session, client_id: str, redirect_uri: str
) -> tuple[OAuthApp, str]:
    """The app asking and where to send the user back; OAuthError when not to send them back.

    An unknown client or an unregistered redirect URI is reported to the user, never sent
    back through the redirect, which would make Clove an open redirector (RFC 6749 §4.1.2.1).
    """
    app = find_app(session, client_id)
    if app is None:
        raise invalid_request("Unknown client_id: no application is registered with this id.")
    return app, resolve_redirect_uri(app, redirect_uri)


def resolve_redirect_uri(app: OAuthApp, requested: str) -> str:
    """The registered URI to send the user back to; OAuthError if `requested` is not registered."""
    if requested:
        # Exact comparison: prefix or pattern matching has leaked codes in the wild.
        if requested in app.redirect_uris:
            return requested
        raise invalid_request("redirect_uri is not registered for this application.")
    sole = _sole_redirect_uri(app)
    if not sole:
        raise invalid_request("redirect_uri is required: this application registered several.")
    return sole


def _sole_redirect_uri(app: OAuthApp) -> str:
    return app.redirect_uris[0] if len(app.redirect_uris) == 1 else ""


def check_response_type(response_type: str) -> None:
    if not response_type:
        raise invalid_request("response_type is required; use response_type=code.")
    if response_type != "code":
        raise OAuthError("unsupported_response_type", "Only response_type=code is supported.")


def grant_scope(requested: str) -> str:
    """The scope granted for a requested one; OAuthError(invalid_scope) for unknown scopes."""
    names = requested.split() or DEFAULT_SCOPE.split()
    unknown = sorted(set(names) - KNOWN_SCOPES)
    if unknown:
        raise OAuthError("invalid_scope", f"Unknown scope: {' '.join(unknown)}.")
    # all.full_access is Close's only data scope, so every token carries it.
    return DEFAULT_SCOPE if OFFLINE_ACCESS in names else FULL_ACCESS


def issue_code(
    session: Session, app: OAuthApp, user: AuthContext, redirect_uri: str, scope: str
) -> str:
    """Flushes a one-time code for `user` (dropping expired codes); returns the code."""
    now = utcnow()
    # Codes that were never exchanged would otherwise pile up forever.
    session.execute(delete(OAuthCode).where(OAuthCode.expires_at <= now))
    code = new_secret(32)
    session.add(
        OAuthCode(
            code_hash=hash_secret(code),
            client_id=app.id,
            organization_id=user.organization_id,
            user_id=user.user_id,
            redirect_uri=redirect_uri,
            scope=scope,
            expires_at=now + timedelta(seconds=CODE_SECONDS),
        )
    )
    session.flush()
    return code


# Token endpoint


def exchange_code(
    session: Session, app: OAuthApp, code: str, redirect_uri: str, lifetime: int
) -> IssuedToken:
    """Consumes `code` and flushes a new token; OAuthError(invalid_grant) if it cannot be used.

    Any error rolls the transaction back, so a failed attempt leaves the code as it was.
    """
    if not code:
        raise invalid_request("code is required.")
    # Deleting first claims the code atomically: of two concurrent exchanges one gets no row.
    row = session.execute(
        delete(OAuthCode).where(OAuthCode.code_hash == hash_secret(code)).returning(OAuthCode)
    ).scalar_one_or_none()
    if row is None or row.client_id != app.id or row.expires_at <= utcnow():
        raise invalid_grant("The authorization code is invalid, expired or already used.")
    # RFC 6749 §4.1.3: the URI must be the one authorized; omitting it is fine only if unambiguous.
    if (redirect_uri or _sole_redirect_uri(app)) != row.redirect_uri:
        raise invalid_grant("redirect_uri does not match the one used to authorize.")
    _require_active_member(session, row.organization_id, row.user_id)
    return _issue_token(session, app.id, row.organization_id, row.user_id, row.scope, lifetime)


def refresh(
    session: Session, app: OAuthApp, refresh_token: str, scope: str, lifetime: int
) -> IssuedToken:
    """Rotates: revokes the token pair holding `refresh_token` and flushes a new pair."""
    if not refresh_token:
        raise invalid_request("refresh_token is required.")
    # A conditional UPDATE is the claim: a second, concurrent refresh matches no row.
    old = session.execute(
        update(OAuthToken)
        .where(
            OAuthToken.refresh_hash == hash_secret(refresh_token),
            OAuthToken.client_id == app.id,
            OAuthToken.revoked.is_(False),
        )
        .values(revoked=True)
        .returning(OAuthToken)
    ).scalar_one_or_none()
    if old is None:
        raise invalid_grant("The refresh token is invalid, revoked or already used.")
    _require_active_member(session, old.organization_id, old.user_id)
    granted = _narrow_scope(old.scope, scope)
    return _issue_token(session, app.id, old.organization_id, old.user_id, granted, lifetime)


def _narrow_scope(granted: str, requested: str) -> str:
    """RFC 6749 §6: a refresh may ask for less than was granted, never more."""
    if not requested:
        return granted
    if not set(requested.split()) <= set(granted.split()):
        raise OAuthError("invalid_scope", "The requested scope exceeds the one granted.")
    return grant_scope(requested)


def _require_active_member(session: Session, organization_id: str, user_id: str) -> None:
    active = session.scalar(
        select(Membership.id).where(
            Membership.organization_id == organization_id,
            Membership.user_id == user_id,
            Membership.is_active,
        )
    )
    if active is None:
        raise invalid_grant("The user is no longer an active member of the organization.")


def _issue_token(
    session: Session, client_id: str, organization_id: str, user_id: str, scope: str, lifetime: int
) -> IssuedToken:
    """Flushes a new token pair; the refresh token exists only with offline_access."""
    now = utcnow()
    access = new_secret(32)
    refresh_token = new_secret(32) if OFFLINE_ACCESS in scope.split() else None
    session.add(
        OAuthToken(
            access_hash=hash_secret(access),
            refresh_hash=hash_secret(refresh_token) if refresh_token else None,
            client_id=client_id,
            organization_id=organization_id,
            user_id=user_id,
            scope=scope,
            expires_at=now + timedelta(seconds=lifetime),
            revoked=False,
            date_created=now,
        )
    )
    session.flush()
    return IssuedToken(access, refresh_token, lifetime, scope, organization_id, user_id)


# Revocation endpoint


def revoke(session: Session, app: OAuthApp, token: str) -> None:
    """Flushes the revocation of the pair holding `token` (access or refresh) if `app` owns it.

    An unknown token, or another app's, is silently ignored (RFC 7009 §2.2), which also
    keeps this endpoint from revealing whether a token exists.
    """
    if not token:
        raise invalid_request("token is required.")
    digest = hash_secret(token)
    session.execute(
        update(OAuthToken)
        .where(
            or_(OAuthToken.access_hash == digest, OAuthToken.refresh_hash == digest),
            OAuthToken.client_id == app.id,
        )
        .values(revoked=True)
    )
    session.flush()
