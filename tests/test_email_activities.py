from __future__ import annotations

from typing import Any

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.kit.ids import new_id
from clove.models import EmailActivity, Event
from clove.models.sequence import Sequence, SequenceSubscription
from tests.conftest import SPEC, Org

URL = "/api/v1/activity/email/"
NOT_FOUND = {"error": "Empty query: EmailActivity matching query does not exist."}


@pytest.fixture(scope="module")
def spec_fields() -> tuple[set[str], set[str]]:
    """(required, all) field names of the spec's EmailActivity."""
    if not SPEC.exists():
        pytest.skip(f"Close's spec is not at {SPEC}")
    schema = yaml.safe_load(SPEC.read_text())["components"]["schemas"]["EmailActivity"]
    return set(schema["required"]), set(schema["properties"])


def new_lead(client: TestClient, org: Org, *emails: str) -> dict[str, Any]:
    """A lead with one contact per email address."""
    contacts = [{"name": f"Contact {i}", "emails": [{"email": e}]} for i, e in enumerate(emails)]
    response = client.post(
        "/api/v1/lead/", json={"name": "Lead", "contacts": contacts}, auth=org.auth
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def log(client: TestClient, org: Org, **body: Any) -> dict[str, Any]:
    response = client.post(URL, json=body, auth=org.auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


def subscribe(
    session_factory: sessionmaker[Session],
    org: Org,
    contact: dict[str, Any],
    *,
    email: str | None = None,
    status: str = "active",
) -> str:
    """A subscription of the contact to a new sequence, written directly."""
    with session_factory.begin() as session:
        sequence = Sequence(id=new_id("seq"), organization_id=org.id, name="Seq")
        session.add(sequence)
        session.flush()
        sub = SequenceSubscription(
            id=new_id("sub"),
            organization_id=org.id,
            sequence_id=sequence.id,
            contact_id=contact["id"],
            lead_id=contact["lead_id"],
            contact_email=email or contact["emails"][0]["email"],
            status=status,
        )
        session.add(sub)
        return sub.id


def subscription(session_factory: sessionmaker[Session], sub_id: str) -> tuple[str, str | None]:
    with session_factory() as session:
        sub = session.get(SequenceSubscription, sub_id)
        assert sub is not None
        return sub.status, sub.status_reason


def events(session_factory: sessionmaker[Session], object_id: str) -> list[Event]:
    with session_factory() as session:
        query = select(Event).where(Event.object_id == object_id).order_by(Event.date_created)
        return list(session.scalars(query))


# --- Shape and CRUD ------------------------------------------------------------------------------


def test_logged_email_has_every_spec_field(
    client: TestClient, org: Org, spec_fields: tuple[set[str], set[str]]
) -> None:
    required, documented = spec_fields
    lead = new_lead(client, org, "ann@example.com")
    email = log(
        client,
        org,
        lead_id=lead["id"],
        status="sent",
        subject="Hello",
        body_text="Hi Ann,\n  how are you?",
        to=["Ann <ann@example.com>"],
        message_id="<m1@example.com>",
    )
    assert required <= set(email)
    assert set(email) <= documented
    assert email["_type"] == "Email" and email["id"].startswith("acti_")
    assert email["direction"] == "outgoing" and email["status"] == "sent"
    assert email["lead_id"] == lead["id"] and email["organization_id"] == org.id
    assert email["user_id"] == org.user_id and email["user_name"] == "Ada Admin"
    # `sent` without a sender defaults to the user's address.
    assert email["sender"] and "@example.com" in email["sender"]
    assert email["message_ids"] == ["<m1@example.com>"]
    assert email["body_preview"] == "Hi Ann, how are you?"
    assert email["envelope"]["to"] == [{"name": "Ann", "email": "ann@example.com"}]
    assert email["date_sent"] == email["activity_at"] and email["date_sent"].endswith("+00:00")
    assert client.get(f"{URL}{email['id']}/", auth=org.auth).json() == email
    [event] = events_of(client, org, email["id"])
    assert event["object_type"] == "activity.email" and event["action"] == "created"


def events_of(client: TestClient, org: Org, object_id: str) -> list[dict[str, Any]]:
    response = client.get(
        "/api/v1/event/",
        params={"object_type": "activity.email", "object_id": object_id},
        auth=org.auth,
    )
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def test_contact_id_alone_gives_the_lead(client: TestClient, org: Org) -> None:
    lead = new_lead(client, org, "bob@example.com")
    contact = lead["contacts"][0]
    email = log(client, org, contact_id=contact["id"], status="draft", subject="Draft")
    assert email["lead_id"] == lead["id"] and email["contact_id"] == contact["id"]
    assert email["date_sent"] is None and email["sender"] is None


def test_update_a_draft_then_delete(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead = new_lead(client, org, "c@example.com")
    email = log(client, org, lead_id=lead["id"], status="draft", subject="Old")
    url = f"{URL}{email['id']}/"
    response = client.put(url, json={"subject": "New", "body_text": "Text"}, auth=org.auth)
    assert response.status_code == 200, response.text
    assert response.json()["subject"] == "New" and response.json()["body_text"] == "Text"
    response = client.put(url, json={"status": "sent"}, auth=org.auth)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "sent" and response.json()["date_sent"]
    # Only drafts can be modified.
    response = client.put(url, json={"subject": "Again"}, auth=org.auth)
    assert response.status_code == 400
    assert client.get(url, auth=org.auth).json()["subject"] == "New"

    response = client.delete(url, auth=org.auth)
    assert response.status_code == 200 and response.json() == {}
    assert client.get(url, auth=org.auth).status_code == 404
    actions = [e.action for e in events(session_factory, email["id"])]
    assert actions == ["created", "updated", "updated", "deleted"]


def test_validation_errors(client: TestClient, org: Org) -> None:
    lead = new_lead(client, org, "d@example.com")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"status": "sent"}, "lead_id"),
        ({"lead_id": lead["id"]}, "status"),
        ({"lead_id": lead["id"], "status": "inbox"}, "sender"),
        ({"lead_id": lead["id"], "status": "sent", "sender": "not an address"}, "sender"),
        ({"lead_id": lead["id"], "status": "sent", "to": ["nobody"]}, "to"),
        ({"lead_id": lead["id"], "status": "bogus"}, "status"),
        ({"lead_id": lead["id"], "status": "draft", "direction": "incoming"}, "direction"),
        ({"lead_id": lead["id"], "status": "sent", "date_sent": "yesterday"}, "date_sent"),
        ({"lead_id": "lead_nope", "status": "sent"}, "lead_id"),
        ({"lead_id": lead["id"], "status": "sent", "contact_id": "cont_nope"}, "contact_id"),
    ]
    for body, field in cases:
        response = client.post(URL, json=body, auth=org.auth)
        assert response.status_code == 400, (body, response.text)
        assert field in response.json()["field-errors"], (body, response.json())
    response = client.post(
        URL, json={"lead_id": lead["id"], "status": "sent", "x": 1}, auth=org.auth
    )
    assert response.status_code == 400
    assert client.get(URL, params={"lead_id": lead["id"]}, auth=org.auth).json()["data"] == []


