from __future__ import annotations

from starlette.testclient import TestClient

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
