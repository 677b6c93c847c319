"""Webhook deliveries per second: Clove's Dispatcher next to a bare httpx loop.

One run, on a fresh database (a temporary SQLite file, or with a PostgreSQL URL a new database
`clove_bench_<random>` created beside the one named and dropped at the end):

1. A receiver in its own process (`--serve-receiver PORT`: uvicorn with a raw ASGI app on
   127.0.0.1), so that it does not take the GIL from the measured process. It answers 200 to
   every POST to /hook, counts them, checks Close's signature and counts distinct event ids.
2. Setup (timed, not measured): an organization, one subscription to `lead.created` aimed at
   the receiver (`create_webhook`, private targets allowed), then N `lead.created` events of
   that organization (each with a ~1 KB lead document) inserted in one executemany, after the
   subscription's creation. The baselines' bodies are built from those events with Clove's own
   `payload()`, so both sides send the very same bytes.
3. Measured: `Dispatcher(writing_session_factory(engine), settings).run_until_idle()` — fan-out,
   claims, signing, sending on its thread pool and recording — until nothing is due. Then the
   database must hold N deliveries `delivered` after one attempt each, and the receiver must
   have had N signed POSTs for N distinct events.
4. Baselines on the same receiver: the same N bodies POSTed by one `httpx.Client` configured as
   the Dispatcher's, each signed at send time like Clove does: sequentially; with a thread pool
   of `--concurrency` threads sharing the client; and, when lower, with `--per-subscription`
   threads (what Clove may keep in flight to one subscription).
5. Printed: deliveries/s of each and Clove's ratio to them, CPU per delivery (this process, the
   receiver, the rest of the machine), the peak RSS during each run, and where the Dispatcher's
   own thread spends its time (`--profile FILE` adds a cProfile of that thread).

    .venv/bin/python bench/webhooks.py [--events 20000] [--concurrency 16]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres] [--json FILE]

See bench/README.md for the figures on the reference machine.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import hmac
import io
import json
import os
import pstats
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import httpx
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

# bench/ is not a package: `python bench/webhooks.py` puts bench/ first on sys.path.
from api_overhead import (
    HOST,
    Database,
    Processes,
    clove_version,
    free_port,
    http_request,
    machine_busy_seconds,
    proc_cpu_seconds,
    uvicorn_options,
)
from clove.auth.service import AuthContext
from clove.config import Settings, get_settings
from clove.db import make_engine, writing_session_factory
from clove.event.service import Actor, event_values
from clove.kit.dates import iso_utc, utcnow
from clove.kit.ids import new_id
from clove.kit.secrets import decrypt
from clove.migrate import upgrade
from clove.models import Event, Membership, WebhookDelivery
from clove.organization.service import create_organization
from clove.webhook.delivery import Dispatcher, payload
from clove.webhook.schemas import WebhookCreate, WebhookEvent
from clove.webhook.service import create_webhook

HOOK_PATH = "/hook"
KEY_ENV = "CLOVE_BENCH_RECEIVER_KEY"
DEFAULTS = Settings.model_fields
USER_AGENT = "Clove-Webhooks/1"  # what the Dispatcher's clients send

FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")
COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne")
CITIES = (("San Francisco", "CA", "94107"), ("Austin", "TX", "78701"), ("Boston", "MA", "02110"))


# --------------------------------------------------------------------------- the receiver


class ReceiverApp:
    """A raw ASGI app: POST /hook -> 200 (counted, signature checked); GET /stats; POST /reset."""

    def __init__(self, key_hex: str) -> None:
        self.key = bytes.fromhex(key_hex) if key_hex else b""
        self.reset()

    def reset(self) -> None:
        self.posts = 0
        self.signed = 0
        self.body_bytes = 0
        self.events: set[bytes] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        answer = b""
        if scope["method"] == "POST" and scope["path"] == HOOK_PATH:
            self._take(scope["headers"], body)
        elif scope["method"] == "GET" and scope["path"] == "/stats":
            stats = {
                "posts": self.posts,
                "signed": self.signed,
                "events": len(self.events),
                "body_bytes": self.body_bytes,
            }
            answer = json.dumps(stats).encode()
        elif scope["method"] == "POST" and scope["path"] == "/reset":
            self.reset()
        else:
            await _respond(send, 404, b"")
            return
        await _respond(send, 200, answer)

    def _take(self, raw_headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.posts += 1
        self.body_bytes += len(body)
        headers = dict(raw_headers)
        timestamp = headers.get(b"close-sig-timestamp", b"")
        expected = hmac.new(self.key, timestamp + body, hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(expected, headers.get(b"close-sig-hash", b"")):
            self.signed += 1
        # The payload starts {"subscription_id":…,"event":{"id":"ev_…": no JSON parse needed.
        start = body.find(b'"event":{"id":"')
        if start >= 0:
            start += len(b'"event":{"id":"')
            self.events.add(body[start : body.find(b'"', start)])


async def _respond(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve_receiver(port: int) -> None:
    """The receiver's process (`--serve-receiver PORT`), until SIGTERM."""
    import uvicorn

    app = ReceiverApp(os.environ.get(KEY_ENV, ""))
    uvicorn.run(app, host=HOST, port=port, lifespan="off", **uvicorn_options())


