"""Webhook delivery end to end: events written through the API reach a real HTTP receiver on
loopback, signed as Close signs them, retried on Close's schedule, never sent to a paused
subscription or another organization, and not lost when a worker dies mid-request."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from clove.db import writing_session_factory
from clove.kit.dates import utcnow
from clove.models import WebhookDelivery
from clove.webhook.delivery import PRUNE_INTERVAL, RETRY_WINDOW, Dispatcher, retry_delay
from tests.bulk_world import make_world
from tests.conftest import Org
from tests.conftest import test_settings as settings_for
from tests.webhook_receiver import Receiver

CLOVE = str(Path(sys.executable).with_name("clove"))


class Clock:
    """A clock the test moves by hand, starting now."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def catch_up(self, **delta: float) -> None:
        """Moves to the real time (what requests stamp their changes with), plus `delta`."""
        self.now = utcnow() + timedelta(**delta)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return writing_session_factory(engine)


@pytest.fixture
def dispatchers(factory: sessionmaker[Session], database_url: str, clock: Clock) -> Iterator[Any]:
    """Makes dispatchers for one organization each (tests share the database)."""
    made: list[Dispatcher] = []

    def make(org: Org, **settings: Any) -> Dispatcher:
        config = settings_for(database_url, **settings)
        dispatcher = Dispatcher(factory, config, clock=clock, organization_id=org.id)
        made.append(dispatcher)
        return dispatcher

    yield make
    for dispatcher in made:
        dispatcher.close()


def subscribe(
    client: TestClient, org: Org, receiver: Receiver, *events: str | dict[str, Any]
) -> str:
    """Creates a subscription through the API to `events` ("lead.created", or a full entry)."""
    wanted = [
        e
        if isinstance(e, dict)
        else dict(zip(("object_type", "action"), e.rsplit(".", 1), strict=True))
        for e in events
    ]
    response = client.post(
        "/api/v1/webhook/", json={"url": receiver.url, "events": wanted}, auth=org.auth
    )
    assert response.status_code == 201, response.text
    hook = response.json()
    receiver.keys[hook["id"]] = hook["signature_key"]
    return str(hook["id"])


def new_lead(client: TestClient, org: Org, name: str = "Acme", **fields: Any) -> str:
    response = client.post("/api/v1/lead/", json={"name": name, **fields}, auth=org.auth)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def rename(client: TestClient, org: Org, lead_id: str, name: str) -> None:
    response = client.put(f"/api/v1/lead/{lead_id}/", json={"name": name}, auth=org.auth)
    assert response.status_code == 200, response.text


def deliveries(client: TestClient, org: Org, webhook_id: str, **params: str) -> list[Any]:
    response = client.get(f"/api/v1/webhook/{webhook_id}/delivery/", params=params, auth=org.auth)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


# --- what arrives ---------------------------------------------------------------------------------


def test_each_matching_event_arrives_once_signed_with_closes_payload(
    client: TestClient, org: Org, receiver: Receiver, dispatchers: Any
) -> None:
    hook = subscribe(client, org, receiver, "lead.created", "lead.updated")
    lead = new_lead(client, org)
    rename(client, org, lead, "Acme Inc")
    template = client.post(
        "/api/v1/email_template/", json={"name": "Not wanted", "body": "Hi"}, auth=org.auth
    )
    assert template.status_code == 200, template.text

    dispatchers(org).run_until_idle()

    # Requests go out in parallel, so arrival order is not promised (nor is it by Close).
    assert sorted(receiver.events()) == [("lead.created", lead), ("lead.updated", lead)]
    for received in receiver.received:
        assert received.signature_ok
        assert received.headers["content-type"] == "application/json"
        assert received.headers["close-sig-timestamp"].isdigit()
        assert abs(int(received.headers["close-sig-timestamp"]) - time.time()) < 60
        assert set(received.payload) == {"subscription_id", "event"}
        assert received.payload["subscription_id"] == hook
        # The event is the one the event log shows.
        logged = client.get(f"/api/v1/event/{received.event['id']}/", auth=org.auth)
        assert received.event == logged.json()
    [update] = [r.event for r in receiver.received if r.event["action"] == "updated"]
    assert "name" in update["changed_fields"]
    history = deliveries(client, org, hook)
    assert [d["status"] for d in history] == ["delivered", "delivered"]
    assert {d["event_id"] for d in history} == {r.event["id"] for r in receiver.received}
    assert all(d["attempts"] == 1 and d["last_status_code"] == 200 for d in history)

    # Nothing is sent twice: another pass finds nothing to do.
    assert dispatchers(org).run_until_idle() == 0
    assert len(receiver.received) == 2