# --- Lists ---------------------------------------------------------------------------------------


def test_list_filters_and_paging(client: TestClient, org: Org) -> None:
    first = new_lead(client, org, "e1@example.com")
    second = new_lead(client, org, "e2@example.com")
    a = log(client, org, lead_id=first["id"], status="sent", date_sent="2026-01-01T10:00:00Z")
    b = log(client, org, lead_id=first["id"], status="sent", date_sent="2026-03-01T10:00:00Z")
    c = log(
        client,
        org,
        contact_id=second["contacts"][0]["id"],
        status="inbox",
        sender="e2@example.com",
    )

    def ids(url: str = URL, **params: str) -> list[str]:
        response = client.get(url, params=params, auth=org.auth)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["data"]]

    assert ids(lead_id=first["id"]) == [b["id"], a["id"]]  # newest first
    assert ids(lead_id=f"{first['id']},{second['id']}") == [c["id"], b["id"], a["id"]]
    assert ids(contact_id=second["contacts"][0]["id"]) == [c["id"]]
    assert ids(id__in=f"{a['id']},{c['id']}") == [c["id"], a["id"]]
    assert ids(lead_id=first["id"], activity_at__gt="2026-02-01") == [b["id"]]
    assert ids(lead_id=first["id"], activity_at__lt="2026-02-01") == [a["id"]]
    assert ids(lead_id=first["id"], user_id="user_nobody") == []
    page = client.get(URL, params={"lead_id": first["id"], "_limit": 1}, auth=org.auth).json()
    assert [e["id"] for e in page["data"]] == [b["id"]] and page["has_more"] is True
    assert ids(lead_id=first["id"], _skip="1") == [a["id"]]
    # The generic activity list: emails are the only type Clove has.
    assert ids("/api/v1/activity/", lead_id=first["id"]) == [b["id"], a["id"]]
    assert ids("/api/v1/activity/", lead_id=first["id"], _type="Call") == []
    response = client.get(URL, params={"date_created__gt": "soon"}, auth=org.auth)
    assert response.status_code == 400


