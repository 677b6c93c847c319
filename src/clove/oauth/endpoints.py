"""OAuth2 at the root: /oauth2/authorize/, /oauth2/token/, /oauth2/revoke/.

These paths are outside /api/v1/, so the API edge neither authenticates nor rate-limits them:
the client authenticates with its secret, the user with an API key typed into the form.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated
from urllib.parse import unquote_plus, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Form, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from clove.auth.service import lookup_api_key
from clove.kit.http import JSON, TransactionRoute, after_commit, error_response, get_db
from clove.models import OAuthApp
from clove.oauth import pages, service
from clove.oauth.schemas import AuthorizeDecision, AuthorizeRequest, serialize_token
from clove.oauth.service import OAuthError, invalid_request

# Not Close's /api/v1 operations, so they stay out of its OpenAPI document.
router = APIRouter(route_class=TransactionRoute, include_in_schema=False)

# RFC 6749 §5.1: responses carrying tokens must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "")

Params = dict[str, str]


# Authorization endpoint


@router.get("/oauth2/authorize/")
def authorize_page(
    request: Request,
    params: Annotated[AuthorizeRequest, Query()],
    db: Session = Depends(get_db),
) -> Response:
    checked = _check_authorization(request, db, params)
    if isinstance(checked, Response):
        return checked
    app, _target, scope = checked
    return pages.approval_page(app.name, params, scope)


@router.post("/oauth2/authorize/")
def authorize_decision(
    request: Request,
    form: Annotated[AuthorizeDecision, Form()],
    db: Session = Depends(get_db),
) -> Response:
    # The hidden fields came back from the browser: they are checked again, not trusted.
    checked = _check_authorization(request, db, form)
    if isinstance(checked, Response):
        return checked
    app, target, scope = checked
    if form.decision == "deny":
        return _redirect(target, error="access_denied", state=form.state)
    if form.decision != "approve":
        return _refusal(request, invalid_request("decision must be approve or deny."))
    return _approve(db, app, target, scope, form)


def _check_authorization(
    request: Request, db: Session, params: AuthorizeRequest
) -> tuple[OAuthApp, str, str] | Response:
    """(app, redirect target, granted scope), or the response that ends the request.

    Errors about the client or its redirect URI stay on Clove; once the target is known to be
    registered, the others go back to the app (RFC 6749 §4.1.2.1).
    """
    try:
        app, target = service.authorization_target(db, params.client_id, params.redirect_uri)
    except OAuthError as exc:
        return _refusal(request, exc)
    try:
        service.check_response_type(params.response_type)
        scope = service.grant_scope(params.scope)
    except OAuthError as exc:
        return _redirect(target, error=exc.code, error_description=exc.message, state=params.state)
    return app, target, scope


def _approve(
    db: Session, app: OAuthApp, target: str, scope: str, form: AuthorizeDecision
) -> Response:
    """Redirects with a new code if the API key is the user's; else shows the form again."""
    params = AuthorizeRequest(**form.model_dump(include=set(AuthorizeRequest.model_fields)))
    user = lookup_api_key(db, form.api_key) if form.api_key else None
    if user is None:
        return pages.approval_page(app.name, params, scope, error="That API key is not valid.")
    code = service.issue_code(db, app, user, target, scope)
    return _redirect(target, code=code, state=form.state)


def _redirect(uri: str, **params: str) -> RedirectResponse:
    """302 to a registered `uri` with `params` added to its query (empty values left out)."""
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return RedirectResponse(
        urlunsplit(parts._replace(query=query)),
        status_code=302,
        headers={"Cache-Control": "no-store"},
    )


def _refusal(request: Request, exc: OAuthError) -> Response:
    """A 400 that stays on Clove: an HTML page for browsers, RFC 6749 JSON for programs."""
    if "text/html" in request.headers.get("accept", ""):
        return pages.error_page(exc.message)
    return error_response(exc)


# Token and revocation endpoints


async def read_params(request: Request) -> Params:
    """The body's parameters, form-encoded as RFC 6749 requires, or JSON as some clients send."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        pairs = _json_pairs(await request.body())
    elif content_type in FORM_TYPES:
        form = await request.form()
        pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    else:
        raise invalid_request("Send the parameters as application/x-www-form-urlencoded.")
    params: Params = {}
    for name, value in pairs:
        # RFC 6749 §3.2: a repeated parameter makes the request ambiguous.
        if name in params:
            raise invalid_request(f"Parameter {name} was sent more than once.")
        params[name] = value
    return params


def _json_pairs(raw: bytes) -> list[tuple[str, str]]:
    try:
        payload = json.loads(raw or b"{}")
    except ValueError:
        raise invalid_request("Malformed JSON in request body.") from None
    if not isinstance(payload, dict):
        raise invalid_request("The request body must be a JSON object.")
    if not all(isinstance(v, str) for v in payload.values()):
        raise invalid_request("Every parameter must be a string.")
    return list(payload.items())


@router.post("/oauth2/token/")
def token(
    request: Request, params: Params = Depends(read_params), db: Session = Depends(get_db)
) -> JSON:
    app = _client(request, params, db)
    lifetime: int = request.app.state.settings.oauth_access_token_seconds
    grant_type = params.get("grant_type", "")
    if grant_type == "authorization_code":
        issued = service.exchange_code(
            db, app, params.get("code", ""), params.get("redirect_uri", ""), lifetime
        )
    elif grant_type == "refresh_token":
        issued = service.refresh(
            db, app, params.get("refresh_token", ""), params.get("scope", ""), lifetime
        )
        after_commit(
            db, request.app.state.authenticator.forget
        )  # the old access token stops working at once
    elif not grant_type:
        raise invalid_request("grant_type is required.")
    else:
        raise OAuthError(
            "unsupported_grant_type", "Use grant_type=authorization_code or refresh_token."
        )
    return JSON(serialize_token(issued), headers=NO_STORE)


@router.post("/oauth2/revoke/")
def revoke(
    request: Request, params: Params = Depends(read_params), db: Session = Depends(get_db)
) -> JSON:
    app = _client(request, params, db)
    service.revoke(db, app, params.get("token", ""))
    after_commit(
        db, request.app.state.authenticator.forget
    )  # this process stops trusting it at once
    return JSON({})


def _client(request: Request, params: Params, db: Session) -> OAuthApp:
    """The authenticated client app, by HTTP Basic or by body parameters (RFC 6749 §2.3.1)."""
    basic = _basic_credentials(request.headers.get("authorization", ""))
    if basic is None:
        client_id, secret = params.get("client_id", ""), params.get("client_secret", "")
    else:
        if "client_secret" in params:
            raise invalid_request("Authenticate the client with HTTP Basic or the body, not both.")
        client_id, secret = basic
        if params.get("client_id", client_id) != client_id:
            raise invalid_request("client_id in the body differs from the one in HTTP Basic.")
    app = service.authenticate_client(db, client_id, secret)
    if app is None:
        # RFC 6749 §5.2: a client that tried HTTP Basic is told the scheme to retry with.
        headers = {"WWW-Authenticate": 'Basic realm="oauth2"'} if basic is not None else None
        raise OAuthError(
            "invalid_client", "Client authentication failed.", status_code=401, headers=headers
        )
    return app


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """(client_id, client_secret) from `Basic ...`, each form-decoded as RFC 6749 §2.3.1 says."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")  # a broken header is a failed client authentication, not an absent one
    client_id, _, secret = decoded.partition(":")
    return unquote_plus(client_id), unquote_plus(secret)
