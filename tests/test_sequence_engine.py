"""The sequence engine against a real SMTP server on loopback and a clock the tests move."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.db import make_session_factory, writing_session_factory
from clove.email.smtp import SmtpConfig
from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.models import (
    ConnectedAccount,
    EmailActivity,
    EmailTemplate,
    Event,
    Sequence,
    SequenceStep,
    SequenceStepRun,
    SequenceSubscription,
    Task,
    UnsubscribedEmail,
)
from clove.sequence.engine import SequenceEngine
from tests.conftest import Org, free_port
from tests.smtp_sink import SmtpSink

WEEKDAYS = {"ranges": [{"weekday": d, "start": "09:00", "end": "16:59"} for d in range(1, 6)]}


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@dataclass
class World:
    """An organization with a sender account, templates and a way to add subscriptions."""

    org: Org
    client: TestClient
    factory: sessionmaker[Session]  # writes (BEGIN IMMEDIATE on SQLite)
    reader: sessionmaker[Session]
    account_id: str
    template_ids: list[str]

    def sequence(
        self,
        steps: list[dict[str, Any]],
        *,
        schedule: dict[str, Any] | None = None,
        timezone: str = "UTC",
        status: str = "active",
    ) -> str:
        with self.factory.begin() as session:
            seq = Sequence(
                id=new_id("seq"),
                organization_id=self.org.id,
                name="Outreach",
                status=status,
                timezone=timezone,
                schedule=schedule,
                created_by_id=self.org.user_id,
            )
            session.add(seq)
            for position, step in enumerate(steps):
                session.add(
                    SequenceStep(
                        id=new_id("seqstep"),
                        organization_id=self.org.id,
                        sequence_id=seq.id,
                        position=position,
                        step_type=step.get("step_type", "email"),
                        delay=step.get("delay", 0),
                        email_template_id=step.get("template", self.template_ids[0])
                        if step.get("step_type", "email") == "email"
                        else None,
                        threading=step.get("threading", "old_thread"),
                    )
                )
            return seq.id

    def contact(self, name: str = "Jane Doe", email: str | None = None) -> tuple[str, str, str]:
        email = email or f"{new_id('sub')[4:12].lower()}@example.com"
        lead = self.client.post(
            "/api/v1/lead/",
            json={"name": "Acme Corp", "contacts": [{"name": name, "emails": [{"email": email}]}]},
            auth=self.org.auth,
        ).json()
        return lead["id"], lead["contacts"][0]["id"], email

    def subscribe(
        self, sequence_id: str, *, at: datetime, count: int = 1, **values: Any
    ) -> list[str]:
        """`count` new contacts subscribed at `at` (their first step due then)."""
        ids = []
        with self.factory.begin() as session:
            for _ in range(count):
                lead_id, contact_id, email = self.contact()
                sub = SequenceSubscription(
                    id=new_id("sub"),
                    organization_id=self.org.id,
                    sequence_id=sequence_id,
                    contact_id=contact_id,
                    lead_id=lead_id,
                    contact_email=email,
                    sender_account_id=self.account_id,
                    sender_name="Sam Sender",
                    sender_email="sam@clove.test",
                    calls_assigned_to=[self.org.user_id],
                    created_by_id=self.org.user_id,
                    next_step_at=at,
                    date_created=at,
                    date_updated=at,
                    **{"status": "active", **values},
                )
                session.add(sub)
                ids.append(sub.id)
        return ids

    def sub(self, sub_id: str) -> SequenceSubscription:
        with self.reader() as session:
            found = session.get(SequenceSubscription, sub_id)
            assert found is not None
            session.expunge(found)
            return found

    def engine(self, sink_port: int, clock: FakeClock, **kwargs: Any) -> SequenceEngine:
        config = SmtpConfig("127.0.0.1", sink_port, "", "", "none", timeout=5)
        return SequenceEngine(
            self.factory,
            clock=clock,
            smtp_config=lambda _account: config,
            organization_id=self.org.id,
            **kwargs,
        )


@pytest.fixture
def world(client: TestClient, org: Org, engine: Engine) -> World:
    factory = writing_session_factory(engine)
    with factory.begin() as session:
        account = ConnectedAccount(
            id=new_id("emailacct"),
            organization_id=org.id,
            user_id=org.user_id,
            email="sam@clove.test",
            identities=[{"email": "sam@clove.test", "name": "Sam Sender"}],
            smtp={"host": "127.0.0.1", "port": 25, "username": "", "security": "none"},
        )
        first = EmailTemplate(
            id=new_id("tmpl"),
            organization_id=org.id,
            name="Intro",
            subject="Hello {{ contact.first_name }}",
            body="Hi {{ contact.first_name|default:'there' }}, about {{ lead.display_name }}.",
        )
        second = EmailTemplate(
            id=new_id("tmpl"),
            organization_id=org.id,
            name="Follow-up",
            subject="Following up",
            body="<p>Just checking in, {{ contact.first_name }}.</p>",
        )
        session.add_all([account, first, second])
        ids = [first.id, second.id]
        account_id = account.id
    return World(org, client, factory, make_session_factory(engine), account_id, ids)


def count(world: World, model: Any, **filters: Any) -> int:
    with world.reader() as session:
        query = select(func.count()).select_from(model)
        for name, value in filters.items():
            query = query.where(getattr(model, name) == value)
        return int(session.scalar(query) or 0)


def test_steps_are_sent_in_order_after_their_delays_in_one_thread(
    world: World, sink: SmtpSink
) -> None:
    clock = FakeClock(utcnow())
    seq = world.sequence(
        [
            {"delay": 0},
            {"delay": 86400, "template": world.template_ids[1], "threading": "old_thread"},
        ]
    )
    [sub_id] = world.subscribe(seq, at=clock.now)
    engine = world.engine(sink.port, clock)

    assert engine.run_until_idle() == 1
    [first] = sink.messages
    assert first["Subject"] == "Hello Jane"
    assert first["From"] == "Sam Sender <sam@clove.test>"
    assert first["Message-ID"] == f"<{sub_id}.{_step_ids(world, seq)[0]}@clove.test>"
    assert "Hi Jane, about Acme Corp." in first.get_content()
    sub = world.sub(sub_id)
    assert (sub.status, sub.next_step_position, sub.start_date) == ("active", 1, clock.now)
    assert sub.next_step_at == clock.now + timedelta(days=1)

    clock.advance(hours=23)
    assert engine.run_until_idle() == 0
    clock.advance(hours=1)
    assert engine.run_until_idle() == 1
    second = sink.messages[1]
    assert second["Subject"] == "Re: Hello Jane"
    assert second["In-Reply-To"] == first["Message-ID"]
    assert second["References"] == first["Message-ID"]
    html = second.get_body(("html",))
    assert html is not None and "Just checking in, Jane." in html.get_content()
    assert world.sub(sub_id).status == "finished"
    assert world.sub(sub_id).status_reason is None

    lead_id = world.sub(sub_id).lead_id
    with world.reader() as session:
        activities = session.scalars(
            select(EmailActivity).where(EmailActivity.sequence_subscription_id == sub_id)
        ).all()
        assert sorted(a.status for a in activities) == ["sent", "sent"]
        assert {a.sequence_id for a in activities} == {seq}
        assert {a.sequence_name for a in activities} == {"Outreach"}
        events = session.scalars(select(Event.object_type).where(Event.lead_id == lead_id)).all()
    assert events.count("activity.email") == 2


def test_new_thread_starts_a_fresh_subject_and_no_reply_headers(
    world: World, sink: SmtpSink
) -> None:
    clock = FakeClock(utcnow())
    seq = world.sequence([{}, {"template": world.template_ids[1], "threading": "new_thread"}])
    world.subscribe(seq, at=clock.now)
    engine = world.engine(sink.port, clock)
    engine.run_until_idle()
    engine.run_until_idle()
    assert [m["Subject"] for m in sink.messages] == ["Hello Jane", "Following up"]
    assert sink.messages[1]["In-Reply-To"] is None


def _step_ids(world: World, sequence_id: str) -> list[str]:
    with world.reader() as session:
        return list(
            session.scalars(
                select(SequenceStep.id)
                .where(SequenceStep.sequence_id == sequence_id)
                .order_by(SequenceStep.position)
            )
        )


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        # Saturday before the US spring-forward (2027-03-14): Monday 09:00 EDT is 13:00 UTC.
        (datetime(2027, 3, 13, 15, 0), datetime(2027, 3, 15, 13, 0)),
        # Friday 16:30 EST (21:30 UTC) is inside the window: sent at once.
        (datetime(2027, 3, 12, 21, 30), datetime(2027, 3, 12, 21, 30)),
        # Friday 17:00 EST is past 16:59: Monday 09:00 EDT.
        (datetime(2027, 3, 12, 22, 0), datetime(2027, 3, 15, 13, 0)),
        # Saturday before the fall-back (2027-11-07): Monday 09:00 EST is 14:00 UTC.
        (datetime(2027, 11, 6, 12, 0), datetime(2027, 11, 8, 14, 0)),
    ],
)
def test_steps_wait_for_the_schedule_window_in_the_sequence_timezone_across_dst(
    world: World, sink: SmtpSink, created: datetime, expected: datetime
) -> None:
    clock = FakeClock(created)
    seq = world.sequence([{}], schedule=WEEKDAYS, timezone="America/New_York")
    [sub_id] = world.subscribe(seq, at=created)
    engine = world.engine(sink.port, clock)
    engine.run_until_idle()
    if expected == created:
        assert len(sink.messages) == 1
        return
    assert sink.messages == []
    assert world.sub(sub_id).next_step_at == expected
    clock.now = expected - timedelta(seconds=1)
    assert engine.run_until_idle() == 0
    clock.now = expected
    engine.run_until_idle()
    assert len(sink.messages) == 1


def test_a_delay_that_ends_outside_the_window_waits_for_the_next_opening(
    world: World, sink: SmtpSink
) -> None:
    monday_10am_ny = datetime(2027, 3, 15, 14, 0)  # EDT
    clock = FakeClock(monday_10am_ny)
    seq = world.sequence(
        [{}, {"delay": 8 * 3600, "template": world.template_ids[1]}],
        schedule=WEEKDAYS,
        timezone="America/New_York",
    )
    [sub_id] = world.subscribe(seq, at=clock.now)
    engine = world.engine(sink.port, clock)
    engine.run_until_idle()
    # 10:00 + 8 h = 18:00, past 16:59: Tuesday 09:00 EDT.
    assert world.sub(sub_id).next_step_at == datetime(2027, 3, 16, 13, 0)


def test_a_bounce_ends_the_subscription_with_email_bounced(world: World, sink: SmtpSink) -> None:
    clock = FakeClock(utcnow())
    seq = world.sequence([{}, {"delay": 60}])
    [sub_id] = world.subscribe(seq, at=clock.now)
    sink.recorder.refuse[world.sub(sub_id).contact_email or ""] = "550 5.1.1 No such user"
    world.engine(sink.port, clock).run_until_idle()
    sub = world.sub(sub_id)
    assert (sub.status, sub.status_reason, sub.next_step_at) == ("error", "email-bounced", None)
    assert sink.messages == []
    with world.reader() as session:
        activity = session.scalars(
            select(EmailActivity).where(EmailActivity.sequence_subscription_id == sub_id)
        ).one()
        assert activity.status == "error"
        event = session.scalars(
            select(Event).where(
                Event.object_id == sub_id, Event.object_type == "sequence_subscription"
            )
        ).one()
        assert event.changed_fields == ["status", "status_reason"]
        assert event.previous_data == {"status": "active", "status_reason": None}


def test_a_temporary_refusal_is_retried_with_backoff_then_sent_once(
    world: World, sink: SmtpSink
) -> None:
    clock = FakeClock(utcnow())
    seq = world.sequence([{}])
    [sub_id] = world.subscribe(seq, at=clock.now)
    address = world.sub(sub_id).contact_email or ""
    sink.recorder.refuse[address] = "451 4.7.1 Try again later"
    engine = world.engine(sink.port, clock)
    engine.run_until_idle()
    assert world.sub(sub_id).status == "active"
    assert world.sub(sub_id).next_step_at == clock.now + timedelta(seconds=60)
    del sink.recorder.refuse[address]
    clock.advance(seconds=59)
    assert engine.run_until_idle() == 0
    clock.advance(seconds=1)
    engine.run_until_idle()
    assert len(sink.messages) == 1
    assert world.sub(sub_id).status == "finished"
    with world.reader() as session:
        run = session.scalars(
            select(SequenceStepRun).where(SequenceStepRun.subscription_id == sub_id)
        ).one()
        assert (run.status, run.attempts) == ("sent", 2)
    assert count(world, EmailActivity, sequence_subscription_id=sub_id) == 1


def test_temporary_refusals_end_in_error_after_the_last_retry(world: World, sink: SmtpSink) -> None:
    clock = FakeClock(utcnow())
    [sub_id] = world.subscribe(world.sequence([{}]), at=clock.now)
    sink.recorder.refuse[world.sub(sub_id).contact_email or ""] = "452 4.2.2 Mailbox full"
    engine = world.engine(sink.port, clock)
    for _ in range(10):
        engine.run_until_idle()
        clock.advance(hours=3)
    sub = world.sub(sub_id)
    assert (sub.status, sub.status_reason) == ("error", "sending-throttled-too-long")


def test_an_unreachable_server_ends_in_account_failures(world: World, sink: SmtpSink) -> None:
    clock = FakeClock(utcnow())
    [sub_id] = world.subscribe(world.sequence([{}]), at=clock.now)
    engine = world.engine(free_port(), clock)  # nothing listens there
    for _ in range(10):
        engine.run_until_idle()
        clock.advance(hours=3)
    sub = world.sub(sub_id)
    assert (sub.status, sub.status_reason) == ("error", "account-failures")
    with world.reader() as session:
        account = session.get(ConnectedAccount, world.account_id)
        assert account is not None and account.send_status == "error"
        assert "Connection failed" in (account.latest_send_error or "")


def test_an_unsubscribed_address_is_never_mailed(world: World, sink: SmtpSink) -> None:
    clock = FakeClock(utcnow())
    [sub_id] = world.subscribe(world.sequence([{}]), at=clock.now)
    address = world.sub(sub_id).contact_email or ""
    with world.factory.begin() as session:
        session.add(
            UnsubscribedEmail(
                organization_id=world.org.id, email_lower=address.upper().lower(), email=address
            )
        )
    world.engine(sink.port, clock).run_until_idle()
    assert sink.messages == []
    sub = world.sub(sub_id)
    assert (sub.status, sub.status_reason) == ("finished", "filter-not-matched")
    assert count(world, EmailActivity, sequence_subscription_id=sub_id) == 0


def test_paused_subscriptions_and_sequences_wait_and_resume(world: World, sink: SmtpSink) -> None:
    clock = FakeClock(utcnow())
    seq = world.sequence([{}], status="paused")
    [sub_id] = world.subscribe(seq, at=clock.now)
    [paused_sub] = world.subscribe(world.sequence([{}]), at=clock.now, status="paused")
    engine = world.engine(sink.port, clock)
    assert engine.run_until_idle() == 0
    with world.factory.begin() as session:
        sequence = session.get(Sequence, seq)
        assert sequence is not None
        sequence.status = "active"
    assert engine.run_until_idle() == 1
    assert len(sink.messages) == 1
    assert world.sub(sub_id).status == "finished"
    assert world.sub(paused_sub).status == "paused"


def test_a_call_step_creates_a_task_for_the_assigned_user(world: World, sink: SmtpSink) -> None:
    clock = FakeClock(utcnow())
    seq = world.sequence([{"step_type": "call"}, {"delay": 3600}])
    [sub_id] = world.subscribe(seq, at=clock.now)
    engine = world.engine(sink.port, clock)
    engine.run_until_idle()
    with world.reader() as session:
        task = session.scalars(select(Task).where(Task.sequence_subscription_id == sub_id)).one()
        assert task.assigned_to == world.org.user_id
        assert not task.is_complete
    assert sink.messages == []
    assert world.sub(sub_id).next_step_at == clock.now + timedelta(hours=1)
    clock.advance(hours=1)
    engine.run_until_idle()
    assert len(sink.messages) == 1


def test_many_due_subscriptions_go_out_once_each_over_one_connection(
    world: World, sink: SmtpSink
) -> None:
    clock = FakeClock(utcnow())
    seq = world.sequence([{}])
    ids = world.subscribe(seq, at=clock.now, count=120)
    engine = world.engine(sink.port, clock, batch_size=50)
    assert engine.run_until_idle() == 120
    engine.close()
    assert sorted(m["Message-ID"] for m in sink.messages) == sorted(
        f"<{sub_id}.{_step_ids(world, seq)[0]}@clove.test>" for sub_id in ids
    )
    assert sink.recorder.connections == 1


def test_two_workers_at_once_send_each_step_once(world: World, sink: SmtpSink) -> None:
    clock = FakeClock(utcnow())
    seq = world.sequence([{}])
    world.subscribe(seq, at=clock.now, count=80)
    engines = [world.engine(sink.port, clock, batch_size=10) for _ in range(2)]
    threads = [threading.Thread(target=e.run_until_idle) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [m["Message-ID"] for m in sink.messages]
    assert len(ids) == len(set(ids)) == 80


# --- crash recovery ------------------------------------------------------------------------------


def _run_engine_process(
    database_url: str, world: World, sink: SmtpSink, at: datetime, crash_at: str | None
) -> int:
    env = {**os.environ, "CLOVE_TEST_CRASH_AT": crash_at or ""}
    script = (
        "import sys; from datetime import datetime;"
        "from clove.db import make_engine, writing_session_factory;"
        "from clove.email.smtp import SmtpConfig; from clove.sequence.engine import SequenceEngine;"
        "url, org, port, at = sys.argv[1:5];"
        "config = SmtpConfig('127.0.0.1', int(port), '', '', 'none', timeout=5);"
        "SequenceEngine(writing_session_factory(make_engine(url)), organization_id=org,"
        " clock=lambda: datetime.fromisoformat(at), smtp_config=lambda a: config,"
        " batch_size=10).run_until_idle()"
    )
    args = [database_url, world.org.id, str(sink.port), at.isoformat()]
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, timeout=60
    )
    return done.returncode


@pytest.mark.parametrize("crash_at", ["before_smtp", "after_smtp", "after_commit"])
def test_a_worker_killed_at_any_point_never_sends_a_step_twice(
    world: World, sink: SmtpSink, database_url: str, crash_at: str
) -> None:
    clock = FakeClock(utcnow())
    seq = world.sequence([{}, {"delay": 60, "template": world.template_ids[1]}])
    ids = world.subscribe(seq, at=clock.now, count=5)
    assert _run_engine_process(database_url, world, sink, clock.now, crash_at) == -9
    killed_after = len(sink.messages)
    assert killed_after == {"before_smtp": 0, "after_smtp": 1, "after_commit": 5}[crash_at]

    # Another worker, once the dead one's lease has run out, finishes the work.
    clock.advance(seconds=301)
    assert _run_engine_process(database_url, world, sink, clock.now, None) == 0
    clock.advance(seconds=120)
    assert _run_engine_process(database_url, world, sink, clock.now, None) == 0

    sent = [m["Message-ID"] for m in sink.messages]
    assert len(sent) == len(set(sent)), "a step was sent twice"
    first, second = _step_ids(world, seq)
    assert {f"<{s}.{second}@clove.test>" for s in ids} <= set(sent)
    with world.reader() as session:
        rows = session.execute(
            select(SequenceStepRun.subscription_id, SequenceStepRun.status).where(
                SequenceStepRun.step_id == first
            )
        )
        statuses = {sub_id: status for sub_id, status in rows}
    if crash_at == "after_commit":
        assert set(statuses.values()) == {"sent"}
    else:
        # The killed batch (10 at a time, so all 5) is in doubt: recorded, never re-sent.
        delivered = {m for m in sent if m.endswith(f".{first}@clove.test>")}
        assert len(delivered) == killed_after
        assert set(statuses.values()) == {"unconfirmed"}
    assert {world.sub(s).status for s in ids} == {"finished"}


def test_the_worker_thread_picks_up_new_work_within_a_second(
    world: World, sink: SmtpSink, engine: Engine
) -> None:
    from clove.worker.runner import Worker
    from tests.conftest import test_settings

    settings = test_settings("sqlite://", worker_poll_seconds=0.2)
    worker = Worker(world.factory, settings)
    worker.sequences = world.engine(sink.port, FakeClock(utcnow()))
    worker.sequences.clock = utcnow
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        time.sleep(0.3)
        world.subscribe(world.sequence([{}]), at=utcnow())
        started = time.monotonic()
        while not sink.messages and time.monotonic() - started < 5:
            time.sleep(0.02)
        assert sink.messages, "nothing was sent"
        assert time.monotonic() - started < 1.0
    finally:
        stop.set()
        thread.join(timeout=5)


def test_the_app_runs_a_worker_thread_only_when_embedded(database_url: str, engine: Engine) -> None:
    from clove.app import create_app
    from tests.conftest import test_settings

    def workers() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name == "clove-worker"]

    with TestClient(create_app(test_settings(database_url), engine)):
        assert workers() == []
    embedded = test_settings(database_url, embedded_worker=True, worker_poll_seconds=0.05)
    with TestClient(create_app(embedded, engine)):
        assert workers() == ["clove-worker"]
    assert workers() == []


def test_a_reply_logged_through_the_api_stops_the_next_step(world: World, sink: SmtpSink) -> None:
    clock = FakeClock(utcnow())
    seq = world.sequence([{}, {"delay": 3600, "template": world.template_ids[1]}])
    [sub_id] = world.subscribe(seq, at=clock.now)
    engine = world.engine(sink.port, clock)
    engine.run_until_idle()
    assert len(sink.messages) == 1
    sub = world.sub(sub_id)
    reply = {
        "lead_id": sub.lead_id,
        "status": "inbox",
        "sender": f"Jane Doe <{(sub.contact_email or '').upper()}>",
        "to": ["sam@clove.test"],
        "subject": "Re: Hello Jane",
        "body_text": "Not interested, thanks.",
    }
    response = world.client.post("/api/v1/activity/email/", json=reply, auth=world.org.auth)
    assert response.status_code == 200, response.text
    clock.advance(hours=2)
    assert engine.run_until_idle() == 0
    assert len(sink.messages) == 1
    sub = world.sub(sub_id)
    assert (sub.status, sub.status_reason) == ("finished", "reply-received")


def test_a_pooled_connection_the_server_dropped_is_replaced_without_a_retry(
    world: World, sink: SmtpSink
) -> None:
    clock = FakeClock(utcnow())
    seq = world.sequence([{}])
    world.subscribe(seq, at=clock.now)
    engine = world.engine(sink.port, clock)
    engine.run_until_idle()
    client = engine.pool._open[world.account_id]
    client.sock.shutdown(socket.SHUT_RDWR)  # as a server closing an idle connection does
    [later] = world.subscribe(seq, at=clock.now)
    engine.run_until_idle()
    assert len(sink.messages) == 2
    assert world.sub(later).status == "finished"
    assert sink.recorder.connections == 2
