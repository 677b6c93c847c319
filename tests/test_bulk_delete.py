"""`/bulk_action/delete/` end to end over HTTP, with a real job runner."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select

from clove.models import (
    BulkAction,
    BulkActionItem,
    Contact,
    ContactEmail,
    EmailActivity,
    Event,
    Lead,
    LeadAddress,
    SequenceSubscription,
    Task,
)
from tests.bulk_world import (
    ALL_LEADS,
    COMMON_FIELDS,
    EXTENSIONS,
    BulkWorld,
    leads_named,
    make_world,
)
from tests.conftest import Org

# Close's fields of this kind besides those every bulk action has.
FIELDS = COMMON_FIELDS | {"bulk_object_type"}
ADDRESS = {"label": "business", "address_1": "1 Main St", "city": "Springfield", "country": "US"}
ALL_CONTACTS = {"type": "and", "queries": [{"type": "object_type", "object_type": "contact"}]}


def contacts_named(word: str) -> dict[str, Any]:
    condition = {"type": "text", "mode": "full_words", "value": word}
    field = {"type": "regular_field", "object_type": "contact", "field_name": "name"}
    return {
        "type": "and",
        "queries": [
            {"type": "object_type", "object_type": "contact"},
            {"type": "field_condition", "field": field, "condition": condition},
        ],
    }


def by_name(object_type: str) -> list[dict[str, Any]]:
    field = {"type": "regular_field", "object_type": object_type, "field_name": "name"}
    return [{"direction": "asc", "field": field}]


@pytest.fixture
def world(client: TestClient, org: Org, engine: Engine, database_url: str) -> BulkWorld:
    return make_world(client, org, engine, database_url)


def lead_with(world: BulkWorld, name: str, contacts: list[str]) -> dict[str, Any]:
    """A lead with an address and named contacts (one email each)."""
    body = {
        "name": name,
        "addresses": [ADDRESS],
        "contacts": [
            {"name": c, "emails": [{"email": f"{c.replace(' ', '.').lower()}@x.test"}]}
            for c in contacts
        ],
    }
    response = world.client.post("/api/v1/lead/", json=body, auth=world.org.auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


def get_lead(world: BulkWorld, lead_id: str) -> Any:
    return world.client.get(f"/api/v1/lead/{lead_id}/", auth=world.org.auth)


def bulk_events(world: BulkWorld, action_id: str) -> list[Event]:
    with world.reader() as session:
        events = session.scalars(
            select(Event)
            .where(
                Event.organization_id == world.org.id, Event.object_type.in_(("lead", "contact"))
            )
            .order_by(Event.date_created, Event.id)
        )
        return [e for e in events if (e.meta or {}).get("bulk_action_id") == action_id]


def created(world: BulkWorld, body: dict[str, Any]) -> dict[str, Any]:
    response = world.post("delete", body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_deletes_leads_with_everything_they_hold(world: BulkWorld) -> None:
    seq = world.sequence()
    doomed = [lead_with(world, f"Doomed {i}", [f"Ann {i}", f"Bob {i}"]) for i in range(3)]
    spared = lead_with(world, "Spared", ["Cid"])
    first = doomed[0]
    task = world.client.post("/api/v1/task/", json={"lead_id": first["id"]}, auth=world.org.auth)
    draft = {"lead_id": first["id"], "status": "draft", "subject": "Hi"}
    email = world.client.post("/api/v1/activity/email/", json=draft, auth=world.org.auth)
    assert task.status_code == email.status_code == 200
    with world.factory.begin() as session:
        session.add(
            SequenceSubscription(
                id="sub_doomed" + first["id"][-6:],
                organization_id=world.org.id,
                sequence_id=seq,
                contact_id=first["contacts"][0]["id"],
                lead_id=first["id"],
            )
        )
    before = {lead["id"]: get_lead(world, lead["id"]).json() for lead in doomed}

    action = created(world, {"s_query": leads_named("Doomed")})
    assert set(action) == FIELDS | EXTENSIONS
    assert action["id"].startswith("bulkdelete_")
    assert action["bulk_object_type"] == "lead"
    assert (action["status"], action["n_leads"], action["n_objects"]) == ("created", None, None)
    world.run_jobs()  # two leads per chunk: two chunks

    done = world.get("delete", action["id"])
    assert done["status"] == "done"
    assert (done["n_leads"], done["n_leads_processed"]) == (3, 3)
    assert (done["n_objects"], done["n_objects_processed"]) == (3, 3)
    for lead_id in before:
        assert get_lead(world, lead_id).status_code == 404
        for model in (Contact, ContactEmail, LeadAddress, Task, EmailActivity):
            assert world.count(model, lead_id=lead_id) == 0, model
    assert world.count(SequenceSubscription, sequence_id=seq) == 0
    assert get_lead(world, spared["id"]).json() == spared

    events = bulk_events(world, action["id"])
    expected = [
        (object_type, data["id"], data)
        for lead in before.values()
        for object_type, data in [*(("contact", c) for c in lead["contacts"]), ("lead", lead)]
    ]
    assert sorted((e.object_type, e.object_id) for e in events) == sorted(
        (t, i) for t, i, _ in expected
    )
    by_id = {e.object_id: e for e in events}
    for _, object_id, data in expected:
        event = by_id[object_id]
        assert event.action == "deleted"
        assert event.data is None
        assert event.previous_data == data
        assert event.user_id == world.org.user_id
        assert event.lead_id == (data["lead_id"] if "lead_id" in data else data["id"])


def test_deletes_contacts_and_updates_their_leads(world: BulkWorld) -> None:
    one = lead_with(world, "First", ["Gone 1", "Gone 3", "Kept 1"])
    two = lead_with(world, "Second", ["Gone 2"])
    three = lead_with(world, "Third", ["Kept 2"])
    gone = {c["id"]: c for lead in (one, two) for c in lead["contacts"] if "Gone" in c["name"]}

    # Sorted by name, a chunk of two holds Gone 1 (First) and Gone 2 (Second), the next Gone 3
    # (First again): First is one lead however many chunks its contacts fall in.
    body = {
        "bulk_object_type": "contact",
        "s_query": contacts_named("Gone"),
        "sort": by_name("contact"),
    }
    action = created(world, body)
    assert action["bulk_object_type"] == "contact"
    world.run_jobs()

    done = world.get("delete", action["id"])
    assert done["status"] == "done"
    assert (done["n_objects"], done["n_objects_processed"]) == (3, 3)
    assert (done["n_leads"], done["n_leads_processed"]) == (2, 2)
    with world.reader() as session:
        left = set(
            session.scalars(select(Contact.name).where(Contact.organization_id == world.org.id))
        )
    assert left == {"Kept 1", "Kept 2"}
    for contact_id in gone:
        assert world.count(ContactEmail, contact_id=contact_id) == 0
    first = get_lead(world, one["id"]).json()
    assert [c["name"] for c in first["contacts"]] == ["Kept 1"]
    assert get_lead(world, two["id"]).json()["contacts"] == []
    assert get_lead(world, three["id"]).json() == three

    events = bulk_events(world, action["id"])
    deleted = {e.object_id: e for e in events if e.action == "deleted"}
    assert set(deleted) == set(gone)
    for contact_id, event in deleted.items():
        assert (event.object_type, event.data) == ("contact", None)
        assert event.previous_data == gone[contact_id]
        assert event.lead_id == gone[contact_id]["lead_id"]
    updated = [e for e in events if e.action == "updated"]
    assert {e.object_id for e in updated} == {one["id"], two["id"]}
    assert all(e.object_type == "lead" and "contacts" in e.changed_fields for e in updated)
    last = [e for e in updated if e.object_id == one["id"]][-1]
    assert last.data == first


def test_never_touches_another_organizations_leads(
    world: BulkWorld, client: TestClient, other_org: Org
) -> None:
    theirs = client.post(
        "/api/v1/lead/", json={"name": "Doomed", "contacts": [{"name": "T"}]}, auth=other_org.auth
    ).json()
    mine = lead_with(world, "Doomed", ["M"])
    action = created(world, {"s_query": leads_named("Doomed")})
    runner = world.runner(job_slice_seconds=0)
    assert runner.run_once() == 1  # loading
    assert runner.run_once() == 1  # resolving: the items are numbered
    # Even an item naming their lead (which no query of ours can select) is left alone.
    with world.factory.begin() as session:
        session.execute(
            insert(BulkActionItem).values(
                bulk_action_id=action["id"], position=1, object_id=theirs["id"]
            )
        )
    world.run_jobs()

    assert get_lead(world, mine["id"]).status_code == 404
    again = client.get(f"/api/v1/lead/{theirs['id']}/", auth=other_org.auth)
    assert again.status_code == 200 and again.json() == theirs
    assert {e.object_id for e in bulk_events(world, action["id"])} == {
        mine["id"],
        mine["contacts"][0]["id"],
    }


@pytest.mark.parametrize(
    ("object_type", "objects"),
    [("call", "calls"), ("custom_activity", "custom activities"), ("form_submission", "form")],
)
def test_types_clove_has_no_objects_of_are_400(
    world: BulkWorld, object_type: str, objects: str
) -> None:
    lead_with(world, "Safe", ["S"])
    response = world.post("delete", {"bulk_object_type": object_type, "s_query": ALL_LEADS})
    assert response.status_code == 400
    message = response.json()["field-errors"]["bulk_object_type"]
    assert "not supported" in message and f"Clove has no {objects}" in message
    assert world.count(BulkAction, organization_id=world.org.id) == 0


def test_bad_object_types_and_mismatched_queries_are_400(world: BulkWorld) -> None:
    lead = lead_with(world, "Safe", ["S"])
    unknown = world.post("delete", {"bulk_object_type": "opportunity", "s_query": ALL_LEADS})
    assert unknown.status_code == 400
    assert "bulk_object_type" in unknown.json()["field-errors"]
    for body in (
        {"bulk_object_type": "contact", "s_query": ALL_LEADS},
        {"bulk_object_type": "lead", "s_query": ALL_CONTACTS},
        {"s_query": ALL_CONTACTS},
    ):
        response = world.post("delete", body)
        assert response.status_code == 400, body
        assert "s_query" in response.json()["field-errors"], response.text
    assert world.count(BulkAction, organization_id=world.org.id) == 0
    world.run_jobs()
    assert get_lead(world, lead["id"]).status_code == 200


def test_results_limit_takes_the_first_in_sort_order(world: BulkWorld) -> None:
    leads = {name: lead_with(world, name, []) for name in ("Zed", "Alpha", "Mid")}
    action = created(world, {"s_query": ALL_LEADS, "sort": by_name("lead"), "results_limit": 2})
    world.run_jobs()
    done = world.get("delete", action["id"])
    assert (done["n_leads"], done["n_leads_processed"], done["n_objects_processed"]) == (2, 2, 2)
    assert get_lead(world, leads["Zed"]["id"]).status_code == 200
    assert get_lead(world, leads["Alpha"]["id"]).status_code == 404
    assert get_lead(world, leads["Mid"]["id"]).status_code == 404


def test_a_query_matching_nothing_is_done_with_zero_counts(world: BulkWorld) -> None:
    lead = lead_with(world, "Someone", ["S"])
    action = created(world, {"s_query": leads_named("Nobody")})
    world.run_jobs()
    done = world.get("delete", action["id"])
    assert done["status"] == "done"
    assert (done["n_leads"], done["n_objects"], done["n_objects_processed"]) == (0, 0, 0)
    assert get_lead(world, lead["id"]).status_code == 200
    assert bulk_events(world, action["id"]) == []


def test_a_lead_deleted_meanwhile_counts_as_processed_without_an_event(world: BulkWorld) -> None:
    early, late = lead_with(world, "Doomed Early", []), lead_with(world, "Doomed Late", [])
    action = created(world, {"s_query": leads_named("Doomed")})
    runner = world.runner(job_slice_seconds=0)
    runner.run_once()
    runner.run_once()
    gone = world.client.delete(f"/api/v1/lead/{early['id']}/", auth=world.org.auth)
    assert gone.status_code == 200
    world.run_jobs()
    done = world.get("delete", action["id"])
    assert (done["n_objects"], done["n_objects_processed"], done["n_leads_processed"]) == (2, 2, 2)
    assert [e.object_id for e in bulk_events(world, action["id"])] == [late["id"]]


def test_dry_run_counts_and_samples_and_deletes_nothing(world: BulkWorld) -> None:
    one = lead_with(world, "Doomed One", ["A", "B"])
    two = lead_with(world, "Doomed Two", ["C"])
    leads = world.post("delete", {"s_query": leads_named("Doomed"), "dry_run": True}).json()
    assert (leads["dry_run"], leads["id"], leads["n_leads"], leads["n_objects"]) == (
        True,
        None,
        2,
        2,
    )
    assert sorted(s["name"] for s in leads["sample"]) == ["Doomed One", "Doomed Two"]
    contacts = world.post(
        "delete", {"bulk_object_type": "contact", "s_query": ALL_CONTACTS, "dry_run": True}
    ).json()
    assert (contacts["n_leads"], contacts["n_objects"]) == (2, 3)
    assert sorted(s["name"] for s in contacts["sample"]) == ["A", "B", "C"]
    assert world.count(BulkAction, organization_id=world.org.id) == 0
    assert get_lead(world, one["id"]).json() == one
    assert get_lead(world, two["id"]).json() == two
    with world.reader() as session:
        assert session.scalar(select(Lead.id).where(Lead.id == one["id"])) == one["id"]
