"""`/sequence_subscription/`: shape, defaults, sender and contact rules, pause/resume, the list
filter requirement, `end_subscriptions`, contacts' `subscriptions`, events and tenancy."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.models import Membership, SendAs, SequenceSubscription, User
from clove.sequence.service import end_subscriptions
from tests.compat.test_spec_schemas import SUBSCRIPTION
from tests.conftest import Org
from tests.test_sequences import (
    SUB_URL,
    account,
    contact,
    count_rows,
    create,
    email_sequence,
    events,
    ok,
    system_actor,
    template,
)

URL = SUB_URL
NOT_FOUND = {"error": "Empty query: SequenceSubscription matching query does not exist."}


def stored(session_factory: sessionmaker[Session], sub_id: str) -> SequenceSubscription:
    with session_factory() as session:
        sub = session.get(SequenceSubscription, sub_id)
        assert sub is not None
        return sub


def add_member(session_factory: sessionmaker[Session], org: Org) -> str:
    """A second active member of the organization; returns the user id."""
    user_id = new_id("user")
    email = f"u-{secrets.token_hex(4)}@example.com"
    with session_factory.begin() as session:
        session.add(
            User(
                id=user_id,
                email=email,
                email_lower=email,
                first_name="Bo",
                last_name="Member",
            )
        )
        session.flush()
        session.add(
            Membership(id=new_id("memb"), organization_id=org.id, user_id=user_id, role_id="user")
        )
    return user_id


class Setup:
    def __init__(self, client: TestClient, org: Org, factory: sessionmaker[Session]) -> None:
        self.client, self.org = client, org
        self.sequence = email_sequence(client, org)
        self.account = account(factory, org)
        self.contact = contact(client, org, ("Jane@Acme.com", "jane.home@example.com"))

    def body(self, **extra: Any) -> dict[str, Any]:
        return {
            "sequence_id": self.sequence["id"],
            "contact_id": self.contact["id"],
            "sender_account_id": self.account,
            **extra,
        }

    def subscribe(self, **extra: Any) -> dict[str, Any]:
        return ok(self.client.post(URL, json=self.body(**extra), auth=self.org.auth), 201)

    def refused(self, **extra: Any) -> dict[str, str]:
        response = self.client.post(URL, json=self.body(**extra), auth=self.org.auth)
        assert response.status_code == 400, response.text
        errors: dict[str, str] = response.json()["field-errors"]
        return errors


def setup(client: TestClient, org: Org, factory: sessionmaker[Session]) -> Setup:
    return Setup(client, org, factory)


# --- Create --------------------------------------------------------------------------------------


def test_create_shape_defaults_and_engine_state(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    s = setup(client, org, session_factory)
    before = utcnow()
    sub = s.subscribe()
    assert set(sub) == SUBSCRIPTION
    assert sub["id"].startswith("sub_") and len(sub["id"]) == 4 + 22
    assert sub["sequence_id"] == s.sequence["id"] and sub["contact_id"] == s.contact["id"]
    assert sub["lead_id"] == s.contact["lead_id"]
    assert sub["contact_email"] == "Jane@Acme.com"  # the first address
    assert sub["sender_account_id"] == s.account
    assert (sub["sender_email"], sub["sender_name"]) == ("sales@example.com", "Sales Team")
    assert sub["calls_assigned_to"] == []  # no call steps
    assert (sub["status"], sub["status_reason"], sub["start_date"]) == ("active", None, None)
    assert sub["organization_id"] == org.id
    assert sub["created_by_id"] == sub["updated_by_id"] == org.user_id
    assert "+" not in sub["date_created"]
    row = stored(session_factory, sub["id"])
    assert row.next_step_position == 0
    assert row.next_step_at is not None and row.next_step_at >= before
    assert ok(client.get(f"{URL}{sub['id']}/", auth=org.auth)) == sub
    [created] = events(session_factory, sub["id"])
    assert (created.object_type, created.action, created.lead_id) == (
        "sequence_subscription",
        "created",
        sub["lead_id"],
    )


def test_create_with_explicit_values(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    s = setup(client, org, session_factory)
    identities = [{"email": "a@example.com", "name": "A"}, {"email": "b@example.com", "name": "B"}]
    s.account = account(session_factory, org, email="a@example.com", identities=identities)
    member = add_member(session_factory, org)
    tmpl = template(client, org)
    s.sequence = create(
        client,
        org,
        steps=[{"step_type": "call"}, {"email_template_id": tmpl}],
    )
    sub = s.subscribe(
        contact_email="JANE.HOME@example.com",
        sender_email="B@example.com",
        sender_name="Bee",
        calls_assigned_to=[member, org.user_id],
    )
    assert sub["contact_email"] == "jane.home@example.com"
    assert (sub["sender_email"], sub["sender_name"]) == ("b@example.com", "Bee")
    assert sub["calls_assigned_to"] == [member, org.user_id]


def test_call_only_sequence_defaults(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    s = setup(client, org, session_factory)
    s.sequence = create(client, org, steps=[{"step_type": "call"}])
    sub = ok(
        client.post(
            URL,
            json={"sequence_id": s.sequence["id"], "contact_id": s.contact["id"]},
            auth=org.auth,
        ),
        201,
    )
    assert sub["calls_assigned_to"] == [org.user_id]
    assert sub["contact_email"] == "Jane@Acme.com"
    # A call-only sequence needs no address.
    no_email = contact(client, org, ())
    body = {"sequence_id": s.sequence["id"], "contact_id": no_email["id"]}
    assert ok(client.post(URL, json=body, auth=org.auth), 201)["contact_email"] is None
    assert (sub["sender_account_id"], sub["sender_email"], sub["sender_name"]) == (None,) * 3


def test_send_as_allows_another_users_account(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    s = setup(client, org, session_factory)
    owner = add_member(session_factory, org)
    s.account = account(session_factory, org, user_id=owner)
    assert "sender_account_id" in s.refused()
    with session_factory.begin() as session:
        session.add(
            SendAs(
                id=new_id("sdas"),
                organization_id=org.id,
                allowing_user_id=owner,
                allowed_user_id=org.user_id,
            )
        )
    assert s.subscribe()["sender_account_id"] == s.account


def test_validation_errors_write_nothing(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    s = setup(client, org, session_factory)
    foreign_seq = email_sequence(client, other_org)
    foreign_contact = contact(client, other_org)
    foreign_account = account(session_factory, other_org, user_id=other_org.user_id)
    outsider = add_member(session_factory, other_org)
    ok(
        client.post(
            "/api/v1/unsubscribe/email/", json={"email": "jane.home@example.com"}, auth=org.auth
        ),
        201,
    )
    assert s.refused(sequence_id="seq_nope") == {"sequence_id": "Object does not exist."}
    assert s.refused(sequence_id=foreign_seq["id"]) == {"sequence_id": "Object does not exist."}
    assert s.refused(contact_id=foreign_contact["id"]) == {"contact_id": "Object does not exist."}
    assert s.refused(sender_account_id=foreign_account) == {
        "sender_account_id": "Object does not exist."
    }
    assert "sender_account_id" in s.refused(sender_account_id=None)
    assert "contact_email" in s.refused(contact_email="someone@else.com")
    assert "contact_email" in s.refused(contact_email="jane.home@example.com")  # unsubscribed
    assert "sender_email" in s.refused(sender_email="ceo@example.com")
    assert "calls_assigned_to" in s.refused(calls_assigned_to=[outsider])
    assert "contact_id" in s.refused(contact_id=None)
    no_email = contact(client, org, ())
    assert "contact_email" in s.refused(contact_id=no_email["id"])
    assert count_rows(session_factory, SequenceSubscription, org) == 0


def test_a_live_subscription_cannot_be_duplicated(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    s = setup(client, org, session_factory)
    sub = s.subscribe()
    assert s.refused() == {"contact_id": "Contact is already subscribed to this sequence."}
    ok(client.put(f"{URL}{sub['id']}/", json={"status": "paused"}, auth=org.auth))
    assert s.refused() == {"contact_id": "Contact is already subscribed to this sequence."}
    with session_factory.begin() as session:
        end_subscriptions(
            session,
            org.id,
            [sub["id"]],
            status="finished",
            reason="manual",
            actor=system_actor(org),
        )
    assert s.subscribe()["id"] != sub["id"]  # an ended run does not block a new one


# --- Pause, resume, delete -----------------------------------------------------------------------


def test_pause_and_resume(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    s = setup(client, org, session_factory)
    sub = s.subscribe()
    url = f"{URL}{sub['id']}/"
    paused = ok(client.put(url, json={"status": "paused"}, auth=org.auth))
    assert (paused["status"], paused["status_reason"]) == ("paused", "manual")
    assert stored(session_factory, sub["id"]).next_step_at is None
    update = events(session_factory, sub["id"])[-1]
    assert update.action == "updated" and "status" in update.changed_fields
    assert ok(client.put(url, json={"status": "paused"}, auth=org.auth)) == paused  # no-op
    assert len(events(session_factory, sub["id"])) == 2
    before = utcnow()
    resumed = ok(client.put(url, json={"status": "active"}, auth=org.auth))
    assert (resumed["status"], resumed["status_reason"]) == ("active", None)
    due = stored(session_factory, sub["id"]).next_step_at
    assert due is not None and due >= before
    for body in ({"status": "finished"}, {"status": "goal"}, {"sender_name": "x"}, {}):
        if body:
            assert client.put(url, json=body, auth=org.auth).status_code == 400, body
    assert ok(client.get(url, auth=org.auth))["status"] == "active"


def test_ended_subscriptions_cannot_be_resumed(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    s = setup(client, org, session_factory)
    sub = s.subscribe()
    with session_factory.begin() as session:
        end_subscriptions(
            session,
            org.id,
            [sub["id"]],
            status="error",
            reason="email-bounced",
            actor=system_actor(org),
        )
    url = f"{URL}{sub['id']}/"
    for status in ("active", "paused"):
        response = client.put(url, json={"status": status}, auth=org.auth)
        assert response.status_code == 400 and "status" in response.json()["field-errors"]
    assert ok(client.get(url, auth=org.auth))["status"] == "error"


def test_delete(client: TestClient, org: Org, session_factory: sessionmaker[Session]) -> None:
    s = setup(client, org, session_factory)
    sub = s.subscribe()
    url = f"{URL}{sub['id']}/"
    assert ok(client.delete(url, auth=org.auth)) == {}
    assert client.get(url, auth=org.auth).json() == NOT_FOUND
    deleted = events(session_factory, sub["id"])[-1]
    assert deleted.action == "deleted" and deleted.previous_data["id"] == sub["id"]
    assert s.subscribe()["id"] != sub["id"]


# --- Listing -------------------------------------------------------------------------------------


def test_list_requires_a_filter_and_filters(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    s = setup(client, org, session_factory)
    first = s.subscribe()
    other_seq = email_sequence(client, org)
    second = s.subscribe(sequence_id=other_seq["id"])
    response = client.get(URL, auth=org.auth)
    assert response.status_code == 400
    assert response.json() == {
        "error": "At least one of sequence_id, contact_id, and lead_id is required."
    }

    def ids(**params: str) -> list[str]:
        return [x["id"] for x in ok(client.get(URL, params=params, auth=org.auth))["data"]]

    assert ids(sequence_id=s.sequence["id"]) == [first["id"]]
    assert ids(contact_id=s.contact["id"]) == [first["id"], second["id"]]
    assert ids(lead_id=s.contact["lead_id"]) == [first["id"], second["id"]]
    assert ids(lead_id=s.contact["lead_id"], sequence_id=other_seq["id"]) == [second["id"]]
    assert ids(lead_id=s.contact["lead_id"], _limit="1") == [first["id"]]
    page = ok(client.get(URL, params={"contact_id": s.contact["id"], "_skip": 1}, auth=org.auth))
    assert [x["id"] for x in page["data"]] == [second["id"]] and page["has_more"] is False


# --- end_subscriptions ---------------------------------------------------------------------------


def test_end_subscriptions_changes_only_live_rows(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    s = setup(client, org, session_factory)
    active = s.subscribe()
    paused = s.subscribe(sequence_id=email_sequence(client, org)["id"])
    ok(client.put(f"{URL}{paused['id']}/", json={"status": "paused"}, auth=org.auth))
    ended = s.subscribe(sequence_id=email_sequence(client, org)["id"])
    actor = system_actor(org)
    with session_factory.begin() as session:
        assert (
            end_subscriptions(
                session, org.id, [ended["id"]], status="finished", reason="manual", actor=actor
            )
            == 1
        )
    with session_factory.begin() as session:
        row = session.get(SequenceSubscription, active["id"])
        assert row is not None
        row.locked_until = utcnow()
    foreign = Setup(client, other_org, session_factory).subscribe()
    ids = [active["id"], paused["id"], ended["id"], foreign["id"], "sub_nope"]
    with session_factory.begin() as session:
        changed = end_subscriptions(
            session, org.id, ids, status="goal", reason="reply-received", actor=actor
        )
    assert changed == 2
    for sub_id in (active["id"], paused["id"]):
        row = stored(session_factory, sub_id)
        assert (row.status, row.status_reason) == ("goal", "reply-received")
        assert row.next_step_at is None and row.locked_until is None
        event = events(session_factory, sub_id)[-1]
        assert event.action == "updated" and event.data is not None
        assert event.data["status"] == "goal"
        assert {"status", "status_reason"} <= set(event.changed_fields)
    assert stored(session_factory, ended["id"]).status == "finished"  # already ended: unchanged
    assert stored(session_factory, foreign["id"]).status == "active"  # another organization's
    assert len(events(session_factory, ended["id"])) == 2


# --- Contact.subscriptions -----------------------------------------------------------------------


def test_contacts_show_their_subscriptions(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    s = setup(client, org, session_factory)
    sub = s.subscribe()
    expected = {
        "subscription_id": sub["id"],
        "sequence_id": s.sequence["id"],
        "sequence_name": "Outreach",
        "sequence_status": "active",
        "subscription_status": "active",
        "subscription_status_reason": None,
        "contact_email": "Jane@Acme.com",
        "initial_email_id": None,
        "start_date": None,
        "date_created": sub["date_created"] + "+00:00",  # a contact's dates carry the offset
    }
    got = ok(client.get(f"/api/v1/contact/{s.contact['id']}/", auth=org.auth))
    assert got["subscriptions"] == [expected]
    listed = ok(
        client.get("/api/v1/contact/", params={"lead_id": s.contact["lead_id"]}, auth=org.auth)
    )
    assert listed["data"][0]["subscriptions"] == [expected]
    lead = ok(client.get(f"/api/v1/lead/{s.contact['lead_id']}/", auth=org.auth))
    assert lead["contacts"][0]["subscriptions"] == [expected]
    other = contact(client, org)
    assert ok(client.get(f"/api/v1/contact/{other['id']}/", auth=org.auth))["subscriptions"] == []


# --- Tenancy -------------------------------------------------------------------------------------


def test_other_organizations_subscriptions_are_404(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    sub = setup(client, org, session_factory).subscribe()
    url = f"{URL}{sub['id']}/"
    assert client.get(url, auth=other_org.auth).json() == NOT_FOUND
    assert client.put(url, json={"status": "paused"}, auth=other_org.auth).status_code == 404
    assert client.delete(url, auth=other_org.auth).status_code == 404
    listed = client.get(URL, params={"sequence_id": sub["sequence_id"]}, auth=other_org.auth)
    assert ok(listed)["data"] == []
    assert ok(client.get(url, auth=org.auth))["status"] == "active"
    with session_factory() as session:
        assert (
            session.scalar(
                select(SequenceSubscription.status).where(SequenceSubscription.id == sub["id"])
            )
            == "active"
        )
