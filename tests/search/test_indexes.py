"""On PostgreSQL, every number/date custom field has an expression index that matches the
search compiler's SQL exactly, even with bound parameters (bench/search.py shows the trigram
and email indexes at work on a million leads; a tiny table's plans would not)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.auth.service import AuthContext
from clove.event.service import Actor
from clove.search.service import compile_search, make_scope
from clove.search.tree import parse_node
from tests.conftest import Org


@pytest.fixture(autouse=True)
def postgresql_only(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("index use is checked on PostgreSQL (set CLOVE_TEST_DATABASE_URL)")


def plan(session: Session, org: Org, query: dict[str, Any]) -> str:
    """EXPLAIN of the count Clove runs for a search, with sequential scans discouraged so that a
    usable index is always chosen on a tiny table."""
    actor = Actor(_auth(org), None, "POST", "/api/v1/data/search/")
    scope = make_scope(session, actor, UTC)
    search = compile_search(scope, parse_node(query), [])
    # The count: without ORDER BY ... LIMIT a tiny table's plan is not an ordered index walk.
    statement = select(func.count()).select_from(search.kind.table).where(search.where)
    session.execute(text("SET LOCAL enable_seqscan = off"))
    compiled = statement.compile(session.get_bind())
    # Bound parameters, as Clove sends them: the planner must still match the expressions.
    rows = session.connection().exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
    return "\n".join(row[0] for row in rows)


def _auth(org: Org) -> AuthContext:
    return AuthContext(org.id, org.user_id, org.membership_id, "admin")


def condition(field: dict[str, Any], condition: dict[str, Any]) -> dict[str, Any]:
    return {"type": "field_condition", "field": field, "condition": condition}


def test_custom_number_and_date_ranges_use_their_index(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    number = client.post(
        "/api/v1/custom_field/lead/", json={"name": "Seats", "type": "number"}, auth=org.auth
    ).json()
    day = client.post(
        "/api/v1/custom_field/lead/", json={"name": "Renewal", "type": "date"}, auth=org.auth
    ).json()
    client.post(
        "/api/v1/lead/",
        json={"name": "x", f"custom.{number['id']}": 5, f"custom.{day['id']}": "2024-05-01"},
        auth=org.auth,
    )
    seats = {"type": "custom_field", "custom_field_id": number["id"]}
    renewal = {"type": "custom_field", "custom_field_id": day["id"]}
    since = {"type": "fixed_local_date", "value": "2024-01-01", "which": "start"}
    with session_factory() as session:
        ranged = plan(session, org, condition(seats, {"type": "number_range", "gte": 3}))
        assert f"ix_{number['id']}" in ranged
        dated = plan(
            session, org, condition(renewal, {"type": "moment_range", "on_or_after": since})
        )
        assert f"ix_{day['id']}" in dated

    client.delete(f"/api/v1/custom_field/lead/{day['id']}/", auth=org.auth)
    with session_factory() as session:
        names = set(
            session.execute(
                text("SELECT indexname FROM pg_indexes WHERE indexname LIKE :p"),
                {"p": "ix_cf_%"},
            ).scalars()
        )
    assert f"ix_{number['id']}" in names
    assert f"ix_{day['id']}" not in names
