"""`/sequence/`: shapes, defaults, steps kept/reordered/deleted by PUT, validation, counts by
status, events and tenancy. Helpers here are shared by the subscription tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.auth.service import AuthContext
from clove.event.service import Actor
from clove.kit.ids import new_id
from clove.models import ConnectedAccount, Event, Sequence, SequenceStep
from clove.sequence.service import end_subscriptions
from tests.compat.test_spec_schemas import SEQUENCE, SEQUENCE_STEP
from tests.conftest import Org

URL = "/api/v1/sequence/"
SUB_URL = "/api/v1/sequence_subscription/"
NOT_FOUND = {"error": "Empty query: Sequence matching query does not exist."}
SCHEDULE = {"ranges": [{"weekday": d, "start": "09:00", "end": "16:59"} for d in range(1, 6)]}


# --- Helpers (shared) ----------------------------------------------------------------------------


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def template(client: TestClient, org: Org, name: str = "Intro") -> str:
    body = {"name": name, "subject": "Hi", "body": "Hello"}
    return str(ok(client.post("/api/v1/email_template/", json=body, auth=org.auth))["id"])


def create(client: TestClient, org: Org, **body: Any) -> dict[str, Any]:
    payload = {"name": "Outreach", **body}
    return ok(client.post(URL, json=payload, auth=org.auth))


def email_sequence(client: TestClient, org: Org, **body: Any) -> dict[str, Any]:
    steps = [{"step_type": "email", "delay": 0, "email_template_id": template(client, org)}]
    return create(client, org, steps=body.pop("steps", steps), **body)


def contact(
    client: TestClient, org: Org, emails: tuple[str, ...] = ("jane@acme.com",)
) -> dict[str, Any]:
    """A new lead with one contact; returns the contact."""
    body = {
        "name": "Acme",
        "contacts": [{"name": "Jane", "emails": [{"email": e, "type": "office"} for e in emails]}],
    }
    lead = ok(client.post("/api/v1/lead/", json=body, auth=org.auth))
    return dict(lead["contacts"][0])


def account(
    session_factory: sessionmaker[Session],
    org: Org,
    user_id: str | None = None,
    email: str = "sales@example.com",
    identities: list[dict[str, Any]] | None = None,
) -> str:
    """A connected account inserted directly (the /connected_account/ API is not used)."""
    account_id = new_id("emailacct")
    with session_factory.begin() as session:
        session.add(
            ConnectedAccount(
                id=account_id,
                organization_id=org.id,
                user_id=user_id or org.user_id,
                type="custom_email",
                email=email,
                identities=identities
                if identities is not None
                else [{"email": email, "name": "Sales Team"}],
                smtp={"host": "127.0.0.1", "port": 25, "username": email, "security": "none"},
                smtp_password="",
            )
        )
    return account_id


def system_actor(org: Org) -> Actor:
    """The organization's admin acting outside a request (as the engine does)."""
    return Actor(AuthContext(org.id, org.user_id, org.membership_id, "admin"))


def events(session_factory: sessionmaker[Session], object_id: str) -> list[Event]:
    with session_factory() as session:
        query = select(Event).where(Event.object_id == object_id).order_by(Event.date_created)
        return list(session.scalars(query))


def count_rows(session_factory: sessionmaker[Session], model: Any, org: Org) -> int:
    with session_factory() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(model).where(model.organization_id == org.id)
            )
            or 0
        )


# --- CRUD ----------------------------------------------------------------------------------------