def test_extra_filter_decides_which_events_of_a_type_are_sent(
    client: TestClient, org: Org, receiver: Receiver, dispatchers: Any
) -> None:
    only_renamed_to_big = {
        "object_type": "lead",
        "action": "updated",
        "extra_filter": {
            "type": "and",
            "filters": [
                {
                    "type": "field_accessor",
                    "field": "changed_fields",
                    "filter": {"type": "contains", "value": "name"},
                },
                {
                    "type": "field_accessor",
                    "field": "data",
                    "filter": {
                        "type": "field_accessor",
                        "field": "name",
                        "filter": {"type": "equals", "value": "Big"},
                    },
                },
            ],
        },
    }
    subscribe(client, org, receiver, only_renamed_to_big)
    lead = new_lead(client, org, "Small")
    rename(client, org, lead, "Medium")
    rename(client, org, lead, "Big")
    client.put(f"/api/v1/lead/{lead}/", json={"description": "x"}, auth=org.auth)

    dispatchers(org).run_until_idle()

    assert [r.event["data"]["name"] for r in receiver.received] == ["Big"]


def test_a_bad_extra_filter_is_a_400_naming_where(client: TestClient, org: Org) -> None:
    response = client.post(
        "/api/v1/webhook/",
        json={
            "url": "https://hooks.example.com/",
            "events": [
                {"object_type": "lead", "action": "created"},
                {"object_type": "lead", "action": "updated", "extra_filter": {"type": "nope"}},
            ],
        },
        auth=org.auth,
    )
    assert response.status_code == 400
    assert list(response.json()["field-errors"]) == ["events[1].extra_filter.type"]


def test_events_from_before_the_subscription_are_not_sent(
    client: TestClient, org: Org, receiver: Receiver, dispatchers: Any
) -> None:
    before = new_lead(client, org, "Before")
    subscribe(client, org, receiver, "lead.created")
    after = new_lead(client, org, "After")

    dispatchers(org).run_until_idle()

    assert receiver.events() == [("lead.created", after)]
    assert before != after


def test_nothing_reaches_a_paused_subscription_or_another_organization(
    client: TestClient,
    org: Org,
    other_org: Org,
    receiver: Receiver,
    dispatchers: Any,
) -> None:
    ours = subscribe(client, org, receiver, "lead.created")
    paused = subscribe(client, org, receiver, "lead.created")
    theirs = subscribe(client, other_org, receiver, "lead.created")
    response = client.put(f"/api/v1/webhook/{paused}/", json={"status": "paused"}, auth=org.auth)
    assert response.json()["pause_reason"] == "api"
    lead = new_lead(client, org)

    dispatchers(org).run_until_idle()
    dispatchers(other_org).run_until_idle()

    assert receiver.events(ours) == [("lead.created", lead)]
    assert receiver.events(paused) == [] and receiver.events(theirs) == []
    assert deliveries(client, org, paused) == []
    # Another organization cannot read the history of ours.
    foreign = client.get(f"/api/v1/webhook/{ours}/delivery/", auth=other_org.auth)
    assert foreign.status_code == 404

    # Activated again, it gets what happens from then on.
    client.put(f"/api/v1/webhook/{paused}/", json={"status": "active"}, auth=org.auth)
    later = new_lead(client, org, "Later")
    dispatchers(org).run_until_idle()
    assert receiver.events(paused) == [("lead.created", later)]


