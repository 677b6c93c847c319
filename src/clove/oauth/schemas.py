"""The authorization request's parameters and the token response body."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from clove.oauth.service import IssuedToken


class AuthorizeRequest(BaseModel):
    """GET /oauth2/authorize/ query; the approval form posts the same fields back.

    Every field defaults to "" so that the service, not a generic 400, explains what is
    missing; unknown parameters are ignored, as RFC 6749 §3.1 requires.
    """

    client_id: str = ""
    redirect_uri: str = ""
    response_type: str = ""
    state: str = ""
    scope: str = ""


class AuthorizeDecision(AuthorizeRequest):
    """POST /oauth2/authorize/: the user's API key proves who approves."""

    api_key: str = ""
    decision: str = ""


def serialize_token(token: IssuedToken) -> dict[str, Any]:
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "access_token": token.access_token,
        "expires_in": token.expires_in,
    }
    if token.refresh_token is not None:
        body["refresh_token"] = token.refresh_token
    body.update(scope=token.scope, organization_id=token.organization_id, user_id=token.user_id)
    return body
