"""The background worker: runs due sequence steps, jobs (bulk actions) and webhook deliveries
until told to stop.

`clove worker` runs it in the foreground; `clove serve` runs one in a thread beside the API
(unless `--no-worker`). Any number may run against one database: work is claimed with leases.
"""

from __future__ import annotations

import threading

import structlog
from sqlalchemy.orm import Session, sessionmaker

from clove.config import Settings
from clove.kit.dates import utcnow
from clove.sequence.engine import Clock, SequenceEngine
from clove.webhook.delivery import Dispatcher
from clove.worker.jobs import Handler, JobRunner

log = structlog.get_logger(__name__)


class Worker:
    def __init__(
        self, session_factory: sessionmaker[Session], settings: Settings, clock: Clock = utcnow
    ) -> None:
        self.settings = settings
        self.sequences = SequenceEngine(
            session_factory,
            clock=clock,
            lease_seconds=settings.worker_lease_seconds,
            batch_size=settings.worker_batch_size,
        )
        self.jobs = JobRunner(
            session_factory,
            job_handlers(settings),
            clock=clock,
            lease_seconds=settings.worker_lease_seconds,
            slice_seconds=settings.job_slice_seconds,
        )
        self.webhooks = Dispatcher(session_factory, settings, clock=clock)

    def run_once(self, stop: threading.Event | None = None) -> int:
        """One pass over every kind of work; how many items it took."""
        return self.sequences.run_once() + self.jobs.run_once(stop)

    def run(self, stop: threading.Event) -> None:
        """Works until `stop` is set; sleeps `worker_poll_seconds` only when nothing was due.
        Webhooks are delivered by a thread of their own, so HTTP never waits on a bulk chunk."""
        log.info("worker_started")
        webhooks = threading.Thread(
            target=self.webhooks.run, args=(stop,), name="clove-webhooks", daemon=True
        )
        webhooks.start()
        try:
            while not stop.is_set():
                try:
                    done = self.run_once(stop)
                except Exception:  # a bug or a lost database must not end the loop
                    log.exception("worker_pass_failed")
                    done = 0
                if not done:
                    stop.wait(self.settings.worker_poll_seconds)
        finally:
            self.sequences.close()
            webhooks.join()
            log.info("worker_stopped")


def job_handlers(settings: Settings) -> dict[str, Handler]:
    """The job kinds a worker runs, by `Job.kind`."""
    from clove.bulk_action import service as bulk_service
    from clove.bulk_action.tasks import BulkActionJob

    return {bulk_service.JOB_KIND: BulkActionJob(settings)}


def start_in_thread(
    session_factory: sessionmaker[Session], settings: Settings
) -> tuple[threading.Thread, threading.Event]:
    """A daemon thread running a Worker, and the event that stops it."""
    stop = threading.Event()
    worker = Worker(session_factory, settings)
    thread = threading.Thread(target=worker.run, args=(stop,), name="clove-worker", daemon=True)
    thread.start()
    return thread, stop