def test_pausing_drops_what_was_waiting(
    client: TestClient, org: Org, receiver: Receiver, dispatchers: Any
) -> None:
    hook = subscribe(client, org, receiver, "lead.created")
    receiver.statuses.extend([503])
    new_lead(client, org)
    dispatcher = dispatchers(org)
    dispatcher.run_until_idle()
    assert [d["status"] for d in deliveries(client, org, hook)] == ["pending"]

    client.put(f"/api/v1/webhook/{hook}/", json={"status": "paused"}, auth=org.auth)
    assert [d["status"] for d in deliveries(client, org, hook, status="dropped")] == ["dropped"]


def test_events_written_set_based_by_a_bulk_action_are_all_delivered(
    client: TestClient,
    org: Org,
    receiver: Receiver,
    dispatchers: Any,
    engine: Engine,
    database_url: str,
) -> None:
    world = make_world(client, org, engine, database_url)
    leads = [
        world.lead(f"Lead {i}", [[f"a{i}@example.com"], [f"b{i}@example.com"]]) for i in range(6)
    ]
    hook = subscribe(client, org, receiver, "sequence_subscription.created")
    response = world.post(
        "sequence_subscription", world.subscribe_body(world.sequence(), send_done_email=False)
    )
    assert response.status_code == 200, response.text

    world.run_jobs()
    dispatchers(org, webhook_fanout_batch=5).run_until_idle()

    contacts = {c["id"] for lead in leads for c in lead["contacts"]}
    assert sorted(r.event["data"]["contact_id"] for r in receiver.received) == sorted(contacts)
    assert {r.event["meta"]["bulk_action_id"] for r in receiver.received} == {response.json()["id"]}
    assert len(deliveries(client, org, hook, status="delivered", _limit="100")) == len(contacts)


# --- retries, giving up, auto-pause -------------------------------------------------------------


def test_failures_are_retried_on_the_backoff_schedule_until_a_2xx(
    client: TestClient, org: Org, receiver: Receiver, dispatchers: Any, clock: Clock
) -> None:
    hook = subscribe(client, org, receiver, "lead.created")
    receiver.statuses.extend([500, 502, 429])
    new_lead(client, org)
    dispatcher = dispatchers(org)

    dispatcher.run_until_idle()
    assert len(receiver.received) == 1
    for attempt in (1, 2, 3):
        delay = retry_delay(attempt)
        clock.advance(seconds=delay.total_seconds() - 1)
        dispatcher.run_until_idle()
        assert len(receiver.received) == attempt, "retried before its time"
        clock.advance(seconds=1)
        dispatcher.run_until_idle()
        assert len(receiver.received) == attempt + 1

    assert [r.signature_ok for r in receiver.received] == [True] * 4
    assert len({r.event["id"] for r in receiver.received}) == 1
    [delivery] = deliveries(client, org, hook)
    assert delivery["status"] == "delivered" and delivery["attempts"] == 4
    assert delivery["last_status_code"] == 200 and delivery["last_error"] is None
    hook_now = client.get(f"/api/v1/webhook/{hook}/", auth=org.auth).json()
    assert hook_now["health_status"] == "healthy" and hook_now["status"] == "active"


def test_the_schedule_doubles_up_to_20_minutes() -> None:
    waits = [retry_delay(n).total_seconds() for n in range(1, 10)]
    assert waits == [30, 60, 120, 240, 480, 960, 1200, 1200, 1200]


