"""`/bulk_action/email/` end to end over HTTP, with a real job runner and a real SMTP sink."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from clove.models import ConnectedAccount, EmailActivity, Event, UnsubscribedEmail
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
from tests.test_membership import add_member

# Close's fields of this kind besides those every bulk action has.
FIELDS = COMMON_FIELDS | {"contact_preference", "email_account_id", "sender", "template_id"}


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def world(
    client: TestClient, org: Org, engine: Engine, database_url: str, sink: SmtpSink
) -> BulkWorld:
    world = make_world(client, org, engine, database_url)
    point_at(world, world.account_id, sink.port)
    return world


def point_at(world: BulkWorld, account_id: str, port: int) -> None:
    """Sends from `account_id` go to the SMTP server on `port`."""
    smtp = {"host": "127.0.0.1", "port": port, "username": "", "security": "none"}
    with world.factory.begin() as session:
        session.execute(
            update(ConnectedAccount).where(ConnectedAccount.id == account_id).values(smtp=smtp)
        )


def body(world: BulkWorld, **values: Any) -> dict[str, Any]:
    return {
        "template_id": world.template_id,
        "s_query": ALL_LEADS,
        "send_done_email": False,
        **values,
    }


def send(world: BulkWorld, **values: Any) -> dict[str, Any]:
    response = world.post("email", body(world, **values))
    assert response.status_code == 200, response.text
    created = dict(response.json())
    world.run_jobs()
    return world.get("email", created["id"])


def recipients(sink: SmtpSink) -> list[str]:
    return sorted(str(m["To"]) for m in sink.messages)


def activities(world: BulkWorld, action_id: str) -> list[EmailActivity]:
    with world.reader() as session:
        return list(
            session.scalars(
                select(EmailActivity)
                .where(EmailActivity.bulk_email_action_id == action_id)
                .order_by(EmailActivity.id)
            )
        )


# --- Sending -------------------------------------------------------------------------------------


def test_each_contacts_first_email_gets_the_rendered_template_once(
    world: BulkWorld, sink: SmtpSink
) -> None:
    world.lead("Acme One", [["ann@x.test", "ann2@x.test"], ["bob@x.test"]])
    world.lead("Acme Two", [["cid@x.test"], []])  # the second contact has no email
    world.lead("Acme Three", [])  # no contacts: no recipient at all
    response = world.post("email", body(world, contact_preference="contact"))
    assert response.status_code == 200, response.text
    created = response.json()
    assert set(created) == FIELDS | EXTENSIONS
    assert created["id"].startswith("bulkemail_")
    assert created["status"] == "created"
    assert created["email_account_id"] == world.account_id
    assert created["sender"] == "sam@clove.test"
    assert created["template_id"] == world.template_id
    assert created["contact_preference"] == "contact"
    assert sink.messages == []  # nothing leaves before the worker runs

    world.run_jobs()

    done = world.get("email", created["id"])
    assert done["status"] == "done"
    assert (done["n_leads"], done["n_leads_processed"]) == (3, 3)
    assert (done["n_objects"], done["n_objects_processed"]) == (4, 4)
    assert done["skipped"] == {"no_email": 1}
    assert recipients(sink) == ["ann@x.test", "bob@x.test", "cid@x.test"]
    by_to = {str(m["To"]): m for m in sink.messages}
    assert by_to["ann@x.test"]["Subject"] == "Hello Contact"
    assert by_to["ann@x.test"].get_content().strip() == "Hi Contact."
    assert by_to["ann@x.test"]["From"] == "Sam Sender <sam@clove.test>"
    rows = activities(world, created["id"])
    assert sorted(r.to[0] for r in rows) == ["ann@x.test", "bob@x.test", "cid@x.test"]
    assert {r.status for r in rows} == {"sent"}
    assert all(r.date_sent is not None and r.template_id == world.template_id for r in rows)
    assert sorted(str(m["Message-ID"]) for m in sink.messages) == sorted(
        r.message_id or "" for r in rows
    )


def test_the_activity_api_shows_the_bulk_action_and_events_carry_its_id(
    world: BulkWorld, sink: SmtpSink
) -> None:
    world.lead("Solo", [["solo@x.test"]])
    done = send(world)
    [row] = activities(world, done["id"])
    response = world.client.get(f"/api/v1/activity/email/{row.id}/", auth=world.org.auth)
    assert response.status_code == 200, response.text
    activity = response.json()
    assert activity["bulk_email_action_id"] == done["id"]
    assert activity["status"] == "sent"
    assert activity["subject"] == "Hello Contact"
    assert activity["template_id"] == world.template_id
    with world.reader() as session:
        events = session.execute(
            select(Event.action, Event.meta, Event.data).where(
                Event.object_type == "activity.email", Event.object_id == row.id
            )
        ).all()
    assert sorted(e.action for e in events) == ["created", "updated"]
    assert all(e.meta["bulk_action_id"] == done["id"] for e in events)
    statuses = {e.action: e.data["status"] for e in events}
    assert statuses == {"created": "outbox", "updated": "sent"}


@pytest.mark.parametrize(
    ("preference", "expected", "objects", "skipped"),
    [
        ("lead", ["a1@x.test", "b1@x.test"], 3, {"no_email": 1}),
        # A lead without contacts has no contact to count.
        ("contact", ["a1@x.test", "a2@x.test", "b1@x.test"], 4, {"no_email": 1}),
        (
            "all",
            ["a1@x.test", "a1b@x.test", "a2@x.test", "b1@x.test", "b1b@x.test"],
            6,
            {"no_email": 1},
        ),
    ],
)
def test_contact_preference_lead_contact_all(
    world: BulkWorld,
    sink: SmtpSink,
    preference: str,
    expected: list[str],
    objects: int,
    skipped: dict[str, int],
) -> None:
    world.lead("Pref A", [["a1@x.test", "a1b@x.test"], ["a2@x.test"]])
    world.lead("Pref B", [["b1@x.test", "b1b@x.test"], []])
    world.lead("Pref C", [])
    done = send(world, contact_preference=preference)
    assert recipients(sink) == expected
    assert (done["n_objects"], done["n_objects_processed"]) == (objects, objects)
    assert done["skipped"] == skipped


def test_unsubscribed_addresses_are_skipped_and_counted(world: BulkWorld, sink: SmtpSink) -> None:
    world.lead("Unsub", [["Gone@x.test"], ["stay@x.test"], []])
    with world.factory.begin() as session:
        session.add(
            UnsubscribedEmail(
                organization_id=world.org.id, email_lower="gone@x.test", email="gone@x.test"
            )
        )
    done = send(world, contact_preference="contact", s_query=leads_named("Unsub"))
    assert recipients(sink) == ["stay@x.test"]
    assert done["skipped"] == {"unsubscribed": 1, "no_email": 1}
    assert [r.to for r in activities(world, done["id"])] == [["stay@x.test"]]


def test_a_refused_recipient_is_an_error_and_the_rest_still_go(
    world: BulkWorld, sink: SmtpSink
) -> None:
    world.lead("Bounce", [["nobody@x.test"], ["somebody@x.test"]])
    sink.recorder.refuse["nobody@x.test"] = "550 5.1.1 No such user"
    done = send(world, contact_preference="contact")
    assert recipients(sink) == ["somebody@x.test"]
    assert {r.to[0]: r.status for r in activities(world, done["id"])} == {
        "nobody@x.test": "error",
        "somebody@x.test": "sent",
    }
    assert done["skipped"] == {"send_failed": 1}


def test_sending_from_another_members_account_with_send_as(
    world: BulkWorld, sink: SmtpSink
) -> None:
    bob = add_member(world.factory, world.org)
    world.lead("Granted", [["g@x.test"]])
    grant = {"allowing_user_id": world.org.user_id, "allowed_user_id": bob.user_id}
    assert world.client.post("/api/v1/send_as/", json=grant, auth=world.org.auth).status_code == 201
    response = world.client.post(
        "/api/v1/bulk_action/email/",
        json=body(world, email_account_id=world.account_id, sender="SAM@clove.test"),
        auth=bob.auth,
    )
    assert response.status_code == 200, response.text
    assert response.json()["sender"] == "sam@clove.test"
    world.run_jobs()
    assert recipients(sink) == ["g@x.test"]


# --- Requests ------------------------------------------------------------------------------------

INVALID: list[tuple[dict[str, Any], str]] = [
    ({"template_id": None}, "template_id"),
    ({"template_id": "tmpl_missing"}, "template_id"),
    ({"contact_preference": "everyone"}, "contact_preference"),
    ({"email_account_id": "emailacct_missing"}, "email_account_id"),
    ({"sender": "someone@else.test"}, "sender"),
    ({"s_query": None}, "s_query"),
    ({"s_query": {"type": "nope"}}, "s_query"),
    ({"results_limit": -1}, "results_limit"),
    ({"unknown_field": 1}, "unknown_field"),
]


@pytest.mark.parametrize(("change", "field"), INVALID, ids=[f for _, f in INVALID])
def test_invalid_requests_are_400_naming_the_field_and_create_nothing(
    world: BulkWorld, change: dict[str, Any], field: str
) -> None:
    payload = body(world)
    for key, value in change.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    world.assert_refused("email", payload, field)


def test_other_organizations_and_members_accounts_and_templates_are_refused(
    world: BulkWorld, other_org: Org, engine: Engine, database_url: str
) -> None:
    theirs = make_world(world.client, other_org, engine, database_url)
    bob = add_member(world.factory, world.org)  # no account, no Send As
    cases: list[tuple[Any, dict[str, Any], str]] = [
        (world.org, {"template_id": theirs.template_id}, "template_id"),
        (world.org, {"email_account_id": theirs.account_id}, "email_account_id"),
        (bob, {"email_account_id": world.account_id}, "email_account_id"),
        (bob, {}, "email_account_id"),  # no account of his own to default to
    ]
    before = world.bulk_rows()
    for who, change, field in cases:
        response = world.client.post(
            "/api/v1/bulk_action/email/", json=body(world) | change, auth=who.auth
        )
        assert response.status_code == 400, response.text
        assert field in response.json()["field-errors"], response.text
    assert world.bulk_rows() == before


def test_list_filters_by_template_id(world: BulkWorld) -> None:
    with world.factory.begin() as session:
        from clove.kit.ids import new_id
        from clove.models import EmailTemplate

        other = EmailTemplate(
            id=new_id("tmpl"), organization_id=world.org.id, name="B", subject="S", body="B"
        )
        session.add(other)
        other_id = other.id
    first = world.post("email", body(world)).json()["id"]
    second = world.post("email", body(world, template_id=other_id)).json()["id"]
    path = "/api/v1/bulk_action/email/"
    listed = world.client.get(path, auth=world.org.auth).json()
    assert [a["id"] for a in listed["data"]] == [second, first]
    for template_id, expected in ((world.template_id, [first]), (other_id, [second])):
        page = world.client.get(path, params={"template_id": template_id}, auth=world.org.auth)
        assert [a["id"] for a in page.json()["data"]] == expected
    none = world.client.get(path, params={"template_id": "tmpl_x"}, auth=world.org.auth)
    assert none.json() == {"data": [], "has_more": False}


def test_dry_run_counts_and_samples_without_writing_or_sending(
    world: BulkWorld, sink: SmtpSink
) -> None:
    world.lead("Dry", [["d1@x.test"], []])
    before = world.bulk_rows()
    response = world.post("email", body(world, contact_preference="contact", dry_run=True))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["dry_run"] is True and result["id"] is None
    assert (result["n_leads"], result["n_objects"]) == (1, 2)
    assert result["skipped"] == {"no_email": 1}
    assert [s["email"] for s in result["sample"]] == ["d1@x.test"]
    world.run_jobs()
    assert world.bulk_rows() == before and sink.messages == []
    assert world.count(EmailActivity, organization_id=world.org.id) == 0


# --- Crashes -------------------------------------------------------------------------------------


def _run_worker_process(world: BulkWorld, crash_at: str | None) -> int:
    """Runs the bulk jobs (2 leads a chunk) in another process, killed at `crash_at`."""
    env = {**os.environ, "CLOVE_TEST_CRASH_AT": crash_at or ""}
    script = (
        "import sys; from clove.db import make_engine, writing_session_factory;"
        "from clove.worker.jobs import JobRunner; from clove.worker.runner import job_handlers;"
        "from tests.conftest import test_settings;"
        "url = sys.argv[1]; config = test_settings(url, bulk_chunk_size=2);"
        "JobRunner(writing_session_factory(make_engine(url)), job_handlers(config),"
        " lease_seconds=1).run_until_idle()"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, world.database_url],
        env=env,
        capture_output=True,
        timeout=60,
        cwd=os.getcwd(),
    )
    assert done.returncode in (0, -9), done.stderr.decode()
    return done.returncode


@pytest.mark.parametrize("crash_at", ["bulk_email_before_smtp", "bulk_email_after_smtp"])
def test_a_worker_killed_after_a_chunk_commits_never_sends_twice(
    world: BulkWorld, sink: SmtpSink, crash_at: str
) -> None:
    for name in "ABCDE":  # 3 chunks of 2, 1 and 0 leads... of 2 leads each
        world.lead(f"Crash {name}", [[f"{name.lower()}@x.test"]])
    created = world.post("email", body(world)).json()
    assert _run_worker_process(world, crash_at) == -9
    # Killed after the first chunk's commit: before any message, or after all of them.
    killed_after = recipients(sink)
    assert len(killed_after) == {"bulk_email_before_smtp": 0, "bulk_email_after_smtp": 2}[crash_at]
    staged = activities(world, created["id"])
    assert len(staged) == 2 and {r.status for r in staged} == {"outbox"}

    time.sleep(1.1)  # the dead worker's lease runs out
    assert _run_worker_process(world, None) == 0

    sent = [str(m["Message-ID"]) for m in sink.messages]
    assert len(sent) == len(set(sent)), "an email was sent twice"
    assert Counter(recipients(sink)).most_common(1)[0][1] == 1
    unconfirmed = {r.id for r in staged}
    rows = activities(world, created["id"])
    assert len(rows) == 5
    assert {r.status for r in rows if r.id in unconfirmed} == {"error"}
    assert {r.status for r in rows if r.id not in unconfirmed} == {"sent"}
    # The three later recipients, plus whatever the killed worker sent before dying.
    assert len(sent) == 3 + len(killed_after)
    done = world.get("email", created["id"])
    assert done["status"] == "done"
    assert done["skipped"] == {"send_unconfirmed": 2}
    assert done["n_objects_processed"] == 5