def start_receiver(processes: Processes, port: int, key: str, log_file: Path) -> int:
    """Starts the receiver process and waits until it answers; returns its pid."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-receiver", str(port)]
    with log_file.open("wb") as fh:
        proc = processes.start(
            cmd, env={**os.environ, KEY_ENV: key}, stdout=fh, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the receiver exited ({proc.returncode}): {log_file.read_text()}")
        try:
            if http_request(port, "GET", "/stats", timeout=1)[0] == 200:
                return proc.pid
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the receiver did not answer within 20 s")


def receiver_stats(port: int) -> dict[str, int]:
    status, body = http_request(port, "GET", "/stats")
    if status != 200:
        raise RuntimeError(f"the receiver's /stats answered {status}")
    return dict(json.loads(body))


def receiver_reset(port: int) -> None:
    if http_request(port, "POST", "/reset")[0] != 200:
        raise RuntimeError("the receiver did not reset its counters")


# --------------------------------------------------------------------------- setup


@dataclass
class World:
    """What setup made: the organization, its subscription and the baselines' bodies."""

    org_id: str
    webhook_id: str
    key: str  # the subscription's signature key, hex
    url: str
    bodies: list[bytes]
    seconds: dict[str, float] = field(default_factory=dict)


def make_world(engine: Engine, n: int, port: int, log: Callable[[str], None]) -> World:
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    upgrade(engine)
    seconds["migrate"] = time.perf_counter() - began

    began = time.perf_counter()
    url = f"http://{HOST}:{port}{HOOK_PATH}"
    with writing_session_factory(engine).begin() as session:
        org, user, _key, _secret = create_organization(
            session, "Bench", f"bench-{secrets.token_hex(4)}@example.com", "Bench", "Admin"
        )
        membership_id = session.scalar(
            select(Membership.id).where(Membership.organization_id == org.id)
        )
        ctx = AuthContext(org.id, user.id, membership_id or "", "admin")
        actor = Actor(ctx, request_id=None, request_method="POST", request_path="/api/v1/lead/")
        body = WebhookCreate(url=url, events=[WebhookEvent(object_type="lead", action="created")])
        webhook = create_webhook(session, Actor(ctx), body, allow_private=True)
        org_id, user_id, webhook_id = org.id, user.id, webhook.id
        key, created = decrypt(webhook.signature_key), webhook.date_created
    seconds["organization + subscription"] = time.perf_counter() - began

    began = time.perf_counter()
    # Strictly after the subscription (fan-out skips older events), one microsecond apart so
    # that the order of delivery is the order of insertion.
    start = max(utcnow(), created + timedelta(milliseconds=1))
    rows = []
    for i in range(n):
        now = start + timedelta(microseconds=i)
        document = lead_document(i, org_id, user_id, iso_utc(now) or "")
        rows.append(
            event_values(
                actor,
                object_type="lead",
                action="created",
                object_id=document["id"],
                lead_id=document["id"],
                data=document,
                now=now,
            )
        )
    with engine.begin() as conn:
        conn.execute(insert(Event), rows)
    seconds["events"] = time.perf_counter() - began
    log(f"  {n:,} lead.created events inserted in {seconds['events']:.1f} s")

    began = time.perf_counter()
    with Session(engine) as session:
        events = session.scalars(
            select(Event)
            .where(Event.organization_id == org_id)
            .order_by(Event.date_created, Event.id)
        )
        bodies = [payload(webhook_id, event) for event in events]
    seconds["baseline bodies"] = time.perf_counter() - began
    return World(org_id, webhook_id, key, url, bodies, seconds)


