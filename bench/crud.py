"""Leads with 2 contacts: Clove's create / get / update / list per second, next to bare Core.

Starts Clove (`clove serve --no-worker`, one uvicorn process) on a fresh database and, one
operation after the other, loads it over keep-alive HTTP connections with

    create  POST /api/v1/lead/           name, status, description, url, 2 contacts (1 email
                                         and 1 phone each)
    get     GET  /api/v1/lead/{id}/      a lead made by the create run, chosen at random
    update  PUT  /api/v1/lead/{id}/      a new description
    list    GET  /api/v1/lead/?_limit=50

then does the same row work in this process with SQLAlchemy Core on the same database, through
an engine made like Clove's (`clove.db.make_engine`): INSERT of the lead, contact, email and
phone rows in one transaction; SELECT of a lead with its contacts, emails and phones; UPDATE of
the lead row; SELECT of the 50 newest leads with theirs. Prints requests/s, ops/s, their
ratio, latencies and CPU time per request.

    .venv/bin/python bench/crud.py [--seconds 5] [--connections 8] [--baseline-threads 1]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres] [--both] [--json FILE]

With a PostgreSQL URL, a fresh database is created next to the one named and dropped at the
end. See bench/README.md for the figures on the reference machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError

# bench/ is not a package: `python bench/crud.py` puts bench/ first on sys.path.
from api_overhead import (
    HOST,
    RATE_LIMIT_ENV,
    Database,
    Processes,
    Server,
    basic_auth,
    clove_command,
    clove_version,
    free_port,
    http_request,
    machine_busy_seconds,
    proc_cpu_seconds,
    run_clove,
)
from clove.db import make_engine
from clove.kit.dates import utcnow
from clove.kit.ids import new_id
from clove.models.crm import Contact, ContactEmail, ContactPhone, Lead

OPS = ("create", "get", "update", "list")
LIST_LIMIT = 50
LEAD_URL = "/api/v1/lead/"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
PHONE, PHONE_COUNTRY = "+16503334444", "US"
STATUS_LABEL = "Potential"  # one of the statuses `clove init` makes


# --------------------------------------------------------------------------- request bodies


def lead_body(n: int) -> dict[str, Any]:
    """The create body: a lead with 2 contacts, each with 1 email and 1 phone."""
    contacts = [
        {
            "name": f"Contact {n}.{i}",
            "title": "Buyer",
            "emails": [{"type": "office", "email": f"contact{n}.{i}@example.com"}],
            "phones": [{"type": "office", "phone": PHONE}],
        }
        for i in range(2)
    ]
    return {
        "name": f"Bench Lead {n}",
        "status": STATUS_LABEL,
        "description": "Made by bench/crud.py",
        "url": "https://lead.example.com",
        "contacts": contacts,
    }


def http_bytes(method: str, path: str, port: int, auth: str, payload: Any = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: {auth}\r\n"
    if payload is None:
        return (head + "\r\n").encode()
    body = json.dumps(payload).encode()
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


# --------------------------------------------------------------------------- figures


@dataclass
class Run:
    """One measured run of one operation, through Clove or through Core."""

    side: str  # "clove" or "core"
    op: str
    ok: int  # 2xx responses, or Core operations without an exception
    seconds: float
    latencies_us: list[int]
    failed: dict[str, int]  # HTTP status (or exception class) -> count
    errors: int  # socket errors and dropped connections (HTTP only)
    own_cpu_s: float  # the Clove server process, or this process for Core
    client_cpu_s: float | None  # this process, HTTP runs only
    rest_cpu_s: float | None  # the rest of the machine: PostgreSQL, kernel, other programs

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct_ms(self, p: float) -> float | None:
        lat = sorted(self.latencies_us)
        return lat[min(len(lat) - 1, int(p * len(lat)))] / 1e3 if lat else None

    def per_op_us(self, cpu_s: float | None) -> float | None:
        return cpu_s * 1e6 / self.ok if cpu_s is not None and self.ok else None

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "latencies_us"}
        out.update(rate=self.rate, p50_ms=self.pct_ms(0.5), p99_ms=self.pct_ms(0.99))
        out.update(own_cpu_us_per_op=self.per_op_us(self.own_cpu_s))
        out.update(rest_cpu_us_per_op=self.per_op_us(self.rest_cpu_s))
        return out


class CpuWindow:
    """CPU seconds of one process, of this process and of the whole machine over a block."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.proc0 = proc_cpu_seconds(pid)
        self.own0 = time.process_time()
        self.busy0 = machine_busy_seconds()

    def stop(self) -> tuple[float, float, float | None]:
        """(the process's CPU, this process's CPU, everything else on the machine)."""
        proc1, own1, busy1 = proc_cpu_seconds(self.pid), time.process_time(), machine_busy_seconds()
        proc = proc1 - self.proc0 if proc1 is not None and self.proc0 is not None else 0.0
        own = own1 - self.own0
        if self.pid == os.getpid():
            proc, own = own, 0.0
        rest = None
        if busy1 is not None and self.busy0 is not None:
            rest = max(0.0, busy1 - self.busy0 - proc - own)
        return proc, own, rest


