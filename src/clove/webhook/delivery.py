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
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import func, or_, select, update
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

# Close retries "with exponential backoff up to every 20 minutes, for up to 72 hours", and
# pauses a subscription whose deliveries have all failed for 3 days (close-api.md §6.2).
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 20 * 60
RETRY_WINDOW = timedelta(hours=72)
FAILING_PAUSE_AFTER = timedelta(days=3)
MAX_ERROR_LENGTH = 500


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

    def pump(self, wait_seconds: float = 0.0) -> int:
        """Fans out one batch of events, starts due deliveries in free slots, then waits up
        to `wait_seconds` for requests to finish and records them; how many things it did."""
        done = self.fan_out()
        done += self.start_due()
        done += self.finish(wait_seconds)
        return done

    def run_until_idle(self) -> int:
        """Fans out and delivers until nothing is due and nothing is in flight (tests and
        `clove worker --once`); retries scheduled for later are left for later."""
        total = 0
        while True:
            done = self.pump(wait_seconds=self.settings.webhook_read_timeout)
            total += done
            if not done and not self.in_flight:
                return total

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
        return taken

    def start_due(self) -> int:
        """Claims due deliveries for the free slots and starts sending them."""
        free = self.concurrency - len(self.in_flight)
        if free <= 0:
            return 0
        attempts = self._claim(free)
        for attempt in attempts:
            self.in_flight[self.pool.submit(self._send, attempt)] = attempt
        return len(attempts)

    def finish(self, wait_seconds: float) -> int:
        """Records the requests that have finished, waiting up to `wait_seconds` for one."""
        if not self.in_flight:
            return 0
        finished, _ = wait(self.in_flight, timeout=wait_seconds, return_when=FIRST_COMPLETED)
        if finished:
            self._record([(self.in_flight.pop(f), f.result()) for f in finished])
        return len(finished)

    def _claim(self, free: int) -> list[Attempt]:
        now = self.clock()
        busy = {attempt.webhook_id for attempt in self.in_flight.values()}
        with self.session_factory() as session:
            # The oldest due deliveries of subscriptions without a request in flight here; a
            # few per subscription at most, so one subscription's backlog cannot fill every slot.
            query = (
                select(WebhookDelivery.id, WebhookDelivery.webhook_id)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                    or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
                    Webhook.status == "active",
                )
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(free * self.per_subscription)
                .with_for_update(skip_locked=True, of=WebhookDelivery)
            )
            if busy:
                query = query.where(WebhookDelivery.webhook_id.not_in(busy))
            if self.organization_id is not None:
                query = query.where(WebhookDelivery.organization_id == self.organization_id)
            picked = _pick(session.execute(query).all(), free, self.per_subscription)
            if not picked:
                session.rollback()
                return []
            claimed = session.scalars(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(picked), WebhookDelivery.status == "pending")
                .values(locked_by=self.name, locked_until=now + self.lease)
                .returning(WebhookDelivery.id)
                .execution_options(synchronize_session=False)
            ).all()
            attempts = self._load(session, list(claimed))
            session.commit()
        return attempts

    def _load(self, session: Session, delivery_ids: list[str]) -> list[Attempt]:
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
                    key=decrypt(key),
                    verify_ssl=verify_ssl,
                    body=payload(delivery.webhook_id, event),
                    attempts=delivery.attempts,
                    date_created=delivery.date_created,
                )
            )
        return attempts

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
            for attempt, outcome in finished:
                _record_attempt(session, self.name, attempt, outcome, now)
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


def _pick(rows: Iterable[Any], free: int, per_subscription: int) -> list[str]:
    """Up to `free` ids, oldest first, at most `per_subscription` of any one subscription."""
    taken: Counter[str] = Counter()
    picked = []
    for delivery_id, webhook_id in rows:
        if taken[webhook_id] < per_subscription:
            taken[webhook_id] += 1
            picked.append(delivery_id)
            if len(picked) == free:
                break
    return picked


def _record_attempt(
    session: Session, worker: str, attempt: Attempt, outcome: Outcome, now: datetime
) -> None:
    tries = attempt.attempts + 1
    values: dict[str, Any] = {
        "attempts": tries,
        "last_attempt_at": now,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error[:MAX_ERROR_LENGTH] if outcome.error else None,
        "locked_by": None,
        "locked_until": None,
        "date_updated": now,
    }
    if outcome.ok:
        values.update(status="delivered", date_delivered=now)
    elif now + retry_delay(tries) > attempt.date_created + RETRY_WINDOW:
        values["status"] = "failed"
    else:
        values["next_attempt_at"] = now + retry_delay(tries)
    # Only while our lease holds: a delivery another worker took over is theirs to record.
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == attempt.delivery_id,
            WebhookDelivery.locked_by == worker,
            WebhookDelivery.status == "pending",
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )


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
