"""The job runtime under a big bulk sequence subscription, over the real stack: real
`clove worker` processes killed with SIGKILL or stopped with SIGTERM, two workers at once,
fairness between organizations, and a chunk that keeps failing until the action errors.

Every test checks the result exactly: each eligible contact subscribed once, with one
`created` event carrying the bulk action's id, and counters that match the database.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, select, update

from clove.kit.dates import utcnow
from clove.models import (
    BulkAction,
    BulkActionItem,
    Contact,
    ContactEmail,
    Event,
    Job,
    Sequence,
    SequenceSubscription,
    UnsubscribedEmail,
)
from clove.seed import resolve_target, seed_organization
from clove.worker.jobs import RETRY_DELAYS, JobRunner
from clove.worker.runner import job_handlers
from tests.bulk_world import BulkWorld, make_world
from tests.conftest import Org
from tests.conftest import test_settings as settings_for

KIND = "sequence_subscription"
CLOVE = str(Path(sys.executable).with_name("clove"))
POSTGRES = bool(os.environ.get("CLOVE_TEST_DATABASE_URL"))
# 20,000 leads on both databases: seeding takes about 2 s on either, and a worker gets
# through them in seconds, so there is no need to shrink the load for SQLite.
BIG = 20_000
# Generous: alone, a worker needs 5 to 30 s for BIG; a loaded CI machine may take longer.
DONE_WITHIN = 300


@pytest.fixture
def world(client: TestClient, org: Org, engine: Engine, database_url: str) -> BulkWorld:
    return make_world(client, org, engine, database_url)


@pytest.fixture
def world_b(client: TestClient, other_org: Org, engine: Engine, database_url: str) -> BulkWorld:
    return make_world(client, other_org, engine, database_url)


@pytest.fixture
def rng() -> random.Random:
    """Random kill points, reproducible with CLOVE_TEST_SEED=<the printed seed>."""
    seed = int(os.environ.get("CLOVE_TEST_SEED") or random.randrange(2**32))
    print(f"CLOVE_TEST_SEED={seed}")
    return random.Random(seed)


# --- setup ---------------------------------------------------------------------------------------


def quiet_sequence(world: BulkWorld) -> str:
    """A sequence whose subscriptions the worker's sequence engine leaves alone (paused), so
    the `clove worker` processes spend their time on the job alone."""
    seq = world.sequence()
    with world.factory.begin() as session:
        session.execute(update(Sequence).where(Sequence.id == seq).values(status="paused"))
    return seq


def seed_leads(world: BulkWorld, leads: int, seed: int = 7) -> None:
    """Writes `leads` leads with 1 to 3 contacts each (every contact with an email)."""
    target = resolve_target(world.engine, world.org.id)
    seed_organization(world.engine, target, leads, seed=seed)
    # Fresh statistics, as autovacuum would have after a real import: without them
    # PostgreSQL plans the chunk's queries for empty tables.
    with world.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")


def spoil_contacts(world: BulkWorld, rng: random.Random, share: float = 0.05) -> None:
    """Takes every email from a share of the contacts and unsubscribes the first email of as
    many others, so both kinds of skip happen in every chunk."""
    with world.factory.begin() as session:
        ids = sorted(
            session.scalars(select(Contact.id).where(Contact.organization_id == world.org.id))
        )
        picked = rng.sample(ids, int(len(ids) * share * 2))
        bare, unsubscribed = picked[::2], picked[1::2]
        for part in _parts(bare):
            session.execute(delete(ContactEmail).where(ContactEmail.contact_id.in_(part)))
        addresses: dict[str, str] = {}
        for part in _parts(unsubscribed):
            rows = session.execute(
                select(ContactEmail.email_lower, ContactEmail.email).where(
                    ContactEmail.contact_id.in_(part), ContactEmail.position == 0
                )
            )
            addresses.update({lower: email for lower, email in rows})
        session.add_all(
            UnsubscribedEmail(organization_id=world.org.id, email_lower=lower, email=email)
            for lower, email in addresses.items()
        )


def _parts(ids: list[str], size: int = 500) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def expected(world: BulkWorld) -> tuple[set[str], Counter[str], int, int]:
    """What a subscribe of every lead must do, worked out in Python from the rows: the
    contacts to subscribe (first email present and not unsubscribed), the skips by reason,
    and how many leads and contacts there are."""
    org = world.org.id
    with world.reader() as session:
        contacts = set(session.scalars(select(Contact.id).where(Contact.organization_id == org)))
        leads = len(
            set(session.scalars(select(Contact.lead_id).where(Contact.organization_id == org)))
        )
        first: dict[str, tuple[int, str, str]] = {}
        emails = session.execute(
            select(
                ContactEmail.contact_id,
                ContactEmail.position,
                ContactEmail.id,
                ContactEmail.email_lower,
            ).where(ContactEmail.organization_id == org)
        )
        for contact_id, position, email_id, lower in emails:
            key = (position, email_id, lower)
            if contact_id not in first or key < first[contact_id]:
                first[contact_id] = key
        unsubscribed = set(
            session.scalars(
                select(UnsubscribedEmail.email_lower).where(
                    UnsubscribedEmail.organization_id == org
                )
            )
        )
    skipped = Counter[str]()
    eligible = set()
    for contact_id in contacts:
        if contact_id not in first:
            skipped["no_email"] += 1
        elif first[contact_id][2] in unsubscribed:
            skipped["unsubscribed"] += 1
        else:
            eligible.add(contact_id)
    return eligible, skipped, leads, len(contacts)


def post_subscribe(world: BulkWorld, seq: str) -> str:
    response = world.post(KIND, world.subscribe_body(seq, send_done_email=False))
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


# --- reading the state ---------------------------------------------------------------------------


def action_row(world: BulkWorld, action_id: str) -> BulkAction:
    with world.reader() as session:
        action = session.get(BulkAction, action_id)
        assert action is not None
        session.expunge(action)
        return action


def job_row(world: BulkWorld, action_id: str) -> Job:
    with world.reader() as session:
        job = session.scalars(select(Job).where(Job.subject_id == action_id)).one()
        session.expunge(job)
        return job


def wait_for(what: str, check: Callable[[], bool], timeout: float, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def assert_exactly_once(world: BulkWorld, action_id: str, seq: str) -> None:
    """The action is done and did each eligible contact exactly once, with true counters."""
    eligible, skipped, n_leads, n_contacts = expected(world)
    assert eligible and skipped["no_email"] and skipped["unsubscribed"]
    with world.reader() as session:
        subs = session.execute(
            select(
                SequenceSubscription.id,
                SequenceSubscription.contact_id,
                SequenceSubscription.bulk_action_id,
            ).where(SequenceSubscription.sequence_id == seq)
        ).all()
        created = session.execute(
            select(Event.object_id, Event.meta).where(
                Event.organization_id == world.org.id,
                Event.object_type == "sequence_subscription",
                Event.action == "created",
            )
        ).all()
        completed = session.scalars(
            select(Event.id).where(
                Event.object_id == action_id,
                Event.object_type == f"bulk_action.{KIND}",
                Event.action == "completed",
            )
        ).all()
        items = session.scalars(
            select(BulkActionItem.position).where(BulkActionItem.bulk_action_id == action_id)
        ).all()
    contacts = Counter(contact_id for _, contact_id, _ in subs)
    twice = [c for c, n in contacts.items() if n > 1]
    assert not twice, f"{len(twice)} contacts subscribed more than once"
    assert set(contacts) == eligible, (
        f"missing {len(eligible - set(contacts))}, extra {len(set(contacts) - eligible)}"
    )
    assert {bulk for *_, bulk in subs} == {action_id}
    per_sub = Counter(object_id for object_id, _ in created)
    assert per_sub == Counter({sub_id: 1 for sub_id, *_ in subs})
    assert {meta["bulk_action_id"] for _, meta in created} == {action_id}
    assert len(completed) == 1
    assert items == []  # every item was processed and removed

    wire = world.get(KIND, action_id)
    assert wire["status"] == "done"
    assert wire["n_leads"] == wire["n_leads_processed"] == n_leads
    assert wire["n_objects"] == wire["n_objects_processed"] == n_contacts
    assert wire["skipped"] == dict(skipped)
    assert sum(wire["skipped"].values()) == n_contacts - len(eligible)


# --- `clove worker` processes --------------------------------------------------------------------


def start_worker(
    world: BulkWorld, log: Path, *args: str, **settings: Any
) -> subprocess.Popen[bytes]:
    """A real `clove worker` process on the test database, its output in `log`."""
    env = {
        **os.environ,
        "CLOVE_DATABASE_URL": world.database_url,
        "CLOVE_WORKER_POLL_SECONDS": "0.05",
        "CLOVE_JOB_SLICE_SECONDS": "0.2",
        "CLOVE_LOG_LEVEL": "warning",
        **{f"CLOVE_{name.upper()}": str(value) for name, value in settings.items()},
    }
    with log.open("ab") as out:
        return subprocess.Popen([CLOVE, "worker", *args], env=env, stdout=out, stderr=out)


def holds(world: BulkWorld, action_id: str, proc: subprocess.Popen[bytes]) -> bool:
    """Whether `proc` holds the lease of the action's job (worker names hold the pid)."""
    locked_by = job_row(world, action_id).locked_by or ""
    return f":{proc.pid}:" in locked_by