# --------------------------------------------------------------------------- HTTP load


MakeRequest = Callable[[int], bytes]  # sequence number -> the request's bytes
OnBody = Callable[[bytes], None]


def _content_length(head: bytes) -> int:
    at = head.lower().find(b"\r\ncontent-length:")
    if at < 0:  # Clove always sends Content-Length
        raise ValueError("response without Content-Length")
    stop = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : stop if stop > 0 else len(head)])


async def _http_load(
    port: int, connections: int, seconds: float, make: MakeRequest, on_ok: OnBody | None
) -> tuple[Counter[int], list[int], int, float]:
    """Keep-alive connections with one request in flight each until `seconds` have passed."""
    statuses: Counter[int] = Counter()
    latencies: list[int] = []
    errors = 0
    numbers = itertools.count()
    start = time.perf_counter()
    deadline = start + seconds

    async def connection() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                errors += 1
                await asyncio.sleep(0.05)
                continue
            try:
                while (sent := time.perf_counter()) < deadline:
                    writer.write(make(next(numbers)))
                    head = await reader.readuntil(b"\r\n\r\n")
                    body = await reader.readexactly(_content_length(head))
                    latencies.append(int((time.perf_counter() - sent) * 1e6))
                    status = int(head[9:12])
                    statuses[status] += 1
                    if on_ok is not None and 200 <= status < 300:
                        on_ok(body)
            except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                errors += 1
            finally:
                writer.close()

    tasks = [asyncio.ensure_future(connection()) for _ in range(connections)]
    # Every connection stops after its response in flight at the deadline; one that hangs
    # (a stalled server) is cut 30 s later.
    _, pending = await asyncio.wait(tasks, timeout=seconds + 30)
    for task in pending:
        task.cancel()
        errors += 1
    if pending:
        await asyncio.wait(pending, timeout=5)
    return statuses, latencies, errors, time.perf_counter() - start


def http_run(
    server: Server,
    op: str,
    connections: int,
    seconds: float,
    make: MakeRequest,
    on_ok: OnBody | None = None,
) -> Run:
    window = CpuWindow(server.proc.pid)
    coro = _http_load(server.port, connections, seconds, make, on_ok)
    try:
        import uvloop
    except ImportError:
        statuses, latencies, errors, elapsed = asyncio.run(coro)
    else:
        statuses, latencies, errors, elapsed = uvloop.run(coro)
    server_cpu, client_cpu, rest = window.stop()
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    failed = {str(s): n for s, n in statuses.items() if not 200 <= s < 300}
    return Run("clove", op, ok, elapsed, latencies, failed, errors, server_cpu, client_cpu, rest)


# --------------------------------------------------------------------------- bare Core


def _table(model: type[Any]) -> Table:
    table: Table = model.metadata.tables[model.__tablename__]
    return table