def lead_document(i: int, org_id: str, user_id: str, now: str) -> dict[str, Any]:
    """A small lead document (~1 KB as JSON): one contact with an email and a phone, an
    address."""
    lead_id, contact_id = new_id("lead"), new_id("cont")
    first, last = FIRST_NAMES[i % len(FIRST_NAMES)], LAST_NAMES[i // 9 % len(LAST_NAMES)]
    company = f"{COMPANIES[i % len(COMPANIES)]} {i}"
    domain = f"{company.lower().replace(' ', '')}.example.com"
    city, state, zipcode = CITIES[i % len(CITIES)]
    email = {"type": "office", "email": f"{first.lower()}.{last.lower()}@{domain}"}
    phone = {"type": "office", "phone": f"+1415555{i % 10000:04d}", "country": "US"}
    contact = {
        "id": contact_id,
        "lead_id": lead_id,
        "name": f"{first} {last}",
        "title": "VP Sales",
        "emails": [email],
        "phones": [phone],
    }
    return {
        "id": lead_id,
        "organization_id": org_id,
        "name": company,
        "display_name": company,
        "description": "Inbound: asked for a demo.",
        "url": f"https://{domain}",
        "status_id": "stat_potential",
        "status_label": "Potential",
        "contact_ids": [contact_id],
        "contacts": [contact],
        "addresses": [
            {
                "label": "business",
                "address_1": f"{100 + i % 900} Market St",
                "city": city,
                "state": state,
                "zipcode": zipcode,
                "country": "US",
            }
        ],
        "created_by": user_id,
        "updated_by": user_id,
        "date_created": now,
        "date_updated": now,
    }


# --------------------------------------------------------------------------- measured runs


@dataclass
class Run:
    name: str
    deliveries: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0  # this process
    receiver_cpu_s: float | None = None
    rest_cpu_s: float | None = None  # the rest of the machine: PostgreSQL, kernel, others
    rss_start_mb: float | None = None
    peak_rss_mb: float | None = None
    peak_since_start: bool = True  # False: the process's peak (VmHWM could not be reset)
    received: dict[str, int] = field(default_factory=dict)
    phases: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "deliveries": self.deliveries,
            "seconds": self.seconds,
            "rate": self.rate,
            "cpu_s": self.cpu_s,
            "cpu_us_per_delivery": self.cpu_s * 1e6 / self.deliveries if self.deliveries else None,
            "receiver_cpu_s": self.receiver_cpu_s,
            "rest_cpu_s": self.rest_cpu_s,
            "rss_start_mb": self.rss_start_mb,
            "peak_rss_mb": self.peak_rss_mb,
            "received": self.received,
            "phases": self.phases,
        }


