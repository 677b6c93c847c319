"""OAuth2 end to end: approval form, code exchange, rotating refresh, revocation, CLI."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient
from typer.testing import CliRunner

from clove.auth.service import hash_secret
from clove.cli import app as cli_app
from clove.config import get_settings
from clove.kit.dates import utcnow
from clove.models import Membership, OAuthApp, OAuthCode, OAuthToken
from clove.oauth.service import register_app
from tests.conftest import Org

REDIRECT = "https://app.example.com/callback"


@dataclass
class Client:
    id: str
    secret: str

    @property
    def form(self) -> dict[str, str]:
        return {"client_id": self.id, "client_secret": self.secret}


def new_client(
    session_factory: sessionmaker[Session], redirect_uris: list[str] | None = None
) -> Client:
    with session_factory.begin() as session:
        return Client(*register_app(session, "Zapier-ish", redirect_uris or [REDIRECT]))


@pytest.fixture
def oauth_client(session_factory: sessionmaker[Session]) -> Client:
    return new_client(session_factory)


def approve(
    client: TestClient, app: Client, org: Org, redirect_uri: str = REDIRECT, **extra: str
) -> dict[str, list[str]]:
    """Posts the approval form; returns the query of the redirect back to the app."""
    form = {"client_id": app.id, "redirect_uri": redirect_uri, "response_type": "code"}
    form.update({"state": "xyz", "api_key": org.key, "decision": "approve", **extra})
    response = client.post("/oauth2/authorize/", data=form, follow_redirects=False)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(redirect_uri or REDIRECT)
    return parse_qs(urlsplit(location).query)


def get_code(client: TestClient, app: Client, org: Org, **extra: str) -> str:
    return approve(client, app, org, **extra)["code"][0]


def exchange(client: TestClient, app: Client, code: str, redirect_uri: str = REDIRECT) -> Any:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    return client.post("/oauth2/token/", data={**form, **app.form})


def tokens(client: TestClient, app: Client, org: Org, **extra: str) -> dict[str, Any]:
    response = exchange(client, app, get_code(client, app, org, **extra))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refresh(client: TestClient, app: Client, refresh_token: str) -> Any:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return client.post("/oauth2/token/", data={**form, **app.form})


def me(client: TestClient, access_token: str) -> Any:
    return client.get("/api/v1/me/", headers={"Authorization": f"Bearer {access_token}"})


# Authorization endpoint


def test_approval_page_names_the_app_and_carries_the_request(
    client: TestClient, oauth_client: Client
) -> None:
    query = {"client_id": oauth_client.id, "response_type": "code", "state": "s<1>"}
    response = client.get("/oauth2/authorize", params=query)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["x-frame-options"] == "DENY"
    assert "Zapier-ish" in response.text
    assert 'name="api_key"' in response.text
    assert 'value="s&lt;1&gt;"' in response.text  # state is kept, escaped


def test_full_flow_gives_a_bearer_token_acting_as_the_approving_user(
    client: TestClient, org: Org, oauth_client: Client
) -> None:
    back = approve(client, oauth_client, org)
    assert back["state"] == ["xyz"]
    response = exchange(client, oauth_client, back["code"][0])
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "all.full_access offline_access"
    assert body["organization_id"] == org.id
    assert body["user_id"] == org.user_id
    assert body["refresh_token"] and body["refresh_token"] != body["access_token"]

    who = me(client, body["access_token"])
    assert who.status_code == 200
    assert who.json()["id"] == org.user_id
    assert [o["id"] for o in who.json()["organizations"]] == [org.id]


def test_secrets_are_stored_hashed(
    client: TestClient, org: Org, oauth_client: Client, session_factory: sessionmaker[Session]
) -> None:
    code = get_code(client, oauth_client, org)
    with session_factory() as session:
        assert session.get(OAuthCode, hash_secret(code)) is not None
        assert session.get(OAuthCode, code) is None
    body = exchange(client, oauth_client, code).json()
    with session_factory() as session:
        row = session.get(OAuthToken, hash_secret(body["access_token"]))
        assert row is not None and row.refresh_hash == hash_secret(body["refresh_token"])
        app = session.get(OAuthApp, oauth_client.id)
        assert app is not None and app.client_secret_hash == hash_secret(oauth_client.secret)


def test_redirect_uri_may_be_omitted_when_the_app_has_only_one(
    client: TestClient, org: Org, oauth_client: Client
) -> None:
    code = approve(client, oauth_client, org, redirect_uri="")["code"][0]
    form = {"grant_type": "authorization_code", "code": code, **oauth_client.form}
    response = client.post("/oauth2/token/", data=form)
    assert response.status_code == 200, response.text


def test_redirect_uri_is_required_when_the_app_has_several(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    app = new_client(session_factory, [REDIRECT, "https://other.example.com/cb"])
    form = {"client_id": app.id, "response_type": "code", "api_key": org.key}
    response = client.post(
        "/oauth2/authorize/", data={**form, "decision": "approve"}, follow_redirects=False
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.json()["error"] == "invalid_request"


def test_redirect_keeps_the_registered_query_string(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    uri = "https://app.example.com/cb?tenant=7"
    app = new_client(session_factory, [uri])
    back = approve(client, app, org, redirect_uri=uri)
    assert back["tenant"] == ["7"] and back["code"]


def test_deny_redirects_with_access_denied_and_state(
    client: TestClient, org: Org, oauth_client: Client
) -> None:
    form = {"client_id": oauth_client.id, "redirect_uri": REDIRECT, "response_type": "code"}
    form.update(state="abc", decision="deny")
    response = client.post("/oauth2/authorize/", data=form, follow_redirects=False)
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    assert parse_qs(location.query) == {"error": ["access_denied"], "state": ["abc"]}


def test_a_wrong_api_key_shows_the_form_again_without_a_code(
    client: TestClient, oauth_client: Client
) -> None:
    form = {"client_id": oauth_client.id, "redirect_uri": REDIRECT, "response_type": "code"}
    form.update(api_key="not-a-key", decision="approve")
    response = client.post("/oauth2/authorize/", data=form, follow_redirects=False)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "That API key is not valid." in response.text


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    ("client_id", "redirect_uri"),
    [
        ("oauthapp_unknown", REDIRECT),
        (None, "https://evil.example.com/steal"),
        (None, REDIRECT + "/../evil"),
    ],
)
def test_unknown_client_or_unregistered_redirect_uri_never_redirects(
    client: TestClient,
    org: Org,
    oauth_client: Client,
    method: str,
    client_id: str | None,
    redirect_uri: str,
) -> None:
    params = {"client_id": client_id or oauth_client.id, "redirect_uri": redirect_uri}
    params.update(response_type="code", state="s", api_key=org.key, decision="approve")
    if method == "GET":
        response = client.get("/oauth2/authorize/", params=params, follow_redirects=False)
    else:
        response = client.post("/oauth2/authorize/", data=params, follow_redirects=False)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.json()["error"] == "invalid_request"


def test_browsers_get_the_refusal_as_a_page(client: TestClient, oauth_client: Client) -> None:
    params = {"client_id": oauth_client.id, "redirect_uri": "https://evil.example.com/"}
    response = client.get("/oauth2/authorize/", params=params, headers={"Accept": "text/html"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "evil.example.com" not in response.text
    assert "not registered" in response.text


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "all.full_access admin.everything"}, "invalid_scope"),
    ],
)
def test_bad_request_parameters_are_reported_to_the_app(
    client: TestClient, oauth_client: Client, extra: dict[str, str], error: str
) -> None:
    params = {"client_id": oauth_client.id, "response_type": "code", "state": "s", **extra}
    response = client.get("/oauth2/authorize/", params=params, follow_redirects=False)
    assert response.status_code == 302
    back = parse_qs(urlsplit(response.headers["location"]).query)
    assert back["error"] == [error] and back["state"] == ["s"]
    assert "code" not in back


# Token endpoint


def test_a_code_works_only_once(client: TestClient, org: Org, oauth_client: Client) -> None:
    code = get_code(client, oauth_client, org)
    assert exchange(client, oauth_client, code).status_code == 200
    again = exchange(client, oauth_client, code)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_an_expired_code_is_refused(
    client: TestClient, org: Org, oauth_client: Client, session_factory: sessionmaker[Session]
) -> None:
    code = get_code(client, oauth_client, org)
    with session_factory.begin() as session:
        session.execute(
            update(OAuthCode)
            .where(OAuthCode.code_hash == hash_secret(code))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    response = exchange(client, oauth_client, code)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_code_expires_after_ten_minutes(
    client: TestClient, org: Org, oauth_client: Client, session_factory: sessionmaker[Session]
) -> None:
    before = utcnow()
    code = get_code(client, oauth_client, org)
    with session_factory() as session:
        row = session.get(OAuthCode, hash_secret(code))
        assert row is not None
        lifetime = row.expires_at - before
    assert timedelta(minutes=9, seconds=59) < lifetime <= timedelta(minutes=10, seconds=1)


def test_a_different_redirect_uri_is_refused(
    client: TestClient, org: Org, oauth_client: Client
) -> None:
    code = get_code(client, oauth_client, org)
    response = exchange(client, oauth_client, code, redirect_uri="https://evil.example.com/cb")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_code_issued_to_another_app_is_refused(
    client: TestClient, org: Org, oauth_client: Client, session_factory: sessionmaker[Session]
) -> None:
    code = get_code(client, oauth_client, org)
    thief = new_client(session_factory)
    response = exchange(client, thief, code)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_wrong_client_secret_is_401_invalid_client(
    client: TestClient, org: Org, oauth_client: Client
) -> None:
    code = get_code(client, oauth_client, org)
    wrong = Client(oauth_client.id, "not-the-secret")
    response = exchange(client, wrong, code)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "www-authenticate" not in response.headers

    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    response = client.post("/oauth2/token/", data=form, auth=(oauth_client.id, "nope"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


def test_client_may_authenticate_with_basic_and_send_json(
    client: TestClient, org: Org, oauth_client: Client
) -> None:
    code = get_code(client, oauth_client, org)
    body = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    response = client.post("/oauth2/token", json=body, auth=(oauth_client.id, oauth_client.secret))
    assert response.status_code == 200, response.text
    assert me(client, response.json()["access_token"]).status_code == 200


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({}, "invalid_request"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code"}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
    ],
)
def test_malformed_token_requests_are_400_with_rfc_6749_errors(
    client: TestClient, oauth_client: Client, form: dict[str, str], error: str
) -> None:
    response = client.post("/oauth2/token/", data={**form, **oauth_client.form})
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.json()["error_description"]


def test_a_repeated_parameter_is_refused(
    client: TestClient, org: Org, oauth_client: Client
) -> None:
    code = get_code(client, oauth_client, org)
    body = f"grant_type=authorization_code&code={code}&code=other&redirect_uri={REDIRECT}"
    response = client.post(
        "/oauth2/token/",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=(oauth_client.id, oauth_client.secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_refresh_rotates_both_tokens(client: TestClient, org: Org, oauth_client: Client) -> None:
    first = tokens(client, oauth_client, org)
    response = refresh(client, oauth_client, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] not in (first["refresh_token"], None)
    assert second["access_token"] != first["access_token"]
    assert second["user_id"] == org.user_id and second["organization_id"] == org.id

    reused = refresh(client, oauth_client, first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert me(client, first["access_token"]).status_code == 401
    assert me(client, second["access_token"]).status_code == 200
    assert refresh(client, oauth_client, second["refresh_token"]).status_code == 200


def test_another_app_cannot_use_a_refresh_token(
    client: TestClient, org: Org, oauth_client: Client, session_factory: sessionmaker[Session]
) -> None:
    issued = tokens(client, oauth_client, org)
    response = refresh(client, new_client(session_factory), issued["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert me(client, issued["access_token"]).status_code == 200


def test_without_offline_access_there_is_no_refresh_token(
    client: TestClient, org: Org, oauth_client: Client
) -> None:
    issued = tokens(client, oauth_client, org, scope="all.full_access")
    assert issued["scope"] == "all.full_access"
    assert "refresh_token" not in issued
    assert me(client, issued["access_token"]).status_code == 200


def test_refresh_may_narrow_the_scope_but_not_widen_it(
    client: TestClient, org: Org, oauth_client: Client
) -> None:
    issued = tokens(client, oauth_client, org)
    form = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    narrowed = client.post(
        "/oauth2/token/", data={**form, "scope": "all.full_access", **oauth_client.form}
    )
    assert narrowed.status_code == 200
    assert narrowed.json()["scope"] == "all.full_access"
    assert "refresh_token" not in narrowed.json()


def test_refresh_is_refused_once_the_user_left_the_organization(
    client: TestClient, org: Org, oauth_client: Client, session_factory: sessionmaker[Session]
) -> None:
    issued = tokens(client, oauth_client, org)
    with session_factory.begin() as session:
        session.execute(
            update(Membership).where(Membership.id == org.membership_id).values(is_active=False)
        )
    response = refresh(client, oauth_client, issued["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_an_expired_access_token_is_401(
    client: TestClient, org: Org, oauth_client: Client, session_factory: sessionmaker[Session]
) -> None:
    issued = tokens(client, oauth_client, org)
    assert me(client, issued["access_token"]).status_code == 200
    with session_factory.begin() as session:
        session.execute(
            update(OAuthToken)
            .where(OAuthToken.access_hash == hash_secret(issued["access_token"]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    response = me(client, issued["access_token"])
    assert response.status_code == 401
    assert response.json()["error"].startswith("The server could not verify")
    # The refresh token outlives the access token.
    assert refresh(client, oauth_client, issued["refresh_token"]).status_code == 200


def test_token_lifetime_follows_the_setting(
    app: FastAPI,
    client: TestClient,
    org: Org,
    oauth_client: Client,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app.state.settings, "oauth_access_token_seconds", 120)
    before = utcnow()
    issued = tokens(client, oauth_client, org)
    assert issued["expires_in"] == 120
    with session_factory() as session:
        row = session.get(OAuthToken, hash_secret(issued["access_token"]))
        assert row is not None
        assert timedelta(seconds=119) < row.expires_at - before <= timedelta(seconds=121)


# Revocation endpoint


@pytest.mark.parametrize("which", ["access_token", "refresh_token"])
def test_revoking_either_token_ends_the_pair(
    client: TestClient, org: Org, oauth_client: Client, which: str
) -> None:
    issued = tokens(client, oauth_client, org)
    response = client.post("/oauth2/revoke/", data={"token": issued[which], **oauth_client.form})
    assert response.status_code == 200
    assert me(client, issued["access_token"]).status_code == 401
    assert refresh(client, oauth_client, issued["refresh_token"]).status_code == 400


def test_revoking_an_unknown_token_is_200(client: TestClient, oauth_client: Client) -> None:
    response = client.post("/oauth2/revoke/", data={"token": "nope", **oauth_client.form})
    assert response.status_code == 200


def test_revoke_needs_the_clients_credentials(
    client: TestClient, org: Org, oauth_client: Client, session_factory: sessionmaker[Session]
) -> None:
    issued = tokens(client, oauth_client, org)
    bad = {"client_id": oauth_client.id, "client_secret": "wrong"}
    response = client.post("/oauth2/revoke/", data={"token": issued["access_token"], **bad})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    other = new_client(session_factory)
    response = client.post("/oauth2/revoke/", data={"token": issued["access_token"], **other.form})
    assert response.status_code == 200  # RFC 7009: ignored, without telling whether it exists
    assert me(client, issued["access_token"]).status_code == 200


# OAuth-only API


def test_membership_create_works_for_an_admins_token_and_not_for_an_api_key(
    client: TestClient, org: Org, oauth_client: Client
) -> None:
    email = f"new-{secrets.token_hex(4)}@example.com"
    body = {"email": email, "role_id": "user"}
    with_key = client.post("/api/v1/membership/", json=body, auth=org.auth)
    assert with_key.status_code == 403

    issued = tokens(client, oauth_client, org)
    headers = {"Authorization": f"Bearer {issued['access_token']}"}
    response = client.post("/api/v1/membership/", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["organization_id"] == org.id
    assert response.json()["role_id"] == "user"


# CLI


def test_cli_registers_an_app_that_can_be_used(
    client: TestClient,
    org: Org,
    database_url: str,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The command exports CLOVE_DATABASE_URL for its workers; monkeypatch restores it.
    monkeypatch.setenv("CLOVE_DATABASE_URL", database_url)
    args = ["oauth-app", "create", "--name", "From CLI", "--redirect-uri", REDIRECT]
    result = CliRunner().invoke(cli_app, [*args, "--database-url", database_url])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    printed = dict(line.split("=", 1) for line in result.output.splitlines() if "=" in line)
    app = Client(printed["client_id"], printed["client_secret"])
    with session_factory() as session:
        row = session.scalars(select(OAuthApp).where(OAuthApp.id == app.id)).one()
        assert row.name == "From CLI" and row.redirect_uris == [REDIRECT]
    assert me(client, tokens(client, app, org)["access_token"]).status_code == 200


@pytest.mark.parametrize(
    "uri", ["/relative/path", "https://app.example.com/cb#frag", "https://a.example.com/ b"]
)
def test_register_refuses_unusable_redirect_uris(
    session_factory: sessionmaker[Session], uri: str
) -> None:
    with session_factory() as session, pytest.raises(ValueError):
        register_app(session, "Bad", [uri])