LEAD, CONTACT, EMAIL, PHONE_T = (_table(m) for m in (Lead, Contact, ContactEmail, ContactPhone))
CHILDREN = (CONTACT, EMAIL, PHONE_T)
# Built once, values bound per call (the cheapest way to use Core).
INSERTS = tuple(t.insert() for t in (LEAD, *CHILDREN))
SELECT_LEAD = select(LEAD).where(
    LEAD.c.id == bindparam("lead_id"), LEAD.c.organization_id == bindparam("org")
)
SELECT_CHILDREN = tuple(
    select(t)
    .where(t.c.lead_id == bindparam("lead_id"))
    .order_by(*((t.c.date_created, t.c.id) if t is CONTACT else (t.c.contact_id, t.c.position)))
    for t in CHILDREN
)
UPDATE_LEAD = (
    update(LEAD)
    .where(LEAD.c.id == bindparam("lead_id"), LEAD.c.organization_id == bindparam("org"))
    .values(
        description=bindparam("new_description"),
        date_updated=bindparam("now"),
        updated_by=bindparam("user"),
    )
)
LIST_LEADS = (
    select(LEAD)
    .where(LEAD.c.organization_id == bindparam("org"))
    .order_by(LEAD.c.date_created.desc(), LEAD.c.id.desc())
    .limit(LIST_LIMIT)
)
LIST_CHILDREN = tuple(
    select(t)
    .where(t.c.lead_id.in_(bindparam("lead_ids", expanding=True)))
    .order_by(t.c.lead_id, *((t.c.date_created, t.c.id) if t is CONTACT else (t.c.position,)))
    for t in CHILDREN
)


@dataclass
class Tenant:
    """Who the rows belong to, and the leads that get and update pick from."""

    org: str
    user: str
    status: str
    lead_ids: list[str]


def core_create(conn: Connection, t: Tenant, n: int) -> None:
    now = utcnow()
    lead_id = new_id("lead")
    body = lead_body(n)
    owner = {"organization_id": t.org, "created_by": t.user, "updated_by": t.user}
    stamps = {"date_created": now, "date_updated": now}
    lead = {"id": lead_id, "status_id": t.status, "custom": {}, **owner, **stamps}
    lead.update((k, body[k]) for k in ("name", "description", "url"))
    contacts, emails, phones = [], [], []
    for c in body["contacts"]:
        cid = new_id("cont")
        contacts.append(
            {"id": cid, "lead_id": lead_id, "name": c["name"], "title": c["title"], "custom": {}}
            | owner
            | stamps
        )
        child = {"organization_id": t.org, "lead_id": lead_id, "contact_id": cid, "position": 0}
        emails += [
            child | {"type": e["type"], "email": e["email"], "email_lower": e["email"].lower()}
            for e in c["emails"]
        ]
        phones += [
            child | {"type": p["type"], "phone": p["phone"], "country": PHONE_COUNTRY}
            for p in c["phones"]
        ]
    conn.execute(INSERTS[0], lead)
    for insert, rows in zip(INSERTS[1:], (contacts, emails, phones), strict=True):
        conn.execute(insert, rows)


def core_get(conn: Connection, t: Tenant, _n: int) -> None:
    lead_id = random.choice(t.lead_ids)
    if conn.execute(SELECT_LEAD, {"lead_id": lead_id, "org": t.org}).first() is None:
        raise LookupError(lead_id)
    for stmt in SELECT_CHILDREN:
        conn.execute(stmt, {"lead_id": lead_id}).all()


def core_update(conn: Connection, t: Tenant, n: int) -> None:
    values: dict[str, Any] = {"lead_id": random.choice(t.lead_ids), "org": t.org, "user": t.user}
    values.update(new_description=f"Updated by bench/crud.py, {n}", now=utcnow())
    if conn.execute(UPDATE_LEAD, values).rowcount != 1:
        raise LookupError(values["lead_id"])


def core_list(conn: Connection, t: Tenant, _n: int) -> None:
    leads = conn.execute(LIST_LEADS, {"org": t.org}).all()
    ids = [row.id for row in leads]
    for stmt in LIST_CHILDREN:
        conn.execute(stmt, {"lead_ids": ids}).all()