def test_three_days_of_failures_give_up_and_pause_the_subscription(
    client: TestClient, org: Org, receiver: Receiver, dispatchers: Any, clock: Clock
) -> None:
    hook = subscribe(client, org, receiver, "lead.created")
    receiver.statuses.extend([500] * 10_000)
    new_lead(client, org)
    dispatcher = dispatchers(org)
    start = clock.now
    dispatcher.run_until_idle()
    unhealthy = client.get(f"/api/v1/webhook/{hook}/", auth=org.auth).json()
    assert unhealthy["health_status"] == "unhealthy"
    assert unhealthy["latest_error"] == "HTTP 500"

    while clock.now - start < RETRY_WINDOW + timedelta(hours=1):
        clock.advance(minutes=20)
        dispatcher.run_until_idle()

    [delivery] = deliveries(client, org, hook)
    assert delivery["status"] in ("failed", "dropped")
    # Every 20 minutes for 72 hours at most: a bounded number of attempts, none after the end.
    assert 200 <= delivery["attempts"] <= 72 * 3 + 10
    sent = len(receiver.received)
    paused = client.get(f"/api/v1/webhook/{hook}/", auth=org.auth).json()
    assert paused["status"] == "paused" and paused["pause_reason"] == "failing"

    new_lead(client, org, "While paused")
    clock.advance(hours=1)
    dispatcher.run_until_idle()
    assert len(receiver.received) == sent


def test_a_backlog_at_the_limit_pauses_the_subscription(
    client: TestClient, org: Org, receiver: Receiver, dispatchers: Any
) -> None:
    hook = subscribe(client, org, receiver, "lead.created")
    for i in range(3):
        new_lead(client, org, f"Lead {i}")

    dispatchers(org, webhook_max_backlog=3).fan_out()

    paused = client.get(f"/api/v1/webhook/{hook}/", auth=org.auth).json()
    assert paused["status"] == "paused" and paused["pause_reason"] == "backlog"
    assert {d["status"] for d in deliveries(client, org, hook)} == {"dropped"}


# --- replay -------------------------------------------------------------------------------------


def test_replay_sends_an_events_deliveries_again(
    client: TestClient,
    org: Org,
    other_org: Org,
    receiver: Receiver,
    dispatchers: Any,
    clock: Clock,
) -> None:
    first = subscribe(client, org, receiver, "lead.created")
    second = subscribe(client, org, receiver, "lead.created")
    new_lead(client, org)
    dispatcher = dispatchers(org)
    dispatcher.run_until_idle()
    event_id = receiver.received[0].event["id"]

    everyone = client.post(f"/api/v1/event/{event_id}/replay/", auth=org.auth)
    assert everyone.status_code == 200, everyone.text
    assert {d["webhook_id"] for d in everyone.json()["data"]} == {first, second}
    assert {d["status"] for d in everyone.json()["data"]} == {"pending"}
    one = client.post(
        f"/api/v1/event/{event_id}/replay/", json={"webhook_id": second}, auth=org.auth
    )
    assert [d["webhook_id"] for d in one.json()["data"]] == [second]
    clock.catch_up()
    dispatcher.run_until_idle()

    assert sorted(r.payload["subscription_id"] for r in receiver.received) == sorted(
        [first, second, first, second]
    )
    assert {r.event["id"] for r in receiver.received} == {event_id}
    foreign = client.post(f"/api/v1/event/{event_id}/replay/", auth=other_org.auth)
    assert foreign.status_code == 404


def test_replay_of_an_event_no_subscription_had_is_a_400(
    client: TestClient, org: Org, receiver: Receiver
) -> None:
    new_lead(client, org)
    event = client.get(
        "/api/v1/event/", params={"object_type": "lead", "action": "created"}, auth=org.auth
    ).json()["data"][0]
    response = client.post(f"/api/v1/event/{event['id']}/replay/", auth=org.auth)
    assert response.status_code == 400
    assert "error" in response.json() or "errors" in response.json()


# --- slow and dead receivers ---------------------------------------------------------------------


