"""Organizations are sealed from each other: every route with an object id in its path answers
404 to another organization's ids, for every method, and changes nothing there.

The routes are read from the app itself, so a new route is covered as soon as it exists; a new
kind of path parameter needs an entry in OWNED_IDS (or GLOBAL_PARAMS) below.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Table, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.auth.service import AuthContext
from clove.event.service import Actor, record_event
from clove.kit.ids import new_id
from clove.models import (
    Base,
    BulkAction,
    ConnectedAccount,
    Contact,
    CustomField,
    EmailActivity,
    EmailTemplate,
    Event,
    Lead,
    LeadStatus,
    Membership,
    PhoneNumber,
    SavedSearch,
    SendAs,
    Sequence,
    SequenceSubscription,
    Task,
    UnsubscribedEmail,
    Webhook,
)
from tests.conftest import Org
from tests.test_membership import Member, add_member


@dataclass
class Victim:
    """Organization B and objects of it that A must not reach."""

    org: Org
    member: Member
    owned: dict[str, list[str]]  # ids of B's rows, by path parameter name


# For each path parameter: the ids of B's objects to try. A missing entry fails the test below.
OWNED_IDS: dict[str, Callable[[Victim], list[str]]] = {
    "org_id": lambda b: [b.org.id],
    "user_id": lambda b: [b.org.user_id, b.member.user_id],
    "membership_id": lambda b: [b.org.membership_id, b.member.membership_id],
    "key_or_id": lambda b: [b.member.key_id, b.member.key],  # by id and by the secret itself
    "status_id": lambda b: b.owned["status_id"],
    "event_id": lambda b: b.owned["event_id"],
    "field_id": lambda b: b.owned["field_id"],
    "lead_id": lambda b: b.owned["lead_id"],
    "contact_id": lambda b: b.owned["contact_id"],
    "saved_search_id": lambda b: b.owned["saved_search_id"],
    "template_id": lambda b: b.owned["template_id"],
    "sequence_id": lambda b: b.owned["sequence_id"],
    "subscription_id": lambda b: b.owned["subscription_id"],
    "activity_id": lambda b: b.owned["activity_id"],
    "task_id": lambda b: b.owned["task_id"],
    "email_address": lambda b: [VICTIM_EMAIL],  # unsubscribed in B only
    "account_id": lambda b: b.owned["account_id"],
    "send_as_id": lambda b: b.owned["send_as_id"],
    "phone_number_id": lambda b: b.owned["phone_number_id"],
    "action_id": lambda b: b.owned["action_id"],
    "webhook_id": lambda b: b.owned["webhook_id"],
}

VICTIM_EMAIL = "victim@example.com"
BULK_KINDS = {
    "sequence_subscription": "bulkseqsub",
    "email": "bulkemail",
    "edit": "bulkedit",
    "delete": "bulkdelete",
}

# Path parameters naming rows of one table: the victim's rows are read from there.
PARAM_TABLES: dict[str, type[Any]] = {
    "status_id": LeadStatus,
    "event_id": Event,
    "field_id": CustomField,
    "lead_id": Lead,
    "contact_id": Contact,
    "saved_search_id": SavedSearch,
    "template_id": EmailTemplate,
    "sequence_id": Sequence,
    "subscription_id": SequenceSubscription,
    "activity_id": EmailActivity,
    "task_id": Task,
    "account_id": ConnectedAccount,
    "send_as_id": SendAs,
    "phone_number_id": PhoneNumber,
    "action_id": BulkAction,
    "webhook_id": Webhook,
}

# Path parameters that do not name an organization's object (built-in, shared by everyone).
GLOBAL_PARAMS = {"role_id", "object_type"}

# Bodies that pass validation (so the request reaches the lookup) and would change B if it did.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", "/api/v1/organization/{org_id}/"): {"name": "Taken over", "currency": "EUR"},
    ("PUT", "/api/v1/membership/{membership_id}/"): {
        "role_id": "admin",
        "track_email_opens": False,
    },
    ("PUT", "/api/v1/membership/{membership_id}/pinned_views/"): {"saved_view_ids": ["save_x"]},
    ("PUT", "/api/v1/saved_search/{saved_search_id}/"): {"name": "Taken over", "query": "*"},
    ("PUT", "/api/v1/email_template/{template_id}/"): {"name": "Taken over", "body": "Mine"},
    ("PUT", "/api/v1/phone_number/{phone_number_id}/"): {"label": "Taken over"},
    ("PUT", "/api/v1/sequence/{sequence_id}/"): {"name": "Taken over", "status": "paused"},
    ("PUT", "/api/v1/sequence_subscription/{subscription_id}/"): {"status": "paused"},
    ("PUT", "/api/v1/activity/email/{activity_id}/"): {"subject": "Taken over"},
    ("PUT", "/api/v1/task/{task_id}/"): {"is_complete": True, "text": "Taken over"},
    ("PUT", "/api/v1/bulk_action/sequence_subscription/{action_id}/"): {"status": "paused"},
    ("PUT", "/api/v1/webhook/{webhook_id}/"): {"status": "paused", "url": "https://taken.example"},
    ("PUT", "/api/v1/bulk_action/edit/{action_id}/"): {"status": "paused"},
    ("PUT", "/api/v1/bulk_action/delete/{action_id}/"): {"status": "paused"},
    ("PUT", "/api/v1/bulk_action/email/{action_id}/"): {"status": "paused"},
}


def operations_with_ids(app: FastAPI) -> list[tuple[str, str, list[str]]]:
    """(METHOD, path template, parameter names) of every API operation with path parameters."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        params = re.findall(r"{(\w+)(?::\w+)?}", path)
        if path.startswith("/api/v1/") and params:
            found += [(method.upper(), path, params) for method in operations]
    return found