def _status_kb(name: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Starts a new VmHWM (Linux: writing 5 to clear_refs); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float | None:
    peak = _status_kb("VmHWM")
    if peak is None:
        import resource

        peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
    return peak / 1024


@contextmanager
def measured(run: Run, receiver_pid: int, into: list[Run]) -> Iterator[Run]:
    """Wall time, this process's CPU and peak RSS, the receiver's and the rest's CPU."""
    run.peak_since_start = _reset_peak_rss()
    rss = _status_kb("VmRSS")
    run.rss_start_mb = None if rss is None else rss / 1024
    receiver0, busy0 = proc_cpu_seconds(receiver_pid), machine_busy_seconds()
    cpu0, t0 = time.process_time(), time.perf_counter()
    yield run
    run.seconds, run.cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    run.peak_rss_mb = _peak_rss_mb()
    receiver1, busy1 = proc_cpu_seconds(receiver_pid), machine_busy_seconds()
    if receiver0 is not None and receiver1 is not None:
        run.receiver_cpu_s = receiver1 - receiver0
    if busy0 is not None and busy1 is not None:
        run.rest_cpu_s = max(0.0, busy1 - busy0 - run.cpu_s - (run.receiver_cpu_s or 0.0))
    into.append(run)


@contextmanager
def receiver_progress(progress: Any, label: str, n: int, port: int) -> Iterator[None]:
    """A progress bar fed by the receiver's count (polled twice a second), so that nothing is
    added to the measured code."""
    task = progress.add_task(label, total=n)
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            try:
                progress.update(task, completed=receiver_stats(port)["posts"])
            except (OSError, RuntimeError, ValueError):
                pass

    poller = threading.Thread(target=poll, name="bench-progress", daemon=True)
    poller.start()
    try:
        yield
    finally:
        stop.set()
        poller.join()
        try:
            progress.update(task, completed=receiver_stats(port)["posts"])
        except (OSError, RuntimeError, ValueError):
            pass  # the receiver is gone (interrupted): the error that matters is raised already


class Phases:
    """Wall and CPU time of the Dispatcher's own thread per method (inclusive)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def timed(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall[phase] = self.wall.get(phase, 0.0) + time.perf_counter() - t0
                self.cpu[phase] = self.cpu.get(phase, 0.0) + time.thread_time() - c0
                self.calls[phase] = self.calls.get(phase, 0) + 1

        return wrapper

    def exclusive(self, total_wall: float, total_cpu: float) -> dict[str, dict[str, float]]:
        """Each phase without the phases it calls: claim without load, finish without record."""

        def part(name: str, minus: str | None = None) -> dict[str, float]:
            wall, cpu = self.wall.get(name, 0.0), self.cpu.get(name, 0.0)
            if minus:
                wall, cpu = wall - self.wall.get(minus, 0.0), cpu - self.cpu.get(minus, 0.0)
            return {"wall_s": wall, "cpu_s": cpu, "calls": float(self.calls.get(name, 0))}

        parts = {
            "fan-out (transaction)": part("fan_out"),
            "claim (select, lease, commit)": part("claim", "load"),
            "load (rows, decrypt key, payload)": part("load"),
            "wait for a request to finish": part("finish", "record"),
            "record (update, commit, log)": part("record"),
        }
        parts["other (pump loop, submit)"] = {
            "wall_s": total_wall - sum(p["wall_s"] for p in parts.values()),
            "cpu_s": total_cpu - sum(p["cpu_s"] for p in parts.values()),
            "calls": 0.0,
        }
        return parts


def dispatcher_settings(args: argparse.Namespace, db_url: str, n: int) -> Settings:
    return Settings(
        database_url=db_url,
        webhooks_allow_private_targets=True,
        webhook_concurrency=args.concurrency,
        webhook_per_subscription=args.per_subscription,
        # Clove pauses a subscription at 100,000 pending deliveries; a bigger run must not.
        webhook_max_backlog=max(DEFAULTS["webhook_max_backlog"].default, 2 * n),
        log_level=args.log_level,
    )


def run_clove(
    engine: Engine,
    world: World,
    settings: Settings,
    args: argparse.Namespace,
    progress: Any,
    runs: list[Run],
) -> Run:
    """One Dispatcher's `run_until_idle()`, its thread's phases timed (and profiled if asked)."""
    n = len(world.bodies)
    dispatcher = Dispatcher(writing_session_factory(engine), settings)
    phases = Phases()
    # Instance attributes shadow the methods: the Dispatcher's code is unchanged.
    dispatcher.fan_out = phases.timed("fan_out", dispatcher.fan_out)  # type: ignore[method-assign]
    dispatcher._claim = phases.timed("claim", dispatcher._claim)  # type: ignore[method-assign]
    dispatcher._load = phases.timed("load", dispatcher._load)  # type: ignore[method-assign]
    dispatcher.finish = phases.timed("finish", dispatcher.finish)  # type: ignore[method-assign]
    dispatcher._record = phases.timed("record", dispatcher._record)  # type: ignore[method-assign]
    profiler = cProfile.Profile() if args.profile else None
    label = "Clove: Dispatcher.run_until_idle()" + (" (profiled)" if profiler else "")
    run = Run("clove" + (" (profiled)" if profiler else ""))
    try:
        with (
            receiver_progress(progress, label, n, args.receiver_port),
            measured(run, args.receiver_pid, runs),
        ):
            thread_cpu0 = time.thread_time()
            if profiler:
                profiler.enable()
            dispatcher.run_until_idle()
            if profiler:
                profiler.disable()
            thread_cpu = time.thread_time() - thread_cpu0
    finally:
        dispatcher.close()
    run.phases = phases.exclusive(run.seconds, thread_cpu)
    run.phases["sender threads (CPU only)"] = {
        "wall_s": 0.0,
        "cpu_s": run.cpu_s - thread_cpu,
        "calls": 0.0,
    }
    run.received = receiver_stats(args.receiver_port)
    run.deliveries = run.received["posts"]
    if profiler:
        profiler.dump_stats(args.profile)
    return run


def verify(engine: Engine, world: World, run: Run) -> dict[str, int]:
    """What the Dispatcher left in the database and what the receiver got; raises unless every
    event was delivered exactly once, signed."""
    n = len(world.bodies)
    with Session(engine) as session:
        by_status: dict[str, int] = {
            status: count
            for status, count in session.execute(
                select(WebhookDelivery.status, func.count())
                .where(WebhookDelivery.webhook_id == world.webhook_id)
                .group_by(WebhookDelivery.status)
            )
        }
        attempts = session.scalar(
            select(func.sum(WebhookDelivery.attempts)).where(
                WebhookDelivery.webhook_id == world.webhook_id
            )
        )
        unfanned = session.scalar(
            select(func.count())
            .select_from(Event)
            .where(Event.organization_id == world.org_id, Event.fanned_out.is_(False))
        )
    counts = {
        "deliveries delivered": int(by_status.get("delivered", 0)),
        "deliveries in all": int(sum(by_status.values())),
        "attempts": int(attempts or 0),
        "POSTs received": run.received["posts"],
        "signed correctly": run.received["signed"],
        "distinct events received": run.received["events"],
    }
    wrong = {k: v for k, v in counts.items() if v != n}
    if wrong or unfanned:
        raise RuntimeError(
            f"expected {n:,} of each after Clove's run, found {wrong} "
            f"({unfanned} events not fanned out; deliveries by status {by_status})"
        )
    return counts


def bare_client(settings: Settings) -> httpx.Client:
    """A client configured as the Dispatcher's."""
    return httpx.Client(
        timeout=httpx.Timeout(
            settings.webhook_read_timeout, connect=settings.webhook_connect_timeout
        ),
        limits=httpx.Limits(max_connections=settings.webhook_concurrency),
        follow_redirects=False,
        trust_env=False,
        headers={"user-agent": USER_AGENT},
    )


def bare_run(
    name: str,
    threads: int,
    world: World,
    settings: Settings,
    args: argparse.Namespace,
    progress: Any,
    runs: list[Run],
) -> Run:
    """The same bodies POSTed by one client, signed at send time; sequentially for threads=1,
    else by a pool of `threads` sharing the client."""
    receiver_reset(args.receiver_port)
    key = bytes.fromhex(world.key)
    client = bare_client(settings)
    failed: list[int] = []

    def send(body: bytes) -> None:
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "close-sig-timestamp": timestamp,
            "close-sig-hash": hmac.new(key, timestamp.encode() + body, hashlib.sha256).hexdigest(),
        }
        response = client.post(world.url, content=body, headers=headers)
        if response.status_code != 200:
            failed.append(response.status_code)

    run = Run(name)
    n = len(world.bodies)
    try:
        with (
            receiver_progress(progress, name, n, args.receiver_port),
            measured(run, args.receiver_pid, runs),
        ):
            if threads == 1:
                for body in world.bodies:
                    send(body)
            else:
                with ThreadPoolExecutor(threads, thread_name_prefix="bare") as pool:
                    for _ in pool.map(send, world.bodies):
                        pass
    finally:
        client.close()
    run.received = receiver_stats(args.receiver_port)
    run.deliveries = run.received["posts"]
    if failed or run.received["posts"] != n or run.received["signed"] != n:
        raise RuntimeError(f"{name}: {len(failed)} failures, receiver counted {run.received}")
    return run


