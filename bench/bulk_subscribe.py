"""Bulk subscribe every lead's contacts to a sequence: Clove's bulk action next to hand SQL.

One run, on a fresh database (a temporary SQLite file, or with a PostgreSQL URL a new database
`clove_bench_<random>` created beside the one named and dropped at the end):

1. Setup (timed, not measured): two organizations seeded with `clove seed`'s generator (leads
   with 1-3 contacts each): "big" with --leads, "small" with --small-leads; in each a sender
   account and an active sequence with one email step. VACUUM ANALYZE (PostgreSQL) or ANALYZE.
2. `clove serve --no-worker` in its own process, for the API.
3. Clove, per organization (small first, then big): a fresh worker process is started (this
   script with --run-jobs: `clove worker`'s job loop, a JobRunner with Clove's settings, without
   the sequence engine, which would start sending the new subscriptions' emails at once), then
   POST /api/v1/bulk_action/sequence_subscription/ (action_type subscribe,
   contact_preference contact, an s_query matching every lead, the sequence and the sender
   account); measured: the time from sending the POST to the first GET of the action that
   shows status `done` (polled every --poll seconds), and the worker's peak RSS (VmHWM in
   /proc/<pid>/status) and CPU time. The worker is stopped after each action, so each peak
   belongs to one action: compared between the two sizes, it shows whether memory grows with
   the number of leads. Between the two, ANALYZE of the subscriptions and events, as autovacuum
   would do (see README for what the planner does with the statistics of an empty table).
4. Hand SQL, on the big organization: the rows Clove wrote (subscriptions and their `created`
   events) are deleted, after an ANALYZE (the planner keeps the statistics of a table in use),
   and the same rows are written again by hand-written INSERT ... SELECT, --hand-chunk leads
   per transaction (keyset on lead.id); on PostgreSQL one statement per chunk (the events made
   from the subscriptions' RETURNING), on SQLite two. The counts must equal Clove's.
5. Printed: both times, the ratio Clove / hand SQL (goal <= 1.5) and both workers' peaks.

    .venv/bin/python bench/bulk_subscribe.py                       # SQLite, 20,000 leads
    .venv/bin/python bench/bulk_subscribe.py --leads 100000 --small-leads 10000
    .venv/bin/python bench/bulk_subscribe.py --leads 1000000 \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres

See bench/README.md for the figures on the reference machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

# bench/ is not a package: `python bench/bulk_subscribe.py` puts bench/ first on sys.path.
from api_overhead import (
    RATE_LIMIT_ENV,
    Database,
    Processes,
    Server,
    basic_auth,
    clove_command,
    clove_version,
    free_port,
    http_request,
    proc_cpu_seconds,
)
from clove.config import Settings
from clove.db import is_sqlite, make_engine
from clove.kit.dates import iso_naive, utcnow
from clove.kit.ids import PREFIX_LENGTHS
from clove.migrate import upgrade
from clove.organization.service import create_organization
from clove.seed import resolve_target, seed_organization
from sequence_send import SENDER_EMAIL, SENDER_NAME, add_sequence

DEFAULT_CHUNK = Settings.model_fields["bulk_chunk_size"].default

RATIO_GOAL = 1.5
ALL_LEADS = {"type": "and", "queries": [{"type": "object_type", "object_type": "lead"}]}
PATH = "/api/v1/bulk_action/sequence_subscription/"


# --------------------------------------------------------------------------- setup


@dataclass
class Org:
    """One seeded organization with what a subscribe action needs."""

    label: str
    id: str
    user_id: str
    auth: str
    sequence_id: str
    account_id: str
    leads: int
    contacts: int = 0
    emails: int = 0


def make_org(engine: Engine, label: str, leads: int, progress: Any) -> Org:
    """An organization with `leads` seeded leads, a sender account and a sequence (commits)."""
    with Session(engine) as session, session.begin():
        org, user, _key, secret = create_organization(
            session, f"Bench {label}", f"{label}-{secrets.token_hex(4)}@example.com", "Sam", "S"
        )
        session.flush()
        org_id, user_id, auth = org.id, user.id, basic_auth(secret)
    sequence_id, account_id = add_sequence(engine, org_id, user_id)
    task = progress.add_task(f"seeding {label}: {leads:,} leads", total=leads)
    seed_organization(
        engine,
        resolve_target(engine, org_id),
        leads,
        on_progress=lambda done: progress.update(task, completed=done),
    )
    result = Org(label, org_id, user_id, auth, sequence_id, account_id, leads)
    with engine.connect() as conn:
        for name, table in (("contacts", "contact"), ("emails", "contact_email")):
            count = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE organization_id = :org"), {"org": org_id}
            ).scalar_one()
            setattr(result, name, int(count))
    return result


def analyze(engine: Engine, tables: tuple[str, ...] = ()) -> None:
    """VACUUM ANALYZE on PostgreSQL (as autovacuum soon would after a load), ANALYZE on SQLite."""
    if is_sqlite(str(engine.url)):
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in tables or ("",):
            conn.execute(text(f"VACUUM ANALYZE {table}"))


# --------------------------------------------------------------------------- Clove


@dataclass
class CloveRun:
    org: str
    leads: int
    seconds: float
    to_processing_s: float | None  # POST until the first GET showing `processing`
    worker_rss_idle_kb: int | None
    worker_peak_kb: int | None
    worker_cpu_s: float | None
    action: dict[str, Any] = field(default_factory=dict)
    subscriptions: int = 0
    events: int = 0


def proc_status_kb(pid: int, key: str) -> int | None:
    """A `kB` figure of /proc/<pid>/status (VmHWM: peak RSS, VmRSS: current)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run_jobs(url: str) -> None:
    """The worker process (`--run-jobs URL`): `clove worker`'s job loop, without its sequence
    engine, which would start sending the new subscriptions' first emails at once."""
    import threading

    from clove.config import get_settings
    from clove.db import writing_session_factory
    from clove.worker.jobs import JobRunner
    from clove.worker.runner import job_handlers

    settings = get_settings()
    runner = JobRunner(
        writing_session_factory(make_engine(url)),
        job_handlers(settings),
        lease_seconds=settings.worker_lease_seconds,
        slice_seconds=settings.job_slice_seconds,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("worker running", flush=True)
    while not stop.is_set():
        if not runner.run_once(stop):
            stop.wait(settings.worker_poll_seconds)


def start_worker(
    url: str, env: dict[str, str], processes: Processes, log_file: Path
) -> subprocess.Popen[Any]:
    """A worker process running jobs (see `run_jobs`), once it says it is running."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-jobs", url]
    with log_file.open("wb") as fh:
        proc = processes.start(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"clove worker exited ({proc.returncode}): {log_file.read_text()}")
        if b"worker running" in log_file.read_bytes():
            time.sleep(0.2)  # its first idle pass
            return proc
        time.sleep(0.05)
    raise RuntimeError("clove worker did not start within 60 s")


def run_clove(
    org: Org,
    server: Server,
    url: str,
    env: dict[str, str],
    processes: Processes,
    tmp: Path,
    args: argparse.Namespace,
    progress: Any,
) -> CloveRun:
    """POST the subscribe action, poll it until `done` while a fresh worker process runs it."""
    worker = start_worker(url, env, processes, tmp / f"worker-{org.label}.log")
    idle_kb = proc_status_kb(worker.pid, "VmRSS")
    cpu0 = proc_cpu_seconds(worker.pid)
    body = {
        "action_type": "subscribe",
        "sequence_id": org.sequence_id,
        "sender_account_id": org.account_id,
        "sender_name": SENDER_NAME,
        "sender_email": SENDER_EMAIL,
        "contact_preference": "contact",
        "s_query": ALL_LEADS,
    }
    task = progress.add_task(f"Clove, {org.label}: {org.leads:,} leads", total=org.leads)
    began = time.perf_counter()
    status, raw = http_request(server.port, "POST", PATH, org.auth, timeout=120, payload=body)
    if status != 200:
        raise RuntimeError(f"POST {PATH} answered {status}: {raw[:500]!r}")
    action = json.loads(raw)
    to_processing: float | None = None
    deadline = time.monotonic() + args.timeout
    while True:
        status, raw = http_request(server.port, "GET", f"{PATH}{action['id']}/", org.auth, 30)
        if status != 200:
            raise RuntimeError(f"GET the action answered {status}: {raw[:500]!r}")
        action = json.loads(raw)
        if to_processing is None and action["status"] in ("processing", "done"):
            to_processing = time.perf_counter() - began
        progress.update(task, completed=action.get("n_leads_processed") or 0)
        if action["status"] == "done":
            seconds = time.perf_counter() - began
            break
        if action["status"] == "error" or worker.poll() is not None:
            raise RuntimeError(f"the action failed: {action}\n{server.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the action was not done after {args.timeout:.0f} s: {action}")
        time.sleep(args.poll)
    peak_kb = proc_status_kb(worker.pid, "VmHWM")
    cpu1 = proc_cpu_seconds(worker.pid)
    processes.stop(worker)
    cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    return CloveRun(org.label, org.leads, seconds, to_processing, idle_kb, peak_kb, cpu, action)


def written(engine: Engine, org: Org) -> tuple[int, int]:
    """(subscriptions of the org's sequence, their `created` events)."""
    with engine.connect() as conn:
        subs = conn.execute(
            text("SELECT count(*) FROM sequence_subscription WHERE sequence_id = :seq"),
            {"seq": org.sequence_id},
        ).scalar_one()
        events = conn.execute(
            text(
                "SELECT count(*) FROM event WHERE organization_id = :org"
                " AND object_type = 'sequence_subscription' AND action = 'created'"
            ),
            {"org": org.id},
        ).scalar_one()
    return int(subs), int(events)


def event_keys(engine: Engine, org: Org) -> list[str]:
    """The keys of one `created` event's data, to check the hand SQL wrote the same shape."""
    with engine.connect() as conn:
        data = conn.execute(
            text(
                "SELECT data FROM event WHERE organization_id = :org"
                " AND object_type = 'sequence_subscription' LIMIT 1"
            ),
            {"org": org.id},
        ).scalar_one()
    return sorted(json.loads(data) if isinstance(data, str) else data)


def delete_written(engine: Engine, org: Org) -> float:
    """Deletes the subscriptions and events written for `org`, after ANALYZE: the planner keeps
    statistics of tables that hold rows, as in a database in use (see README: with the
    statistics of an empty table, PostgreSQL probes the subscriptions with a sequential scan)."""
    began = time.perf_counter()
    analyze(engine, ("sequence_subscription", "event"))
    with engine.begin() as conn:
        conn.execute(
            text(
                "DELETE FROM event WHERE organization_id = :org"
                " AND object_type = 'sequence_subscription'"
            ),
            {"org": org.id},
        )
        conn.execute(
            text("DELETE FROM sequence_subscription WHERE sequence_id = :seq"),
            {"seq": org.sequence_id},
        )
    return time.perf_counter() - began


# --------------------------------------------------------------------------- hand SQL

SUB_COLUMNS = (
    "id, organization_id, sequence_id, contact_id, lead_id, contact_email, sender_account_id,"
    " sender_name, sender_email, calls_assigned_to, status, created_by_id, updated_by_id,"
    " bulk_action_id, next_step_position, next_step_at, attempts, thread_message_ids,"
    " date_created, date_updated"
)
EVENT_COLUMNS = (
    "id, organization_id, object_type, object_id, lead_id, action, user_id, data,"
    " previous_data, changed_fields, meta, date_created, date_updated"
)
CHUNK_LEADS = "SELECT id FROM lead WHERE organization_id = :org AND id > :after AND id <= :upto"
ELIGIBLE = f"""
      c.organization_id = :org AND c.lead_id IN ({CHUNK_LEADS})
      AND NOT EXISTS (SELECT 1 FROM unsubscribed_email u
                      WHERE u.organization_id = :org AND u.email_lower = e.email_lower)
      AND NOT EXISTS (SELECT 1 FROM sequence_subscription x
                      WHERE x.sequence_id = :seq AND x.contact_id = c.id)
"""

# One statement per chunk: the events are made from the RETURNING of the subscriptions.
PG_CHUNK = f"""
WITH subs AS (
  INSERT INTO sequence_subscription ({SUB_COLUMNS})
  SELECT 'sub_' || substr(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
                          1, {PREFIX_LENGTHS["sub"]}),
         :org, :seq, c.id, c.lead_id, e.email, :account, :sender_name, :sender_email,
         CAST('[]' AS json), 'active', :user, :user, :bulk, 0, :now, 0, CAST('[]' AS json),
         :now, :now
  FROM contact c
  JOIN LATERAL (SELECT email, email_lower FROM contact_email
                WHERE contact_id = c.id ORDER BY position, id LIMIT 1) e ON true
  WHERE {ELIGIBLE}
  RETURNING id, organization_id, sequence_id, contact_id, contact_email, lead_id,
            sender_account_id, sender_name, sender_email, created_by_id, updated_by_id
)
INSERT INTO event ({EVENT_COLUMNS})
SELECT 'ev_' || substr(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
                       1, {PREFIX_LENGTHS["ev"]}),
       :org, 'sequence_subscription', s.id, s.lead_id, 'created', :user,
       json_build_object('id', s.id, 'sequence_id', s.sequence_id, 'contact_id', s.contact_id,
         'contact_email', s.contact_email, 'lead_id', s.lead_id,
         'sender_account_id', s.sender_account_id, 'sender_name', s.sender_name,
         'sender_email', s.sender_email, 'calls_assigned_to', CAST('[]' AS json),
         'start_date', NULL, 'status', 'active', 'status_reason', NULL,
         'organization_id', s.organization_id, 'created_by_id', s.created_by_id,
         'updated_by_id', s.updated_by_id, 'date_created', CAST(:iso AS text),
         'date_updated', CAST(:iso AS text)),
       CAST('{{}}' AS json), CAST('[]' AS json), CAST(:meta AS json), :now, :now
FROM subs s
"""

SQLITE_SUBS = f"""
INSERT INTO sequence_subscription ({SUB_COLUMNS})
SELECT 'sub_' || substr(lower(hex(randomblob({(PREFIX_LENGTHS["sub"] + 1) // 2}))),
                        1, {PREFIX_LENGTHS["sub"]}),
       :org, :seq, c.id, c.lead_id, e.email, :account, :sender_name, :sender_email,
       json('[]'), 'active', :user, :user, :bulk, 0, :now, 0, json('[]'), :now, :now
FROM contact c
JOIN contact_email e ON e.id = (SELECT id FROM contact_email
                                WHERE contact_id = c.id ORDER BY position, id LIMIT 1)
WHERE {ELIGIBLE}
"""
SQLITE_EVENTS = f"""
INSERT INTO event ({EVENT_COLUMNS})
SELECT 'ev_' || substr(lower(hex(randomblob({(PREFIX_LENGTHS["ev"] + 1) // 2}))),
                       1, {PREFIX_LENGTHS["ev"]}),
       :org, 'sequence_subscription', s.id, s.lead_id, 'created', :user,
       json_object('id', s.id, 'sequence_id', s.sequence_id, 'contact_id', s.contact_id,
         'contact_email', s.contact_email, 'lead_id', s.lead_id,
         'sender_account_id', s.sender_account_id, 'sender_name', s.sender_name,
         'sender_email', s.sender_email, 'calls_assigned_to', json('[]'),
         'start_date', NULL, 'status', 'active', 'status_reason', NULL,
         'organization_id', :org, 'created_by_id', :user, 'updated_by_id', :user,
         'date_created', :iso, 'date_updated', :iso),
       json('{{}}'), json('[]'), json(:meta), :now, :now
FROM sequence_subscription s
WHERE s.bulk_action_id = :bulk AND s.lead_id IN ({CHUNK_LEADS})
"""
NEXT_BOUNDARY = """
SELECT max(id) FROM (SELECT id FROM lead WHERE organization_id = :org AND id > :after
                     ORDER BY id LIMIT :n) AS chunk
"""


def typed(sql: str) -> str:
    """Every string parameter cast to varchar: psycopg sends untyped parameters, and PostgreSQL
    refuses one it would deduce as text in one place and varchar in another."""
    names = "org|seq|account|sender_name|sender_email|user|bulk|after|upto"
    return re.sub(rf":({names})\b", r"CAST(:\1 AS varchar)", sql)


def run_hand(engine: Engine, org: Org, bulk_id: str, chunk: int, progress: Any) -> float:
    """Writes the subscriptions and events Clove wrote, chunk by chunk; returns seconds."""
    now = utcnow()
    sqlite = is_sqlite(str(engine.url))
    params: dict[str, Any] = {
        "org": org.id,
        "seq": org.sequence_id,
        "account": org.account_id,
        "sender_name": SENDER_NAME,
        "sender_email": SENDER_EMAIL,
        "user": org.user_id,
        "bulk": bulk_id,
        # SQLAlchemy's own DateTime format on SQLite, a timestamp on PostgreSQL.
        "now": now.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else now,
        "iso": iso_naive(now),
        "meta": json.dumps(
            {"request_method": None, "request_path": None, "bulk_action_id": bulk_id}
        ),
    }
    statements = [SQLITE_SUBS, SQLITE_EVENTS] if sqlite else [typed(PG_CHUNK)]
    task = progress.add_task(f"hand SQL, {org.label}: {org.leads:,} leads", total=org.leads)
    after, done = "", 0
    began = time.perf_counter()
    while True:
        with engine.begin() as conn:
            upto = conn.execute(
                text(NEXT_BOUNDARY), {"org": org.id, "after": after, "n": chunk}
            ).scalar()
            if upto is None:
                break
            for statement in statements:
                conn.execute(text(statement), {**params, "after": after, "upto": upto})
        after, done = upto, done + chunk
        progress.update(task, completed=min(done, org.leads))
    return time.perf_counter() - began


# --------------------------------------------------------------------------- the run


@dataclass
class Result:
    setup: dict[str, str]
    setup_seconds: dict[str, float]
    clove: list[CloveRun]
    hand_seconds: float
    hand_counts: tuple[int, int]


def measure(args: argparse.Namespace, processes: Processes, log: Callable[[str], None]) -> Result:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    tmp = Path(tempfile.mkdtemp(prefix="clove-bench-bulk-"))
    db: Database | None = None
    engine: Engine | None = None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        db = Database(args.database_url, tmp)
        log(f"Preparing {db.label} …")
        db.create()
        engine = make_engine(db.url)
        seconds: dict[str, float] = {}
        began = time.perf_counter()
        upgrade(engine)
        with Progress(*columns, transient=False) as progress:
            small = make_org(engine, "small", args.small_leads, progress)
            big = make_org(engine, "big", args.leads, progress)
        seconds["seed"] = time.perf_counter() - began
        began = time.perf_counter()
        analyze(engine)
        seconds["analyze"] = time.perf_counter() - began
        for org in (small, big):
            counts = f"{org.contacts:,} contacts, {org.emails:,} emails"
            log(f"  {org.label}: {org.leads:,} leads, {counts}")

        env = {
            **os.environ,
            **RATE_LIMIT_ENV,
            "CLOVE_DATABASE_URL": db.url,
            "CLOVE_SECRET_KEY": secrets.token_urlsafe(32),
            "CLOVE_WORKER_POLL_SECONDS": str(args.worker_poll),
        }
        if args.chunk_size:
            env["CLOVE_BULK_CHUNK_SIZE"] = str(args.chunk_size)
        port = free_port()
        cmd = [*clove_command(), "serve", "--port", str(port), "--database-url", db.url]
        with (tmp / "serve.log").open("wb") as fh:
            proc = processes.start([*cmd, "--no-worker"], env=env, stdout=fh, stderr=fh)
        server = Server("clove serve", port, proc, tmp / "serve.log")
        server.wait_ready(big.auth, timeout=60)

        runs: list[CloveRun] = []
        with Progress(*columns, transient=False) as progress:
            for org in (small, big):
                run = run_clove(org, server, db.url, env, processes, tmp, args, progress)
                run.subscriptions, run.events = written(engine, org)
                if not run.subscriptions or run.subscriptions != run.events:
                    raise RuntimeError(f"Clove wrote {run.subscriptions} subs, {run.events} events")
                runs.append(run)
                if org is small:
                    # As autovacuum would within a minute: statistics of a table in use.
                    began = time.perf_counter()
                    analyze(engine, ("sequence_subscription", "event"))
                    seconds["analyze after small"] = time.perf_counter() - began
            keys = event_keys(engine, big)
            log(f"Deleting the big organization's {runs[-1].subscriptions:,} subscriptions …")
            seconds["analyze + delete"] = delete_written(engine, big)
            hand = run_hand(engine, big, runs[-1].action["id"], args.hand_chunk, progress)
        counts = written(engine, big)
        if counts != (runs[-1].subscriptions, runs[-1].events):
            raise RuntimeError(
                f"hand SQL wrote {counts}, Clove {runs[-1].subscriptions, runs[-1].events}"
            )
        if event_keys(engine, big) != keys:
            raise RuntimeError(
                f"hand SQL events have keys {event_keys(engine, big)}, Clove's {keys}"
            )
        setup = {
            "clove": clove_version(),
            "database": db.label,
            "leads": f"big {big.leads:,} ({big.contacts:,} contacts), small {small.leads:,}",
            "Clove chunk": f"{args.chunk_size or DEFAULT_CHUNK:,} leads",
            "hand chunk": f"{args.hand_chunk:,} leads",
            "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        }
        return Result(setup, seconds, runs, hand, counts)
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        try:
            processes.stop_all()
            if engine is not None:
                engine.dispose()
            if db is not None:
                try:
                    db.drop()
                except Exception as exc:
                    log(f"Could not drop the benchmark database: {exc}")
            shutil.rmtree(tmp, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------- report


def _mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:,.0f}"


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

    big = result.clove[-1]
    ratio = big.seconds / result.hand_seconds if result.hand_seconds else float("inf")
    table = Table(title="Bulk subscribe: POST until `done`, next to hand-written SQL")
    for col in ("run", "leads", "subscriptions", "seconds", "subs/s", "ratio"):
        table.add_column(col, justify="right", no_wrap=True)
    for col in ("until processing s", "worker CPU s", "worker RSS idle MB", "worker peak MB"):
        table.add_column(col, justify="right", no_wrap=True)
    for run in result.clove:
        table.add_row(
            f"Clove, {run.org}",
            f"{run.leads:,}",
            f"{run.subscriptions:,}",
            f"{run.seconds:.2f}",
            f"{run.subscriptions / run.seconds:,.0f}",
            f"{ratio:.2f}" if run is big else "-",
            "-" if run.to_processing_s is None else f"{run.to_processing_s:.2f}",
            "-" if run.worker_cpu_s is None else f"{run.worker_cpu_s:.1f}",
            _mb(run.worker_rss_idle_kb),
            _mb(run.worker_peak_kb),
        )
    subs = result.hand_counts[0]
    table.add_row(
        "hand SQL, big",
        f"{big.leads:,}",
        f"{subs:,}",
        f"{result.hand_seconds:.2f}",
        f"{subs / result.hand_seconds:,.0f}",
        "1.00",
        *("-",) * 4,
    )
    verdict = "met" if ratio <= RATIO_GOAL else "NOT met"
    table.caption = (
        f"ratio = Clove's seconds ÷ hand SQL's for the same rows. Goal: ≤ {RATIO_GOAL} — {verdict} "
        f"({ratio:.2f}). until processing: POST until the action showed `processing` (load and "
        "resolve done). Worker: a fresh process per action running `clove worker`'s job loop; "
        "peak = VmHWM."
    )
    out.print(table)
    return {
        "setup": result.setup,
        "setup_seconds": result.setup_seconds,
        "clove": [{k: v for k, v in vars(run).items() if k != "action"} for run in result.clove],
        "hand": {
            "seconds": result.hand_seconds,
            "subscriptions": subs,
            "events": result.hand_counts[1],
        },
        "ratio": ratio,
        "goal": RATIO_GOAL,
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Bulk subscribe through Clove's API and worker, next to hand-written "
        "INSERT ... SELECT writing the same rows."
    )
    p.add_argument("--leads", type=int, default=20_000, help="leads of the big organization")
    p.add_argument(
        "--small-leads", type=int, help="leads of the small organization (default: leads / 10)"
    )
    p.add_argument(
        "--database-url",
        help="default: a temporary SQLite file. postgresql://...: a fresh database is created "
        "on that server and dropped at the end",
    )
    p.add_argument("--chunk-size", type=int, help="CLOVE_BULK_CHUNK_SIZE for the worker")
    p.add_argument("--hand-chunk", type=int, default=10_000, help="leads per hand SQL chunk")
    p.add_argument("--poll", type=float, default=0.1, help="seconds between GETs of the action")
    p.add_argument(
        "--worker-poll", type=float, default=0.1, help="CLOVE_WORKER_POLL_SECONDS for the worker"
    )
    p.add_argument("--timeout", type=float, default=3600, help="give up on an action after this")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--run-jobs", metavar="URL", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.small_leads is None:
        args.small_leads = max(1, args.leads // 10)
    if not 1 <= args.small_leads <= args.leads <= 5_000_000 or args.hand_chunk < 1:
        p.error("need 1 <= --small-leads <= --leads <= 5000000 and --hand-chunk >= 1")
    return args


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = parse_args(argv)
    if args.run_jobs:
        run_jobs(args.run_jobs)
        return 0
    console = Console(stderr=True)

    def log(message: str) -> None:
        console.print(message, highlight=False)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    processes = Processes()
    width = None if sys.stdout.isatty() else 150
    try:
        figures = report(measure(args, processes, log), width)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
        return 0
    except KeyboardInterrupt:
        log("Interrupted; cleaning up.")
        return 130
    except (RuntimeError, OSError) as exc:
        log(f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        processes.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