def test_create_shape_and_defaults(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    tmpl = template(client, org)
    seq = create(
        client,
        org,
        timezone="America/Los_Angeles",
        schedule=SCHEDULE,
        steps=[
            {"step_type": "call", "delay": 0, "required": True},
            {"step_type": "email", "delay": 86400, "email_template_id": tmpl},
            {"delay": 259200, "email_template_id": tmpl, "threading": "new_thread"},
        ],
    )
    assert set(seq) == SEQUENCE
    assert seq["id"].startswith("seq_") and len(seq["id"]) == 4 + 22
    assert seq["name"] == "Outreach" and seq["status"] == "active"
    assert seq["timezone"] == "America/Los_Angeles" and seq["schedule"] == SCHEDULE
    assert seq["organization_id"] == org.id
    assert seq["created_by_id"] == seq["updated_by_id"] == org.user_id
    assert "+" not in seq["date_created"] and "." in seq["date_created"]  # naive
    call, first, second = seq["steps"]
    assert all(set(s) == SEQUENCE_STEP for s in seq["steps"])
    assert call["id"].startswith("seqstep_")
    assert (call["step_type"], call["email_template_id"], call["threading"]) == ("call", None, None)
    assert (first["step_type"], first["threading"], first["required"]) == (
        "email",
        "old_thread",
        True,
    )
    assert (second["step_type"], second["delay"], second["threading"]) == (
        "email",
        259200,
        "new_thread",
    )
    assert second["step_allowed_delay"] is None and second["created_by_id"] == org.user_id

    bare = create(client, org)
    assert (bare["timezone"], bare["schedule"], bare["steps"], bare["status"]) == (
        "UTC",
        None,
        [],
        "active",
    )
    [created] = events(session_factory, seq["id"])
    assert (created.object_type, created.action) == ("sequence", "created")
    assert created.data is not None and len(created.data["steps"]) == 3


def test_get_list_and_counts(client: TestClient, org: Org) -> None:
    first = create(client, org, name="One")
    second = email_sequence(client, org, name="Two")
    got = ok(client.get(f"{URL}{second['id']}/", auth=org.auth))
    assert got == {
        **second,
        "subscription_counts_by_status": {
            "active": 0,
            "paused": 0,
            "finished": 0,
            "goal": 0,
            "error": 0,
        },
    }
    listed = ok(client.get(URL, auth=org.auth))
    assert [s["id"] for s in listed["data"]] == [first["id"], second["id"]]
    assert listed["data"][1]["steps"] == second["steps"] and listed["has_more"] is False
    paged = ok(client.get(URL, params={"_limit": 1}, auth=org.auth))
    assert [s["id"] for s in paged["data"]] == [first["id"]] and paged["has_more"] is True
    assert ok(client.get(URL, params={"_fields": "id,name"}, auth=org.auth))["data"][0] == {
        "id": first["id"],
        "name": "One",
    }


def test_counts_by_status(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    seq = email_sequence(client, org)
    acct = account(session_factory, org)
    subs = []
    for n in range(4):
        c = contact(client, org, (f"p{n}@acme.com",))
        body = {"sequence_id": seq["id"], "contact_id": c["id"], "sender_account_id": acct}
        subs.append(ok(client.post(SUB_URL, json=body, auth=org.auth), 201))
    ok(client.put(f"{SUB_URL}{subs[0]['id']}/", json={"status": "paused"}, auth=org.auth))
    with session_factory.begin() as session:
        end_subscriptions(
            session,
            org.id,
            [subs[1]["id"]],
            status="goal",
            reason="reply-received",
            actor=system_actor(org),
        )
    counts = ok(client.get(f"{URL}{seq['id']}/", auth=org.auth))["subscription_counts_by_status"]
    assert counts == {"active": 2, "paused": 1, "finished": 0, "goal": 1, "error": 0}


def test_put_updates_fields_and_records_changes(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    seq = email_sequence(client, org, schedule=SCHEDULE)
    url = f"{URL}{seq['id']}/"
    body = {"name": "Renamed", "status": "paused", "timezone": "US/Eastern", "schedule": None}
    updated = ok(client.put(url, json=body, auth=org.auth))
    assert (updated["name"], updated["status"], updated["timezone"], updated["schedule"]) == (
        "Renamed",
        "paused",
        "US/Eastern",
        None,
    )
    assert updated["steps"] == seq["steps"]  # steps not sent: untouched
    assert "subscription_counts_by_status" in updated
    assert updated["date_updated"] > seq["date_updated"]
    update = events(session_factory, seq["id"])[-1]
    assert update.action == "updated"
    assert update.changed_fields == ["date_updated", "name", "schedule", "status", "timezone"]
    # The same body again changes nothing and records nothing.
    ok(client.put(url, json=body, auth=org.auth))
    assert len(events(session_factory, seq["id"])) == 2


def test_put_steps_keeps_reorders_updates_and_deletes(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    tmpl, other = template(client, org), template(client, org, "Other")
    seq = create(
        client,
        org,
        steps=[
            {"email_template_id": tmpl},
            {"step_type": "call", "delay": 60},
            {"email_template_id": tmpl, "delay": 120},
        ],
    )
    a, b, c = seq["steps"]
    url = f"{URL}{seq['id']}/"
    steps = [
        {"id": c["id"], "delay": 5, "email_template_id": other},
        {"id": a["id"]},
        {"step_type": "call", "delay": 10},
    ]
    updated = ok(client.put(url, json={"steps": steps}, auth=org.auth))
    new_c, new_a, added = updated["steps"]
    assert (new_c["id"], new_c["delay"], new_c["email_template_id"]) == (c["id"], 5, other)
    assert new_c["date_created"] == c["date_created"]
    assert new_a == a  # kept as it was, only moved
    assert added["id"] not in {a["id"], b["id"], c["id"]} and added["step_type"] == "call"
    with session_factory() as session:
        stored = session.scalars(
            select(SequenceStep.id)
            .where(SequenceStep.sequence_id == seq["id"])
            .order_by(SequenceStep.position)
        ).all()
    assert stored == [c["id"], a["id"], added["id"]]  # b deleted
    assert ok(client.get(url, auth=org.auth))["steps"] == updated["steps"]
    event = events(session_factory, seq["id"])[-1]
    assert event.changed_fields == ["date_updated", "steps"]

    emptied = ok(client.put(url, json={"steps": []}, auth=org.auth))
    assert emptied["steps"] == []


def test_put_steps_with_a_foreign_or_unknown_step_id_is_400_and_writes_nothing(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    seq = email_sequence(client, org)
    other = email_sequence(client, org)
    url = f"{URL}{seq['id']}/"
    for bad in ("seqstep_nope", other["steps"][0]["id"]):
        steps = [{"step_type": "call"}, {"id": bad}]
        response = client.put(url, json={"name": "X", "steps": steps}, auth=org.auth)
        assert response.status_code == 400
        assert response.json()["field-errors"] == {"steps.1.id": "Object does not exist."}
    twice = [{"id": seq["steps"][0]["id"]}, {"id": seq["steps"][0]["id"]}]
    assert client.put(url, json={"steps": twice}, auth=org.auth).status_code == 400
    assert ok(client.get(url, auth=org.auth))["steps"] == seq["steps"]
    assert ok(client.get(url, auth=org.auth))["name"] == "Outreach"
    assert len(events(session_factory, seq["id"])) == 1


def test_validation_errors(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    foreign_template = template(client, other_org)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "  "}, "name"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "America"}, "timezone"),  # a directory of the tz database
        ({"status": "running"}, "status"),
        ({"schedule": {"ranges": [{"weekday": 8, "start": "09:00", "end": "10:00"}]}}, ""),
        ({"schedule": {"ranges": [{"weekday": 1, "start": "9am", "end": "10:00"}]}}, ""),
        ({"schedule": {"ranges": [{"weekday": 1, "start": "11:00", "end": "10:00"}]}}, ""),
        ({"steps": [{"step_type": "email"}]}, "steps.0.email_template_id"),
        ({"steps": [{"email_template_id": foreign_template}]}, "steps.0.email_template_id"),
        ({"steps": [{"step_type": "sms"}]}, "steps.0.step_type"),
        ({"steps": [{"step_type": "call", "delay": -1}]}, "steps.0.delay"),
        ({"steps": [{"step_type": "call", "email_template_id": "tmpl_x"}]}, ""),
        ({"steps": [{"step_type": "fax"}]}, "steps.0.step_type"),
        ({"unknown": 1}, "unknown"),
    ]
    for body, key in cases:
        response = client.post(URL, json={"name": "Seq", **body}, auth=org.auth)
        assert response.status_code == 400, (body, response.text)
        errors = response.json()["field-errors"]
        if key:
            assert key in errors, (body, errors)
    bad = {"ranges": [{"weekday": 1, "start": "25:00", "end": "26:00"}]}
    response = client.post(URL, json={"name": "S", "schedule": bad}, auth=org.auth)
    assert list(response.json()["field-errors"]) == ["schedule.ranges.0.start"]
    reversed_range = {"ranges": [{"weekday": 1, "start": "11:00", "end": "10:00"}]}
    response = client.post(URL, json={"name": "S", "schedule": reversed_range}, auth=org.auth)
    assert list(response.json()["field-errors"]) == ["schedule.ranges.0.end"]
    assert count_rows(session_factory, Sequence, org) == 0
    assert client.post(URL, json={}, auth=org.auth).json()["field-errors"] == {
        "name": "This field is required."
    }


def test_delete_removes_steps_and_subscriptions(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    seq = email_sequence(client, org)
    acct = account(session_factory, org)
    c = contact(client, org)
    body = {"sequence_id": seq["id"], "contact_id": c["id"], "sender_account_id": acct}
    sub = ok(client.post(SUB_URL, json=body, auth=org.auth), 201)
    assert ok(client.delete(f"{URL}{seq['id']}/", auth=org.auth)) == {}
    assert client.get(f"{URL}{seq['id']}/", auth=org.auth).json() == NOT_FOUND
    assert client.get(f"{SUB_URL}{sub['id']}/", auth=org.auth).status_code == 404
    with session_factory() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(SequenceStep)
                .where(SequenceStep.sequence_id == seq["id"])
            )
            == 0
        )
    deleted = events(session_factory, seq["id"])[-1]
    assert deleted.action == "deleted" and deleted.previous_data["id"] == seq["id"]
    assert ok(client.get(f"/api/v1/contact/{c['id']}/", auth=org.auth))["subscriptions"] == []


def test_other_organizations_sequences_are_404(
    client: TestClient, org: Org, other_org: Org
) -> None:
    seq = email_sequence(client, org)
    url = f"{URL}{seq['id']}/"
    assert client.get(url, auth=other_org.auth).json() == NOT_FOUND
    assert client.put(url, json={"name": "x"}, auth=other_org.auth).status_code == 404
    assert client.delete(url, auth=other_org.auth).status_code == 404
    assert ok(client.get(URL, auth=other_org.auth))["data"] == []
    assert ok(client.get(url, auth=org.auth))["name"] == "Outreach"