def test_a_slow_receiver_does_not_hold_up_other_subscriptions(
    client: TestClient, org: Org, dispatchers: Any
) -> None:
    slow, fast = Receiver(), Receiver()
    try:
        slow.hold = threading.Event()
        slow_hook = subscribe(client, org, slow, "lead.created")
        fast_hook = subscribe(client, org, fast, "lead.created")
        for i in range(10):
            new_lead(client, org, f"Lead {i}")
        dispatcher = dispatchers(org, webhook_concurrency=8, webhook_per_subscription=2)

        def fast_done() -> bool:
            return {d["status"] for d in deliveries(client, org, fast_hook)} == {"delivered"}

        deadline = time.monotonic() + 10
        while not fast_done() and time.monotonic() < deadline:
            dispatcher.pump(wait_seconds=0.05)

        assert fast_done(), "the fast receiver waited for the slow one"
        assert len(fast.received) == 10
        # The slow one holds only its own slots.
        assert len(slow.received) == 2
        slow.hold.set()
        dispatcher.run_until_idle()
        assert len(slow.received) == 10
        assert {d["status"] for d in deliveries(client, org, slow_hook)} == {"delivered"}
    finally:
        slow.close()
        fast.close()


def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(
    client: TestClient, org: Org, receiver: Receiver, dispatchers: Any
) -> None:
    receiver.hold = threading.Event()
    hook = subscribe(client, org, receiver, "lead.created")
    new_lead(client, org)
    started = time.monotonic()

    dispatchers(org, webhook_read_timeout=0.3).run_until_idle()

    assert time.monotonic() - started < 5
    [delivery] = deliveries(client, org, hook)
    assert delivery["status"] == "pending" and delivery["attempts"] == 1
    assert "Timeout" in delivery["last_error"]


def test_a_refused_connection_is_retried(client: TestClient, org: Org, dispatchers: Any) -> None:
    dead = Receiver()
    dead.close()  # nothing listens on its port any more
    hook = subscribe(client, org, dead, "lead.created")
    new_lead(client, org)

    dispatchers(org).run_until_idle()

    [delivery] = deliveries(client, org, hook)
    assert delivery["status"] == "pending" and delivery["last_status_code"] is None
    assert "ConnectError" in delivery["last_error"]


def test_private_targets_are_refused_unless_allowed(
    client: TestClient, org: Org, receiver: Receiver, dispatchers: Any, database_url: str
) -> None:
    from clove.app import create_app

    strict = create_app(settings_for(database_url, webhooks_allow_private_targets=False))
    with TestClient(strict) as strict_client:
        for url in (
            "http://127.0.0.1:9/hook",
            "http://localhost/hook",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
        ):
            response = strict_client.post(
                "/api/v1/webhook/",
                json={"url": url, "events": [{"object_type": "lead", "action": "created"}]},
                auth=org.auth,
            )
            assert response.status_code == 400, url
            assert "CLOVE_WEBHOOKS_ALLOW_PRIVATE_TARGETS" in response.json()["field-errors"]["url"]

    # Created while allowed, then sent by a worker that does not allow it: refused at connect.
    hook = subscribe(client, org, receiver, "lead.created")
    new_lead(client, org)
    dispatchers(org, webhooks_allow_private_targets=False).run_until_idle()
    assert receiver.received == []
    [delivery] = deliveries(client, org, hook)
    assert delivery["status"] == "pending"
    assert "CLOVE_WEBHOOKS_ALLOW_PRIVATE_TARGETS" in delivery["last_error"]


def one_sent_two_queued(
    client: TestClient, org: Org, receiver: Receiver, dispatchers: Any
) -> tuple[str, Dispatcher]:
    """A subscription with three deliveries and one request slot: the first is held open at
    the receiver, the other two wait in the dispatcher's claimed queue."""
    receiver.hold = threading.Event()
    hook = subscribe(client, org, receiver, "lead.created")
    for i in range(3):
        new_lead(client, org, f"Lead {i}")
    dispatcher = dispatchers(org, webhook_concurrency=1, webhook_per_subscription=1)
    dispatcher.pump()
    receiver.wait_for(1)
    assert len(dispatcher.queued) == 2
    return hook, dispatcher


