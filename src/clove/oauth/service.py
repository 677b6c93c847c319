"""OAuth2 applications, authorization codes and tokens."""

from __future__ import annotations

from sqlalchemy.orm import Session

from clove.auth.service import hash_secret
from clove.kit.ids import new_id, new_secret
from clove.models import OAuthApp


def register_app(session: Session, name: str, redirect_uris: list[str]) -> tuple[str, str]:
    """Flushes a new app; returns (client_id, client_secret). The secret is stored hashed."""
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
