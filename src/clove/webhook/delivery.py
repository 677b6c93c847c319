"""Delivery: POSTing pending deliveries to their subscriptions, signed, with retries.

A dispatcher keeps up to `webhook_concurrency` requests in flight on a thread pool and at most
`webhook_per_subscription` of them to any one subscription, so a slow or dead receiver holds
only its own slots. It claims due deliveries with a lease (`locked_by`, `locked_until`) and
commits the claim before sending; a worker killed mid-request leaves the lease to run out and
another worker sends again, so delivery is at least once (receivers dedupe on `event.id`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import Table, and_, bindparam, case, func, or_, select, union_all, update
from sqlalchemy.orm import Session, sessionmaker

from clove.config import Settings
from clove.event.service import serialize_event
from clove.kit.dates import utcnow
from clove.kit.secrets import decrypt
from clove.models import Event, Webhook, WebhookDelivery
from clove.webhook import outbound
from clove.webhook.fanout import fan_out, pause
from clove.worker.jobs import Clock, worker_name

log = structlog.get_logger(__name__)

DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[assignment]

# Close retries "with exponential backoff up to every 20 minutes, for up to 72 hours", and
# pauses a subscription whose deliveries have all failed for 3 days (close-api.md §6.2).
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 20 * 60
RETRY_WINDOW = timedelta(hours=72)
FAILING_PAUSE_AFTER = timedelta(days=3)
MAX_ERROR_LENGTH = 500
# Deliveries are claimed ahead, up to this many times the slots, so one claim (a transaction)
# serves many requests; and finished ones are recorded together, after at most RECORD_DELAY.
PREFETCH = 16
RECORD_DELAY = 0.1
CLAIM_INTERVAL = 0.5
# How often queued deliveries are checked against their subscription (paused, deleted, moved).
PRUNE_INTERVAL = 0.25


def retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 30 s, 1 min, 2 min, ... capped at 20."""
    return timedelta(seconds=min(FIRST_RETRY_SECONDS * 2 ** (attempts - 1), MAX_RETRY_SECONDS))


def signature(key_hex: str, timestamp: str, body: bytes) -> str:
    """Close's `close-sig-hash`: hex HMAC-SHA256 of the timestamp then the body, keyed with
    the hex-decoded signature key."""
    return hmac.new(bytes.fromhex(key_hex), timestamp.encode() + body, hashlib.sha256).hexdigest()