# --------------------------------------------------------------------------- one database


@dataclass
class Result:
    setup: dict[str, str]
    setup_seconds: dict[str, float]
    runs: list[Run]
    counts: dict[str, int]
    profile: str | None


def measure(args: argparse.Namespace, processes: Processes, log: Callable[[str], None]) -> Result:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    tmp = Path(tempfile.mkdtemp(prefix="clove-bench-webhooks-"))
    db: Database | None = None
    engine: Engine | None = None
    log_file: TextIO | None = None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    try:
        db = Database(args.database_url, tmp)
        log(f"Preparing {db.label} …")
        db.create()
        engine = make_engine(db.url)
        args.receiver_port = free_port()
        world = make_world(engine, args.events, args.receiver_port, log)
        args.receiver_pid = start_receiver(processes, args.receiver_port, world.key, tmp / "r.log")
        log(f"  receiver on port {args.receiver_port}, pid {args.receiver_pid}")
        log(f"  setup done in {sum(world.seconds.values()):.1f} s")
        settings = dispatcher_settings(args, db.url, args.events)
        log_file = configure_logs(settings, tmp / "worker.log")

        runs: list[Run] = []
        n = len(world.bodies)
        with Progress(*columns, TimeElapsedColumn(), refresh_per_second=2) as progress:
            clove = run_clove(engine, world, settings, args, progress, runs)
            counts = verify(engine, world, clove)
            threads = [1, settings.webhook_concurrency]
            per_subscription = min(settings.webhook_per_subscription, settings.webhook_concurrency)
            if 1 < per_subscription < settings.webhook_concurrency:
                threads.append(per_subscription)
            for count in threads:
                name = "bare, sequential" if count == 1 else f"bare, {count} threads"
                bare_run(name, count, world, settings, args, progress, runs)
        mean_body = sum(len(b) for b in world.bodies) / n
        setup = {
            "clove": clove_version(),
            "database": db.label,
            "deliveries": f"{n:,} lead.created events to one subscription, bodies of "
            f"{mean_body:,.0f} bytes on average",
            "dispatcher": f"webhook_concurrency {settings.webhook_concurrency}, "
            f"webhook_per_subscription {settings.webhook_per_subscription}, fan-out batch "
            f"{settings.webhook_fanout_batch}, log level {settings.log_level} (to a file)",
            "receiver": "uvicorn + raw ASGI app, its own process, checks every signature",
            "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        }
        return Result(setup, world.seconds, runs, counts, args.profile)
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        try:
            if engine is not None:
                engine.dispose()
            processes.stop_all()
            if db is not None:
                try:
                    db.drop()
                except Exception as exc:
                    log(f"Could not drop the benchmark database: {exc}")
            if log_file is not None:
                log_file.close()
            shutil.rmtree(tmp, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous)


def configure_logs(settings: Settings, path: Path) -> TextIO:
    """Logging as `clove worker` sets it up (one line per delivery at info), written to a file
    rather than the terminal; returns the file."""
    import structlog

    from clove.kit.logging import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    handle = path.open("w")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=handle))
    return handle