def claimed(world: BulkWorld, action_id: str, proc: subprocess.Popen[bytes]) -> Callable[[], bool]:
    return lambda: holds(world, action_id, proc)


def finished(world: BulkWorld, action_id: str) -> Callable[[], bool]:
    return lambda: action_row(world, action_id).status == "done"


def progressed(world: BulkWorld, action_id: str, leads: int) -> Callable[[], bool]:
    return lambda: action_row(world, action_id).n_leads_processed >= leads


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=30)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes a test started; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def big_action(world: BulkWorld, rng: random.Random, leads: int) -> tuple[str, str]:
    """`leads` seeded leads, some contacts spoiled, and a subscribe of them all: (seq, action)."""
    seq = quiet_sequence(world)
    seed_leads(world, leads, seed=rng.randrange(1000))
    spoil_contacts(world, rng)
    return seq, post_subscribe(world, seq)


# --- 1. SIGKILL ----------------------------------------------------------------------------------


def test_workers_killed_at_random_points_still_subscribe_each_contact_once(
    world: BulkWorld,
    rng: random.Random,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    seq, action_id = big_action(world, rng, BIG)
    settings = {"worker_lease_seconds": 1, "bulk_chunk_size": 500}
    seen: list[tuple[str, str, int]] = []
    # The first kill soon after the claim (loading, resolving or the first chunks); the
    # others once the work has reached random points, so no machine is too fast for them.
    reached = [0, *sorted(rng.sample(range(1, BIG * 3 // 4), 3))]
    for kill, target in enumerate(reached):
        proc = start_worker(world, tmp_path / f"killed-{kill}.log", **settings)
        processes.append(proc)
        wait_for("the worker to claim the job", claimed(world, action_id, proc), 60)
        wait_for(f"{target} leads processed", progressed(world, action_id, target), DONE_WITHIN)
        time.sleep(rng.uniform(0, 0.3))
        assert stop(proc, signal.SIGKILL) == -signal.SIGKILL
        job = job_row(world, action_id)
        seen.append((action_row(world, action_id).status, job.phase, job.position))
    print("after each kill (status, phase, position):", seen)
    assert action_row(world, action_id).status != "done", "the kills came too late to test"

    started = time.monotonic()
    last = start_worker(world, tmp_path / "last.log", **settings)
    processes.append(last)
    wait_for("the action to be done", finished(world, action_id), DONE_WITHIN)
    print(f"the last worker finished in {time.monotonic() - started:.1f} s")
    assert stop(last) == 0
    assert_exactly_once(world, action_id, seq)
    assert job_row(world, action_id).state == "done"


# --- 2. Two workers at once ----------------------------------------------------------------------


@pytest.mark.skipif(
    not POSTGRES,
    reason="SQLite has one writer at a time: two worker processes would only take turns on the "
    "database lock, which the SIGKILL test already covers",
)
def test_two_worker_processes_share_one_action_exactly_once(
    world: BulkWorld,
    rng: random.Random,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    seq, action_id = big_action(world, rng, BIG)
    settings = {
        "worker_lease_seconds": 5,
        "bulk_chunk_size": 250,
        "job_slice_seconds": 0.05,
        "worker_poll_seconds": 0.01,
    }
    pair = [start_worker(world, tmp_path / f"worker-{i}.log", **settings) for i in range(2)]
    processes.extend(pair)
    holders: Counter[int] = Counter()

    def done() -> bool:
        job = job_row(world, action_id)
        for proc in pair:
            if f":{proc.pid}:" in (job.locked_by or ""):
                holders[proc.pid] += 1
        return job.state == "done"

    wait_for("the action to be done", done, DONE_WITHIN)
    assert [stop(proc) for proc in pair] == [0, 0]
    print("lease samples per worker pid:", dict(holders))
    assert set(holders) == {proc.pid for proc in pair}, "one worker never held the job"
    assert_exactly_once(world, action_id, seq)


# --- 3. Fairness ---------------------------------------------------------------------------------


def test_a_small_action_of_another_org_finishes_long_before_a_big_one(
    world: BulkWorld, world_b: BulkWorld
) -> None:
    chunk = 50
    # One runner for every organization, as in `clove worker`.
    config = settings_for(world.database_url, bulk_chunk_size=chunk, job_slice_seconds=0)
    runner = JobRunner(world.factory, job_handlers(config), lease_seconds=60, slice_seconds=0)
    runner.run_until_idle()  # other tests' leftover jobs must not take turns here
    big_seq, small_seq = quiet_sequence(world), quiet_sequence(world_b)
    seed_leads(world, 3000)
    for i in range(10):
        world_b.lead(f"Small {i}", [[f"small{i}@b.example"]])
    big = post_subscribe(world, big_seq)
    for _ in range(6):  # load, resolve and a few chunks of the big action
        runner.run_once()
    big_before = action_row(world, big).n_leads_processed
    assert action_row(world, big).status == "processing" and big_before > 0

    small = post_subscribe(world_b, small_seq)
    turns = 0
    while action_row(world_b, small).status != "done":
        assert runner.run_once(), "the runner went idle before the small action was done"
        turns += 1
        assert turns <= 20
    big_chunks = (action_row(world, big).n_leads_processed - big_before) // chunk
    print(f"small action done after {turns} turns, {big_chunks} chunks of the big one")
    # The small action takes 5 turns (load, resolve, 1 chunk, the empty chunk, finish) and
    # the two organizations alternate, so the big one runs at most one chunk per turn.
    assert action_row(world, big).status == "processing"
    assert big_chunks <= 5
    assert turns <= 11
    wire = world_b.get(KIND, small)
    assert wire["n_leads"] == wire["n_leads_processed"] == 10
    assert world_b.count(SequenceSubscription, sequence_id=small_seq) == 10

    runner.run_until_idle()
    assert action_row(world, big).status == "done"
    assert action_row(world, big).n_leads_processed == 3000


# --- 4. SIGTERM ----------------------------------------------------------------------------------


def test_sigterm_commits_the_chunk_releases_the_job_and_a_new_worker_goes_on_at_once(
    world: BulkWorld,
    rng: random.Random,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    seq, action_id = big_action(world, rng, BIG // 2)
    # A long lease: a restarted worker could not take the job for 5 minutes unless the
    # stopped one let it go.
    settings = {"worker_lease_seconds": 300, "bulk_chunk_size": 200}
    proc = start_worker(world, tmp_path / "terminated.log", **settings)
    processes.append(proc)
    wait_for("a processed chunk", lambda: action_row(world, action_id).n_leads_processed > 0, 120)
    time.sleep(rng.uniform(0, 0.5))
    signalled = time.monotonic()
    assert stop(proc) == 0
    exited = time.monotonic() - signalled
    print(f"exited {exited:.2f} s after SIGTERM")
    assert exited < 10  # about 0.5 s alone; a loaded CI machine may be much slower

    action, job = action_row(world, action_id), job_row(world, action_id)
    assert action.status == "processing", "stopped too late to test"
    assert job.locked_by is None and job.locked_until is None
    # The counters it left match what is in the database.
    assert 0 < action.n_leads_processed < action.n_leads
    assert job.phase == "process" and job.position == action.n_leads_processed
    subscriptions = world.count(SequenceSubscription, sequence_id=seq)
    skipped = sum((action.skipped or {}).values())
    assert subscriptions == action.n_objects_processed - skipped
    assert world.count(BulkActionItem, bulk_action_id=action_id) == (
        action.n_leads - action.n_leads_processed
    )

    restarted = time.monotonic()
    again = start_worker(world, tmp_path / "restarted.log", **settings)
    processes.append(again)
    # It takes the job as soon as it is up, not when the lease would have run out.
    wait_for("the new worker to claim the job", claimed(world, action_id, again), 60)
    wait_for("the action to be done", finished(world, action_id), DONE_WITHIN)
    print(f"restarted worker finished in {time.monotonic() - restarted:.2f} s")
    assert stop(again) == 0
    assert_exactly_once(world, action_id, seq)


# --- 5. A failing chunk --------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_a_failing_chunk_is_retried_after_each_delay_then_the_action_errors(
    world: BulkWorld,
) -> None:
    seq = quiet_sequence(world)
    seed_leads(world, 300)
    action_id = post_subscribe(world, seq)
    clock = FakeClock(utcnow())
    config = settings_for(world.database_url, bulk_chunk_size=50, job_slice_seconds=0)
    runner = JobRunner(
        world.factory,
        job_handlers(config),
        clock=clock,
        lease_seconds=60,
        slice_seconds=0,
        organization_id=world.org.id,  # other tests' jobs would take turns at the fake time
    )

    def turn() -> Job:
        """Runs ready jobs at the fake clock's time; our job as it then is."""
        runner.run_until_idle(max_passes=50)
        return job_row(world, action_id)

    for _ in range(4):  # load, resolve, two chunks
        runner.run_once()
    processed = action_row(world, action_id).n_leads_processed
    assert processed == 100
    # The sequence goes away mid-run: the next chunk's subscriptions break its foreign key.
    response = world.client.delete(f"/api/v1/sequence/{seq}/", auth=world.org.auth)
    assert response.status_code == 200, response.text

    # Captured: the failures are logged, and the console renderer would take seconds a piece.
    with structlog.testing.capture_logs() as logs:
        retried_then_failed(world, action_id, clock, turn)
    failures = [e for e in logs if e["event"] == "job_chunk_failed"]
    assert [e["attempt"] for e in failures] == list(range(1, len(RETRY_DELAYS) + 2))

    action = action_row(world, action_id)
    assert action.status == "error"
    assert action.error and "IntegrityError" in action.error
    assert action.n_leads_processed == processed  # the failed chunks left nothing behind
    assert world.count(BulkActionItem, bulk_action_id=action_id) == 0
    assert world.get(KIND, action_id)["status"] == "error"
    with world.reader() as session:
        updates = session.scalars(
            select(Event.data).where(Event.object_id == action_id, Event.action == "updated")
        ).all()
    assert [data["status"] for data in updates].count("error") == 1
    clock.now += timedelta(days=1)
    assert turn().attempts == len(RETRY_DELAYS) + 1  # a failed job is never run again


def retried_then_failed(
    world: BulkWorld, action_id: str, clock: FakeClock, turn: Callable[[], Job]
) -> None:
    """Steps the fake clock through every retry delay; the job fails after the last one."""
    for attempt, delay in enumerate(RETRY_DELAYS, start=1):
        job = turn()
        assert (job.state, job.attempts) == ("ready", attempt)
        assert job.run_after == clock.now + timedelta(seconds=delay)
        assert job.error and "IntegrityError" in job.error
        assert job.locked_by is None
        assert action_row(world, action_id).status == "processing"
        # Not retried before its delay is up.
        clock.now += timedelta(seconds=delay) - timedelta(milliseconds=1)
        assert turn().attempts == attempt
        clock.now += timedelta(milliseconds=1)
    job = turn()
    assert (job.state, job.attempts) == ("failed", len(RETRY_DELAYS) + 1)


def test_one_worker_process_with_several_threads_runs_two_organizations_actions(
    world: BulkWorld,
    world_b: BulkWorld,
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    actions = []
    for w in (world, world_b):
        seq = quiet_sequence(w)
        for i in range(6):
            w.lead(f"Threaded {i}", [[f"t{i}@x.test"]])
        actions.append((w, post_subscribe(w, seq)))
    worker = start_worker(world, tmp_path / "worker.log", "--concurrency", "3", bulk_chunk_size=2)
    processes.append(worker)
    for w, action_id in actions:
        wait_for("both actions done", finished(w, action_id), DONE_WITHIN)
        assert action_row(w, action_id).n_objects_processed == 6
    assert stop(worker) == 0, (tmp_path / "worker.log").read_text()
