"""The job runtime: leased, chunked, resumable background work.

A job row is written in the transaction of the request that wants the work. A worker claims a
ready job with a lease, runs it for a short time slice, chunk after chunk, and lets go so the
next claim can pick another organization's job. Each chunk is one transaction that starts by
renewing the lease (which also locks the job row) and ends by saving the job's checkpoint
(`phase`, `position`), so a worker killed at any moment leaves the job exactly where its last
committed chunk put it; another worker resumes once the lease runs out.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from clove.kit.dates import utcnow
from clove.kit.ids import random_base62
from clove.models import Job

log = structlog.get_logger(__name__)

JOBS = Job.__table__

Clock = Callable[[], datetime]

# A chunk that raised is retried after these delays, then the job fails.
RETRY_DELAYS = (1, 5, 30, 120, 600)
EPOCH = datetime(1970, 1, 1)


@dataclass
class JobState:
    """The checkpoint a handler reads and moves on; saved with the chunk's changes."""

    id: int
    organization_id: str
    kind: str
    subject_id: str
    state: str
    phase: str
    position: int
    attempts: int
    # Side effects for after the chunk's commit (e.g. an email saying the job is done).
    after_commit: list[Callable[[], None]] = field(default_factory=list)


class PermanentError(Exception):
    """A chunk failed in a way retrying cannot fix: the job fails at once."""


class Handler(Protocol):
    def run_chunk(self, session: Session, job: JobState, now: datetime) -> None:
        """Does one chunk of work in `session` and moves `job` on (phase, position, state
        `done`/`waiting`); the runtime commits both together."""

    def fail(self, session: Session, job: JobState, error: str, now: datetime) -> None:
        """Records that the job gave up (e.g. the bulk action's status `error`)."""


def enqueue(session: Session, organization_id: str, kind: str, subject_id: str) -> Job:
    """Adds a ready job to the caller's transaction: it exists iff that transaction commits."""
    now = utcnow()
    job = Job(
        organization_id=organization_id,
        kind=kind,
        subject_id=subject_id,
        state="ready",
        phase="load",
        position=0,
        run_after=now,
        attempts=0,
        date_created=now,
        date_updated=now,
    )
    session.add(job)
    return job


def set_state(session: Session, subject_id: str, state: str) -> None:
    """Parks (`waiting`) or wakes (`ready`) the unfinished jobs of `subject_id`."""
    session.execute(
        update(Job)
        .where(Job.subject_id == subject_id, Job.state.in_(("ready", "waiting")))
        .values(state=state, run_after=utcnow(), date_updated=utcnow())
    )


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random_base62(6)}"


