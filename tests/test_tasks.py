from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.kit.ids import new_id
from clove.models import Event, Task
from tests.conftest import Org
from tests.test_membership import add_member

URL = "/api/v1/task/"
NOT_FOUND = {"error": "Empty query: Task matching query does not exist."}
# Close's task object (docs examples; the spec types task responses as empty bodies).
FIELDS = {
    "_type",
    "id",
    "organization_id",
    "lead_id",
    "lead_name",
    "contact_id",
    "contact_name",
    "assigned_to",
    "assigned_to_name",
    "text",
    "date",
    "due_date",
    "is_dateless",
    "is_complete",
    "object_type",
    "object_id",
    "created_by",
    "created_by_name",
    "updated_by",
    "updated_by_name",
    "date_created",
    "date_updated",
}


def new_lead(client: TestClient, org: Org, name: str = "Lead") -> dict[str, Any]:
    response = client.post(
        "/api/v1/lead/", json={"name": name, "contacts": [{"name": "Cy"}]}, auth=org.auth
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def create(client: TestClient, org: Org, **body: Any) -> dict[str, Any]:
    response = client.post(URL, json=body, auth=org.auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


def actions(session_factory: sessionmaker[Session], task_id: str) -> list[tuple[str, str]]:
    with session_factory() as session:
        query = select(Event).where(Event.object_id == task_id).order_by(Event.date_created)
        return [(e.object_type, e.action) for e in session.scalars(query)]


def ids(client: TestClient, org: Org, **params: str) -> list[str]:
    response = client.get(URL, params=params, auth=org.auth)
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["data"]]


def test_create_get_complete_delete(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead = new_lead(client, org, "Acme Inc")
    contact_id = lead["contacts"][0]["id"]
    task = create(
        client, org, lead_id=lead["id"], contact_id=contact_id, text="Call", date="2026-12-01"
    )
    assert set(task) == FIELDS
    assert task["_type"] == "lead" and task["id"].startswith("task_")
    assert task["lead_name"] == "Acme Inc" and task["contact_id"] == contact_id
    assert task["assigned_to"] == org.user_id and task["assigned_to_name"] == "Ada Admin"
    assert task["date"] == task["due_date"] == "2026-12-01"
    assert task["is_dateless"] is False and task["is_complete"] is False
    assert task["created_by"] == org.user_id and task["date_created"].endswith("+00:00")
    url = f"{URL}{task['id']}/"
    assert client.get(url, auth=org.auth).json() == task

    done = client.put(url, json={"is_complete": True}, auth=org.auth)
    assert done.status_code == 200 and done.json()["is_complete"] is True
    undone = client.put(url, json={"is_complete": False, "text": "Call again"}, auth=org.auth)
    assert undone.json()["is_complete"] is False and undone.json()["text"] == "Call again"
    timed = client.put(url, json={"date": "2026-12-02T15:30:00+01:00"}, auth=org.auth).json()
    assert timed["date"] == "2026-12-02T14:30:00.000000+00:00"
    assert client.put(url, json={"date": None}, auth=org.auth).json()["is_dateless"] is True
    # A PUT that changes nothing records nothing.
    assert client.put(url, json={"text": "Call again"}, auth=org.auth).status_code == 200

    assert client.delete(url, auth=org.auth).json() == {}
    assert client.get(url, auth=org.auth).json() == NOT_FOUND
    assert actions(session_factory, task["id"]) == [
        ("task.lead", "created"),
        ("task.lead", "completed"),
        ("task.lead", "updated"),
        ("task.lead", "updated"),
        ("task.lead", "updated"),
        ("task.lead", "deleted"),
    ]


def test_assigned_to_must_be_a_member(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead = new_lead(client, org)
    member = add_member(session_factory, org, first_name="Mo", last_name="Member")
    task = create(client, org, lead_id=lead["id"], assigned_to=member.user_id)
    assert task["assigned_to_name"] == "Mo Member"
    response = client.post(
        URL, json={"lead_id": lead["id"], "assigned_to": other_org.user_id}, auth=org.auth
    )
    assert response.status_code == 400
    assert "assigned_to" in response.json()["field-errors"]
    response = client.put(
        f"{URL}{task['id']}/", json={"assigned_to": other_org.user_id}, auth=org.auth
    )
    assert response.status_code == 400
    assert client.get(f"{URL}{task['id']}/", auth=org.auth).json()["assigned_to"] == (
        member.user_id
    )


def test_validation_errors(client: TestClient, org: Org) -> None:
    lead = new_lead(client, org)
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({}, "lead_id"),
        ({"lead_id": "lead_nope"}, "lead_id"),
        ({"lead_id": lead["id"], "date": "next week"}, "date"),
        ({"lead_id": lead["id"], "is_complete": "yes"}, "is_complete"),
        ({"lead_id": lead["id"], "contact_id": "cont_nope"}, "contact_id"),
        ({"lead_id": lead["id"], "_type": "email_followup"}, None),
        ({"lead_id": lead["id"], "bogus": 1}, None),
    ]
    for body, field in cases:
        response = client.post(URL, json=body, auth=org.auth)
        assert response.status_code == 400, (body, response.text)
        if field:
            assert field in response.json()["field-errors"], (body, response.json())
    assert ids(client, org, lead_id=lead["id"]) == []
    task = create(client, org, lead_id=lead["id"])
    response = client.put(f"{URL}{task['id']}/", json={"is_complete": None}, auth=org.auth)
    assert response.status_code == 400
    assert client.get(URL, params={"view": "someday"}, auth=org.auth).status_code == 400
    assert client.get(URL, params={"_order_by": "text"}, auth=org.auth).status_code == 400


def test_list_filters(client: TestClient, org: Org, session_factory: sessionmaker[Session]) -> None:
    lead = new_lead(client, org)
    other = new_lead(client, org)
    member = add_member(session_factory, org)
    today = datetime.now(UTC).date()
    past = create(client, org, lead_id=lead["id"], date=str(today - timedelta(days=2)))
    later = create(client, org, lead_id=lead["id"], date=str(today + timedelta(days=5)))
    dateless = create(client, org, lead_id=lead["id"])
    done = create(client, org, lead_id=lead["id"], is_complete=True, date=str(today))
    theirs = create(client, org, lead_id=other["id"], assigned_to=member.user_id)
    with session_factory.begin() as session:
        # A task of another type (as a sequence call step writes): only `_type=all` lists it.
        call = Task(id=new_id("task"), organization_id=org.id, type="outgoing_call")
        call.lead_id = lead["id"]
        session.add(call)
        call_id = call.id

    mine = [past["id"], done["id"], later["id"], dateless["id"]]  # by date, dateless last
    assert ids(client, org, lead_id=lead["id"]) == mine
    assert ids(client, org, lead_id=lead["id"], _order_by="-date")[:3] == [
        later["id"],
        done["id"],
        past["id"],
    ]
    assert set(ids(client, org, lead_id=lead["id"], _type="all")) == {*mine, call_id}
    assert ids(client, org, assigned_to=member.user_id) == [theirs["id"]]
    assert ids(client, org, lead_id=lead["id"], is_complete="true") == [done["id"]]
    assert ids(client, org, lead_id=lead["id"], view="archive") == [done["id"]]
    assert ids(client, org, lead_id=lead["id"], view="inbox") == [past["id"], dateless["id"]]
    assert ids(client, org, lead_id=lead["id"], view="future") == [later["id"]]
    assert ids(client, org, lead_id=lead["id"], date__gt=str(today)) == [later["id"]]
    assert ids(client, org, lead_id=lead["id"], id__in=f"{past['id']},{theirs['id']}") == [
        past["id"]
    ]
    page = client.get(URL, params={"lead_id": lead["id"], "_limit": 2}, auth=org.auth).json()
    assert [t["id"] for t in page["data"]] == mine[:2] and page["has_more"] is True


def test_other_organizations_tasks_are_out_of_reach(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    their_lead = new_lead(client, other_org)
    task = create(client, other_org, lead_id=their_lead["id"], text="Secret")
    url = f"{URL}{task['id']}/"
    assert client.get(url, auth=org.auth).json() == NOT_FOUND
    assert client.put(url, json={"is_complete": True}, auth=org.auth).status_code == 404
    assert client.delete(url, auth=org.auth).status_code == 404
    assert ids(client, org, lead_id=their_lead["id"]) == []
    response = client.post(URL, json={"lead_id": their_lead["id"]}, auth=org.auth)
    assert response.status_code == 400
    with session_factory() as session:
        rows = session.scalars(select(Task).where(Task.lead_id == their_lead["id"])).all()
        assert [(t.id, t.is_complete) for t in rows] == [(task["id"], False)]
