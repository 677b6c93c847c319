"""/user/ and /role/ (close-api.md §5.3; roles as membership `role_id` values)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from tests.conftest import Org
from tests.test_membership import add_member


def test_user_object(client: TestClient, org: Org) -> None:
    response = client.get(f"/api/v1/user/{org.user_id}/", auth=org.auth)
    assert response.status_code == 200
    user = response.json()
    assert user["id"] == org.user_id
    assert (user["first_name"], user["last_name"]) == ("Ada", "Admin")
    assert user["email"].startswith("admin-")
    assert user["image"].startswith("https://secure.gravatar.com/avatar/")
    assert user["organizations"] == [org.id]


def test_unknown_user_is_404(client: TestClient, org: Org) -> None:
    response = client.get("/api/v1/user/user_" + "x" * 43 + "/", auth=org.auth)
    assert response.status_code == 404
    assert response.json() == {"error": "Empty query: User matching query does not exist."}


@pytest.fixture
def team(org: Org, session_factory: sessionmaker[Session]) -> dict[str, str]:
    """Members whose two orderings differ: name -> user id."""
    people = {
        "Zoe Adams": ("Zoe", "Adams"),
        "Amy Baker": ("Amy", "Baker"),
        "Bob Adams": ("Bob", "Adams"),
    }
    return {
        name: add_member(session_factory, org, "user", first_name=f, last_name=last).user_id
        for name, (f, last) in people.items()
    }


def names(client: TestClient, org: Org, order: str) -> list[str]:
    response = client.get("/api/v1/user/", params={"_order_by": order}, auth=org.auth)
    assert response.status_code == 200
    return [f"{u['first_name']} {u['last_name']}" for u in response.json()["data"]]


def test_user_ordering(client: TestClient, org: Org, team: dict[str, str]) -> None:
    assert names(client, org, "last_name,first_name") == [
        "Bob Adams",
        "Zoe Adams",
        "Ada Admin",
        "Amy Baker",
    ]
    assert names(client, org, "first_name,last_name") == [
        "Ada Admin",
        "Amy Baker",
        "Bob Adams",
        "Zoe Adams",
    ]
    # Without _order_by: the order they joined in (the admin first), stable across pages.
    default = [u["id"] for u in client.get("/api/v1/user/", auth=org.auth).json()["data"]]
    assert default[0] == org.user_id and set(default[1:]) == set(team.values())
    paged = [
        u["id"]
        for skip in range(4)
        for u in client.get(f"/api/v1/user/?_skip={skip}&_limit=1", auth=org.auth).json()["data"]
    ]
    assert paged == default


@pytest.mark.parametrize("order", ["email", "last_name", "-last_name,first_name", "first_name,"])
def test_bad_order_by_is_400(client: TestClient, org: Org, order: str) -> None:
    response = client.get("/api/v1/user/", params={"_order_by": order}, auth=org.auth)
    assert response.status_code == 400
    assert set(response.json()) == {"error"}
    assert "_order_by" in response.json()["error"]


def test_role_list_and_item(client: TestClient, org: Org) -> None:
    listed = client.get("/api/v1/role/", auth=org.auth)
    assert listed.status_code == 200
    roles = {r["id"]: r for r in listed.json()["data"]}
    assert {"admin", "user"} <= set(roles)
    assert listed.json()["has_more"] is False

    admin = client.get("/api/v1/role/admin/", auth=org.auth)
    assert admin.status_code == 200
    body = admin.json()
    assert body == roles["admin"]
    assert body["name"] == "Admin"
    assert "manage_organization" in body["permissions"]
    assert "manage_organization" not in roles["user"]["permissions"]
    assert set(roles["user"]["permissions"]) < set(body["permissions"])

    # A membership's permissions_granted match its role.
    me = client.get("/api/v1/me/", auth=org.auth).json()
    assert sorted(me["memberships"][0]["permissions_granted"]) == sorted(body["permissions"])


def test_role_list_pages(client: TestClient, org: Org) -> None:
    first = client.get("/api/v1/role/?_limit=1", auth=org.auth).json()
    assert len(first["data"]) == 1 and first["has_more"] is True
    second = client.get("/api/v1/role/?_skip=1&_limit=1", auth=org.auth).json()
    assert second["data"][0]["id"] != first["data"][0]["id"]


@pytest.mark.parametrize("role_id", ["emperor", "role_" + "x" * 43, "Admin"])
def test_unknown_role_is_404(client: TestClient, org: Org, role_id: str) -> None:
    response = client.get(f"/api/v1/role/{role_id}/", auth=org.auth)
    assert response.status_code == 404
    assert response.json() == {"error": "Empty query: Role matching query does not exist."}


def test_non_admin_reads_users_and_roles(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user")
    users = client.get("/api/v1/user/", auth=member.auth).json()["data"]
    assert {u["id"] for u in users} == {org.user_id, member.user_id}
    assert client.get("/api/v1/role/user/", auth=member.auth).status_code == 200
