"""`/bulk_action/sequence_subscription/` end to end over HTTP, with a real job runner."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from clove.models import Event, SequenceSubscription, UnsubscribedEmail
from tests.bulk_world import ALL_LEADS, BulkWorld, leads_named, make_world
from tests.conftest import Org

FIELDS = {
    "action_type",
    "calls_assigned_to",
    "contact_preference",
    "created_by",
    "date_created",
    "date_updated",
    "from_phone_number_id",
    "id",
    "n_leads",
    "n_leads_processed",
    "n_objects",
    "n_objects_processed",
    "organization_id",
    "query",
    "results_limit",
    "s_query",
    "send_done_email",
    "sender_account_id",
    "sender_email",
    "sender_name",
    "sequence_id",
    "sort",
    "status",
    "updated_by",
}
EXTENSIONS = {"skipped"}


@pytest.fixture
def world(client: TestClient, org: Org, engine: Engine, database_url: str) -> BulkWorld:
    return make_world(client, org, engine, database_url)


def subscribed(world: BulkWorld, sequence_id: str) -> list[tuple[str, str | None, str | None]]:
    with world.reader() as session:
        rows = session.execute(
            select(
                SequenceSubscription.contact_id,
                SequenceSubscription.contact_email,
                SequenceSubscription.bulk_action_id,
            ).where(SequenceSubscription.sequence_id == sequence_id)
        )
        return sorted(tuple(r) for r in rows)  # type: ignore[misc]


def test_subscribe_every_contact_then_done_with_true_counters(world: BulkWorld) -> None:
    seq = world.sequence()
    one = world.lead("Acme One", [["a1@x.test", "a1b@x.test"], ["a2@x.test"]])
    two = world.lead("Acme Two", [["b1@x.test"], []])  # the second contact has no email
    world.lead("Acme Three", [])  # no contacts at all

    response = world.post("sequence_subscription", world.subscribe_body(seq))
    assert response.status_code == 200, response.text
    created = response.json()
    assert set(created) == FIELDS | EXTENSIONS
    assert created["id"].startswith("bulkseqsub_")
    assert created["status"] == "created"
    assert (created["n_leads"], created["n_objects"]) == (None, None)
    assert (created["n_leads_processed"], created["n_objects_processed"]) == (0, 0)
    assert created["send_done_email"] is True
    assert created["s_query"] == ALL_LEADS
    assert created["sort"] == []
    assert created["date_created"].endswith("+00:00")

    world.run_jobs()

    done = world.get("sequence_subscription", created["id"])
    assert done["status"] == "done"
    assert (done["n_leads"], done["n_leads_processed"]) == (3, 3)
    assert (done["n_objects"], done["n_objects_processed"]) == (4, 4)
    assert done["skipped"] == {"no_email": 1}
    contacts = {c["id"]: c for lead in (one, two) for c in lead["contacts"]}
    rows = subscribed(world, seq)
    assert [(c, e) for c, e, _ in rows] == sorted(
        (cid, c["emails"][0]["email"]) for cid, c in contacts.items() if c["emails"]
    )
    assert {b for _, _, b in rows} == {created["id"]}


def test_new_subscriptions_look_like_api_ones_and_have_events(world: BulkWorld) -> None:
    seq = world.sequence()
    lead = world.lead("Solo", [["solo@x.test"]])
    action = world.post("sequence_subscription", world.subscribe_body(seq)).json()
    world.run_jobs()

    listed = world.client.get(
        "/api/v1/sequence_subscription/", params={"lead_id": lead["id"]}, auth=world.org.auth
    ).json()["data"]
    assert len(listed) == 1
    sub = listed[0]
    assert sub["sequence_id"] == seq
    assert sub["contact_email"] == "solo@x.test"
    assert (sub["sender_name"], sub["sender_email"]) == ("Sam Sender", "sam@clove.test")
    assert sub["status"] == "active"
    assert sub["id"].startswith("sub_")
    with world.reader() as session:
        event = session.scalars(select(Event).where(Event.object_id == sub["id"])).one()
    assert event.action == "created"
    assert event.meta["bulk_action_id"] == action["id"]
    assert event.data == sub
    assert event.lead_id == lead["id"]


def test_lead_preference_takes_each_leads_first_contact(world: BulkWorld) -> None:
    seq = world.sequence()
    lead = world.lead("Pref", [["first@x.test"], ["second@x.test"]])
    action = world.post(
        "sequence_subscription", world.subscribe_body(seq, contact_preference="lead")
    ).json()
    world.run_jobs()
    rows = subscribed(world, seq)
    assert [(c, e) for c, e, _ in rows] == [(lead["contacts"][0]["id"], "first@x.test")]
    done = world.get("sequence_subscription", action["id"])
    assert (done["n_objects"], done["n_objects_processed"]) == (1, 1)


def test_skips_unsubscribed_and_previously_subscribed_contacts(world: BulkWorld) -> None:
    seq = world.sequence()
    world.lead("Skip", [["gone@x.test"], ["again@x.test"], ["fresh@x.test"]])
    with world.factory.begin() as session:
        session.add(
            UnsubscribedEmail(
                organization_id=world.org.id, email_lower="gone@x.test", email="gone@x.test"
            )
        )
    first = world.post(
        "sequence_subscription", world.subscribe_body(seq, s_query=leads_named("Skip"))
    ).json()
    world.run_jobs()
    assert world.get("sequence_subscription", first["id"])["skipped"] == {"unsubscribed": 1}
    second = world.post("sequence_subscription", world.subscribe_body(seq)).json()
    world.run_jobs()
    done = world.get("sequence_subscription", second["id"])
    assert done["skipped"] == {"unsubscribed": 1, "already_subscribed": 2}
    assert len(subscribed(world, seq)) == 2


def test_a_query_matching_no_lead_is_done_with_zero_counts(world: BulkWorld) -> None:
    seq = world.sequence()
    world.lead("Someone", [["s@x.test"]])
    action = world.post(
        "sequence_subscription", world.subscribe_body(seq, s_query=leads_named("Nobody"))
    ).json()
    world.run_jobs()
    done = world.get("sequence_subscription", action["id"])
    assert done["status"] == "done"
    assert (done["n_leads"], done["n_objects"], done["n_objects_processed"]) == (0, 0, 0)
    assert subscribed(world, seq) == []


def test_text_query_sort_and_results_limit(world: BulkWorld) -> None:
    seq = world.sequence()
    names = ["Zed Co", "Alpha Co", "Mid Co"]
    for name in names:
        world.lead(name, [[f"{name.split()[0].lower()}@x.test"]])
    sort = [
        {
            "direction": "asc",
            "field": {"type": "regular_field", "object_type": "lead", "field_name": "name"},
        }
    ]
    action = world.post(
        "sequence_subscription",
        world.subscribe_body(seq, sort=sort, results_limit=2, s_query=ALL_LEADS),
    ).json()
    world.run_jobs()
    assert sorted(e for _, e, _ in subscribed(world, seq)) == ["alpha@x.test", "mid@x.test"]
    assert world.get("sequence_subscription", action["id"])["n_leads"] == 2

    other = world.sequence()
    body = world.subscribe_body(other, query='name:"Zed Co"')
    del body["s_query"]
    text = world.post("sequence_subscription", body).json()
    assert text["query"] == 'name:"Zed Co"'
    world.run_jobs()
    assert [e for _, e, _ in subscribed(world, other)] == ["zed@x.test"]


def test_pause_and_resume_mid_run(world: BulkWorld) -> None:
    seq = world.sequence()
    for i in range(6):
        world.lead(f"Lead {i}", [[f"l{i}@x.test"]])
    action = world.post("sequence_subscription", world.subscribe_body(seq)).json()
    path = f"/api/v1/bulk_action/sequence_subscription/{action['id']}/"
    runner = world.runner(job_slice_seconds=0)  # one chunk per claim
    for _ in range(3):  # loading, resolving, then one chunk of two leads
        assert runner.run_once() == 1
    paused = world.client.put(path, json={"status": "paused"}, auth=world.org.auth)
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    world.run_jobs()
    halfway = world.get("sequence_subscription", action["id"])
    assert halfway["status"] == "paused"
    assert 0 < halfway["n_leads_processed"] < 6
    assert len(subscribed(world, seq)) == halfway["n_objects_processed"]

    resumed = world.client.put(path, json={"status": "resuming"}, auth=world.org.auth)
    assert resumed.json()["status"] == "resuming"
    world.run_jobs()
    done = world.get("sequence_subscription", action["id"])
    assert done["status"] == "done"
    assert done["n_leads_processed"] == 6
    assert len(subscribed(world, seq)) == 6
    again = world.client.put(path, json={"status": "paused"}, auth=world.org.auth)
    assert again.status_code == 400