def test_claimed_deliveries_whose_lease_ran_low_are_claimed_again_not_sent_twice(
    client: TestClient, org: Org, receiver: Receiver, dispatchers: Any, clock: Clock
) -> None:
    hook, dispatcher = one_sent_two_queued(client, org, receiver, dispatchers)

    # By the time the slot frees, the queued leases could end mid-request: they are let go.
    clock.advance(seconds=(dispatcher.lease - dispatcher.request_budget).total_seconds() + 1)
    receiver.hold.set()
    dispatcher.finish(wait_seconds=5)
    assert dispatcher.pump() == 0 and not dispatcher.in_flight and not dispatcher.queued
    assert len(receiver.received) == 1

    # Once those leases have ended, they are claimed afresh and each is sent once.
    clock.advance(seconds=dispatcher.request_budget.total_seconds())
    dispatcher.run_until_idle()
    assert sorted(receiver.events(hook)) == sorted(set(receiver.events(hook)))
    assert len(receiver.received) == 3
    assert {d["status"] for d in deliveries(client, org, hook)} == {"delivered"}


def test_claimed_deliveries_of_a_subscription_paused_meanwhile_are_not_sent(
    client: TestClient, org: Org, receiver: Receiver, dispatchers: Any
) -> None:
    hook, dispatcher = one_sent_two_queued(client, org, receiver, dispatchers)

    client.put(f"/api/v1/webhook/{hook}/", json={"status": "paused"}, auth=org.auth)
    time.sleep(PRUNE_INTERVAL)
    receiver.hold.set()
    dispatcher.run_until_idle()

    assert len(receiver.received) == 1  # the request already in flight, and no other
    assert not dispatcher.queued
    # The history tells the truth: the one in flight arrived, the others never left.
    statuses = sorted(d["status"] for d in deliveries(client, org, hook))
    assert statuses == ["delivered", "dropped", "dropped"]


def test_a_stopping_worker_finishes_and_records_what_is_in_flight(
    client: TestClient, org: Org, receiver: Receiver, dispatchers: Any
) -> None:
    receiver.hold = threading.Event()
    hook = subscribe(client, org, receiver, "lead.created")
    new_lead(client, org)
    dispatcher, stop = dispatchers(org, worker_poll_seconds=0.05), threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,))
    thread.start()
    receiver.wait_for(1)

    stop.set()  # what SIGTERM does to `clove worker`
    time.sleep(0.2)
    assert thread.is_alive(), "stopped without waiting for the request in flight"
    receiver.hold.set()
    thread.join(timeout=10)

    assert not thread.is_alive()
    [delivery] = deliveries(client, org, hook)
    assert delivery["status"] == "delivered"


# --- a worker killed mid-delivery -----------------------------------------------------------------


def test_a_worker_killed_mid_request_loses_nothing(
    client: TestClient,
    org: Org,
    receiver: Receiver,
    dispatchers: Any,
    clock: Clock,
    database_url: str,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    receiver.hold = threading.Event()
    hook = subscribe(client, org, receiver, "lead.created")
    lead = new_lead(client, org)
    env = {
        **os.environ,
        "CLOVE_DATABASE_URL": database_url,
        "CLOVE_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",
        "CLOVE_WORKER_POLL_SECONDS": "0.05",
        "CLOVE_LOG_LEVEL": "warning",
    }
    with (tmp_path / "worker.log").open("ab") as log:
        worker = subprocess.Popen([CLOVE, "worker"], env=env, stdout=log, stderr=log)
    try:
        receiver.wait_for(1, timeout=30)  # the request is open at the receiver
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    with session_factory() as session:
        rows = session.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook))
        [delivery] = rows.all()
        assert delivery.status == "pending" and f":{worker.pid}:" in (delivery.locked_by or "")
    receiver.hold.set()

    # Another worker takes it over once the dead one's lease has run out.
    dispatcher = dispatchers(org)
    assert dispatcher.run_until_idle() == 0, "taken over while the lease still held"
    clock.catch_up(seconds=dispatcher.lease.total_seconds() + 1)
    dispatcher.run_until_idle()

    # At least once: the request the killed worker left open, then the retry.
    assert receiver.events(hook) == [("lead.created", lead)] * 2
    [record] = deliveries(client, org, hook)
    assert record["status"] == "delivered"