def payload(webhook_id: str, event: Event) -> bytes:
    """The body Close POSTs: the subscription's id and the event as the event log shows it."""
    document = {"subscription_id": webhook_id, "event": serialize_event(event)}
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Attempt:
    """A claimed delivery with what sending it needs."""

    delivery_id: str
    webhook_id: str
    url: str
    key: str
    verify_ssl: bool
    body: bytes
    attempts: int
    date_created: datetime
    lease_ends: datetime


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Dispatcher:
    """Fans out events and delivers them; one per worker, with its own pool of senders."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        *,
        clock: Clock = utcnow,
        name: str | None = None,
        organization_id: str | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.clock = clock
        self.name = name or worker_name()
        # Only this organization's work (tests share one database between organizations).
        self.organization_id = organization_id
        self.concurrency = settings.webhook_concurrency
        self.per_subscription = min(settings.webhook_per_subscription, self.concurrency)
        timeout = httpx.Timeout(
            settings.webhook_read_timeout, connect=settings.webhook_connect_timeout
        )
        # A request can take a connect and a few reads; the lease outlives it comfortably.
        self.lease = timedelta(
            seconds=2 * (settings.webhook_connect_timeout + settings.webhook_read_timeout) + 30
        )
        limits = httpx.Limits(max_connections=self.concurrency)
        self.clients = {
            verify: httpx.Client(
                verify=verify,
                timeout=timeout,
                limits=limits,
                follow_redirects=False,
                # Proxy variables would route around the address checks (clove.webhook.outbound).
                trust_env=False,
                headers={"user-agent": "Clove-Webhooks/1"},
            )
            for verify in (True, False)
        }
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="clove-webhook")
        self.in_flight: dict[Future[Outcome], Attempt] = {}
        self.queued: deque[Attempt] = deque()  # claimed (leased), not started yet
        self.unrecorded: list[tuple[Attempt, Outcome]] = []
        self.record_by = 0.0
        self.next_claim = 0.0
        self.next_prune = 0.0
        # A queued delivery is started only while its lease outlasts a whole request.
        self.request_budget = timedelta(
            seconds=settings.webhook_connect_timeout + 2 * settings.webhook_read_timeout
        )
        # An empty fan-out waits a poll interval before the next (on SQLite each one takes the
        # write lock); a full batch is followed at once.
        self.next_fan_out = 0.0
        self.keys: dict[str, str] = {}  # decrypted signature keys, by their stored form

    def pump(self, wait_seconds: float = 0.0, *, fan_out: bool | None = None) -> int:
        """Fans out a batch of events (when `fan_out`, by default when the last batch was
        full or a poll interval has passed), starts due deliveries in free slots, then waits up
        to `wait_seconds` for requests to finish and records them; how many things it did."""
        done = 0
        if fan_out if fan_out is not None else time.monotonic() >= self.next_fan_out:
            done += self.fan_out()
        done += self.start_due()
        done += self.finish(wait_seconds)
        return done

    def run_until_idle(self) -> int:
        """Fans out and delivers until no event is left to fan out, nothing is due and nothing
        is in flight (tests and `clove worker --once`); later retries are left for later."""
        total = 0
        while True:
            done = self.pump(wait_seconds=self.settings.webhook_read_timeout)
            if not done and not self.in_flight:
                done = self.pump(fan_out=True)  # one more look for new events
                if not done and not self.in_flight:
                    return total
            total += done

    def run(self, stop: threading.Event) -> None:
        """Works until `stop` is set, then lets the requests in flight finish and records them."""
        try:
            while not stop.is_set():
                try:
                    busy = self.pump(wait_seconds=0.05 if self.in_flight else 0)
                except Exception:  # a lost database must not end the loop
                    log.exception("webhook_pass_failed")
                    busy = 0
                if not busy and not self.in_flight:
                    stop.wait(self.settings.worker_poll_seconds)
            self.release_queued()
            while self.in_flight:
                self.finish(self.settings.webhook_read_timeout)
        finally:
            self.close()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for client in self.clients.values():
            client.close()

    def fan_out(self) -> int:
        with self.session_factory() as session:
            taken = fan_out(
                session,
                self.clock(),
                limit=self.settings.webhook_fanout_batch,
                max_backlog=self.settings.webhook_max_backlog,
                organization_id=self.organization_id,
            )
            session.commit()
        wait = 0.0 if taken else self.settings.worker_poll_seconds
        self.next_fan_out = time.monotonic() + wait
        return taken

    def start_due(self) -> int:
        """Starts queued deliveries in free slots, claiming more when the queue runs low (or,
        at most every CLAIM_INTERVAL, when slots stay free: the queue may hold only
        subscriptions at their limit); how many it claimed and started."""
        started = self._start_queued()
        idle_slots = len(self.in_flight) < self.concurrency
        if len(self.queued) < self.concurrency or (
            idle_slots and time.monotonic() >= self.next_claim
        ):
            self.next_claim = time.monotonic() + CLAIM_INTERVAL
            started += self._claim() + self._start_queued()
        return started

    def _start_queued(self) -> int:
        if self.queued and time.monotonic() >= self.next_prune:
            self._prune_queue()
        now = self.clock()
        busy = Counter(attempt.webhook_id for attempt in self.in_flight.values())
        held_back: deque[Attempt] = deque()
        started = 0
        while self.queued and len(self.in_flight) < self.concurrency:
            attempt = self.queued.popleft()
            if attempt.lease_ends - now < self.request_budget:
                continue  # the lease could end mid-request: left to be claimed again
            if busy[attempt.webhook_id] >= self.per_subscription:
                held_back.append(attempt)
                continue
            busy[attempt.webhook_id] += 1
            self.in_flight[self.pool.submit(self._send, attempt)] = attempt
            started += 1
        self.queued.extendleft(reversed(held_back))
        return started

    def finish(self, wait_seconds: float) -> int:
        """Takes the requests that have finished (waiting up to `wait_seconds` for one) and
        records them in batches: when a slot's worth have gathered, the oldest has waited
        RECORD_DELAY, or nothing is left in flight. How many finished."""
        finished: set[Future[Outcome]] = set()
        if self.in_flight:
            finished, _ = wait(self.in_flight, timeout=wait_seconds, return_when=FIRST_COMPLETED)
            if finished and not self.unrecorded:
                self.record_by = time.monotonic() + RECORD_DELAY
            self.unrecorded += [(self.in_flight.pop(f), f.result()) for f in finished]
        if self.unrecorded and (
            len(self.unrecorded) >= self.concurrency
            or not self.in_flight
            or time.monotonic() >= self.record_by
        ):
            self._record(self.unrecorded)
            self.unrecorded = []
        return len(finished)

    def _prune_queue(self) -> None:
        """Lets go of queued deliveries whose subscription was paused, deleted or pointed
        elsewhere since they were claimed, so that at most PRUNE_INTERVAL after such a change
        no queued request starts (the ones in flight finish)."""
        self.next_prune = time.monotonic() + PRUNE_INTERVAL
        targets = {(a.webhook_id, a.url, a.verify_ssl) for a in self.queued}
        with self.session_factory() as session:
            current = set(
                session.execute(
                    select(Webhook.id, Webhook.url, Webhook.verify_ssl).where(
                        Webhook.id.in_({webhook_id for webhook_id, _, _ in targets}),
                        Webhook.status == "active",
                    )
                ).tuples()
            )
        stale = [a for a in self.queued if (a.webhook_id, a.url, a.verify_ssl) not in current]
        if stale:
            self.queued = deque(a for a in self.queued if a not in stale)
            self._release(stale)

    def release_queued(self) -> None:
        """Gives back the leases of claimed deliveries not started (a stopping worker)."""
        self._release(list(self.queued))
        self.queued.clear()

    def _release(self, attempts: list[Attempt]) -> None:
        if not attempts:
            return
        with self.session_factory() as session:
            session.execute(
                update(DELIVERIES)
                .where(
                    DELIVERIES.c.id.in_([a.delivery_id for a in attempts]),
                    DELIVERIES.c.locked_by == self.name,
                )
                .values(locked_by=None, locked_until=None)
            )
            session.commit()

    def _claim(self) -> int:
        """Leases due deliveries into the queue, up to PREFETCH times the slots in all and
        per subscription; how many."""
        now = self.clock()
        held = Counter(a.webhook_id for a in (*self.in_flight.values(), *self.queued))
        room = self.concurrency * PREFETCH - len(self.queued)
        with self.session_factory() as session:
            slots = self._due_subscriptions(session, now, held, room)
            if not slots:
                session.rollback()
                return 0
            # Each subscription's oldest due deliveries, by its own index range: a long
            # backlog of one subscription is never read to find another's.
            picks = [
                select(WebhookDelivery.id)
                .where(WebhookDelivery.webhook_id == webhook_id, *_due(now))
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(count)
                .subquery()
                .select()
                for webhook_id, count in slots.items()
            ]
            picked = session.scalars(union_all(*picks) if len(picks) > 1 else picks[0]).all()
            # The lease is taken by a conditional UPDATE: of two workers that picked the same
            # row, the second finds it leased (PostgreSQL re-checks the row after the first
            # commits; SQLite runs one writer at a time).
            claimed = session.scalars(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(picked), *_due(now))
                .values(locked_by=self.name, locked_until=now + self.lease)
                .returning(WebhookDelivery.id)
                .execution_options(synchronize_session=False)
            ).all()
            attempts = self._load(session, list(claimed), now + self.lease) if claimed else []
            session.commit()
        self.queued.extend(attempts)
        return len(attempts)

    def _due_subscriptions(
        self, session: Session, now: datetime, held: Counter[str], room: int
    ) -> dict[str, int]:
        """How many deliveries to claim for each active subscription with due ones, within
        `room` in all: what its share allows, those whose oldest due delivery waited longest
        first."""
        share = self.per_subscription * PREFETCH
        full = [w for w, n in held.items() if n >= share]
        # ORDER BY ... LIMIT 1 rather than min(): both databases then stop at the first due
        # row of the subscription's index range instead of reading the range to its end.
        oldest = (
            select(WebhookDelivery.next_attempt_at)
            .where(WebhookDelivery.webhook_id == Webhook.id, *_due(now))
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(1)
            .scalar_subquery()
        )
        query = (
            select(Webhook.id)
            .where(Webhook.status == "active", oldest.is_not(None))
            .order_by(oldest)
            .limit(room)
        )
        if full:
            query = query.where(Webhook.id.not_in(full))
        if self.organization_id is not None:
            query = query.where(Webhook.organization_id == self.organization_id)
        slots = {}
        for webhook_id in session.scalars(query):
            count = min(share - held[webhook_id], room)
            if count <= 0:
                break
            slots[webhook_id] = count
            room -= count
        return slots

    def _load(
        self, session: Session, delivery_ids: list[str], lease_ends: datetime
    ) -> list[Attempt]:
        rows = session.execute(
            select(WebhookDelivery, Webhook.url, Webhook.signature_key, Webhook.verify_ssl, Event)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .outerjoin(Event, Event.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.id.in_(delivery_ids))
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        ).all()
        attempts = []
        for delivery, url, key, verify_ssl, event in rows:
            if event is None:  # purged after the retention period: nothing left to send
                _close(session, delivery.id, "failed", "The event no longer exists.", self.clock())
                continue
            attempts.append(
                Attempt(
                    delivery_id=delivery.id,
                    webhook_id=delivery.webhook_id,
                    url=url,
                    key=self._key(key),
                    verify_ssl=verify_ssl,
                    body=payload(delivery.webhook_id, event),
                    attempts=delivery.attempts,
                    date_created=delivery.date_created,
                    lease_ends=lease_ends,
                )
            )
        return attempts

    def _key(self, stored: str) -> str:
        if stored not in self.keys:
            self.keys[stored] = decrypt(stored)  # Fernet: about a millisecond each time
        return self.keys[stored]

    def _send(self, attempt: Attempt) -> Outcome:
        """One POST (runs on the pool); never raises."""
        # Wall-clock time: receivers compare it with their own clock.
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "close-sig-timestamp": timestamp,
            "close-sig-hash": signature(attempt.key, timestamp, attempt.body),
        }
        try:
            response = outbound.post(
                self.clients[attempt.verify_ssl],
                attempt.url,
                content=attempt.body,
                headers=headers,
                allow_private=self.settings.webhooks_allow_private_targets,
            )
        except outbound.UnsafeTarget as exc:
            return Outcome(None, str(exc))
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        except Exception as exc:  # a bug must not lose the delivery: it is retried
            log.exception("webhook_send_failed", delivery_id=attempt.delivery_id)
            return Outcome(None, f"{type(exc).__name__}: {exc}")
        error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        return Outcome(response.status_code, error)

    def _record(self, finished: list[tuple[Attempt, Outcome]]) -> None:
        """Saves each outcome (delivered, retry later, or failed for good) and each
        subscription's health, pausing those that have failed for 3 days."""
        now = self.clock()
        with self.session_factory() as session:
            healthy: set[str] = set()
            failing: dict[str, str] = {}
            # One statement for all of them; each only while our lease holds, as a delivery
            # another worker took over is theirs to record. One dropped (its subscription
            # paused) while in flight stays dropped unless it was in fact delivered.
            kept_dropped = and_(
                DELIVERIES.c.status == "dropped", bindparam("outcome") != "delivered"
            )
            session.execute(
                update(DELIVERIES)
                .where(
                    DELIVERIES.c.id == bindparam("delivery_id"),
                    DELIVERIES.c.locked_by == self.name,
                    # Not IN (...): an expanding parameter cannot go into an executemany.
                    or_(DELIVERIES.c.status == "pending", DELIVERIES.c.status == "dropped"),
                )
                .values(status=case((kept_dropped, "dropped"), else_=bindparam("outcome"))),
                [_outcome_values(attempt, outcome, now) for attempt, outcome in finished],
            )
            for attempt, outcome in finished:
                if outcome.ok:
                    healthy.add(attempt.webhook_id)
                else:
                    failing[attempt.webhook_id] = outcome.error or "failed"
            for webhook_id in healthy:
                session.execute(
                    update(Webhook)
                    .where(Webhook.id == webhook_id, Webhook.failing_since.is_not(None))
                    .values(failing_since=None)
                )
            for webhook_id, error in failing.items():
                if webhook_id not in healthy:
                    _note_failure(session, webhook_id, error, now)
            session.commit()
        for attempt, outcome in finished:
            log.info(
                "webhook_delivery",
                delivery_id=attempt.delivery_id,
                webhook_id=attempt.webhook_id,
                status_code=outcome.status_code,
                error=outcome.error,
            )


