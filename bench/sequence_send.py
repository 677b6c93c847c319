"""Sequence emails per second: Clove's SequenceEngine next to a bare smtplib loop.

One run, on a fresh database (a temporary SQLite file, or with a PostgreSQL URL a new database
created beside the one named and dropped at the end):

1. An SMTP sink in a separate process, so that it does not take the GIL from the measured
   process: by default a minimal asyncio SMTP server in this file (`--serve-sink PORT`), which
   accepts and discards every message; `--sink aiosmtpd` uses `python -m aiosmtpd` with its
   `Sink` handler instead (about 7 times slower than the minimal one, so it is the bottleneck).
2. Setup (timed separately): an organization, N leads with one contact each (`clove seed`'s
   generator), a sender account pointing at the sink, a template with `{{ contact.first_name }}`
   and `{{ lead.display_name }}`, an active sequence with one email step and N active
   subscriptions due now, inserted set-based.
3. Measured: one `SequenceEngine.run_until_idle()` until every subscription has finished. The
   database must then hold N step runs `sent` and N email activities `sent`.
4. Baselines on the same sink: the same N messages (built beforehand with the engine's
   `build_message`) sent by `smtplib` over one connection, and over a connection per message
   (min(N, 2000) messages). Printed: messages/s of each and Clove's ratio to them; the goal is a
   ratio of at least 0.5 to the one-connection loop.

    .venv/bin/python bench/sequence_send.py [--subscriptions 10000] [--batch-size 500]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres] [--json FILE]

See bench/README.md for the figures on the reference machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

# bench/ is not a package: `python bench/sequence_send.py` puts bench/ first on sys.path.
from api_overhead import (
    HOST,
    Database,
    Processes,
    clove_version,
    free_port,
    machine_busy_seconds,
    proc_cpu_seconds,
)
from clove.db import make_engine, writing_session_factory
from clove.email.message import address, build_message
from clove.email.smtp import SmtpConfig
from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.migrate import upgrade
from clove.models import (
    ConnectedAccount,
    Contact,
    ContactEmail,
    EmailActivity,
    EmailTemplate,
    Lead,
    Sequence,
    SequenceStep,
    SequenceStepRun,
    SequenceSubscription,
)
from clove.organization.service import create_organization
from clove.seed import resolve_target, seed_organization
from clove.sequence import engine as engine_module
from clove.sequence.engine import SequenceEngine

RATIO_GOAL = 0.5
PER_MESSAGE_MAX = 2000  # connection-per-message baseline: enough for a steady rate
SENDER_EMAIL, SENDER_NAME = "sam@bench.clove.test", "Sam Sender"
SUBJECT = "Hello {{ contact.first_name }}"
BODY = (
    "Hi {{ contact.first_name }},\n\n"
    "I noticed {{ lead.display_name }} is growing its sales team. Teams like yours use Clove to "
    "keep every lead, call and email in one place, without per-seat fees.\n\n"
    "Would a 15-minute call next week be worth it?\n\n"
    "Best,\nSam\n"
)


# --------------------------------------------------------------------------- the SMTP sink


class _SinkProtocol(asyncio.Protocol):
    """Just enough SMTP for smtplib: every command gets 250, DATA is read up to the dot."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buf = b""
        self.in_data = False
        transport.write(b"220 bench sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        replies: list[bytes] = []
        while True:
            if self.in_data:
                end = self.buf.find(b"\r\n.\r\n")
                if end < 0:
                    break
                self.buf, self.in_data = self.buf[end + 5 :], False
                replies.append(b"250 OK queued\r\n")
                continue
            eol = self.buf.find(b"\r\n")
            if eol < 0:
                break
            verb, self.buf = self.buf[:4].upper(), self.buf[eol + 2 :]
            if verb == b"EHLO":
                replies.append(b"250-bench sink\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                self.in_data = True
                replies.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"".join(replies) + b"221 Bye\r\n")
                self.transport.close()
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                replies.append(b"250 OK\r\n")
        if replies:
            self.transport.write(b"".join(replies))


def serve_sink(port: int) -> None:
    """The minimal sink's process (`--serve-sink PORT`), until SIGTERM."""

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(_SinkProtocol, HOST, port)
        await server.serve_forever()

    try:
        import uvloop
    except ImportError:
        asyncio.run(serve())
    else:
        uvloop.run(serve())


def start_sink(kind: str, processes: Processes, log_file: Path) -> tuple[int, int]:
    """Starts the sink process and waits for its greeting; returns (port, pid)."""
    port = free_port()
    if kind == "aiosmtpd":
        listen = f"{HOST}:{port}"
        cmd = [sys.executable, "-m", "aiosmtpd", "-n", "-l", listen, "-c", "aiosmtpd.handlers.Sink"]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-sink", str(port)]
    with log_file.open("wb") as fh:
        proc = processes.start(cmd, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the SMTP sink exited ({proc.returncode}): {log_file.read_text()}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                if s.recv(64).startswith(b"220"):
                    return port, proc.pid
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the SMTP sink did not greet within 20 s")


# --------------------------------------------------------------------------- setup


@dataclass
class World:
    """What setup made: the organization, its sequence and the messages for the baselines."""

    org_id: str
    sequence_id: str
    messages: list[tuple[str, str, bytes]]  # (envelope sender, recipient, message)
    seconds: dict[str, float] = field(default_factory=dict)


def make_world(engine: Engine, n: int, log: Callable[[str], None]) -> World:
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    upgrade(engine)
    seconds["migrate"] = time.perf_counter() - began

    began = time.perf_counter()
    with Session(engine) as session:
        org, user, _key, _secret = create_organization(
            session, "Bench", f"bench-{secrets.token_hex(4)}@example.com", "Bench", "Admin"
        )
        org_id, user_id = org.id, user.id
        session.commit()
    seed_organization(engine, resolve_target(engine, org_id), n, contacts_per_lead=1)
    seconds["leads"] = time.perf_counter() - began
    log(f"  {n:,} leads with a contact each in {seconds['leads']:.1f} s")

    began = time.perf_counter()
    sequence_id, account_id = add_sequence(engine, org_id, user_id)
    recipients = add_subscriptions(engine, org_id, user_id, sequence_id, account_id)
    if len(recipients) != n:
        raise RuntimeError(f"{len(recipients)} subscriptions made for {n} leads")
    seconds["subscriptions"] = time.perf_counter() - began

    began = time.perf_counter()
    messages = bare_messages(recipients)
    seconds["baseline messages"] = time.perf_counter() - began
    return World(org_id, sequence_id, messages, seconds)


def add_sequence(engine: Engine, org_id: str, user_id: str) -> tuple[str, str]:
    """The sender account, the template and an active sequence with one email step; returns
    the ids of the sequence and of the account."""
    with Session(engine) as session, session.begin():
        account = ConnectedAccount(
            id=new_id("emailacct"),
            organization_id=org_id,
            user_id=user_id,
            email=SENDER_EMAIL,
            identities=[{"email": SENDER_EMAIL, "name": SENDER_NAME}],
            # Never used to connect: the engine gets the sink's address through smtp_config.
            smtp={"host": HOST, "port": 25, "username": "", "security": "none"},
        )
        template = EmailTemplate(
            id=new_id("tmpl"), organization_id=org_id, name="Intro", subject=SUBJECT, body=BODY
        )
        sequence = Sequence(
            id=new_id("seq"),
            organization_id=org_id,
            name="Bench outreach",
            status="active",
            timezone="UTC",
            schedule=None,
            created_by_id=user_id,
        )
        step = SequenceStep(
            id=new_id("seqstep"),
            organization_id=org_id,
            sequence_id=sequence.id,
            position=0,
            step_type="email",
            delay=0,
            email_template_id=template.id,
            threading="old_thread",
        )
        session.add_all([account, template, sequence, step])
        return sequence.id, account.id


@dataclass
class Recipient:
    email: str
    contact_name: str
    lead_name: str


def add_subscriptions(
    engine: Engine, org_id: str, user_id: str, sequence_id: str, account_id: str
) -> list[Recipient]:
    """One active subscription due now per contact, in executemany chunks (Core)."""
    now = utcnow()
    rows = select(
        ContactEmail.contact_id, ContactEmail.lead_id, ContactEmail.email, Contact.name, Lead.name
    )
    rows = (
        rows.join(Contact, Contact.id == ContactEmail.contact_id)
        .join(Lead, Lead.id == ContactEmail.lead_id)
        .where(ContactEmail.organization_id == org_id, ContactEmail.position == 0)
        .order_by(ContactEmail.contact_id)
    )
    recipients: list[Recipient] = []
    values: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for contact_id, lead_id, email, contact_name, lead_name in conn.execute(rows):
            recipients.append(Recipient(email, contact_name or "", lead_name or ""))
            values.append(
                {
                    "id": new_id("sub"),
                    "organization_id": org_id,
                    "sequence_id": sequence_id,
                    "contact_id": contact_id,
                    "lead_id": lead_id,
                    "contact_email": email,
                    "sender_account_id": account_id,
                    "sender_name": SENDER_NAME,
                    "sender_email": SENDER_EMAIL,
                    "calls_assigned_to": [user_id],
                    "status": "active",
                    "created_by_id": user_id,
                    "updated_by_id": user_id,
                    "next_step_position": 0,
                    "next_step_at": now,
                    "attempts": 0,
                    "thread_message_ids": [],
                    "date_created": now,
                    "date_updated": now,
                }
            )
        statement = insert(SequenceSubscription)
        for start in range(0, len(values), 5000):
            conn.execute(statement, values[start : start + 5000])
    return recipients


def bare_messages(recipients: list[Recipient]) -> list[tuple[str, str, bytes]]:
    """The baselines' messages: what the template renders to, built by the engine's builder."""
    sender = address(SENDER_NAME, SENDER_EMAIL)
    now = utcnow()
    out = []
    for i, r in enumerate(recipients):
        first = r.contact_name.split(" ")[0]
        body = BODY.replace("{{ contact.first_name }}", first)
        body = body.replace("{{ lead.display_name }}", r.lead_name)
        message = build_message(
            sender=sender,
            recipient=r.email,
            subject=SUBJECT.replace("{{ contact.first_name }}", first),
            body=body,
            message_id=f"<bench.{i}@bench.clove.test>",
            references=[],
            date=now,
        )
        out.append((SENDER_EMAIL, r.email, message))
    return out


# --------------------------------------------------------------------------- measured runs


@dataclass
class Run:
    name: str
    messages: int
    seconds: float
    cpu_s: float  # this process
    sink_cpu_s: float | None
    rest_cpu_s: float | None  # the rest of the machine: PostgreSQL, kernel, other programs
    phases: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "seconds": self.seconds,
            "rate": self.rate,
            "cpu_s": self.cpu_s,
            "cpu_us_per_message": self.cpu_s * 1e6 / self.messages if self.messages else None,
            "sink_cpu_s": self.sink_cpu_s,
            "rest_cpu_s": self.rest_cpu_s,
            "phases": self.phases,
        }


@contextmanager
def measured(name: str, sink_pid: int, into: list[Run]) -> Iterator[Run]:
    """Wall time, this process's CPU, the sink's and the rest of the machine's over a block."""
    run = Run(name, 0, 0.0, 0.0, None, None)
    sink0, busy0 = proc_cpu_seconds(sink_pid), machine_busy_seconds()
    cpu0, t0 = time.process_time(), time.perf_counter()
    yield run
    run.seconds, run.cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    sink1, busy1 = proc_cpu_seconds(sink_pid), machine_busy_seconds()
    if sink0 is not None and sink1 is not None:
        run.sink_cpu_s = sink1 - sink0
    if busy0 is not None and busy1 is not None:
        run.rest_cpu_s = max(0.0, busy1 - busy0 - run.cpu_s - (run.sink_cpu_s or 0.0))
    into.append(run)


class Phases:
    """Wall and CPU time per engine phase; commits are counted to the phase that made them."""

    def __init__(self) -> None:
        self.current = "claim"
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    def timed(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.current = phase
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall[phase] += time.perf_counter() - t0
                self.cpu[phase] += time.thread_time() - c0

        return wrapper

    def session_factory(self, factory: Callable[[], Session]) -> Callable[[], Session]:
        def make() -> Session:
            session = factory()
            commit = session.commit

            def timed_commit() -> None:
                self.timed(f"{self.current} commit", commit)()

            session.commit = timed_commit  # type: ignore[method-assign]
            return session

        return make


class TimedEngine(SequenceEngine):
    """The engine unchanged, with a stopwatch around its phases (only for the breakdown)."""

    phases: Phases

    def _prepare(self, *args: Any, **kwargs: Any) -> Any:
        return self.phases.timed("prepare", super()._prepare)(*args, **kwargs)

    def _send(self, *args: Any, **kwargs: Any) -> Any:
        return self.phases.timed("send", super()._send)(*args, **kwargs)

    def _record(self, *args: Any, **kwargs: Any) -> Any:
        return self.phases.timed("record", super()._record)(*args, **kwargs)


def run_clove(engine: Engine, world: World, port: int, args: argparse.Namespace) -> Run:
    """`run_until_idle()` of one engine; returns the run's own figures, phases included."""
    phases = Phases()
    config = SmtpConfig(HOST, port, "", "", "none")
    sequences = TimedEngine(
        phases.session_factory(writing_session_factory(engine)),  # type: ignore[arg-type]
        smtp_config=lambda _account: config,
        batch_size=args.batch_size,
        organization_id=world.org_id,
        pipelined=not args.no_pipeline,
    )
    sequences.phases = phases
    n = len(world.messages)
    claim_due = engine_module.claim_due
    engine_module.claim_due = phases.timed("claim", claim_due)  # type: ignore[assignment]
    runs: list[Run] = []
    try:
        with measured("clove", args.sink_pid, runs) as run:
            run.messages = sequences.run_until_idle(max_passes=n // args.batch_size + 10)
    finally:
        engine_module.claim_due = claim_due  # type: ignore[assignment]
        sequences.close()
    accounted = sum(phases.wall.values())
    run.phases = {
        phase: {"wall_s": phases.wall[phase], "cpu_s": phases.cpu[phase]} for phase in phases.wall
    }
    run.phases["other"] = {"wall_s": run.seconds - accounted, "cpu_s": None}  # type: ignore[dict-item]
    return run


def verify(engine: Engine, world: World) -> dict[str, int]:
    """What the engine left in the database; raises unless every subscription was sent once."""
    n = len(world.messages)
    counts = {}
    with Session(engine) as session:

        def count(model: Any, *where: Any) -> int:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

        org = world.org_id
        counts["step runs sent"] = count(
            SequenceStepRun,
            SequenceStepRun.organization_id == org,
            SequenceStepRun.status == "sent",
        )
        counts["step runs in all"] = count(SequenceStepRun, SequenceStepRun.organization_id == org)
        counts["email activities sent"] = count(
            EmailActivity,
            EmailActivity.organization_id == org,
            EmailActivity.sequence_id == world.sequence_id,
            EmailActivity.status == "sent",
        )
        counts["subscriptions finished"] = count(
            SequenceSubscription,
            SequenceSubscription.sequence_id == world.sequence_id,
            SequenceSubscription.status == "finished",
        )
    wrong = {k: v for k, v in counts.items() if v != n}
    if wrong:
        raise RuntimeError(f"expected {n:,} of each after the engine's run, found {wrong}")
    return counts


def bare_one_connection(
    port: int, messages: list[tuple[str, str, bytes]], sink_pid: int, runs: list[Run]
) -> Run:
    with measured("bare, one connection", sink_pid, runs) as run:
        client = smtplib.SMTP(HOST, port, timeout=30)
        for sender, recipient, message in messages:
            client.sendmail(sender, [recipient], message)
        client.quit()
        run.messages = len(messages)
    return run


def bare_per_message(
    port: int, messages: list[tuple[str, str, bytes]], sink_pid: int, runs: list[Run]
) -> Run:
    with measured("bare, connection per message", sink_pid, runs) as run:
        for sender, recipient, message in messages:
            client = smtplib.SMTP(HOST, port, timeout=30)
            client.sendmail(sender, [recipient], message)
            client.quit()
        run.messages = len(messages)
    return run


# --------------------------------------------------------------------------- one database


@dataclass
class Result:
    setup: dict[str, str]
    setup_seconds: dict[str, float]
    runs: list[Run]
    counts: dict[str, int]


def measure(args: argparse.Namespace, processes: Processes, log: Callable[[str], None]) -> Result:
    tmp = Path(tempfile.mkdtemp(prefix="clove-bench-sequence-"))
    db: Database | None = None
    engine: Engine | None = None
    try:
        db = Database(args.database_url, tmp)
        log(f"Preparing {db.label} …")
        db.create()
        port, args.sink_pid = start_sink(args.sink, processes, tmp / "sink.log")
        log(f"  SMTP sink ({args.sink}) on port {port}, pid {args.sink_pid}")
        engine = make_engine(db.url)
        world = make_world(engine, args.subscriptions, log)
        log(f"  setup done in {sum(world.seconds.values()):.1f} s")
        n = len(world.messages)
        log(f"Clove: SequenceEngine.run_until_idle() for {n:,} subscriptions …")
        clove = run_clove(engine, world, port, args)
        counts = verify(engine, world)
        log(f"  {clove.rate:,.0f} emails/s")
        runs = [clove]
        log(f"bare smtplib, one connection, {n:,} messages …")
        bare_one_connection(port, world.messages, args.sink_pid, runs)
        few = world.messages[: min(n, PER_MESSAGE_MAX)]
        log(f"bare smtplib, a connection per message, {len(few):,} messages …")
        bare_per_message(port, few, args.sink_pid, runs)
        setup = {
            "clove": clove_version(),
            "database": db.label,
            "subscriptions": f"{n:,}, batch size {args.batch_size}",
            "sink": f"{args.sink} (its own process)",
            "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        }
        return Result(setup, world.seconds, runs, counts)
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
            shutil.rmtree(tmp, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------- report


def _us(seconds: float | None, n: int) -> str:
    return "-" if seconds is None or not n else f"{seconds * 1e6 / n:,.0f}"


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

    clove, one, per = result.runs
    table = Table(title="Emails per second")
    for col in ("run", "messages", "seconds", "messages/s", "Clove ratio"):
        table.add_column(col, justify="right", no_wrap=True)
    for col in ("CPU s", "CPU µs/msg", "sink CPU µs/msg", "rest CPU µs/msg"):
        table.add_column(col, justify="right", no_wrap=True)
    ratios = {"clove": None, one.name: clove.rate / one.rate, per.name: clove.rate / per.rate}
    for run in result.runs:
        ratio = ratios[run.name]
        table.add_row(
            run.name,
            f"{run.messages:,}",
            f"{run.seconds:.2f}",
            f"{run.rate:,.0f}",
            "-" if ratio is None else f"{ratio:.3f}",
            f"{run.cpu_s:.2f}",
            _us(run.cpu_s, run.messages),
            _us(run.sink_cpu_s, run.messages),
            _us(run.rest_cpu_s, run.messages),
        )
    goal = ratios[one.name] or 0.0
    verdict = "met" if goal >= RATIO_GOAL else "NOT met"
    table.caption = (
        f"Clove ratio = Clove's emails/s ÷ that baseline's messages/s. Goal: ≥ {RATIO_GOAL} of "
        f"the one-connection loop — {verdict} ({goal:.3f}). CPU: this process; rest: everything "
        "else on the machine (PostgreSQL, kernel, other programs)."
    )
    out.print(table)

    phases = Table(title="Where the engine's time goes")
    for col in ("phase", "wall s", "wall µs/email", "share", "CPU s", "CPU µs/email"):
        phases.add_column(col, justify="right", no_wrap=True)
    for name, t in clove.phases.items():
        phases.add_row(
            name,
            f"{t['wall_s']:.2f}",
            _us(t["wall_s"], clove.messages),
            f"{t['wall_s'] / clove.seconds:.0%}" if clove.seconds else "-",
            "-" if t["cpu_s"] is None else f"{t['cpu_s']:.2f}",
            _us(t["cpu_s"], clove.messages),
        )
    phases.caption = (
        "claim: claim_due; prepare: _prepare (load, render, stage runs and activities); send: "
        "_send (SMTP); record: _record; '… commit': that phase's COMMIT (the ORM flush); other: "
        "sessions opened and closed, BEGIN. Checked afterwards: "
        + ", ".join(f"{v:,} {k}" for k, v in result.counts.items())
    )
    out.print(phases)
    return {
        "setup": result.setup,
        "setup_seconds": result.setup_seconds,
        "runs": {run.name: run.as_dict() for run in result.runs},
        "ratios": {k: v for k, v in ratios.items() if v is not None},
        "goal": RATIO_GOAL,
        "checked": result.counts,
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Sequence emails per second through Clove's SequenceEngine, next to a bare "
        "smtplib loop sending the same messages to the same SMTP sink."
    )
    p.add_argument("--subscriptions", type=int, default=10_000, help="subscriptions to send")
    p.add_argument("--batch-size", type=int, default=500, help="the engine's batch size")
    p.add_argument(
        "--database-url",
        help="default: a temporary SQLite file. postgresql://...: a fresh database is created "
        "on that server and dropped at the end",
    )
    p.add_argument(
        "--sink",
        choices=("minimal", "aiosmtpd"),
        default="aiosmtpd",
        help="the SMTP sink: aiosmtpd's Sink, a real SMTP server (default), or this file's "
        "minimal asyncio server, about 3x faster than any real server",
    )
    p.add_argument(
        "--no-pipeline",
        action="store_true",
        help="send each batch before preparing the next (to measure what the sending thread buys)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--serve-sink", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not 1 <= args.subscriptions <= 1_000_000 or not 1 <= args.batch_size <= 10_000:
        p.error("--subscriptions must be in [1, 1000000] and --batch-size in [1, 10000]")
    return args


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_sink:
        serve_sink(args.serve_sink)
        return 0

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    processes = Processes()
    width = None if sys.stdout.isatty() else 140
    try:
        figures = report(measure(args, processes, log), width)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
        return 0
    except KeyboardInterrupt:
        log("Interrupted; cleaning up.")
        return 130
    except (RuntimeError, OSError, smtplib.SMTPException) as exc:
        log(f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        processes.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
