from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from clove.config import get_settings
from tests.conftest import Org


def test_me_returns_the_user_with_the_keys_organization(client: TestClient, org: Org) -> None:
    body = client.get("/api/v1/me/", auth=org.auth).json()
    assert body["id"] == org.user_id
    assert body["first_name"] == "Ada"
    assert [o["id"] for o in body["organizations"]] == [org.id]
    assert body["organizations"][0]["name"] == "Org A"
    assert body["memberships"][0]["id"] == org.membership_id
    assert body["memberships"][0]["role_id"] == "admin"
    assert body["email_accounts"] == [] and body["phone_numbers"] == []
    assert body["date_created"].endswith("+00:00")


def test_me_without_slash_and_with_fields(client: TestClient, org: Org) -> None:
    response = client.get("/api/v1/me?_fields=id,email", auth=org.auth)
    assert response.status_code == 200
    assert set(response.json()) == {"id", "email"}


def test_bad_key_is_401_with_closes_body(client: TestClient, org: Org) -> None:
    response = client.get("/api/v1/me/", auth=("nope", ""))
    assert response.status_code == 401
    assert response.json()["error"].startswith("The server could not verify")


def test_me_lists_the_callers_email_accounts_and_phone_numbers(
    client: TestClient,
    org: Org,
    other_org: Org,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Storing the SMTP password creates a key file: a temporary one, not ./clove.key.
    monkeypatch.setenv("CLOVE_SECRET_KEY_FILE", str(tmp_path / "clove.key"))
    get_settings.cache_clear()
    account = {
        "email": "ada@example.com",
        "smtp": {"host": "smtp.example.com", "port": 587, "username": "ada", "password": "pw"},
        "verify": False,
    }
    created = client.post("/api/v1/connected_account/", json=account, auth=org.auth).json()
    phone = client.post(
        "/api/v1/phone_number/", json={"number": "+16503334444"}, auth=org.auth
    ).json()
    client.post("/api/v1/phone_number/", json={"number": "+16503334445"}, auth=other_org.auth)
    client.post(  # a group number belongs to no one
        "/api/v1/phone_number/",
        json={"number": "+16503334446", "is_group_number": True},
        auth=org.auth,
    )

    body = client.get("/api/v1/me/", auth=org.auth).json()
    assert body["email_accounts"] == [
        {
            "_type": "custom_email",
            "id": created["id"],
            "identities": [{"email": "ada@example.com", "name": "Ada Admin"}],
            "organization_id": org.id,
            "user_id": org.user_id,
        }
    ]
    assert body["phone_numbers"] == [
        {
            "id": phone["id"],
            "number": "+16503334444",
            "organization_id": org.id,
            "date_created": phone["date_created"],
            "date_updated": phone["date_updated"],
        }
    ]
    assert client.get("/api/v1/me/", auth=other_org.auth).json()["email_accounts"] == []
    get_settings.cache_clear()
