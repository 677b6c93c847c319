"""`/bulk_action/sequence_subscription/` end to end over HTTP, with a real job runner."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from clove.bulk_action.service import timezone_from_name, timezone_name
from clove.models import BulkAction, Event, SequenceSubscription, UnsubscribedEmail, User
from tests.bulk_world import (
    ALL_LEADS,
    COMMON_FIELDS,
    EXTENSIONS,
    BulkWorld,
    leads_named,
    make_world,
)
from tests.conftest import Org
from tests.smtp_sink import SmtpSink

# Close's fields of this kind besides those every bulk action has.
FIELDS = COMMON_FIELDS | {
    "action_type",
    "calls_assigned_to",
    "contact_preference",
    "from_phone_number_id",
    "sender_account_id",
    "sender_email",
    "sender_name",
    "sequence_id",
}


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


# --- Validation ----------------------------------------------------------------------------------


INVALID = [
    ({"action_type": None}, "action_type"),
    ({"action_type": "unsubscribe"}, "action_type"),
    ({"sequence_id": None}, "sequence_id"),
    ({"sender_account_id": None}, "sender_account_id"),
    ({"sender_name": None}, "sender_name"),
    ({"sender_email": None}, "sender_email"),
    ({"contact_preference": None}, "contact_preference"),
    ({"contact_preference": "everyone"}, "contact_preference"),
    ({"sequence_id": "seq_doesnotexist"}, "sequence_id"),
    ({"sender_account_id": "emailacct_nope"}, "sender_account_id"),
    ({"sender_email": "someone-else@clove.test"}, "sender_email"),
    ({"from_phone_number_id": "phon_nope"}, "from_phone_number_id"),
    ({"calls_assigned_to": ["user_stranger"]}, "calls_assigned_to"),
    ({"s_query": None}, "s_query"),
    ({"s_query": {"type": "bogus"}}, "s_query"),
    ({"s_query": {"type": "object_type", "object_type": "contact"}}, "s_query"),
    (
        {
            "s_query": {
                "type": "field_condition",
                "field": {"type": "regular_field", "object_type": "lead", "field_name": "nope"},
                "condition": {"type": "text", "mode": "full_words", "value": "x"},
            }
        },
        "s_query",
    ),
    ({"sort": [{"direction": "sideways", "field": {}}]}, "sort"),
    ({"results_limit": -1}, "results_limit"),
    ({"results_limit": "10"}, "results_limit"),
    ({"send_done_email": "yes"}, "send_done_email"),
    ({"unknown_field": 1}, "unknown_field"),
]


@pytest.mark.parametrize(("change", "field"), INVALID, ids=[f for _, f in INVALID])
def test_invalid_requests_are_400_naming_the_field_and_create_nothing(
    world: BulkWorld, change: dict[str, object], field: str
) -> None:
    seq = world.sequence()
    body = world.subscribe_body(seq)
    for key, value in change.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    world.assert_refused("sequence_subscription", body, field)


def test_another_organizations_sequence_and_account_are_refused(
    world: BulkWorld, other_org: Org, engine: Engine, database_url: str
) -> None:
    theirs = make_world(world.client, other_org, engine, database_url)
    their_seq = theirs.sequence()
    for change, field in (
        ({"sequence_id": their_seq}, "sequence_id"),
        ({"sender_account_id": theirs.account_id}, "sender_account_id"),
    ):
        body = world.subscribe_body(world.sequence()) | change
        response = world.post("sequence_subscription", body)
        assert response.status_code == 400
        assert field in response.json()["field-errors"]
    mine = world.post("sequence_subscription", world.subscribe_body(world.sequence())).json()
    response = theirs.client.get(
        f"/api/v1/bulk_action/sequence_subscription/{mine['id']}/", auth=other_org.auth
    )
    assert response.status_code == 404
    listed = theirs.client.get("/api/v1/bulk_action/sequence_subscription/", auth=other_org.auth)
    assert listed.json() == {"data": [], "has_more": False}


def test_list_is_newest_first_with_skip_limit_and_fields(world: BulkWorld) -> None:
    seq = world.sequence()
    ids = [
        world.post("sequence_subscription", world.subscribe_body(seq)).json()["id"] for _ in "abc"
    ]
    path = "/api/v1/bulk_action/sequence_subscription/"
    page = world.client.get(path, params={"_limit": 2}, auth=world.org.auth).json()
    assert [a["id"] for a in page["data"]] == ids[::-1][:2]
    assert page["has_more"] is True
    rest = world.client.get(path, params={"_skip": 2}, auth=world.org.auth).json()
    assert [a["id"] for a in rest["data"]] == ids[:1]
    narrow = world.client.get(path, params={"_fields": "id,status"}, auth=world.org.auth).json()
    assert all(set(a) == {"id", "status"} for a in narrow["data"])


# --- Dry run, events, done email -----------------------------------------------------------------


def test_dry_run_counts_and_samples_without_writing(world: BulkWorld) -> None:
    seq = world.sequence()
    world.lead("Dry", [["d1@x.test"], []])
    before = world.bulk_rows()
    response = world.post("sequence_subscription", world.subscribe_body(seq, dry_run=True))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dry_run"] is True and body["id"] is None
    assert (body["n_leads"], body["n_objects"]) == (1, 2)
    assert body["skipped"] == {"no_email": 1}
    assert [s["contact_email"] for s in body["sample"]] == ["d1@x.test"]
    assert world.bulk_rows() == before
    assert subscribed(world, seq) == []


def test_lifecycle_events_and_the_done_email(
    world: BulkWorld, engine: Engine, database_url: str
) -> None:
    seq = world.sequence()
    world.lead("Mail", [["m@x.test"]])
    action = world.post("sequence_subscription", world.subscribe_body(seq)).json()
    with SmtpSink() as sink:
        world.run_jobs(smtp_host="127.0.0.1", smtp_port=sink.port, smtp_security="none")
        assert len(sink.messages) == 1
        message = sink.messages[0]
    with world.reader() as session:
        admin = session.scalar(select(User.email).where(User.id == world.org.user_id))
        events = session.scalars(
            select(Event).where(Event.object_id == action["id"]).order_by(Event.date_created)
        ).all()
    assert message["To"] == admin
    assert "done" in message["Subject"]
    assert (events[0].action, events[-1].action) == ("created", "completed")
    assert {e.object_type for e in events} == {"bulk_action.sequence_subscription"}
    statuses = [e.data["status"] for e in events]
    assert statuses[:3] == ["created", "loading", "processing"]
    assert statuses[-1] == "done"


def test_no_done_email_when_not_asked(world: BulkWorld) -> None:
    seq = world.sequence()
    world.lead("Quiet", [["q@x.test"]])
    world.post("sequence_subscription", world.subscribe_body(seq, send_done_email=False))
    with SmtpSink() as sink:
        world.run_jobs(smtp_host="127.0.0.1", smtp_port=sink.port, smtp_security="none")
        assert sink.messages == []


def test_resume_is_refused_seven_days_after_the_pause(world: BulkWorld) -> None:
    seq = world.sequence()
    action = world.post("sequence_subscription", world.subscribe_body(seq)).json()
    path = f"/api/v1/bulk_action/sequence_subscription/{action['id']}/"
    paused = world.client.put(path, json={"status": "paused"}, auth=world.org.auth).json()
    assert paused["status"] == "paused"
    with world.factory.begin() as session:
        row = session.get(BulkAction, action["id"])
        assert row is not None and row.paused_at is not None
        row.paused_at -= timedelta(days=7, minutes=1)
    refused = world.client.put(path, json={"status": "resuming"}, auth=world.org.auth)
    assert refused.status_code == 400
    assert "7 days" in refused.json()["field-errors"]["status"]
    bad = world.client.put(path, json={"status": "done"}, auth=world.org.auth)
    assert bad.status_code == 400


# --- pause, resume, resume_finished, reassign ----------------------------------------------------


def statuses(world: BulkWorld, sequence_id: str) -> list[tuple[str, str | None]]:
    with world.reader() as session:
        rows = session.execute(
            select(SequenceSubscription.status, SequenceSubscription.status_reason)
            .where(SequenceSubscription.sequence_id == sequence_id)
            .order_by(SequenceSubscription.contact_id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_pause_then_resume_the_subscriptions_of_matching_leads(world: BulkWorld) -> None:
    seq, other = world.sequence(), world.sequence()
    world.lead("Target", [["t1@x.test"], ["t2@x.test"]])
    world.lead("Bystander", [["b@x.test"]])
    for sequence_id in (seq, other):
        world.post("sequence_subscription", world.subscribe_body(sequence_id))
    world.run_jobs()

    pause = {"action_type": "pause", "sequence_id": seq, "s_query": leads_named("Target")}
    action = world.post("sequence_subscription", pause).json()
    world.run_jobs()
    assert sorted(statuses(world, seq)) == [
        ("active", None),
        ("paused", "bulk-action"),
        ("paused", "bulk-action"),
    ]
    assert all(s == "active" for s, _ in statuses(world, other))
    done = world.get("sequence_subscription", action["id"])
    assert (done["n_objects"], done["n_objects_processed"]) == (2, 2)
    with world.reader() as session:
        metas = session.scalars(
            select(Event.meta).where(
                Event.organization_id == world.org.id,
                Event.object_type == "sequence_subscription",
                Event.action == "updated",
            )
        ).all()
    assert len(metas) == 2 and all(m["bulk_action_id"] == action["id"] for m in metas)

    # Without sequence_id: every sequence's subscriptions of the matching leads.
    world.post("sequence_subscription", {"action_type": "pause", "s_query": leads_named("Target")})
    world.run_jobs()
    assert sorted(statuses(world, other))[1:] == [("paused", "bulk-action")] * 2
    world.post("sequence_subscription", {"action_type": "resume", "s_query": ALL_LEADS})
    world.run_jobs()
    assert all(s == "active" for s, _ in statuses(world, seq) + statuses(world, other))


def test_resume_finished_and_reassign(world: BulkWorld) -> None:
    seq = world.sequence()
    world.lead("Again", [["again@x.test"]])
    world.post("sequence_subscription", world.subscribe_body(seq))
    world.run_jobs()
    with world.factory.begin() as session:
        mine = select(SequenceSubscription).where(SequenceSubscription.sequence_id == seq)
        for sub in session.scalars(mine):
            sub.status, sub.status_reason = "finished", "finished"
    resume = {"action_type": "resume_finished", "sequence_id": seq, "s_query": ALL_LEADS}
    world.post("sequence_subscription", resume)
    world.run_jobs()
    assert statuses(world, seq) == [("active", None)]

    reassign = {
        "action_type": "reassign",
        "sequence_id": seq,
        "s_query": ALL_LEADS,
        "sender_account_id": world.account_id,
        "sender_email": "sam@clove.test",
        "sender_name": "Samantha",
        "calls_assigned_to": [world.org.user_id],
    }
    response = world.post("sequence_subscription", reassign)
    assert response.status_code == 200, response.text
    world.run_jobs()
    with world.reader() as session:
        sub = session.scalars(
            select(SequenceSubscription).where(SequenceSubscription.sequence_id == seq)
        ).one()
    assert (sub.sender_name, sub.calls_assigned_to) == ("Samantha", [world.org.user_id])
    nothing = world.post("sequence_subscription", {"action_type": "reassign", "s_query": ALL_LEADS})
    assert nothing.status_code == 400


# --- clove bulk watch ----------------------------------------------------------------------------


def test_clove_bulk_watch_follows_an_action_until_it_is_done(
    world: BulkWorld, database_url: str
) -> None:
    seq = world.sequence()
    for i in range(4):
        world.lead(f"Watched {i}", [[f"w{i}@x.test"]])
    action = world.post("sequence_subscription", world.subscribe_body(seq)).json()
    command = [sys.executable, "-m", "clove", "bulk", "watch", action["id"], "--interval", "0.05"]
    env = {**os.environ, "CLOVE_DATABASE_URL": database_url, "COLUMNS": "200"}
    watcher = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        assert watcher.poll() is None, "it ended before the action did"
        world.run_jobs()
        _, output = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, output
    assert f"{action['id']}: done. objects 4/4" in output

    unknown = subprocess.run(
        [*command[:5], "bulkseqsub_nope"], env=env, capture_output=True, text=True, timeout=30
    )
    assert unknown.returncode == 2
    assert "No bulk action bulkseqsub_nope" in unknown.stderr


def test_bulk_action_events_are_listed_by_the_event_log(world: BulkWorld) -> None:
    seq = world.sequence()
    world.lead("Logged", [["log@x.test"]])
    action = world.post("sequence_subscription", world.subscribe_body(seq)).json()
    world.run_jobs()
    response = world.client.get(
        "/api/v1/event/",
        params={"object_type": "bulk_action.sequence_subscription", "action": "completed"},
        auth=world.org.auth,
    )
    assert response.status_code == 200, response.text
    events = response.json()["data"]
    assert [e["object_id"] for e in events] == [action["id"]]
    assert events[0]["data"]["status"] == "done"
    assert events[0]["changed_fields"] == ["date_updated", "status"]


@pytest.mark.parametrize("offset", ["5.5", "-4", "0"])
def test_the_request_time_zone_is_kept_for_the_worker(world: BulkWorld, offset: str) -> None:
    seq = world.sequence()
    response = world.client.post(
        "/api/v1/bulk_action/sequence_subscription/",
        json=world.subscribe_body(seq),
        headers={"X-TZ-Offset": offset},
        auth=world.org.auth,
    )
    with world.reader() as session:
        action = session.get(BulkAction, response.json()["id"])
        assert action is not None
        stored = action.search_timezone
    hours = float(offset)
    back = timezone_from_name(stored).utcoffset(None)
    assert back is not None and back.total_seconds() == hours * 3600
    assert stored == ("UTC" if hours == 0 else timezone_name(timezone_from_name(stored)))


def test_a_query_that_became_invalid_ends_the_action_in_error_at_once(world: BulkWorld) -> None:
    seq = world.sequence()
    world.lead("Custom", [["cf@x.test"]])
    field = world.client.post(
        "/api/v1/custom_field/lead/", json={"name": "Tier", "type": "text"}, auth=world.org.auth
    ).json()
    s_query = {
        "type": "and",
        "queries": [
            {"type": "object_type", "object_type": "lead"},
            {
                "type": "field_condition",
                "field": {"type": "custom_field", "custom_field_id": field["id"]},
                "condition": {"type": "text", "mode": "full_words", "value": "gold"},
            },
        ],
    }
    action = world.post("sequence_subscription", world.subscribe_body(seq, s_query=s_query))
    assert action.status_code == 200, action.text
    deleted = world.client.delete(f"/api/v1/custom_field/lead/{field['id']}/", auth=world.org.auth)
    assert deleted.status_code == 200
    world.run_jobs()  # no retries: it would not help
    failed = world.get("sequence_subscription", action.json()["id"])
    assert failed["status"] == "error"
    with world.reader() as session:
        row = session.get(BulkAction, failed["id"])
        assert row is not None and row.error is not None
        assert "no longer valid" in row.error