CORE_OPS: dict[str, Callable[[Connection, Tenant, int], None]] = {
    "create": core_create,
    "get": core_get,
    "update": core_update,
    "list": core_list,
}


def core_run(engine: Engine, tenant: Tenant, op: str, threads: int, seconds: float) -> Run:
    """`op` in a transaction of its own (`engine.begin()`), in a loop on `threads` threads."""
    work = CORE_OPS[op]
    numbers = itertools.count(1_000_000_000)  # other names than the HTTP runs' leads
    latencies: list[int] = []
    failed: Counter[str] = Counter()
    stop = threading.Event()
    start = time.perf_counter()
    deadline = start + seconds

    def loop() -> None:
        while not stop.is_set() and (began := time.perf_counter()) < deadline:
            try:
                with engine.begin() as conn:
                    work(conn, tenant, next(numbers))
            except (SQLAlchemyError, LookupError) as exc:
                failed[type(exc).__name__] += 1
                continue
            latencies.append(int((time.perf_counter() - began) * 1e6))

    window = CpuWindow(os.getpid())
    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    try:
        for w in workers:  # short joins: Ctrl-C gets through
            while w.is_alive() and time.perf_counter() < deadline + 60:
                w.join(0.2)
    finally:
        stop.set()
    if any(w.is_alive() for w in workers):
        raise RuntimeError(f"Core {op} threads still running 60 s after the deadline")
    elapsed = time.perf_counter() - start
    own, _, rest = window.stop()
    return Run("core", op, len(latencies), elapsed, latencies, dict(failed), 0, own, None, rest)


# --------------------------------------------------------------------------- one database


@dataclass
class DbResult:
    label: str
    runs: list[Run]
    setup: dict[str, str]


def measure_database(
    url: str | None, args: argparse.Namespace, processes: Processes, log: Callable[[str], None]
) -> DbResult:
    tmp = Path(tempfile.mkdtemp(prefix="clove-bench-crud-"))
    db: Database | None = None
    engine: Engine | None = None
    try:
        db = Database(url, tmp)
        log(f"Preparing {db.label} …")
        db.create()
        env = {**os.environ, **RATE_LIMIT_ENV, "CLOVE_DATABASE_URL": db.url}
        email = f"bench-{secrets.token_hex(4)}@example.com"
        key = run_clove(["init", "--org", "Bench", "--email", email, "--database-url", db.url], env)
        auth = basic_auth(key)
        port = free_port()
        log_file = tmp / "clove.log"
        serve = ["serve", "--port", str(port), "--database-url", db.url, "--no-worker"]
        with log_file.open("wb") as fh:
            proc = processes.start(
                [*clove_command(), *serve], env=env, stdout=fh, stderr=subprocess.STDOUT
            )
        server = Server("clove", port, proc, log_file)
        me = json.loads(server.wait_ready(auth))
        status, listing = http_request(port, "GET", "/api/v1/status/lead/", auth)
        statuses = (
            {s["label"]: s["id"] for s in json.loads(listing)["data"]} if status == 200 else {}
        )
        if STATUS_LABEL not in statuses:
            raise RuntimeError(
                f"no lead status {STATUS_LABEL!r} (HTTP {status}): {listing[:200]!r}"
            )
        tenant = Tenant(me["organizations"][0]["id"], me["id"], statuses[STATUS_LABEL], [])
        engine = make_engine(db.url)
        busy = background_load()
        if busy is not None and busy > 25:
            log(
                f"The machine is busy before the benchmark starts ({busy:.0f}% of a core): "
                "the figures will be lower and noisier."
            )
        runs = []
        for op in OPS:
            runs += measure_op(op, server, auth, engine, tenant, args, log)
        setup = {
            "clove": clove_version(),
            "database": db.label,
            "HTTP load": f"{args.connections} keep-alive connections (asyncio, this process), "
            f"{args.seconds:g} s per operation after {args.warmup:g} s warm-up",
            "Clove": f"`clove serve --no-worker`, 1 process, {clove_threads()} worker threads",
            "Core": f"{args.baseline_threads} thread(s) in this process, same seconds, engine "
            "from clove.db.make_engine, a transaction per operation",
            "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, busy before "
            f"the start: {_fmt(busy, '.0f')}% of a core",
        }
        return DbResult(db.label, runs, setup)
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