def snapshot(session_factory: sessionmaker[Session], org: Org, user_ids: list[str]) -> Any:
    """Every row that belongs to `org` (any table with organization_id), the org, its users."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with session_factory() as session:
        for table in Base.metadata.sorted_tables:
            query = _owned_rows(table, org, user_ids)
            if query is not None:
                rows[table.name] = sorted(tuple(map(repr, r)) for r in session.execute(query))
    return rows


def _owned_rows(table: Table, org: Org, user_ids: list[str]) -> Any:
    if "organization_id" in table.c:
        return select(table).where(table.c.organization_id == org.id)
    if table.name == "organization":
        return select(table).where(table.c.id == org.id)
    if table.name == "users":
        return select(table).where(table.c.id.in_(user_ids))
    return None


@pytest.fixture
def victim(other_org: Org, session_factory: sessionmaker[Session]) -> Victim:
    member = add_member(session_factory, other_org, "user")
    with session_factory.begin() as session:
        actor = Actor(
            AuthContext(other_org.id, other_org.user_id, other_org.membership_id, "admin")
        )
        status_id = session.scalar(
            select(LeadStatus.id).where(LeadStatus.organization_id == other_org.id)
        )
        lead = Lead(
            id=new_id("lead"), organization_id=other_org.id, name="Theirs", status_id=status_id
        )
        session.add(lead)
        session.flush()
        contact = Contact(id=new_id("cont"), organization_id=other_org.id, lead_id=lead.id)
        sequence = Sequence(id=new_id("seq"), organization_id=other_org.id, name="Theirs")
        session.add_all([contact, sequence])
        session.flush()
        session.add(
            SequenceSubscription(
                id=new_id("sub"),
                organization_id=other_org.id,
                sequence_id=sequence.id,
                contact_id=contact.id,
                lead_id=lead.id,
            )
        )
        session.add(
            EmailActivity(
                id=new_id("acti"), organization_id=other_org.id, lead_id=lead.id, status="draft"
            )
        )
        session.add(Task(id=new_id("task"), organization_id=other_org.id, lead_id=lead.id))
        for object_type in ("lead", "contact"):
            session.add(
                CustomField(
                    id=new_id("cf"),
                    organization_id=other_org.id,
                    object_type=object_type,
                    name="Theirs",
                    type="text",
                )
            )
        session.add(
            UnsubscribedEmail(
                organization_id=other_org.id, email=VICTIM_EMAIL, email_lower=VICTIM_EMAIL
            )
        )
        session.add(
            SavedSearch(
                id=new_id("save"),
                organization_id=other_org.id,
                user_id=other_org.user_id,
                name="Theirs",
                type="lead",
                query="*",
            )
        )
        session.add(
            EmailTemplate(
                id=new_id("tmpl"), organization_id=other_org.id, name="Theirs", body="Secret"
            )
        )
        session.add_all(
            [
                ConnectedAccount(
                    id=new_id("emailacct"),
                    organization_id=other_org.id,
                    user_id=other_org.user_id,
                    email="theirs@example.com",
                    identities=[{"email": "theirs@example.com", "name": "Theirs"}],
                    smtp={"host": "smtp.example.com", "port": 587, "username": "theirs"},
                ),
                # B's admin lets B's member send as them: A's admin is in neither.
                SendAs(
                    id=new_id("sdas"),
                    organization_id=other_org.id,
                    allowing_user_id=other_org.user_id,
                    allowed_user_id=member.user_id,
                ),
                PhoneNumber(
                    id=new_id("phon"),
                    organization_id=other_org.id,
                    user_id=other_org.user_id,
                    number="+16503334444",
                ),
            ]
        )
        session.add(
            Webhook(
                id=new_id("whsub"),
                organization_id=other_org.id,
                url="https://theirs.example.com/hook",
                events=[{"object_type": "lead", "action": "created", "extra_filter": None}],
                signature_key="not used here",
                created_by=other_org.user_id,
            )
        )
        # One of every kind, running, so that a pause would change it.
        session.add_all(
            BulkAction(
                id=new_id(prefix),
                organization_id=other_org.id,
                kind=kind,
                status="processing",
                query="*",
                params={"action_type": "pause"} if kind == "sequence_subscription" else {},
                created_by=other_org.user_id,
            )
            for kind, prefix in BULK_KINDS.items()
        )
        record_event(
            session,
            actor,
            object_type="status.lead",
            action="created",
            object_id=None,
            lead_id=None,
            data={},
        )
    with session_factory() as session:
        owned = {
            param: list(
                session.scalars(select(model.id).where(model.organization_id == other_org.id))
            )
            for param, model in PARAM_TABLES.items()
        }
    assert all(owned.values()), f"organization B needs at least one of each: {owned}"
    return Victim(other_org, member, owned)


def test_every_route_hides_other_organizations_objects(
    client: TestClient,
    app: FastAPI,
    org: Org,
    victim: Victim,
    session_factory: sessionmaker[Session],
) -> None:
    user_ids = [victim.org.user_id, victim.member.user_id]
    before = snapshot(session_factory, victim.org, user_ids)
    operations = operations_with_ids(app)
    assert len(operations) >= 8

    unknown = sorted(
        {p for _, _, params in operations for p in params} - set(OWNED_IDS) - GLOBAL_PARAMS
    )
    assert not unknown, (
        f"path parameters {unknown} have no entry in OWNED_IDS of tests/test_tenancy.py: add one "
        "that returns ids of the victim organization's objects (or list it in GLOBAL_PARAMS)"
    )

    checked = 0
    for method, template, params in operations:
        owned = [p for p in params if p in OWNED_IDS]
        if not owned:
            continue
        for param in owned:
            for foreign_id in OWNED_IDS[param](victim):
                path = template
                for name in params:
                    value = foreign_id if name == param else _own_value(name, org)
                    path = path.replace("{" + name + "}", value)
                body = BODIES.get((method, template), {})
                kwargs: dict[str, Any] = (
                    {"json": body} if method in ("POST", "PUT", "PATCH") else {}
                )
                response = client.request(method, path, auth=org.auth, **kwargs)
                where = f"{method} {template} with {param}={foreign_id[:12]}..."
                assert response.status_code == 404, (where, response.status_code, response.text)
                assert set(response.json()) == {"error"}, where
                checked += 1
    assert checked >= 10
    assert snapshot(session_factory, victim.org, user_ids) == before


def _own_value(name: str, org: Org) -> str:
    """A value of the caller's own for the other parameters of a multi-parameter path."""
    own = {"org_id": org.id, "user_id": org.user_id, "membership_id": org.membership_id}
    return own.get(name, "admin")