class JobRunner:
    """Claims jobs and runs their chunks; one per worker thread."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        handlers: dict[str, Handler],
        *,
        clock: Clock = utcnow,
        lease_seconds: float = 300,
        slice_seconds: float = 1.0,
        name: str | None = None,
        organization_id: str | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.handlers = handlers
        self.clock = clock
        self.lease = timedelta(seconds=lease_seconds)
        self.slice_seconds = slice_seconds
        self.name = name or worker_name()
        # Only this organization's jobs (tests share one database between organizations).
        self.organization_id = organization_id

    def run_once(self, stop: threading.Event | None = None) -> int:
        """Claims one job and runs chunks of it for one time slice; how many chunks ran."""
        job_id = self._claim()
        if job_id is None:
            return 0
        chunks = 0
        deadline = time.monotonic() + self.slice_seconds
        try:
            while self._run_chunk(job_id):
                chunks += 1
                if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                    break
        finally:
            self._release(job_id)
        return max(chunks, 1)

    def run_until_idle(self, max_passes: int = 1_000_000) -> int:
        """Runs every ready job to its end (tests and `clove worker --once`)."""
        total = 0
        for _ in range(max_passes):
            done = self.run_once()
            if not done:
                return total
            total += done
        return total

    def _claim(self) -> int | None:
        now = self.clock()
        with self.session_factory() as session:
            # Fair across organizations: the one served longest ago goes first, then its job
            # served longest ago. A big action runs one slice, then another org's turn comes.
            jobs, other = JOBS.alias("candidate"), JOBS.alias("other")
            org_served = (
                select(func.max(func.coalesce(other.c.last_run_at, EPOCH)))
                .where(other.c.organization_id == jobs.c.organization_id, other.c.state == "ready")
                .scalar_subquery()
            )
            candidate = (
                select(jobs.c.id)
                .where(
                    jobs.c.state == "ready",
                    jobs.c.run_after <= now,
                    or_(jobs.c.locked_until.is_(None), jobs.c.locked_until < now),
                )
                .order_by(org_served, func.coalesce(jobs.c.last_run_at, EPOCH), jobs.c.id)
                .limit(1)
                .with_for_update(skip_locked=True, of=jobs)
            )
            if self.organization_id is not None:
                candidate = candidate.where(jobs.c.organization_id == self.organization_id)
            free = or_(Job.locked_until.is_(None), Job.locked_until < now)
            claimed = session.execute(
                update(Job)
                .where(Job.id.in_(candidate.scalar_subquery()), free)
                .values(locked_by=self.name, locked_until=now + self.lease, last_run_at=now)
                .returning(Job.id)
            ).scalar()
            session.commit()
            return claimed

    def _run_chunk(self, job_id: int) -> bool:
        """One chunk in one transaction; False when the job should not go on now."""
        now = self.clock()
        with self.session_factory() as session:
            # Renewing the lease first locks the row (and SQLite's write lock) for the chunk.
            row = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.locked_by == self.name, Job.state == "ready")
                .values(locked_until=now + self.lease)
                .returning(
                    Job.id,
                    Job.organization_id,
                    Job.kind,
                    Job.subject_id,
                    Job.state,
                    Job.phase,
                    Job.position,
                    Job.attempts,
                )
            ).one_or_none()
            if row is None:  # lease lost, or the job was paused, finished or failed
                session.rollback()
                return False
            job = JobState(**row._mapping)
            try:
                self.handlers[job.kind].run_chunk(session, job, now)
                session.execute(
                    update(Job)
                    .where(Job.id == job.id)
                    .values(
                        state=job.state,
                        phase=job.phase,
                        position=job.position,
                        attempts=0,
                        error=None,
                        date_updated=now,
                    )
                )
                session.commit()
            except Exception as exc:
                session.rollback()
                self._failed(job, exc)
                return False
        for effect in job.after_commit:
            try:
                effect()
            except Exception:  # the chunk is committed; a failed side effect is only logged
                log.exception("job_after_commit_failed", job_id=job.id)
        return job.state == "ready"

    def _failed(self, job: JobState, exc: Exception) -> None:
        """Schedules a retry after a chunk raised, or gives up after the last one."""
        now = self.clock()
        attempt = job.attempts + 1
        error = f"{type(exc).__name__}: {exc}"[:2000]
        log.exception("job_chunk_failed", job_id=job.id, kind=job.kind, attempt=attempt)
        with self.session_factory() as session:
            values: dict[str, object] = {"attempts": attempt, "error": error, "date_updated": now}
            if attempt > len(RETRY_DELAYS) or isinstance(exc, PermanentError):
                values["state"] = "failed"
                job.state = "failed"
                self.handlers[job.kind].fail(session, job, error, now)
            else:
                values["run_after"] = now + timedelta(seconds=RETRY_DELAYS[attempt - 1])
            session.execute(
                update(Job).where(Job.id == job.id, Job.locked_by == self.name).values(**values)
            )
            session.commit()

    def _release(self, job_id: int) -> None:
        with self.session_factory() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.locked_by == self.name)
                .values(locked_by=None, locked_until=None)
            )
            session.commit()