def clove_threads() -> int:
    """Clove's worker threads, as `clove serve` reads them (CLOVE_THREADS or the default)."""
    from clove.config import Settings

    return Settings().threads


def http_requests(
    op: str, port: int, auth: str, tenant: Tenant
) -> tuple[MakeRequest, OnBody | None]:
    """How the HTTP run of `op` makes its n-th request, and what it does with a 2xx body."""

    def create(n: int) -> bytes:
        return http_bytes("POST", LEAD_URL, port, auth, lead_body(n))

    def created(body: bytes) -> None:
        tenant.lead_ids.append(json.loads(body)["id"])

    def get(_n: int) -> bytes:
        return http_bytes("GET", f"{LEAD_URL}{random.choice(tenant.lead_ids)}/", port, auth)

    edits = itertools.count()  # across the warm-up and the run: every PUT changes the lead

    def put(_n: int) -> bytes:
        path = f"{LEAD_URL}{random.choice(tenant.lead_ids)}/"
        return http_bytes("PUT", path, port, auth, {"description": f"Updated, {next(edits)}"})

    listing = http_bytes("GET", f"{LEAD_URL}?_limit={LIST_LIMIT}", port, auth)

    def list_page(_n: int) -> bytes:
        return listing

    makers: dict[str, tuple[MakeRequest, OnBody | None]] = {
        "create": (create, created),
        "get": (get, None),
        "update": (put, None),
        "list": (list_page, None),
    }
    return makers[op]


def measure_op(
    op: str,
    server: Server,
    auth: str,
    engine: Engine,
    tenant: Tenant,
    args: argparse.Namespace,
    log: Callable[[str], None],
) -> list[Run]:
    """Clove's run of `op`, then Core's, each after its warm-up."""
    make, on_ok = http_requests(op, server.port, auth, tenant)
    if args.warmup > 0:
        log(f"  {op:6} Clove warm-up")
        http_run(server, op, args.connections, args.warmup, make, on_ok)
    log(f"  {op:6} Clove {args.seconds:g} s")
    clove = http_run(server, op, args.connections, args.seconds, make, on_ok)
    if op == "create" and not tenant.lead_ids:
        raise RuntimeError(f"Clove created no lead: {clove.failed}, {clove.errors} errors")
    if args.warmup > 0:
        core_run(engine, tenant, op, args.baseline_threads, args.warmup)
    log(f"  {op:6} Core  {args.seconds:g} s")
    core = core_run(engine, tenant, op, args.baseline_threads, args.seconds)
    ratio = clove.rate / core.rate if core.rate else 0.0
    log(f"  {op:6} Clove {clove.rate:,.0f} req/s, Core {core.rate:,.0f} ops/s, ratio {ratio:.3f}")
    if clove.failed or clove.errors or core.failed:
        log(f"         failures: Clove {clove.failed} + {clove.errors} errors, Core {core.failed}")
    return [clove, core]


def background_load() -> float | None:
    """Percent of a core the machine uses with nothing of ours running, over 1 s."""
    busy0, t0 = machine_busy_seconds(), time.monotonic()
    time.sleep(1.0)
    busy1 = machine_busy_seconds()
    if busy0 is None or busy1 is None:
        return None
    return (busy1 - busy0) / (time.monotonic() - t0) * 100


