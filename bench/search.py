"""POST /api/v1/data/search/ on a large organization, next to the same queries written by hand.

Seeds an organization with `clove seed` (1,000,000 leads on PostgreSQL, 100,000 on SQLite; a
number custom field "Seats" is created first so that the leads get values for it), starts
`clove serve --no-worker`, picks query values from the seeded data, and then, for ten
realistic searches and a search by id (the floor), measures in the same run, interleaved
request by request:

    clove http  the search through HTTP (one keep-alive connection, one request at a time)
    clove sql   the SQL Clove generates for that request (clove.search.service.compile_search
                and page_statement, compiled in this process on the same database and executed
                with SQLAlchemy Core): the database part of "clove http"
    hand sql    the same query as a DBA would write it with the indexes there are (psycopg or
                sqlite3 directly); its first column must give the same ids as Clove
    empty http  GET /api/v1/me/: what any authenticated request costs

and prints p50/p95 per query, ratio = clove http p50 / (hand sql p50 + empty http p50), the
goals (PostgreSQL, through HTTP: p50 <= 10 ms for a selective query returning up to 100 ids,
<= 100 ms for a count over 30% of the leads, ratio <= 2) and, for each query that misses one,
EXPLAIN of Clove's SQL (compiled with literal binds) and of the hand-written SQL. Clove's SQL
is first run once in-process with a time limit (--timeout): a search whose SQL takes longer is
only EXPLAINed, never sent to the server, which could not be stopped in the middle of it.

    .venv/bin/python bench/search.py                        # SQLite, 100,000 leads
    .venv/bin/python bench/search.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/search.py ... --keep             # keep the seeded database, print it
    .venv/bin/python bench/search.py --reuse URL            # a database kept before: no seeding
    .venv/bin/python bench/search.py --repeat 30 --warmup 3 --only email_exact,or_three --json f

With a postgresql:// URL a fresh database is created on that server and dropped at the end
(unless --keep). See bench/README.md for the figures on the reference machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Select, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

# bench/ is not a package: `python bench/search.py` puts bench/ first on sys.path.
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
    machine_busy_seconds,
    proc_cpu_seconds,
    run_clove,
)
from clove.db import make_engine, normalize_url
from clove.search.compiler import Scope
from clove.search.service import compile_search, page_size, page_statement
from clove.search.tree import parse_search_request

SEARCH_PATH = "/api/v1/data/search/"
EMPTY_PATH = "/api/v1/me/"
BENCH_EMAIL = "bench-search@example.com"
PAGE_GOAL_MS = 10.0  # selective queries returning up to 100 ids
COUNT_GOAL_MS = 100.0  # a count over 30% of the leads
RATIO_GOAL = 2.0  # Clove <= 2 x (hand SQL + an empty request)


# --------------------------------------------------------------------------- dialects


def pg_dsn(url: str) -> str:
    """A libpq URL (for psycopg) from a SQLAlchemy one."""
    return make_url(normalize_url(url)).set(drivername="postgresql").render_as_string(False)


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: str, value: str | None) -> bool:
    return value is not None and _compiled(pattern).search(value) is not None


class Hand:
    """A plain DB-API connection for the hand-written SQL; statements use `:name` parameters."""

    def __init__(self, url: str) -> None:
        self.pg = not url.startswith("sqlite")
        self.defaults: dict[str, Any] = {}  # the organization's id, once known
        if self.pg:
            import psycopg

            self.conn: Any = psycopg.connect(pg_dsn(url), autocommit=True)
        else:
            path = make_url(url).database or ""
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # What an application on SQLite does for word matches (Clove registers the same).
            self.conn.create_function("regexp", 2, _regexp, deterministic=True)

    def run(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        if self.pg:  # psycopg's placeholders; a literal % doubled
            sql = re.sub(r"(?<!:):(\w+)", r"%(\1)s", sql.replace("%", "%%"))
        cur = self.conn.cursor()
        try:
            cur.execute(sql, {**self.defaults, **params})
            return list(cur.fetchall())
        finally:
            cur.close()

    def words(self, column: str, words: list[str], key: str, params: dict[str, Any]) -> str:
        """`column` holds every word whole, case-insensitively: a trigram-indexable regex per
        word on PostgreSQL; on SQLite a LIKE that skips most rows, then the regex. Columns
        ending in `_lower` are lower-case already (and indexed as they are)."""
        lowered = column if column.endswith("_lower") else f"lower({column})"
        parts = []
        for i, word in enumerate(words):
            escaped = re.escape(word.lower())
            tail = r"\M" if word[-1].isalnum() else ""
            if self.pg:
                params[f"{key}{i}"] = r"\m" + escaped + tail
                parts.append(f"{lowered} ~ :{key}{i}")
            else:
                params[f"{key}like{i}"] = f"%{word}%"
                tail = r"\b" if tail else ""
                params[f"{key}{i}"] = r"(?i)\b" + escaped + tail
                parts.append(f"{column} LIKE :{key}like{i} AND {column} REGEXP :{key}{i}")
        return " AND ".join(parts)

    def number(self, field_id: str) -> str:
        """The SQL of a number custom field of a lead."""
        if self.pg:
            return f"CAST(custom ->> '{field_id}' AS float)"
        return f"json_extract(custom, '$.\"{field_id}\"')"

    def explain(
        self, sql: str, params: dict[str, Any] | None = None, analyze: bool = True
    ) -> list[str]:
        prefix = "EXPLAIN QUERY PLAN "
        if self.pg:
            prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
        rows = self.run(prefix + sql, params or {})
        return [row[0] for row in rows] if self.pg else sqlite_plan(rows)

    def backend_pids(self) -> list[int]:
        if not self.pg:
            return []
        rows = self.run("SELECT pid FROM pg_stat_activity WHERE datname = current_database()", {})
        return [row[0] for row in rows]

    def close(self) -> None:
        self.conn.close()


def sqlite_plan(rows: list[tuple[Any, ...]]) -> list[str]:
    return [f"{'  ' * _depth(rows, row)}{row[-1]}" for row in rows]


def _depth(rows: list[tuple[Any, ...]], row: tuple[Any, ...]) -> int:
    """Nesting of an EXPLAIN QUERY PLAN row (id, parent, notused, detail)."""
    parents = {r[0]: r[1] for r in rows}
    depth, parent = 0, row[1]
    while parent in parents:
        depth, parent = depth + 1, parents[parent]
    return depth


# --------------------------------------------------------------------------- Clove's own SQL


class CloveSql:
    """Clove's statements for a request, compiled in this process the way run_search does
    (compile_search, page_statement with limit + 1, the count), and executed with Core."""

    def __init__(self, url: str, organization_id: str, user_id: str) -> None:
        self.engine: Engine = make_engine(url)
        self.organization_id, self.user_id = organization_id, user_id
        self.conn = self.engine.connect()

    def statements(self, body: dict[str, Any]) -> list[Select[Any]]:
        request = parse_search_request(body)
        with Session(self.engine) as session:
            scope = Scope(session, self.organization_id, self.user_id, datetime.now(UTC), UTC)
            search = compile_search(scope, request.query, request.sort)
        limit = page_size(request)
        if request.results_limit is not None:
            limit = min(limit, request.results_limit)
        out: list[Select[Any]] = []
        if limit:
            out.append(page_statement(search, None, limit + 1))
        if request.include_counts:
            out.append(select(func.count()).select_from(search.kind.table).where(search.where))
        return out

    def literal(self, statement: Select[Any]) -> str:
        compiled = statement.compile(
            dialect=self.engine.dialect, compile_kwargs={"literal_binds": True}
        )
        return str(compiled)

    def run(self, statements: list[Select[Any]]) -> float:
        started = time.perf_counter()
        for statement in statements:
            self.conn.execute(statement).all()
        took = time.perf_counter() - started
        self.conn.commit()
        return took

    def probe(self, statements: list[Select[Any]], seconds: float) -> float | None:
        """Run the statements once, cancelled after `seconds` (None then): a search can take
        hours with a bad plan, and the server cannot be stopped in the middle of a request."""
        driver: Any = self.conn.connection.driver_connection
        sqlite = self.engine.dialect.name == "sqlite"
        if not sqlite:
            self.conn.exec_driver_sql(f"SET statement_timeout = {int(seconds * 1000)}")
        timer = threading.Timer(seconds, driver.interrupt) if sqlite else None
        if timer is not None:
            timer.start()
        try:
            return self.run(statements)
        except OperationalError:  # interrupted (SQLite) or canceled (PostgreSQL)
            self.conn.rollback()
            return None
        finally:
            if timer is not None:
                timer.cancel()
            if not sqlite:
                self.conn.exec_driver_sql("SET statement_timeout = 0")
                self.conn.commit()

    def explain_sqlite(self, sql: str) -> list[str]:
        """EXPLAIN QUERY PLAN on Clove's own connection, which has its SQL functions."""
        driver: Any = self.conn.connection.driver_connection
        rows = driver.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
        self.conn.rollback()
        return sqlite_plan(rows)

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


