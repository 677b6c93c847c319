"""GET and PUT /organization/{id}/ (close-api.md §5.4)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.models import Organization
from tests.conftest import Org
from tests.test_membership import add_member


def test_get_organization(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user", first_name="Bo", last_name="Ng")
    response = client.get(f"/api/v1/organization/{org.id}/", auth=org.auth)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == org.id
    assert body["name"] == "Org A"
    assert body["created_by"] == body["updated_by"] == org.user_id
    assert (body["currency"], body["currency_symbol"]) == ("USD", "$")
    assert body["inactive_memberships"] == []
    memberships = {m["id"]: m for m in body["memberships"]}
    assert set(memberships) == {org.membership_id, member.membership_id}
    flat = memberships[member.membership_id]
    assert flat["user_id"] == member.user_id
    assert flat["user_first_name"] == "Bo"
    assert flat["user_last_name"] == "Ng"
    assert flat["user_full_name"] == "Bo Ng"
    assert flat["user_email"].startswith("member-")
    assert flat["role_id"] == "user"
    assert "user" not in flat


def test_expand_memberships_user_nests_the_user(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user", first_name="Bo")
    client.delete(f"/api/v1/membership/{member.membership_id}/", auth=org.auth)

    url = f"/api/v1/organization/{org.id}/"
    one = client.get(url, params={"_expand": "memberships__user"}, auth=org.auth).json()
    [admin] = one["memberships"]
    assert admin["user"]["id"] == org.user_id
    assert admin["user"]["first_name"] == "Ada"
    assert admin["user"]["organizations"] == [org.id]
    assert "user_first_name" not in admin

    both = client.get(
        url, params={"_expand": "memberships__user,inactive_memberships__user"}, auth=org.auth
    ).json()
    [gone] = both["inactive_memberships"]
    assert gone["user"]["id"] == member.user_id
    assert gone["user"]["first_name"] == "Bo"

    bad = client.get(url, params={"_expand": "owner"}, auth=org.auth)
    assert bad.status_code == 400
    assert "owner" in bad.json()["error"]


def test_admin_changes_name_and_currency(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    before = client.get(f"/api/v1/organization/{org.id}/", auth=org.auth).json()
    response = client.put(
        f"/api/v1/organization/{org.id}/",
        json={"name": "Acme Europe", "currency": "EUR"},
        auth=org.auth,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["currency"], body["currency_symbol"]) == ("Acme Europe", "EUR", "€")
    assert body["date_updated"] > before["date_updated"]
    assert body["date_created"] == before["date_created"]

    again = client.get(f"/api/v1/organization/{org.id}/", auth=org.auth).json()
    assert (again["name"], again["currency"]) == ("Acme Europe", "EUR")
    # A partial update: other fields kept.
    client.put(
        f"/api/v1/organization/{org.id}/", json={"require_unsubscribe_link": True}, auth=org.auth
    )
    after = client.get(f"/api/v1/organization/{org.id}/", auth=org.auth).json()
    assert (after["name"], after["currency"], after["require_unsubscribe_link"]) == (
        "Acme Europe",
        "EUR",
        True,
    )


def test_updated_by_is_the_caller(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    second_admin = add_member(session_factory, org, "admin")
    body = client.put(
        f"/api/v1/organization/{org.id}/", json={"name": "By Two"}, auth=second_admin.auth
    ).json()
    assert body["updated_by"] == second_admin.user_id
    assert body["created_by"] == org.user_id


def test_non_admin_cannot_change_the_organization(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user")
    response = client.put(
        f"/api/v1/organization/{org.id}/", json={"name": "Mine now"}, auth=member.auth
    )
    assert response.status_code == 403
    assert set(response.json()) == {"error"}
    with session_factory() as session:
        row = session.get(Organization, org.id)
        assert row is not None and row.name == "Org A"
    # Reading is fine.
    assert client.get(f"/api/v1/organization/{org.id}/", auth=member.auth).status_code == 200


def test_invalid_currency_is_400(client: TestClient, org: Org) -> None:
    for currency in ("usd", "US", "EURO", "12$", "", 840, "ÅBC", "\uff35\uff33\uff24", "USD\n"):
        response = client.put(
            f"/api/v1/organization/{org.id}/", json={"currency": currency}, auth=org.auth
        )
        assert response.status_code == 400, currency
        assert "currency" in response.json()["field-errors"], currency
    assert client.get(f"/api/v1/organization/{org.id}/", auth=org.auth).json()["currency"] == "USD"


def test_put_rejects_read_only_fields(client: TestClient, org: Org) -> None:
    for field, value in (("id", "orga_x"), ("created_by", "user_x"), ("memberships", [])):
        response = client.put(f"/api/v1/organization/{org.id}/", json={field: value}, auth=org.auth)
        assert response.status_code == 400
        assert field in response.json()["field-errors"]


def test_unknown_organization_is_404(client: TestClient, org: Org) -> None:
    for org_id in ("orga_" + "x" * 43, "nope"):
        response = client.get(f"/api/v1/organization/{org_id}/", auth=org.auth)
        assert response.status_code == 404
        assert response.json() == {
            "error": "Empty query: Organization matching query does not exist."
        }
