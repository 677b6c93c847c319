"""Send As: who may send from whose accounts, and the rules around granting it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.kit.ids import new_id
from clove.models import ConnectedAccount, Membership, SendAs
from clove.send_as.service import can_send_from
from tests.conftest import Org
from tests.test_membership import Member, add_member

URL = "/api/v1/send_as/"
NOT_FOUND = {"error": "Empty query: SendAs matching query does not exist."}


def grant(client: TestClient, org: Org | Member, allowed: str) -> dict[str, Any]:
    user_id = org.user_id
    body = {"allowing_user_id": user_id, "allowed_user_id": allowed}
    response = client.post(URL, json=body, auth=org.auth)
    assert response.status_code == 201, response.text
    return dict(response.json())


def rows(session_factory: sessionmaker[Session], org: Org) -> int:
    with session_factory() as session:
        query = select(func.count()).where(SendAs.organization_id == org.id)
        return int(session.scalar(query) or 0)


def test_create_get_list_delete(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    bob = add_member(session_factory, org)
    association = grant(client, org, bob.user_id)
    assert set(association) == {"id", "allowing_user_id", "allowed_user_id", "organization_id"}
    assert association["id"].startswith("sdas_") and len(association["id"]) == 5 + 22
    assert association["allowing_user_id"] == org.user_id
    assert association["allowed_user_id"] == bob.user_id
    assert association["organization_id"] == org.id

    url = f"{URL}{association['id']}/"
    assert client.get(url, auth=org.auth).json() == association
    assert client.get(url, auth=bob.auth).json() == association  # the allowed user sees it too
    assert client.get(URL, auth=org.auth).json() == {"data": [association], "has_more": False}
    # Bob's default view is what he granted: nothing.
    assert client.get(URL, auth=bob.auth).json()["data"] == []
    mine = client.get(URL, params={"allowed_user_id": bob.user_id}, auth=bob.auth).json()
    assert mine["data"] == [association]

    deleted = client.delete(url, auth=org.auth)
    assert deleted.status_code == 204 and deleted.content == b""
    assert client.get(url, auth=org.auth).json() == NOT_FOUND
    assert rows(session_factory, org) == 0


def test_only_the_caller_can_be_the_allowing_user(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    bob = add_member(session_factory, org)
    carol = add_member(session_factory, org)
    body = {"allowing_user_id": bob.user_id, "allowed_user_id": carol.user_id}
    response = client.post(URL, json=body, auth=org.auth)  # an admin, still not Bob
    assert response.status_code == 400
    assert "allowing_user_id" in response.json()["error"]
    assert rows(session_factory, org) == 0


def test_the_allowed_user_must_be_another_active_member(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    gone = add_member(session_factory, org)
    with session_factory.begin() as session:
        membership = session.get(Membership, gone.membership_id)
        assert membership is not None
        membership.is_active = False
    for allowed in (org.user_id, other_org.user_id, gone.user_id, "user_nope"):
        body = {"allowing_user_id": org.user_id, "allowed_user_id": allowed}
        response = client.post(URL, json=body, auth=org.auth)
        assert response.status_code == 400, (allowed, response.text)
        assert "allowed_user_id" in response.json()["field-errors"]
    missing = client.post(URL, json={"allowing_user_id": org.user_id}, auth=org.auth)
    assert missing.status_code == 400 and "allowed_user_id" in missing.json()["field-errors"]
    assert rows(session_factory, org) == 0


def test_a_duplicate_is_refused_and_stays_one_row(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    bob = add_member(session_factory, org)
    grant(client, org, bob.user_id)
    body = {"allowing_user_id": org.user_id, "allowed_user_id": bob.user_id}
    again = client.post(URL, json=body, auth=org.auth)
    assert again.status_code == 400 and "already exists" in again.json()["error"]
    assert rows(session_factory, org) == 1


def test_list_filters_must_name_the_caller(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    bob = add_member(session_factory, org)
    carol = add_member(session_factory, org)
    grant(client, bob, carol.user_id)
    for params in (
        {"allowing_user_id": bob.user_id},
        {"allowed_user_id": carol.user_id},
        {"allowing_user_id": bob.user_id, "allowed_user_id": carol.user_id},
    ):
        response = client.get(URL, params=params, auth=org.auth)
        assert response.status_code == 400 and "error" in response.json(), params
    both = client.get(
        URL,
        params={"allowing_user_id": bob.user_id, "allowed_user_id": carol.user_id},
        auth=carol.auth,
    )
    assert [a["allowing_user_id"] for a in both.json()["data"]] == [bob.user_id]


def test_outsiders_and_other_organizations_get_404(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    bob = add_member(session_factory, org)
    carol = add_member(session_factory, org)
    association = grant(client, bob, carol.user_id)
    url = f"{URL}{association['id']}/"
    assert client.get(url, auth=org.auth).json() == NOT_FOUND  # not involved, even as admin
    assert client.get(url, auth=other_org.auth).json() == NOT_FOUND
    assert client.delete(url, auth=other_org.auth).status_code == 404
    assert client.delete(url, auth=org.auth).status_code == 404
    assert rows(session_factory, org) == 1


def test_delete_by_users(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    bob = add_member(session_factory, org)
    carol = add_member(session_factory, org)
    grant(client, org, bob.user_id)
    kept = grant(client, org, carol.user_id)

    params = {"allowing_user_id": org.user_id, "allowed_user_id": bob.user_id}
    deleted = client.delete(URL, params=params, auth=org.auth)
    assert deleted.status_code == 204 and deleted.content == b""
    assert client.get(URL, auth=org.auth).json()["data"] == [kept]
    assert client.delete(URL, params=params, auth=org.auth).status_code == 404

    theirs = {"allowing_user_id": org.user_id, "allowed_user_id": carol.user_id}
    assert client.delete(URL, params=theirs, auth=carol.auth).status_code == 400
    only_one = client.delete(URL, params={"allowed_user_id": carol.user_id}, auth=org.auth)
    assert only_one.status_code == 400
    assert rows(session_factory, org) == 1


def test_bulk_allows_and_disallows(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    bob, carol, dan = (add_member(session_factory, org) for _ in range(3))
    grant(client, org, dan.user_id)
    url = f"{URL}bulk/"
    body = {"allowed_user_ids": [bob.user_id, carol.user_id, bob.user_id]}
    response = client.post(url, json=body, auth=org.auth)
    assert response.status_code == 200, response.text
    granted = {a["allowed_user_id"] for a in response.json()["data"]}
    assert granted == {bob.user_id, carol.user_id, dan.user_id}
    assert set(response.json()) == {"data"}

    body = {"allowed_user_ids": [bob.user_id], "disallowed_user_ids": [dan.user_id, "user_x"]}
    response = client.post(url, json=body, auth=org.auth)
    assert {a["allowed_user_id"] for a in response.json()["data"]} == {bob.user_id, carol.user_id}
    assert rows(session_factory, org) == 2

    for bad in (
        {"allowed_user_ids": [bob.user_id], "disallowed_user_ids": [bob.user_id]},
        {"allowed_user_ids": [org.user_id]},
        {"allowed_user_ids": ["user_nope"], "disallowed_user_ids": [carol.user_id]},
        {"allowed_user_ids": "not a list"},
    ):
        refused = client.post(url, json=bad, auth=org.auth)
        assert refused.status_code == 400, bad
    assert rows(session_factory, org) == 2  # the refused bulk revoked nothing either


def test_can_send_from(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    bob = add_member(session_factory, org)
    carol = add_member(session_factory, org)
    account = ConnectedAccount(
        id=new_id("emailacct"),
        organization_id=org.id,
        user_id=bob.user_id,
        email="bob@example.com",
        identities=[],
        smtp={},
    )
    with session_factory.begin() as session:
        session.add(account)
    with session_factory() as session:
        assert can_send_from(session, org.id, bob.user_id, account)
        assert not can_send_from(session, org.id, carol.user_id, account)
        assert not can_send_from(session, other_org.id, bob.user_id, account)
    grant(client, bob, carol.user_id)
    with session_factory() as session:
        assert can_send_from(session, org.id, carol.user_id, account)
        assert not can_send_from(session, org.id, org.user_id, account)
    with session_factory.begin() as session:  # Bob leaves: his grants no longer count
        membership = session.get(Membership, bob.membership_id)
        assert membership is not None
        membership.is_active = False
    with session_factory() as session:
        assert not can_send_from(session, org.id, carol.user_id, account)
