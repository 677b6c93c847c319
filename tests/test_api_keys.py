"""/api_key/: list, look up by id or by the secret, create (shown once), revoke."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.auth.service import hash_secret
from clove.errors import UNAUTHORIZED_MESSAGE
from clove.kit.ids import new_id
from clove.models import ApiKey
from tests.conftest import Org
from tests.test_membership import add_member

KEY_FIELDS = {
    "id",
    "organization_id",
    "user_id",
    "name",
    "key_prefix",
    "date_created",
    "date_updated",
}


def test_admin_lists_every_key_of_the_organization_a_member_only_their_own(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user")
    admin_view = client.get("/api/v1/api_key/", auth=org.auth).json()
    assert admin_view["has_more"] is False
    by_user = {k["user_id"] for k in admin_view["data"]}
    assert by_user == {org.user_id, member.user_id}
    assert len(admin_view["data"]) == 2
    for key in admin_view["data"]:
        assert set(key) == KEY_FIELDS  # never the secret
        assert key["organization_id"] == org.id

    member_view = client.get("/api/v1/api_key/", auth=member.auth).json()
    assert [k["id"] for k in member_view["data"]] == [member.key_id]


def test_lookup_by_the_secret_and_by_id(client: TestClient, org: Org) -> None:
    by_secret = client.get(f"/api/v1/api_key/{org.key}/", auth=org.auth)
    assert by_secret.status_code == 200
    key = by_secret.json()
    assert key["user_id"] == org.user_id
    assert key["organization_id"] == org.id
    assert key["key_prefix"] == org.key[:8]
    assert "key" not in key

    by_id = client.get(f"/api/v1/api_key/{key['id']}/", auth=org.auth)
    assert by_id.json() == key
    assert client.get(f"/api/v1/api_key/{key['id']}", auth=org.auth).json() == key

    for unknown in ("api_" + "x" * 43, "not-a-key"):
        response = client.get(f"/api/v1/api_key/{unknown}/", auth=org.auth)
        assert response.status_code == 404
        assert response.json() == {"error": "Empty query: ApiKey matching query does not exist."}


def test_member_cannot_see_the_admins_key(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user")
    assert client.get(f"/api/v1/api_key/{org.key}/", auth=member.auth).status_code == 404
    own = client.get(f"/api/v1/api_key/{member.key}/", auth=member.auth)
    assert own.json()["id"] == member.key_id
    # The admin sees the member's key.
    assert client.get(f"/api/v1/api_key/{member.key_id}/", auth=org.auth).status_code == 200


def test_create_shows_the_key_once(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    response = client.post("/api/v1/api_key/", json={"name": "Zapier"}, auth=org.auth)
    assert response.status_code == 200, response.text
    created = response.json()
    assert set(created) == {*KEY_FIELDS, "key"}
    secret = created["key"]
    assert len(secret) >= 40
    assert created["name"] == "Zapier"
    assert created["key_prefix"] == secret[:8]
    assert (created["user_id"], created["organization_id"]) == (org.user_id, org.id)

    # It works at once, and it acts as its creator.
    me = client.get("/api/v1/me/", auth=(secret, ""))
    assert me.status_code == 200 and me.json()["id"] == org.user_id

    # Never shown again.
    listed = client.get("/api/v1/api_key/", auth=org.auth).json()["data"]
    assert created["id"] in {k["id"] for k in listed}
    assert secret not in str(listed)
    again = client.get(f"/api/v1/api_key/{created['id']}/", auth=org.auth).json()
    assert "key" not in again and secret not in str(again)

    # Stored only as a hash.
    with session_factory() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.id == created["id"])).one()
        assert row.key_hash == hash_secret(secret)
        assert secret not in repr([getattr(row, c) for c in ("key_hash", "key_prefix", "name")])


def test_create_without_body_fields(client: TestClient, org: Org) -> None:
    response = client.post("/api/v1/api_key/", json={}, auth=org.auth)
    assert response.status_code == 200
    assert response.json()["name"] == ""


def test_delete_revokes(client: TestClient, org: Org) -> None:
    created = client.post("/api/v1/api_key/", json={"name": "temp"}, auth=org.auth).json()
    auth = (created["key"], "")
    assert client.get("/api/v1/me/", auth=auth).status_code == 200

    response = client.delete(f"/api/v1/api_key/{created['id']}/", auth=org.auth)
    assert response.status_code == 200
    assert response.json() == {}

    refused = client.get("/api/v1/me/", auth=auth)
    assert refused.status_code == 401
    assert refused.json() == {"error": UNAUTHORIZED_MESSAGE}
    listed = client.get("/api/v1/api_key/", auth=org.auth).json()["data"]
    assert created["id"] not in {k["id"] for k in listed}
    assert client.get(f"/api/v1/api_key/{created['id']}/", auth=org.auth).status_code == 404
    assert client.delete(f"/api/v1/api_key/{created['id']}/", auth=org.auth).status_code == 404


def test_delete_by_the_secret_itself(client: TestClient, org: Org) -> None:
    created = client.post("/api/v1/api_key/", json={}, auth=org.auth).json()
    auth = (created["key"], "")
    response = client.delete(f"/api/v1/api_key/{created['key']}/", auth=auth)  # revokes itself
    assert response.status_code == 200
    assert client.get("/api/v1/me/", auth=auth).status_code == 401
    assert client.get("/api/v1/me/", auth=org.auth).status_code == 200


def test_member_cannot_revoke_the_admins_key(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user")
    admin_key_id = client.get(f"/api/v1/api_key/{org.key}/", auth=org.auth).json()["id"]
    response = client.delete(f"/api/v1/api_key/{admin_key_id}/", auth=member.auth)
    assert response.status_code == 404
    assert client.get("/api/v1/me/", auth=org.auth).status_code == 200


def test_create_rejects_bad_bodies(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    for body in (
        {"name": "x" * 201},
        {"name": None},
        {"key": "chosen-by-me"},
        {"user_id": "user_x"},
    ):
        response = client.post("/api/v1/api_key/", json=body, auth=org.auth)
        assert response.status_code == 400, body
        assert response.json()["field-errors"], body
    listed = client.get("/api/v1/api_key/", auth=org.auth).json()["data"]
    assert len(listed) == 1


def test_a_secret_that_looks_like_an_id_is_still_found(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    secret = "api_" + "Z" * 39  # token_urlsafe can produce this (rarely); it is not an id
    with session_factory.begin() as session:
        session.add(
            ApiKey(
                id=new_id("api"),
                organization_id=org.id,
                user_id=org.user_id,
                key_hash=hash_secret(secret),
                key_prefix=secret[:8],
            )
        )
    assert client.get("/api/v1/me/", auth=(secret, "")).status_code == 200
    found = client.get(f"/api/v1/api_key/{secret}/", auth=org.auth)
    assert found.status_code == 200, found.text
    assert found.json()["key_prefix"] == "api_ZZZZ"
    assert client.delete(f"/api/v1/api_key/{secret}/", auth=org.auth).status_code == 200
    assert client.get("/api/v1/me/", auth=(secret, "")).status_code == 401
