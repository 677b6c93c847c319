"""`/unsubscribe/email/`: unsubscribing, resubscribing, `is_unsubscribed` on contact emails
(case-insensitive, per organization), events, and bad input."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.models import Event
from tests.conftest import Org

URL = "/api/v1/unsubscribe/email/"


def contact_emails(client: TestClient, org: Org, contact_id: str) -> list[tuple[str, bool]]:
    contact = client.get(f"/api/v1/contact/{contact_id}/", auth=org.auth).json()
    return [(e["email"], e["is_unsubscribed"]) for e in contact["emails"]]


def test_unsubscribe_and_resubscribe(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    emails = [{"email": "gob@example.com"}, {"email": "buster@example.com"}]
    contact = client.post(
        "/api/v1/contact/", json={"name": "Gob", "emails": emails}, auth=org.auth
    ).json()

    created = client.post(URL, json={"email": "GOB@Example.com"}, auth=org.auth)
    assert (created.status_code, created.json()) == (201, {"email": "GOB@Example.com"})
    again = client.post(URL, json={"email": "gob@example.com"}, auth=org.auth)
    assert (again.status_code, again.json()) == (201, {"email": "GOB@Example.com"})
    assert client.get(URL, auth=org.auth).json() == {
        "data": [{"email": "GOB@Example.com"}],
        "has_more": False,
    }
    assert contact_emails(client, org, contact["id"]) == [
        ("gob@example.com", True),
        ("buster@example.com", False),
    ]
    lead = client.get(f"/api/v1/lead/{contact['lead_id']}/", auth=org.auth).json()
    assert [e["is_unsubscribed"] for e in lead["contacts"][0]["emails"]] == [True, False]

    # Another organization neither sees nor changes the list.
    assert client.get(URL, auth=other_org.auth).json()["data"] == []
    assert client.delete(f"{URL}gob@example.com/", auth=other_org.auth).status_code == 404

    removed = client.delete(f"{URL}gob@example.com/", auth=org.auth)
    assert (removed.status_code, removed.json()) == (200, {"email": "GOB@Example.com"})
    assert contact_emails(client, org, contact["id"])[0] == ("gob@example.com", False)
    assert client.delete(f"{URL}gob@example.com/", auth=org.auth).status_code == 404

    with session_factory() as session:
        actions = session.scalars(
            select(Event.action)
            .where(Event.organization_id == org.id, Event.object_type == "unsubscribed_email")
            .order_by(Event.date_created)
        ).all()
    assert actions == ["created", "deleted"]


def test_bad_addresses_are_400(client: TestClient, org: Org) -> None:
    for body in ({"email": "not an email"}, {"email": ""}, {}, {"email": "a@b.com", "x": 1}):
        response = client.post(URL, json=body, auth=org.auth)
        assert response.status_code == 400, body
    assert client.get(URL, auth=org.auth).json()["data"] == []