# --------------------------------------------------------------------------- HTTP


class Http:
    """One keep-alive HTTP/1.1 connection to Clove."""

    def __init__(self, port: int, auth: str) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=600)
        self.headers = {"Authorization": auth, "Content-Type": "application/json"}

    def reconnect(self) -> None:
        """A new connection: uvicorn closes one left idle for 5 s (e.g. while seeding)."""
        self.conn.close()
        self.conn.connect()

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[float, bytes]:
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=self.headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.reconnect()  # only after an idle time, never between measured requests
            started = time.perf_counter()
            self.conn.request(method, path, body=body, headers=self.headers)
            response = self.conn.getresponse()
        data = response.read()
        took = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"{method} {path} answered {response.status}: {data[:300]!r}")
        return took, data

    def json(self, method: str, path: str, payload: Any = None) -> Any:
        body = json.dumps(payload).encode() if payload is not None else None
        return json.loads(self.call(method, path, body)[1])


# --------------------------------------------------------------------------- query bodies


def lead_query(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {"type": "and", "queries": [{"type": "object_type", "object_type": "lead"}, *conditions]}


def on(name: str, condition: dict[str, Any], object_type: str = "lead") -> dict[str, Any]:
    spec = {"type": "regular_field", "object_type": object_type, "field_name": name}
    return {"type": "field_condition", "field": spec, "condition": condition}


def on_custom(field_id: str, condition: dict[str, Any]) -> dict[str, Any]:
    spec = {"type": "custom_field", "custom_field_id": field_id}
    return {"type": "field_condition", "field": spec, "condition": condition}


def text(value: str, mode: str = "full_words") -> dict[str, Any]:
    return {"type": "text", "mode": mode, "value": value}


def related(object_type: str, query: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "has_related",
        "this_object_type": "lead",
        "related_object_type": object_type,
        "related_query": query,
    }


def local_day(day: str, which: str) -> dict[str, Any]:
    return {"type": "fixed_local_date", "value": day, "which": which}


def by_date(direction: str) -> list[dict[str, Any]]:
    spec = {"type": "regular_field", "object_type": "lead", "field_name": "date_created"}
    return [{"direction": direction, "field": spec}]


# --------------------------------------------------------------------------- picking values


@dataclass
class Picks:
    """Values of real rows, so that every query finds what a real one would."""

    organization_id: str
    user_id: str
    leads: int
    lead_id: str
    seats_field: str
    statuses: list[tuple[str, int]]  # (label, leads), most common first
    company_words: list[str]  # e.g. ["Acme", "Inc."]: Close's bulk-action example
    company_pair: list[str]  # head and tail of a real lead name, e.g. ["Summit", "Robotics"]
    person: str  # a contact's full name (or_three)
    person2: str  # another one (field-less text)
    email: str  # a contact's email (email_exact)
    email2: str  # another one (or_three)
    day: str  # a day with leads created on it
    seats: float  # a value of Seats


def _one(hand: Hand, sql: str, params: dict[str, Any]) -> Any:
    rows = hand.run(sql, params)
    if not rows:
        raise RuntimeError(f"no row for: {sql}")
    return rows[0][0] if len(rows[0]) == 1 else rows[0]


def _nth(hand: Hand, table: str, column: str, n: int, where: str = "") -> Any:
    """`column` of the n-th row of `table` in id order (ids are random: a random row)."""
    where = f" AND {where}" if where else ""
    return _one(
        hand,
        f"SELECT {column} FROM {table} WHERE organization_id = :org{where} "
        "ORDER BY id LIMIT 1 OFFSET :n",
        {"n": n},
    )


def hand_org(hand: Hand) -> str:
    return str(_one(hand, "SELECT id FROM organization ORDER BY date_created LIMIT 1", {}))


def pick_values(hand: Hand, user_id: str) -> Picks:
    org = hand_org(hand)
    hand.defaults["org"] = org
    p = {"org": org}
    leads = int(_one(hand, "SELECT count(*) FROM lead WHERE organization_id = :org", p))
    seats_field = str(
        _one(
            hand,
            "SELECT id FROM custom_field WHERE organization_id = :org AND object_type = 'lead' "
            "AND name = 'Seats'",
            p,
        )
    )
    statuses = hand.run(
        "SELECT s.label, count(*) FROM lead l JOIN lead_status s ON s.id = l.status_id "
        "WHERE l.organization_id = :org GROUP BY s.label ORDER BY count(*) DESC",
        p,
    )
    inc = _nth(hand, "lead", "name", leads // 7, "name LIKE '%, Inc.'")
    pair = _nth(hand, "lead", "name", leads // 3).replace(",", "").split()[:2]
    contacts = int(_one(hand, "SELECT count(*) FROM contact WHERE organization_id = :org", p))
    people = [_ascii_name(hand, contacts * k // 5) for k in (1, 2)]
    emails = [_nth(hand, "contact_email", "email", contacts * k // 4) for k in (1, 3)]
    created = _nth(hand, "lead", "date_created", leads * 9 // 10)
    if isinstance(created, str):  # SQLite
        created = datetime.fromisoformat(created)
    seats_sql = hand.number(seats_field)
    seats = _nth(hand, "lead", seats_sql, leads // 2, f"{seats_sql} IS NOT NULL")
    return Picks(
        organization_id=org,
        user_id=user_id,
        leads=leads,
        lead_id=str(_nth(hand, "lead", "id", leads // 5)),
        seats_field=seats_field,
        statuses=[(str(label), int(n)) for label, n in statuses],
        company_words=[inc.split()[0], "Inc."],
        company_pair=pair,
        person=people[0],
        person2=people[1],
        email=emails[0],
        email2=emails[1],
        day=created.date().isoformat(),
        seats=float(seats),
    )


def _ascii_name(hand: Hand, n: int) -> str:
    """The first ASCII-only contact name from the n-th contact on."""
    for k in range(n, n + 50):
        name = str(_nth(hand, "contact", "name", k))
        if name.isascii():
            return name
    raise RuntimeError("no ASCII contact name found")


# --------------------------------------------------------------------------- the queries

NEWEST = "ORDER BY date_created DESC, id DESC LIMIT 100"
IN_ORG = "organization_id = :org"
STATUS = "status_id = (SELECT id FROM lead_status WHERE organization_id = :org AND label = :label)"
Statement = tuple[str, dict[str, Any]]


@dataclass
class Query:
    name: str
    what: str
    body: dict[str, Any]
    hand: list[Statement]  # the page statement first (its ids), then the count if any
    goal: str  # "page", "count", or "scan" (no index can answer it: only the ratio goal)
    indexes: str  # what the hand-written SQL relies on


def leads_where(condition: str, params: dict[str, Any], order: str = NEWEST) -> Statement:
    return f"SELECT id FROM lead WHERE {IN_ORG} AND {condition} {order}", params


def status_term(label: str) -> dict[str, Any]:
    return lead_query(on("status_label", {"type": "term", "values": [label]}))


def q_id_lookup(p: Picks, hand: Hand) -> Query:
    """The floor of a search: one lead by its id (the primary key)."""
    return Query(
        "id_lookup",
        "id node of a real lead: what any search costs besides its own SQL",
        {"query": lead_query({"type": "id", "value": p.lead_id})},
        [leads_where("id = :id", {"id": p.lead_id})],
        "page",
        "pk_lead",
    )


def q_status_count(p: Picks, hand: Hand) -> Query:
    label = p.statuses[0][0]
    return Query(
        "status_count",
        f"count of status_label term {label!r} (results_limit 0, include_counts)",
        {"query": status_term(label), "results_limit": 0, "include_counts": True},
        [(f"SELECT count(*) FROM lead WHERE {IN_ORG} AND {STATUS}", {"label": label})],
        "count",
        "ix_lead_org_status",
    )


def q_status_page(p: Picks, hand: Hand) -> Query:
    label = p.statuses[-1][0]
    return Query(
        "status_page",
        f"status_label term {label!r}, newest 100",
        {"query": status_term(label)},
        [leads_where(STATUS, {"label": label})],
        "page",
        "ix_lead_org_created (backward), ix_lead_org_status",
    )


def q_name_words(p: Picks, hand: Hand) -> Query:
    value = " ".join(p.company_words)
    params: dict[str, Any] = {}
    condition = hand.words("name", p.company_words, "w", params)
    return Query(
        "name_words",
        f"name full_words {value!r} (as in Close's bulk-action example), newest 100",
        {"query": lead_query(on("name", text(value)))},
        [leads_where(condition, params)],
        "page",
        "ix_trgm_lead_name",
    )


def q_email_exact(p: Picks, hand: Hand) -> Query:
    email = on("email", text(p.email, "exact_value"), "contact_email")
    emails = f"SELECT lead_id FROM contact_email WHERE {IN_ORG} AND email_lower = :email"
    return Query(
        "email_exact",
        "has_related contact_email email exact_value",
        {"query": lead_query(related("contact_email", email))},
        [leads_where(f"id IN ({emails})", {"email": p.email.lower()})],
        "page",
        "ix_contact_email_org_email",
    )


def q_seats_range(p: Picks, hand: Hand) -> Query:
    lo, hi = p.seats - 100, p.seats + 100
    seats = hand.number(p.seats_field)
    condition = {"type": "number_range", "gte": lo, "lte": hi}
    return Query(
        "seats_range",
        f"custom number Seats in [{lo:g}, {hi:g}], newest 100",
        {"query": lead_query(on_custom(p.seats_field, condition))},
        [leads_where(f"{seats} >= :lo AND {seats} <= :hi", {"lo": lo, "hi": hi})],
        # Since d0161b2 a number custom field gets an expression index on PostgreSQL.
        "page" if hand.pg else "scan",
        "ix_<field id> (PostgreSQL; none on SQLite), ix_lead_org_created for the order",
    )


def q_created_day(p: Picks, hand: Hand) -> Query:
    start = datetime.fromisoformat(p.day)
    params: dict[str, Any] = {"start": start, "end": start + timedelta(days=1)}
    if not hand.pg:  # SQLite compares the stored text
        params = {k: v.isoformat(sep=" ") + ".000000" for k, v in params.items()}
    moment = {
        "type": "moment_range",
        "on_or_after": local_day(p.day, "start"),
        "before": local_day(p.day, "end"),
    }
    where = "date_created >= :start AND date_created < :end"
    return Query(
        "created_day",
        f"date_created moment_range on {p.day} (fixed_local_date start/end), with count",
        {"query": lead_query(on("date_created", moment)), "include_counts": True},
        [
            leads_where(where, params),
            (f"SELECT count(*) FROM lead WHERE {IN_ORG} AND {where}", params),
        ],
        "page",
        "ix_lead_org_created",
    )


def q_no_seats(p: Picks, hand: Hand) -> Query:
    exists = on_custom(p.seats_field, {"type": "exists"})
    return Query(
        "no_seats",
        "negated exists on custom Seats (no value), newest 100",
        {"query": lead_query({**exists, "negate": True})},
        [leads_where(f"{hand.number(p.seats_field)} IS NULL", {})],
        "page",
        "ix_lead_org_created (backward)",
    )


def q_or_three(p: Picks, hand: Hand) -> Query:
    company, person = " ".join(p.company_pair), p.person
    email = on("email", text(p.email2, "exact_value"), "contact_email")
    either = [
        on("name", text(company)),
        related("contact", on("name", text(person), "contact")),
        related("contact_email", email),
    ]
    params: dict[str, Any] = {"email": p.email2.lower()}
    parts = [
        f"SELECT id FROM lead WHERE {IN_ORG} AND "
        + hand.words("name", p.company_pair, "a", params),
        f"SELECT lead_id FROM contact WHERE {IN_ORG} AND "
        + hand.words("name", person.split(), "b", params),
        f"SELECT lead_id FROM contact_email WHERE {IN_ORG} AND email_lower = :email",
    ]
    return Query(
        "or_three",
        f"or of: name {company!r}, has_related contact name {person!r}, email exact_value",
        {"query": lead_query({"type": "or", "queries": either})},
        [leads_where(f"id IN ({' UNION '.join(parts)})", params)],
        "page",
        "ix_trgm_lead_name, ix_trgm_contact_name, ix_contact_email_org_email",
    )


def q_oldest_10(p: Picks, hand: Hand) -> Query:
    label = p.statuses[len(p.statuses) // 2][0]
    return Query(
        "oldest_10",
        f"status_label term {label!r}, sort date_created asc, results_limit 10",
        {"query": status_term(label), "sort": by_date("asc"), "results_limit": 10},
        [leads_where(STATUS, {"label": label}, "ORDER BY date_created, id LIMIT 10")],
        "page",
        "ix_lead_org_created",
    )


def q_text_anywhere(p: Picks, hand: Hand) -> Query:
    """Field-less text: a lead's name or description, or its contacts' name, title, email or
    phone (fields.KINDS["lead"].text_fields and text_related); phones only for words with
    digits (stored as E.164, nothing else can match)."""
    words = p.person2.split()
    params: dict[str, Any] = {}
    where = [
        ("id", "lead", "name"),
        ("id", "lead", "description"),
        ("lead_id", "contact", "name"),
        ("lead_id", "contact", "title"),
        ("lead_id", "contact_email", "email_lower"),
    ]
    if any(c.isdigit() for c in p.person2):
        where.append(("lead_id", "contact_phone", "phone"))
    parts = [
        f"SELECT {key} FROM {table} WHERE {IN_ORG} AND "
        + hand.words(column, words, f"x{i}_", params)
        for i, (key, table, column) in enumerate(where)
    ]
    return Query(
        "text_anywhere",
        f"field-less text full_words {p.person2!r}, newest 100",
        {"query": lead_query(text(p.person2))},
        [leads_where(f"id IN ({' UNION '.join(parts)})", params)],
        "page",
        "trigram on lead name and description, contact name and title, email",
    )


QUERIES = (
    q_id_lookup,
    q_status_count,
    q_status_page,
    q_name_words,
    q_email_exact,
    q_seats_range,
    q_created_day,
    q_no_seats,
    q_or_three,
    q_oldest_10,
    q_text_anywhere,
)


# --------------------------------------------------------------------------- measuring


@dataclass
class Timing:
    clove_http: list[float] = field(default_factory=list)
    clove_sql: list[float] = field(default_factory=list)
    hand: list[float] = field(default_factory=list)
    empty: list[float] = field(default_factory=list)
    other_cpu: float | None = None  # % of a core used by everything else meanwhile
    timed_out: float | None = None  # Clove's SQL took longer than this: Clove not measured


@dataclass
class Result:
    query: Query
    timing: Timing
    returned: int
    total: int | None
    same_ids: bool | None  # None: Clove not asked (its SQL timed out)
    clove_sql_text: list[str]
    plans: dict[str, list[list[str]]] = field(default_factory=dict)

    def p(self, name: str, q: float = 0.5) -> float:
        values = sorted(getattr(self.timing, name))
        if not values:
            return float("nan")
        if q == 0.5:
            return statistics.median(values) * 1e3
        return values[min(len(values) - 1, round(q * (len(values) - 1)))] * 1e3

    @property
    def ratio(self) -> float:
        return self.p("clove_http") / (self.p("hand") + self.p("empty"))

    @property
    def goal_ms(self) -> float | None:
        return {"page": PAGE_GOAL_MS, "count": COUNT_GOAL_MS}.get(self.query.goal)

    def misses(self, pg: bool) -> list[str]:
        """What is missed: the absolute goal (PostgreSQL only), the ratio."""
        if self.timing.timed_out:
            return [f"> {self.timing.timed_out:g} s"]
        out = []
        if pg and self.goal_ms is not None and self.p("clove_http") > self.goal_ms:
            out.append(f"> {self.goal_ms:g} ms")
        if self.ratio > RATIO_GOAL:
            out.append(f"ratio > {RATIO_GOAL:g}")
        return out


class CpuMeter:
    """CPU used during a measurement by everything but this benchmark: the whole machine,
    minus Clove's server process, this process and (PostgreSQL) the backends of its database."""

    def __init__(self, server_pid: int, hand: Hand) -> None:
        self.server_pid, self.hand = server_pid, hand

    def _ours(self) -> float:
        pids = [self.server_pid, *self.hand.backend_pids()]
        backend = sum(proc_cpu_seconds(pid) or 0.0 for pid in pids)
        return backend + time.process_time()

    def start(self) -> tuple[float, float, float]:
        return (machine_busy_seconds() or 0.0, self._ours(), time.monotonic())

    def other(self, begun: tuple[float, float, float]) -> float | None:
        busy, ours, t0 = begun
        now_busy = machine_busy_seconds()
        if now_busy is None:
            return None
        elapsed = time.monotonic() - t0
        return max(0.0, (now_busy - busy) - (self._ours() - ours)) / elapsed * 100


def measure(
    q: Query,
    http_: Http,
    clove: CloveSql,
    hand: Hand,
    meter: CpuMeter,
    args: argparse.Namespace,
    log: Callable[[str], None],
) -> Result:
    body = json.dumps(q.body).encode()
    statements = clove.statements(q.body)
    timing = Timing()
    steps: list[tuple[list[float], Callable[[], float]]] = [
        (timing.clove_http, lambda: http_.call("POST", SEARCH_PATH, body)[0]),
        (timing.clove_sql, lambda: clove.run(statements)),
        (timing.hand, lambda: _time(hand, q.hand)),
        (timing.empty, lambda: http_.call("GET", EMPTY_PATH)[0]),
    ]
    first = clove.probe(statements, args.timeout)
    if first is None:
        log(f"  [red]Clove's SQL takes over {args.timeout:g} s: not sent to Clove[/red]")
        timing.timed_out = args.timeout
        steps = steps[2:]
    else:
        log(f"  Clove's SQL once: {first * 1e3:,.1f} ms")
    for _ in range(args.warmup):
        for _, step in steps:
            step()
    begun = meter.start()
    started = time.monotonic()
    for i in range(args.repeat):
        for samples, step in steps:
            samples.append(step())
        if i + 1 >= 5 and time.monotonic() - started > args.max_seconds:
            log(f"  {q.name}: stopped after {i + 1} rounds (--max-seconds {args.max_seconds:g})")
            break
    timing.other_cpu = meter.other(begun)
    return check(q, timing, http_, clove, hand, statements)


def _time(hand: Hand, statements: list[tuple[str, dict[str, Any]]]) -> float:
    started = time.perf_counter()
    for sql, params in statements:
        hand.run(sql, params)
    return time.perf_counter() - started


def check(
    q: Query,
    timing: Timing,
    http_: Http,
    clove: CloveSql,
    hand: Hand,
    statements: list[Select[Any]],
) -> Result:
    """Counts, and whether Clove's page and the hand-written one hold the same ids."""
    rows = [hand.run(sql, params) for sql, params in q.hand]
    sql_text = [clove.literal(s) for s in statements]
    if timing.timed_out:
        return Result(q, timing, len(rows[0]), None, None, sql_text)
    answer = http_.json("POST", SEARCH_PATH, {**q.body, "include_counts": True})
    ids = [item["id"] for item in answer["data"]]
    total = answer["count"]["total"]
    if q.body.get("results_limit") == 0:
        same = rows[0][0][0] == total
    else:
        same = [row[0] for row in rows[0]] == ids
    return Result(q, timing, len(ids), total, same, sql_text)


def explain(result: Result, clove: CloveSql, hand: Hand) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL, EXPLAIN QUERY PLAN on SQLite: of Clove's SQL
    (the literal compilation of its statements) and of the hand-written SQL."""
    analyze = not result.timing.timed_out  # else EXPLAIN only: ANALYZE would run it
    result.plans["clove"] = [
        hand.explain(sql, analyze=analyze) if hand.pg else clove.explain_sqlite(sql)
        for sql in result.clove_sql_text
    ]
    result.plans["hand"] = [hand.explain(sql, params) for sql, params in result.query.hand]


def summarize_plan(lines: list[str], limit: int = 24) -> list[str]:
    """The plan without buffer and planning lines, cut to `limit` lines."""
    keep = [
        line.rstrip()
        for line in lines
        if not line.strip().startswith(("Buffers:", "Planning:", "Planning Time"))
    ]
    if len(keep) > limit:
        keep = [*keep[: limit - 1], f"  … {len(keep) - limit + 1} more lines", keep[-1]]
    return keep


# --------------------------------------------------------------------------- setup


@dataclass
class Setup:
    url: str
    label: str
    database: Database | None  # made by this run: dropped at the end unless --keep
    seed_seconds: float | None = None


def prepare(args: argparse.Namespace, tmp: Path, log: Callable[[str], None]) -> Setup:
    """The database to measure: the one --reuse names, or a fresh one (not seeded yet)."""
    if args.reuse:
        url = normalize_url(args.reuse)
        return Setup(url, f"reused {make_url(url).render_as_string()}", None)
    sqlite = not (args.database_url or "").startswith("postgres")
    where = Path(tempfile.mkdtemp(prefix="clove-bench-search-")) if args.keep and sqlite else tmp
    db = Database(args.database_url, where)
    log(f"Creating {db.label} …")
    db.create()
    return Setup(db.url, db.label, db)


def default_leads(url: str) -> int:
    return 100_000 if url.startswith("sqlite") else 1_000_000


def seed(
    url: str, leads: int, env: dict[str, str], http_: Http, log: Callable[[str], None]
) -> float:
    """A number custom field (so that `clove seed` gives leads values for it), then the leads;
    then VACUUM ANALYZE on PostgreSQL, as autovacuum would soon do after such a load."""
    http_.json("POST", "/api/v1/custom_field/lead/", {"name": "Seats", "type": "number"})
    log(f"clove seed --leads {leads:,} …")
    started = time.perf_counter()
    done = subprocess.run(
        [*clove_command(), "seed", "--leads", str(leads), "--database-url", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"clove seed failed:\n{done.stderr.strip()[-2000:]}")
    log(f"  {done.stdout.strip()} ({seconds:.0f} s with process start)")
    if not url.startswith("sqlite"):
        import psycopg

        with psycopg.connect(pg_dsn(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    return seconds


def start_server(
    url: str, env: dict[str, str], processes: Processes, tmp: Path, auth: str
) -> Server:
    port = free_port()
    log_file = tmp / "clove.log"
    cmd = [*clove_command(), "serve", "--port", str(port), "--database-url", url, "--no-worker"]
    with log_file.open("wb") as fh:
        proc = processes.start(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    server = Server("clove", port, proc, log_file)
    server.wait_ready(auth, timeout=60)
    return server


def busy_before(seconds: float = 2.0) -> float | None:
    """% of a core the machine used over `seconds` before measuring (nothing of ours runs)."""
    busy0, t0 = machine_busy_seconds(), time.monotonic()
    time.sleep(seconds)
    busy1 = machine_busy_seconds()
    if busy0 is None or busy1 is None:
        return None
    return (busy1 - busy0) / (time.monotonic() - t0) * 100


# --------------------------------------------------------------------------- report


def _ms(value: float) -> str:
    if value != value:  # NaN: not measured
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def report(results: list[Result], pg: bool, header: dict[str, str]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console() if sys.stdout.isatty() else Console(width=170)
    setup = Table(show_header=False, box=None, pad_edge=False)
    for k, v in header.items():
        setup.add_row(f"[dim]{k}[/dim]", v)
    out.print(setup)
    table = Table(title="POST /data/search/: p50 / p95 in ms")
    columns = ("query", "rows / total", "clove http", "clove sql", "hand sql", "empty http")
    for name in (*columns, "ratio", "goal", "met", "other CPU %"):
        table.add_column(name, justify="left" if name == "query" else "right", no_wrap=True)
    for r in results:
        goal = f"≤ {r.goal_ms:g} ms, " if r.goal_ms is not None and pg else ""
        misses = r.misses(pg)
        clove_http = f"{_ms(r.p('clove_http'))} / {_ms(r.p('clove_http', 0.95))}"
        if r.timing.timed_out:
            clove_http = f"> {r.timing.timed_out * 1e3:,.0f}"
        table.add_row(
            r.query.name + (" [red](ids differ!)[/red]" if r.same_ids is False else ""),
            f"{r.returned:,} / {r.total:,}" if r.total is not None else f"{r.returned:,}",
            clove_http,
            _ms(r.p("clove_sql")) if not r.timing.timed_out else "-",
            f"{_ms(r.p('hand'))} / {_ms(r.p('hand', 0.95))}",
            _ms(r.p("empty")),
            "-" if r.timing.timed_out else f"{r.ratio:.1f}",
            goal + f"ratio ≤ {RATIO_GOAL:g}",
            "[green]yes[/green]" if not misses else f"[red]no[/red] ({', '.join(misses)})",
            "-" if r.timing.other_cpu is None else f"{r.timing.other_cpu:.0f}",
        )
    table.caption = (
        "rows: ids returned / count.total. clove sql: Clove's statements run in-process with "
        "SQLAlchemy Core (no HTTP). ratio: clove http p50 / (hand sql p50 + empty http p50). "
        "other CPU: the rest of the machine while measuring (100 = one core; it includes "
        "PostgreSQL's parallel workers, which live too briefly to be counted as ours)."
    )
    out.print(table)
    for r in results:
        out.print(f"[bold]{r.query.name}[/bold]: {r.query.what}; hand SQL uses {r.query.indexes}")
    for r in results:
        if not r.plans:
            continue
        out.rule(f"{r.query.name}: {', '.join(r.misses(pg)) or 'plans'}")
        for who in ("clove", "hand"):
            for i, plan in enumerate(r.plans.get(who, [])):
                out.print(f"[bold]{who} SQL, statement {i + 1}[/bold]", highlight=False)
                out.print("\n".join(summarize_plan(plan)), highlight=False, markup=False)


TIMINGS = ("clove_http", "clove_sql", "hand", "empty")


def _num(value: float) -> float | None:
    return None if value != value else value  # NaN (not measured): null


def as_json(results: list[Result], header: dict[str, str], pg: bool) -> dict[str, Any]:
    rows = []
    for r in results:
        t = r.timing
        rows.append(
            {
                "name": r.query.name,
                "what": r.query.what,
                "body": r.query.body,
                "goal": r.query.goal,
                "returned": r.returned,
                "total": r.total,
                "same_ids": r.same_ids,
                "p50_ms": {k: _num(r.p(k)) for k in TIMINGS},
                "p95_ms": {k: _num(r.p(k, 0.95)) for k in TIMINGS},
                "timed_out_s": t.timed_out,
                "samples": len(t.clove_http),
                "ratio": _num(r.ratio),
                "misses": r.misses(pg),
                "other_cpu_percent": t.other_cpu,
                "clove_sql": r.clove_sql_text,
                "hand_sql": [sql for sql, _ in r.query.hand],
                "plans": r.plans,
            }
        )
    return {"setup": header, "queries": rows}


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--database-url",
        help="default: a temporary SQLite file. postgresql://…: a fresh database on that server",
    )
    p.add_argument("--leads", type=int, help="default 1,000,000 on PostgreSQL, 100,000 on SQLite")
    p.add_argument("--repeat", type=int, default=30, help="measured requests per query")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured requests per query first")
    p.add_argument(
        "--max-seconds", type=float, default=90.0, help="per query: stop repeating after this"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds Clove's SQL may take (tried once in-process) before the query is only "
        "EXPLAINed, not sent to Clove",
    )
    p.add_argument(
        "--analyze",
        action="store_true",
        help="run ANALYZE on SQLite before measuring (Clove itself never does)",
    )
    p.add_argument("--only", help="comma-separated query names")
    p.add_argument(
        "--explain", choices=("missed", "all", "none"), default="missed", help="which to EXPLAIN"
    )
    p.add_argument("--json", metavar="FILE", help="also write every figure, SQL and plan")
    p.add_argument("--keep", action="store_true", help="keep the seeded database; print its URL")
    p.add_argument("--reuse", metavar="URL", help="a database seeded by an earlier --keep run")
    args = p.parse_args(argv)
    if args.reuse and (args.database_url or args.leads):
        p.error("--reuse measures the database it names: no --database-url or --leads")
    if args.repeat < 1 or args.warmup < 0:
        p.error("--repeat must be >= 1 and --warmup >= 0")
    return args


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from rich.console import Console

    console = Console(stderr=True)

    def log(message: str) -> None:
        console.print(message, highlight=False)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    processes = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="clove-bench-"))
    setup: Setup | None = None
    closers: list[Callable[[], None]] = []
    try:
        setup = prepare(args, tmp, log)
        url = setup.url
        env = {**os.environ, **RATE_LIMIT_ENV, "CLOVE_DATABASE_URL": url}
        if setup.database is not None:
            run_clove(
                ["init", "--org", "Bench", "--email", BENCH_EMAIL, "--database-url", url], env
            )
        key = run_clove(["apikey", "create", "--email", BENCH_EMAIL, "--database-url", url], env)
        auth = basic_auth(key)
        server = start_server(url, env, processes, tmp, auth)
        client = Http(server.port, auth)
        me = client.json("GET", EMPTY_PATH)
        if setup.database is not None:
            leads = args.leads or default_leads(url)
            setup.seed_seconds = seed(url, leads, env, client, log)
        hand = Hand(url)
        closers.append(hand.close)
        if args.analyze and not hand.pg:
            log("ANALYZE …")
            hand.run("ANALYZE", {})
        picks = pick_values(hand, me["id"])
        clove = CloveSql(url, picks.organization_id, picks.user_id)
        closers.append(clove.close)
        wanted = set(args.only.split(",")) if args.only else None
        todo = [make(picks, hand) for make in QUERIES]
        todo = [q for q in todo if wanted is None or q.name in wanted]
        background = busy_before()
        if background is not None and background > 25:
            log(f"[yellow]The machine is busy before measuring ({background:.0f}% of a core).")
        header = _header(args, setup, picks, hand, background)
        meter = CpuMeter(server.proc.pid, hand)
        results = []
        for q in todo:
            log(f"{q.name}: {q.what}")
            result = measure(q, client, clove, hand, meter, args, log)
            if args.explain == "all" or (args.explain == "missed" and result.misses(hand.pg)):
                explain(result, clove, hand)
            results.append(result)
        header["load average after"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        report(results, hand.pg, header)
        if args.json:
            Path(args.json).write_text(json.dumps(as_json(results, header, hand.pg), indent=2))
        return 0
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted; cleaning up.[/yellow]")
        return 130
    except (RuntimeError, OSError) as exc:
        console.print(f"[red]{type(exc).__name__}: {exc}[/red]")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        for close in closers:
            close()
        processes.stop_all()
        if setup is not None and setup.database is not None:
            if args.keep:  # even after a failure: seeding takes minutes
                log(f"Kept the database: --reuse {setup.url}")
            else:
                setup.database.drop()
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _header(
    args: argparse.Namespace, setup: Setup, picks: Picks, hand: Hand, background: float | None
) -> dict[str, str]:
    statuses = ", ".join(f"{label} {n / picks.leads:.0%}" for label, n in picks.statuses)
    if hand.pg:
        stats = "VACUUM ANALYZE after seeding"
    else:
        analyzed = hand.run("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'", {})
        stats = "ANALYZE run (sqlite_stat1)" if analyzed[0][0] else "none (no ANALYZE, as Clove)"
    seeded = f"seeded in {setup.seed_seconds:.0f} s" if setup.seed_seconds else "reused"
    return {
        "clove": clove_version(),
        "database": f"{setup.label}: {picks.leads:,} leads ({seeded}); statuses {statuses}",
        "planner statistics": stats,
        "method": f"{args.warmup} warm-up + {args.repeat} measured rounds per query (at most "
        f"{args.max_seconds:g} s), each round: clove http, clove sql, hand sql, empty http",
        "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, busy before "
        f"measuring: {'-' if background is None else f'{background:.0f}'}% of a core, load "
        f"average {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
    }


if __name__ == "__main__":
    sys.exit(main())