# --------------------------------------------------------------------------- report


def _us(seconds: float | None, n: int) -> str:
    return "-" if seconds is None or not n else f"{seconds * 1e6 / n:,.0f}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def report(result: Result, width: int | None) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    out = Console(width=width)
    setup = Table(show_header=False, box=None, pad_edge=False)
    for k, v in result.setup.items():
        setup.add_row(f"[dim]{k}[/dim]", v)
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.setup_seconds.items())
    setup.add_row("[dim]setup (not measured)[/dim]", timings)
    out.print(setup)

    clove, *bare = result.runs
    ratios = {run.name: clove.rate / run.rate for run in bare if run.rate}
    table = Table(title="Webhook deliveries per second")
    for col in ("run", "deliveries", "seconds", "deliveries/s", "Clove ratio", "CPU s"):
        table.add_column(col, justify="right", no_wrap=True)
    for col in ("CPU µs/del", "receiver µs/del", "rest µs/del", "RSS start", "peak RSS"):
        table.add_column(col, justify="right", no_wrap=True)
    for run in result.runs:
        ratio = ratios.get(run.name)
        peak = _mb(run.peak_rss_mb) + ("" if run.peak_since_start else " ¹")
        table.add_row(
            run.name,
            f"{run.deliveries:,}",
            f"{run.seconds:.2f}",
            f"{run.rate:,.0f}",
            "-" if ratio is None else f"{ratio:.3f}",
            f"{run.cpu_s:.2f}",
            _us(run.cpu_s, run.deliveries),
            _us(run.receiver_cpu_s, run.deliveries),
            _us(run.rest_cpu_s, run.deliveries),
            _mb(run.rss_start_mb),
            peak,
        )
    table.caption = (
        "Clove ratio = Clove's deliveries/s ÷ that baseline's. CPU: this process (Clove: the "
        "Dispatcher's thread and its senders); receiver: the receiver's process; rest: "
        "everything else on the machine (PostgreSQL, kernel, other programs). RSS in MB; peak "
        "RSS is this process's during that run"
        + ("" if all(r.peak_since_start for r in result.runs) else " (¹ since it started)")
        + ". Checked after Clove's run: "
        + ", ".join(f"{v:,} {k}" for k, v in result.counts.items())
    )
    out.print(table)

    phases = Table(title="Where the Dispatcher's own thread spends its time")
    for col in ("phase", "calls", "wall s", "wall µs/del", "share", "CPU s", "CPU µs/del"):
        phases.add_column(col, justify="right", no_wrap=True)
    n = clove.deliveries
    for name, t in clove.phases.items():
        phases.add_row(
            name,
            f"{int(t['calls']):,}" if t["calls"] else "",
            f"{t['wall_s']:.2f}" if t["wall_s"] else "",
            _us(t["wall_s"], n) if t["wall_s"] else "",
            f"{t['wall_s'] / clove.seconds:.0%}" if t["wall_s"] and clove.seconds else "",
            f"{t['cpu_s']:.2f}",
            _us(t["cpu_s"], n),
        )
    phases.caption = (
        "Exclusive times: claim without load, wait without record. Each pump fans out a batch "
        "(after a full one, or a poll interval after an empty one), claims deliveries ahead "
        "into a queue when it runs low, starts queued ones in free slots, waits for a request "
        "to finish and records finished ones in batches. "
        "Sender threads: the CPU of the pool's threads (signing, httpx) and anything else "
        "outside the Dispatcher's thread."
    )
    out.print(phases)
    if result.profile:
        print_profile(out, result.profile)
    return {
        "setup": result.setup,
        "setup_seconds": result.setup_seconds,
        "runs": {run.name: run.as_dict() for run in result.runs},
        "ratios": ratios,
        "checked": result.counts,
    }