# --- The reply stop ------------------------------------------------------------------------------


def test_incoming_email_ends_the_senders_subscriptions_only(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead = new_lead(client, org, "Reply@Example.com", "quiet@example.com")
    replier, quiet = lead["contacts"]
    other_lead = new_lead(client, org, "reply@example.com")
    live = subscribe(session_factory, org, replier)
    paused = subscribe(session_factory, org, replier, status="paused")
    finished = subscribe(session_factory, org, replier, status="goal")
    untouched = subscribe(session_factory, org, quiet)
    elsewhere = subscribe(session_factory, org, other_lead["contacts"][0])

    email = log(
        client,
        org,
        lead_id=lead["id"],
        status="inbox",
        sender='"Rita Reply" <reply@EXAMPLE.com>',
        subject="Re: hello",
    )
    assert email["direction"] == "incoming"
    assert email["contact_id"] == replier["id"]  # found by the sender's address
    assert subscription(session_factory, live) == ("finished", "reply-received")
    assert subscription(session_factory, paused) == ("finished", "reply-received")
    assert subscription(session_factory, finished) == ("goal", None)
    assert subscription(session_factory, untouched) == ("active", None)
    assert subscription(session_factory, elsewhere) == ("active", None)


def test_incoming_email_ends_the_given_contacts_subscriptions(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead = new_lead(client, org, "f@example.com")
    contact = lead["contacts"][0]
    sub = subscribe(session_factory, org, contact)
    log(
        client,
        org,
        lead_id=lead["id"],
        contact_id=contact["id"],
        direction="incoming",
        sender="someone-else@example.com",
    )
    assert subscription(session_factory, sub) == ("finished", "reply-received")


def test_outgoing_email_does_not_end_subscriptions(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead = new_lead(client, org, "g@example.com")
    contact = lead["contacts"][0]
    sub = subscribe(session_factory, org, contact)
    log(
        client,
        org,
        lead_id=lead["id"],
        contact_id=contact["id"],
        status="sent",
        sender="g@example.com",
        to=["g@example.com"],
    )
    assert subscription(session_factory, sub) == ("active", None)


# --- Tenancy -------------------------------------------------------------------------------------


def test_other_organizations_emails_and_leads_are_out_of_reach(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    theirs = new_lead(client, other_org, "h@example.com")
    sub = subscribe(session_factory, other_org, theirs["contacts"][0])
    email = log(client, other_org, lead_id=theirs["id"], status="draft")
    url = f"{URL}{email['id']}/"
    assert client.get(url, auth=org.auth).json() == NOT_FOUND
    assert client.put(url, json={"subject": "x"}, auth=org.auth).status_code == 404
    assert client.delete(url, auth=org.auth).status_code == 404
    listed = client.get(URL, auth=org.auth).json()["data"]
    assert all(e["organization_id"] == org.id for e in listed)
    assert client.get(URL, params={"lead_id": theirs["id"]}, auth=org.auth).json() == {
        "data": [],
        "has_more": False,
    }

    for body in (
        {"lead_id": theirs["id"], "status": "inbox", "sender": "h@example.com"},
        {"contact_id": theirs["contacts"][0]["id"], "status": "inbox", "sender": "h@x.com"},
    ):
        response = client.post(URL, json=body, auth=org.auth)
        assert response.status_code == 400, response.text
    with session_factory() as session:
        written = session.scalars(
            select(EmailActivity.id).where(EmailActivity.lead_id == theirs["id"])
        ).all()
    assert written == [email["id"]]
    assert subscription(session_factory, sub) == ("active", None)


@pytest.mark.parametrize("status", ["outbox", "scheduled"])
def test_emails_clove_would_have_to_send_are_refused(
    client: TestClient, org: Org, status: str
) -> None:
    lead = client.post("/api/v1/lead/", json={"name": "Acme"}, auth=org.auth).json()
    body = {"lead_id": lead["id"], "status": status, "sender": "a@example.com", "to": ["b@x.com"]}
    response = client.post("/api/v1/activity/email/", json=body, auth=org.auth)
    assert response.status_code == 400
    assert "does not send" in response.json()["field-errors"]["status"]
    listed = client.get("/api/v1/activity/email/", params={"lead_id": lead["id"]}, auth=org.auth)
    assert listed.json()["data"] == []