def test_bodies_listed_here_are_valid_for_the_callers_own_objects(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    """Keeps BODIES honest: on A's own objects they succeed, so B's 404s above mean something."""
    own = add_member(session_factory, org, "user")
    view = client.post("/api/v1/saved_search/", json={"name": "Own", "query": "*"}, auth=org.auth)
    template = client.post("/api/v1/email_template/", json={"name": "Own"}, auth=org.auth)
    calls = {"name": "Own", "steps": [{"step_type": "call"}]}
    sequence = client.post("/api/v1/sequence/", json=calls, auth=org.auth).json()
    lead = client.post("/api/v1/lead/", json={"contacts": [{"name": "Ann"}]}, auth=org.auth)
    subscription = client.post(
        "/api/v1/sequence_subscription/",
        json={"sequence_id": sequence["id"], "contact_id": lead.json()["contact_ids"][0]},
        auth=org.auth,
    )
    own_lead = client.post("/api/v1/lead/", json={"name": "Own"}, auth=org.auth).json()
    draft = {"lead_id": own_lead["id"], "status": "draft"}
    email = client.post("/api/v1/activity/email/", json=draft, auth=org.auth)
    task = client.post("/api/v1/task/", json={"lead_id": own_lead["id"]}, auth=org.auth)
    phone = client.post("/api/v1/phone_number/", json={"number": "+16503334444"}, auth=org.auth)
    status = client.get("/api/v1/status/lead/", auth=org.auth).json()["data"][0]
    # One own action per kind: `action_id` is taken from the kind in the path.
    actions = {
        kind: client.post(f"/api/v1/bulk_action/{kind}/", json=body, auth=org.auth).json()["id"]
        for kind, body in (
            ("sequence_subscription", {"action_type": "pause", "query": "*"}),
            ("edit", {"type": "set_lead_status", "lead_status_id": status["id"], "query": "*"}),
            # Matches no lead: nothing of the other bodies' objects is deleted.
            ("delete", {"query": "name:Nobody", "results_limit": 0}),
        )
    }
    with session_factory.begin() as session:
        account = ConnectedAccount(
            id=new_id("emailacct"), organization_id=org.id, user_id=org.user_id, email="o@x.test"
        )
        session.add(account)
    mail = {"template_id": template.json()["id"], "email_account_id": account.id, "query": "*"}
    email_action = client.post("/api/v1/bulk_action/email/", json=mail, auth=org.auth)
    actions["email"] = email_action.json()["id"]
    hook = {
        "url": "https://own.example.com",
        "events": [{"object_type": "lead", "action": "created"}],
    }
    values = {
        "webhook_id": client.post("/api/v1/webhook/", json=hook, auth=org.auth).json()["id"],
        "org_id": org.id,
        "membership_id": own.membership_id,
        "saved_search_id": view.json()["id"],
        "template_id": template.json()["id"],
        "phone_number_id": phone.json()["id"],
        "sequence_id": sequence["id"],
        "subscription_id": subscription.json()["id"],
        "activity_id": email.json()["id"],
        "task_id": task.json()["id"],
    }
    for (method, template), body in BODIES.items():
        kind = re.search(r"/bulk_action/(\w+)/", template)
        if kind:
            values["action_id"] = actions[kind.group(1)]
        path = re.sub(r"{(\w+)}", lambda m: values[m.group(1)], template)
        response = client.request(method, path, json=body, auth=org.auth)
        assert response.status_code == 200, (method, template, response.text)


def test_bulk_update_ignores_other_organizations_ids(
    client: TestClient, org: Org, victim: Victim, session_factory: sessionmaker[Session]
) -> None:
    user_ids = [victim.org.user_id, victim.member.user_id]
    before = snapshot(session_factory, victim.org, user_ids)
    ids = f"{victim.org.membership_id},{victim.member.membership_id}"
    response = client.put(
        "/api/v1/membership/",
        json={"_params": {"id__in": ids}, "role_id": "admin", "track_email_opens": False},
        auth=org.auth,
    )
    assert response.status_code == 200
    assert response.json() == {"count": 0}
    assert snapshot(session_factory, victim.org, user_ids) == before


def test_user_list_shows_only_the_callers_organization(
    client: TestClient, org: Org, victim: Victim
) -> None:
    ids = {u["id"] for u in client.get("/api/v1/user/", auth=org.auth).json()["data"]}
    assert ids == {org.user_id}
    theirs = {u["id"] for u in client.get("/api/v1/user/", auth=victim.org.auth).json()["data"]}
    assert theirs == {victim.org.user_id, victim.member.user_id}


def test_api_key_list_shows_only_the_callers_organization(
    client: TestClient, org: Org, victim: Victim
) -> None:
    keys = client.get("/api/v1/api_key/", auth=org.auth).json()["data"]
    assert {k["organization_id"] for k in keys} == {org.id}
    assert victim.member.key_id not in {k["id"] for k in keys}


def test_user_in_two_organizations_sees_only_the_keys_organization(
    client: TestClient, org: Org, victim: Victim, session_factory: sessionmaker[Session]
) -> None:
    # A's admin also joins B (a second membership of the same user).
    with session_factory.begin() as session:
        session.add(
            Membership(
                id=new_id("memb"),
                organization_id=victim.org.id,
                user_id=org.user_id,
                role_id="user",
            )
        )

    me = client.get("/api/v1/me/", auth=org.auth).json()
    assert me["id"] == org.user_id
    assert me["organizations"] != [] and [o["id"] for o in me["organizations"]] == [org.id]
    assert [m["organization_id"] for m in me["memberships"]] == [org.id]
    assert [m["id"] for m in me["memberships"]] == [org.membership_id]
    assert victim.org.id not in str(me)
    member_users = {m["user_id"] for m in me["organizations"][0]["memberships"]}
    assert member_users == {org.user_id}

    user = client.get(f"/api/v1/user/{org.user_id}/", auth=org.auth).json()
    assert user["organizations"] == [org.id]
    # Seen from B, the same user lists only B.
    from_b = client.get(f"/api/v1/user/{org.user_id}/", auth=victim.org.auth).json()
    assert from_b["organizations"] == [victim.org.id]
    b_users = {u["id"] for u in client.get("/api/v1/user/", auth=victim.org.auth).json()["data"]}
    assert org.user_id in b_users
    a_users = {u["id"] for u in client.get("/api/v1/user/", auth=org.auth).json()["data"]}
    assert victim.member.user_id not in a_users