# --------------------------------------------------------------------------- report


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(result: DbResult, width: int | None) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table as Grid

    out = Console(width=width)
    setup = Grid(show_header=False, box=None, pad_edge=False)
    for k, v in result.setup.items():
        setup.add_row(f"[dim]{k}[/dim]", v)
    out.print(setup)

    by = {(r.side, r.op): r for r in result.runs}
    table = Grid(title=f"Leads with 2 contacts, {result.label}")
    for col in ("operation", "Clove req/s", "p50 / p99 ms", "server CPU µs/req"):
        table.add_column(col, justify="right", no_wrap=True)
    for col in ("Core ops/s", "p50 / p99 ms", "Core CPU µs/op", "ratio Clove/Core"):
        table.add_column(col, justify="right", no_wrap=True)
    details = Grid(title="Details")
    for col in ("operation", "Clove non-2xx", "conn. errors", "client CPU %", "server CPU %"):
        details.add_column(col, justify="right", no_wrap=True)
    for col in ("rest CPU µs/req, Clove", "rest CPU µs/op, Core", "Core failures"):
        details.add_column(col, justify="right", no_wrap=True)
    figures: dict[str, Any] = {}
    for op in OPS:
        clove, core = by["clove", op], by["core", op]
        ratio = clove.rate / core.rate if core.rate else None
        table.add_row(
            op,
            f"{clove.rate:,.0f}",
            f"{_fmt(clove.pct_ms(0.5), '.1f')} / {_fmt(clove.pct_ms(0.99), '.1f')}",
            _fmt(clove.per_op_us(clove.own_cpu_s), ",.0f"),
            f"{core.rate:,.0f}",
            f"{_fmt(core.pct_ms(0.5), '.2f')} / {_fmt(core.pct_ms(0.99), '.2f')}",
            _fmt(core.per_op_us(core.own_cpu_s), ",.0f"),
            _fmt(ratio, ".3f"),
        )
        details.add_row(
            op,
            str(sum(clove.failed.values())),
            str(clove.errors),
            _fmt((clove.client_cpu_s or 0.0) / clove.seconds * 100, ".0f"),
            _fmt(clove.own_cpu_s / clove.seconds * 100, ".0f"),
            _fmt(clove.per_op_us(clove.rest_cpu_s), ",.0f"),
            _fmt(core.per_op_us(core.rest_cpu_s), ",.0f"),
            str(sum(core.failed.values())),
        )
        figures[op] = {"clove": clove.as_dict(), "core": core.as_dict(), "ratio": ratio}
    table.caption = (
        "server CPU: the Clove process (all threads); Core CPU: this process during the Core "
        "run. Only 2xx responses count."
    )
    details.caption = (
        "conn. errors: connections refused or dropped (uvicorn closes a connection after a "
        "500). CPU %: 100 = one core. rest: everything else on the machine during the run — "
        "the PostgreSQL server, kernel threads, other programs (on SQLite it should be near 0)."
    )
    out.print(table)
    out.print(details)
    return {"setup": result.setup, "operations": figures}


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Clove's lead create/get/update/list per second, next to bare SQLAlchemy "
        "Core doing the same rows on the same database.",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per operation")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds before each run")
    p.add_argument("--connections", type=int, default=8, help="concurrent keep-alive connections")
    p.add_argument(
        "--baseline-threads",
        type=int,
        default=1,
        help="threads running the Core operations (default 1: single-threaded)",
    )
    p.add_argument(
        "--database-url",
        help="default: a temporary SQLite file. postgresql://...: a fresh database is created "
        "on that server and dropped at the end",
    )
    p.add_argument(
        "--both",
        action="store_true",
        help=f"SQLite, then PostgreSQL at --database-url (default {DEFAULT_PG})",
    )
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if not 0 < args.seconds <= 120 or not 0 <= args.warmup <= 30:
        p.error("--seconds must be in (0, 120] and --warmup in [0, 30]")
    if not 1 <= args.connections <= 256 or not 1 <= args.baseline_threads <= 64:
        p.error("--connections must be in [1, 256] and --baseline-threads in [1, 64]")
    if args.both and args.database_url and not args.database_url.startswith("postgres"):
        p.error("--both takes a postgresql:// --database-url (SQLite always comes first)")
    return args


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    urls = [None, args.database_url or DEFAULT_PG] if args.both else [args.database_url]

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    processes = Processes()
    width = None if sys.stdout.isatty() else 140  # files and pipes: one line per table row
    results = []
    try:
        for url in urls:
            result = measure_database(url, args, processes, log)
            results.append(report(result, width))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
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