def _due(now: datetime) -> tuple[Any, ...]:
    """A delivery that is waiting, due, and not leased by a worker."""
    return (
        WebhookDelivery.status == "pending",
        WebhookDelivery.next_attempt_at <= now,
        or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
    )


def _outcome_values(attempt: Attempt, outcome: Outcome, now: datetime) -> dict[str, Any]:
    """The delivery's new columns after an attempt: delivered, retried later, or failed for
    good once the next try would fall outside the 72 hours."""
    tries = attempt.attempts + 1
    if outcome.ok:
        status = "delivered"
    elif now + retry_delay(tries) > attempt.date_created + RETRY_WINDOW:
        status = "failed"
    else:
        status = "pending"
    return {
        "delivery_id": attempt.delivery_id,
        "outcome": status,
        "attempts": tries,
        "next_attempt_at": now + retry_delay(tries) if status == "pending" else now,
        "last_attempt_at": now,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error[:MAX_ERROR_LENGTH] if outcome.error else None,
        "date_delivered": now if outcome.ok else None,
        "locked_by": None,
        "locked_until": None,
        "date_updated": now,
    }


def _note_failure(session: Session, webhook_id: str, error: str, now: datetime) -> None:
    """Keeps the latest error and when failing began; pauses after 3 days of it."""
    since = session.scalar(
        update(Webhook)
        .where(Webhook.id == webhook_id, Webhook.status == "active")
        .values(
            latest_error=error[:MAX_ERROR_LENGTH],
            failing_since=func.coalesce(Webhook.failing_since, now),
        )
        .returning(Webhook.failing_since)
    )
    if since is not None and now - since >= FAILING_PAUSE_AFTER:
        pause(session, webhook_id, "failing", now)


def _close(session: Session, delivery_id: str, status: str, error: str, now: datetime) -> None:
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(
            status=status, last_error=error, locked_by=None, locked_until=None, date_updated=now
        )
        .execution_options(synchronize_session=False)
    )