def print_profile(out: Any, path: str) -> None:
    """The profiled thread's top functions, by own time and by cumulative time."""
    for key in ("tottime", "cumulative"):
        buffer = io.StringIO()
        stats = pstats.Stats(path, stream=buffer)
        stats.strip_dirs().sort_stats(key).print_stats(25)
        text = buffer.getvalue()
        out.print(f"[bold]cProfile of the Dispatcher's thread, by {key}[/bold] ({path})")
        out.print(text[text.find("   ncalls") :], markup=False, highlight=False)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Webhook deliveries per second through Clove's Dispatcher, next to a bare "
        "httpx loop sending the same signed bodies to the same receiver."
    )
    p.add_argument("--events", type=int, default=20_000, help="events, one delivery each")
    p.add_argument(
        "--database-url",
        help="default: a temporary SQLite file. postgresql://...: a fresh database is created "
        "on that server and dropped at the end",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULTS["webhook_concurrency"].default,
        help="webhook_concurrency: the Dispatcher's requests in flight, and the threads of the "
        "concurrent baseline (default: Clove's)",
    )
    p.add_argument(
        "--per-subscription",
        type=int,
        default=DEFAULTS["webhook_per_subscription"].default,
        help="webhook_per_subscription (default: Clove's)",
    )
    p.add_argument(
        "--log-level",
        default=DEFAULTS["log_level"].default,
        help="the worker's log level; at info it writes a line per delivery (to a file here)",
    )
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="run Clove under cProfile (the Dispatcher's thread; slows it), save the stats to "
        "FILE and print the top functions",
    )
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--serve-receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not 1 <= args.events <= 1_000_000:
        p.error("--events must be in [1, 1000000]")
    if not 1 <= args.concurrency <= 256 or not 1 <= args.per_subscription <= 256:
        p.error("--concurrency and --per-subscription must be in [1, 256]")
    return args


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_receiver:
        serve_receiver(args.serve_receiver)
        return 0

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    # create_webhook encrypts the signature key: a key of our own, so that no ./clove.key file
    # is made (or an unrelated one used).
    if not os.environ.get("CLOVE_SECRET_KEY"):
        from cryptography.fernet import Fernet

        os.environ["CLOVE_SECRET_KEY"] = Fernet.generate_key().decode()
        get_settings.cache_clear()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    processes = Processes()
    width = None if sys.stdout.isatty() else 150
    try:
        figures = report(measure(args, processes, log), width)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
        return 0
    except KeyboardInterrupt:
        log("Interrupted; cleaning up.")
        return 130
    except (RuntimeError, OSError, httpx.HTTPError) as exc:
        log(f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        processes.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
