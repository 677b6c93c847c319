"""Property-based fuzzing with schemathesis (3.x) over two documents:

(a) Clove's own OpenAPI document (operations under /api/v1), and
(b) Close's spec, narrowed to the operations Clove implements (`clove.compat`).

Every request carries a real credential. Each operation gets positive cases with random ids,
positive cases with the org's real ids, and (where the document allows it) negative cases
with real ids. Whatever is sent, Clove must answer without a 5xx, never with FastAPI's 422,
with every 4xx in Close's error shape, conforming to the document where it types the
response, and a refused write must leave the database exactly as it was.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import sys
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample, Unsatisfiable
from hypothesis.internal.conjecture import utils as conjecture_utils
from schemathesis import DataGenerationMethod
from schemathesis.exceptions import SkipTest as SchemathesisSkip
from schemathesis.experimental import OPEN_API_3_1
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

import clove.app
from clove import compat
from clove.api_key.service import create_api_key
from clove.auth.service import AuthContext
from clove.event.service import Actor, record_event
from clove.kit.ids import new_id
from clove.kit.secrets import encrypt, ensure_key_file
from clove.models import (
    ApiKey,
    BulkAction,
    ConnectedAccount,
    Contact,
    CustomField,
    EmailActivity,
    EmailTemplate,
    Lead,
    LeadStatus,
    Membership,
    Organization,
    PhoneNumber,
    SavedSearch,
    SendAs,
    Sequence,
    SequenceSubscription,
    Task,
    Webhook,
)
from tests.conftest import SPEC, Org, bearer_token
from tests.test_membership import add_member

NO_SPEC = f"Close's OpenAPI spec is not at {SPEC} (set CLOVE_CLOSE_SPEC to its path)"
EXAMPLES = 25  # per operation; the whole module stays well under a minute
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
OAUTH_ONLY = {("POST", "/membership/")}  # Close allows it to OAuth apps only

OPEN_API_3_1.enable()  # both documents are OpenAPI 3.1


def _hypothesis_jsonschema_compat() -> None:
    """hypothesis-jsonschema 0.23 (used by schemathesis 3.x to generate objects) drives
    `many.more()`, which newer Hypothesis replaced by `with many(...) as e: for _ in e`.
    Without it every object body fails to generate. Adds `more()` on top of the new API."""
    many = conjecture_utils.many
    if hasattr(many, "more"):
        return

    def more(self: Any) -> bool:
        steps = self.__dict__.get("_compat_steps")
        if steps is None:
            self.__enter__()
            steps = self._compat_steps = iter(self)
        try:
            next(steps)
        except StopIteration:
            self.__exit__(None)
            return False
        return True

    many.more = more  # type: ignore[attr-defined]


_hypothesis_jsonschema_compat()

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


# -- what every response must satisfy ----------------------------------------------------------


def error_shape_problem(response: Any) -> str | None:
    """None when a 4xx body is one of Close's error shapes, else what is wrong."""
    try:
        body = response.json()
    except ValueError:
        return f"not JSON: {response.text[:200]!r}"
    if not isinstance(body, dict):
        return f"not an object: {body!r:.200}"
    if "errors" in body or "field-errors" in body:
        if isinstance(body.get("errors"), list) and isinstance(body.get("field-errors"), dict):
            return None
        return f"bad errors/field-errors: {body!r:.200}"
    error = body.get("error")
    if isinstance(error, str) and error:
        return None
    if response.status_code == 429 and isinstance(error, dict) and "rate_reset" in error:
        return None
    return f"no Close error in {body!r:.200}"


def describe(case: Any, response: Any) -> str:
    return (
        f"{case.method} {response.request.url}\nbody: {json.dumps(case.body, default=str)[:500]}"
        f"\n-> {response.status_code} {response.text[:500]}"
    )


def check_response(case: Any, response: Any) -> None:
    status = response.status_code
    assert status < 500, describe(case, response)
    assert status != 422, "FastAPI's 422 leaked out\n" + describe(case, response)
    if 400 <= status < 500:
        problem = error_shape_problem(response)
        assert problem is None, f"{problem}\n{describe(case, response)}"
    # Close narrows objects to the fields asked for; a 204 has no body to validate, though the
    # spec gives Send As deletions an (empty) JSON schema.
    if "_fields" not in (case.query or {}) and status != 204:
        case.validate_response(response, checks=(response_schema_conformance,))


def snapshot(session_factory: sessionmaker[Session], org_id: str) -> dict[str, Any]:
    """Everything a request of this org could change, as plain values."""

    def rows(model: Any, where: Any) -> list[dict[str, Any]]:
        columns = [c.key for c in model.__table__.columns]
        found = [
            {c: getattr(r, c) for c in columns} for r in session.scalars(select(model).where(where))
        ]
        return sorted(found, key=lambda r: str(r.get("id")))

    with session_factory() as session:
        return {
            "organization": rows(Organization, Organization.id == org_id),
            "memberships": rows(Membership, Membership.organization_id == org_id),
            "api_keys": rows(ApiKey, ApiKey.organization_id == org_id),
        }


# -- the fuzzing loop --------------------------------------------------------------------------


def real_ids(session_factory: sessionmaker[Session], org: Org) -> dict[str, str]:
    """A real id per resource (first path segment). The API key is a spare one, so a fuzzed
    DELETE revokes it and never the key the fuzzer is using."""
    with session_factory.begin() as session:
        spare, _secret = create_api_key(session, org.id, org.user_id, "spare, for the fuzzer")
        spare_id = spare.id
        actor = Actor(AuthContext(org.id, org.user_id, org.membership_id, "admin"))
        event = record_event(
            session,
            actor,
            object_type="status.lead",
            action="created",
            object_id=None,
            lead_id=None,
            data={},
        )
        status_id = session.scalar(
            select(LeadStatus.id).where(LeadStatus.organization_id == org.id)
        )
        lead = Lead(id=new_id("lead"), organization_id=org.id, name="Fuzzed", status_id=status_id)
        contact = Contact(id=new_id("cont"), organization_id=org.id, lead_id=lead.id)
        fields = {
            t: CustomField(
                id=new_id("cf"), organization_id=org.id, object_type=t, name="Fuzzed", type="text"
            )
            for t in ("lead", "contact")
        }
        view = SavedSearch(
            id=new_id("save"),
            organization_id=org.id,
            user_id=org.user_id,
            name="Fuzzed",
            type="lead",
            s_query={"query": {"type": "object_type", "object_type": "lead"}},
        )
        template = EmailTemplate(
            id=new_id("tmpl"), organization_id=org.id, name="Fuzzed", subject="Hi", body=""
        )
        session.add_all([lead, view, template, *fields.values()])
        session.flush()
        session.add(contact)
        # A draft, so that a fuzzed PUT may change it.
        email = EmailActivity(
            id=new_id("acti"), organization_id=org.id, lead_id=lead.id, status="draft"
        )
        task = Task(id=new_id("task"), organization_id=org.id, lead_id=lead.id)
        session.add_all([email, task])
        sequence = Sequence(id=new_id("seq"), organization_id=org.id, name="Fuzzed")
        session.add(sequence)
        session.flush()
        subscription = SequenceSubscription(
            id=new_id("sub"),
            organization_id=org.id,
            sequence_id=sequence.id,
            contact_id=contact.id,
            lead_id=lead.id,
        )
        session.add(subscription)
    member = add_member(session_factory, org).user_id
    with session_factory.begin() as session:
        account = ConnectedAccount(
            id=new_id("emailacct"),
            organization_id=org.id,
            user_id=org.user_id,
            email="fuzzed@example.com",
            identities=[{"email": "fuzzed@example.com", "name": "Fuzzed"}],
            smtp={"host": "smtp.example.com", "port": 587, "username": "fuzzed"},
        )
        send_as = SendAs(
            id=new_id("sdas"),
            organization_id=org.id,
            allowing_user_id=org.user_id,
            allowed_user_id=member,
        )
        phone = PhoneNumber(
            id=new_id("phon"),
            organization_id=org.id,
            user_id=org.user_id,
            number="+16503334444",
        )
        session.add_all([account, send_as, phone])
        ensure_key_file()
        webhook_id = new_id("whsub")
        session.add(
            Webhook(
                id=webhook_id,
                organization_id=org.id,
                url="https://hooks.example.com/fuzzed",
                events=[{"object_type": "lead", "action": "created", "extra_filter": None}],
                signature_key=encrypt("ab" * 32),
                created_by=org.user_id,
            )
        )
        bulk_subscribe, bulk_email = new_id("bulkseqsub"), new_id("bulkemail")
        session.add(
            BulkAction(
                id=bulk_email,
                organization_id=org.id,
                kind="email",
                query="name:Fuzzed",
                params={
                    "template_id": template.id,
                    "contact_preference": "lead",
                    "email_account_id": account.id,
                    "sender": account.email,
                    "sender_name": "Fuzzed",
                },
                created_by=org.user_id,
            )
        )
        session.add(
            BulkAction(
                id=bulk_subscribe,
                organization_id=org.id,
                kind="sequence_subscription",
                query="name:Fuzzed",
                params={"action_type": "pause"},
                created_by=org.user_id,
            )
        )
        bulk_edit = new_id("bulkedit")
        session.add(
            BulkAction(
                id=bulk_edit,
                organization_id=org.id,
                kind="edit",
                query="name:Fuzzed",
                params={"type": "set_lead_status", "lead_status_id": status_id},
                created_by=org.user_id,
            )
        )
        bulk_delete = new_id("bulkdelete")
        session.add(
            BulkAction(
                id=bulk_delete,
                organization_id=org.id,
                kind="delete",
                query="name:Fuzzed",
                params={"bulk_object_type": "lead"},
                created_by=org.user_id,
            )
        )
    return {
        "connected_account": account.id,
        "send_as": send_as.id,
        "send_as_member": member,
        "phone_number": phone.id,
        "organization": org.id,
        "user": org.user_id,
        "membership": org.membership_id,
        "role": "admin",
        "api_key": spare_id,
        "status": status_id,
        "event": event.id,
        "lead": lead.id,
        "contact": contact.id,
        "custom_field/lead": fields["lead"].id,
        "custom_field/contact": fields["contact"].id,
        "custom_field_schema": "lead",
        "saved_search": view.id,
        "email_template": template.id,
        "sequence": sequence.id,
        "sequence_subscription": subscription.id,
        "bulk_action/sequence_subscription": bulk_subscribe,
        "bulk_action/edit": bulk_edit,
        "bulk_action/delete": bulk_delete,
        "bulk_action/email": bulk_email,
        "activity": email.id,
        "task": task.id,
        "webhook": webhook_id,
    }


def resource_of(path: str) -> str:
    """What a path's id names: the first segment, or two for `/custom_field/<type>/` and
    `/bulk_action/<kind>/`."""
    segments = path.strip("/").split("/")
    return "/".join(segments[:2]) if segments[0] in TWO_SEGMENTS else segments[0]


TWO_SEGMENTS = ("custom_field", "bulk_action")


def seed_bodies(org: Org, ids: dict[str, str]) -> dict[tuple[str, str], Any]:
    """A valid body per write operation, by (METHOD, normalised path)."""
    return {
        ("PUT", "/organization/{}/"): {"name": "Fuzzed name", "currency": "EUR"},
        ("POST", "/membership/"): {"email": "fuzz-invitee@example.com", "role_id": "user"},
        ("PUT", "/membership/"): {
            "_params": {"id__in": org.membership_id},
            "track_email_opens": True,
        },
        ("PUT", "/membership/{}/"): {"auto_record_calls": "enabled"},
        ("PUT", "/membership/{}/pinned_views/"): {"saved_view_ids": ["save_x", "save_y"]},
        ("POST", "/api_key/"): {"name": "seeded"},
        ("POST", "/custom_field/lead/"): {"name": "Seeded", "type": "text"},
        ("POST", "/custom_field/contact/"): {"name": "Seeded", "type": "text"},
        ("PUT", "/custom_field/lead/{}/"): {"name": "Renamed by the fuzzer"},
        ("PUT", "/custom_field/contact/{}/"): {"name": "Renamed by the fuzzer"},
        ("PUT", "/custom_field_schema/{}/"): {"fields": []},
        ("POST", "/lead/"): {"name": "Seeded", "contacts": [{"name": "Ann"}]},
        ("PUT", "/lead/{}/"): {"description": "Fuzzed"},
        ("PUT", "/contact/{}/"): {"title": "Fuzzed"},
        ("POST", "/saved_search/"): {
            "name": "Seeded",
            "s_query": {"query": {"type": "object_type", "object_type": "lead"}},
        },
        ("PUT", "/saved_search/{}/"): {"name": "Renamed by the fuzzer"},
        ("POST", "/email_template/"): {"name": "Seeded", "subject": "Hi {{ contact.name }}"},
        ("PUT", "/email_template/{}/"): {"name": "Renamed by the fuzzer"},
        ("POST", "/sequence/"): {"name": "Seeded", "steps": [{"step_type": "call"}]},
        ("PUT", "/sequence/{}/"): {"name": "Renamed by the fuzzer"},
        ("PUT", "/sequence_subscription/{}/"): {"status": "paused"},
        ("POST", "/bulk_action/sequence_subscription/"): {
            "action_type": "pause",
            "s_query": {"type": "object_type", "object_type": "lead"},
        },
        ("POST", "/bulk_action/edit/"): {
            "type": "set_lead_status",
            "lead_status_id": ids["status"],
            "s_query": {"type": "object_type", "object_type": "lead"},
        },
        # Matches no lead: a fuzzed run must not delete the leads other operations use.
        ("POST", "/bulk_action/delete/"): {"query": "name:Nobody", "results_limit": 0},
        ("POST", "/bulk_action/email/"): {
            "template_id": ids["email_template"],
            "email_account_id": ids["connected_account"],
            "s_query": {"type": "object_type", "object_type": "lead"},
        },
        ("POST", "/webhook/"): {
            "url": "https://hooks.example.com/fuzzed",
            "events": [{"object_type": "lead", "action": "created"}],
        },
        ("PUT", "/webhook/{}/"): {"status": "paused"},
        ("PUT", "/activity/email/{}/"): {"subject": "Renamed by the fuzzer"},
        ("PUT", "/task/{}/"): {"text": "Renamed by the fuzzer", "is_complete": True},
        # Not checked over SMTP: fuzzed hosts must not be dialled.
        ("POST", "/connected_account/"): {
            "email": "seeded@example.com",
            "smtp": {
                "host": "smtp.example.com",
                "port": 587,
                "username": "u",
                "password": "p",
            },
            "verify": False,
        },
        ("POST", "/send_as/bulk/"): {"allowed_user_ids": [], "disallowed_user_ids": []},
        ("POST", "/phone_number/"): {"number": "+16505550123", "label": "Seeded"},
        ("PUT", "/phone_number/{}/"): {"label": "Renamed by the fuzzer"},
    }


def seed_params(ids: dict[str, str]) -> dict[tuple[str, str], dict[str, str]]:
    """Valid query parameters per operation that answers 400 without them."""
    return {
        ("GET", "/email_template/{}/render/"): {
            "lead_id": ids["lead"],
            "contact_id": ids["contact"],
        },
        ("GET", "/sequence_subscription/"): {"sequence_id": ids["sequence"]},
        ("DELETE", "/send_as/"): {
            "allowing_user_id": ids["user"],
            "allowed_user_id": ids["send_as_member"],
        },
    }


def can_draw(strategy: st.SearchStrategy[Any]) -> bool:
    try:
        find(
            strategy,
            lambda _: True,
            settings=settings(FUZZ, max_examples=50, phases=[Phase.generate]),
        )
    except (NoSuchExample, Unsatisfiable, SchemathesisSkip):
        return False
    return True


def fuzz(
    operation: Any,
    resource_path: str,
    org: Org,
    session_factory: sessionmaker[Session],
) -> dict[int, int]:
    """Runs the checks over generated cases of one schemathesis operation; returns the
    status codes seen (so that a test can tell it reached real objects)."""
    method = operation.method.upper()
    key = (method, compat.normalize_path(resource_path))
    resource = resource_of(resource_path)
    ids = real_ids(session_factory, org)
    names = re.findall(r"\{([^}]+)\}", operation.path)
    real = {name: ids[resource] for name in names} if names and resource in ids else {}
    strategies = [operation.as_strategy()]
    if real:
        strategies.append(operation.as_strategy(path_parameters=real))
    seed = seed_bodies(org, ids).get(key)
    if seed is not None:  # a valid request, so that accepted writes are fuzzed too
        strategies.append(operation.as_strategy(path_parameters=real or None, body=seed))
    params = seed_params(ids).get(key)
    if params is not None:  # a valid query string, for operations that need one
        strategies.append(operation.as_strategy(path_parameters=real or None, query=params))
    negative = operation.as_strategy(
        data_generation_method=DataGenerationMethod.negative, path_parameters=real or None
    )
    if can_draw(negative):
        strategies.append(negative)

    oauth = any(key == (m, compat.normalize_path(p)) for m, p in OAUTH_ONLY)
    secret = bearer_token(session_factory, org) if oauth else None
    auth = (
        f"Bearer {secret}"
        if secret
        else "Basic " + base64.b64encode(f"{org.key}:".encode()).decode()
    )
    seen: dict[int, int] = {}

    @FUZZ
    @given(case=st.one_of(strategies))
    def run(case: Any) -> None:
        before = snapshot(session_factory, org.id) if method in WRITES else None
        response = case.call(headers={"Authorization": auth})
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        check_response(case, response)
        if before is not None and not 200 <= response.status_code < 300:
            after = snapshot(session_factory, org.id)
            assert after == before, "a refused write changed data\n" + describe(case, response)

    run()
    if seed is not None:
        assert any(200 <= code < 300 for code in seen), f"the valid request was refused: {seen}"
    return seen


def assert_enough(operation: Any, seen: dict[int, int]) -> None:
    """Every operation was called; one with anything to vary, many times."""
    variable = operation.body or any(p.location != "header" for p in operation.iter_parameters())
    assert sum(seen.values()) >= (EXAMPLES // 2 if variable else 1), seen


# -- (a) Clove's own document ------------------------------------------------------------------


def _clove_operations() -> list[Any]:
    app = compat.throwaway_app()
    try:
        doc = app.openapi()
    finally:
        app.state.engine.dispose()
    return [
        pytest.param(method.upper(), path, id=f"{method.upper()} {path}")
        for path, item in doc["paths"].items()
        if path.startswith(compat.API_PREFIX + "/")
        for method in item
        if method in compat.HTTP_METHODS
    ]


@pytest.fixture(scope="module")
def clove_schema(app: FastAPI) -> Any:
    return schemathesis.from_dict(copy.deepcopy(app.openapi()), app=app)


@pytest.mark.parametrize(("method", "path"), _clove_operations())
def test_fuzz_clove_openapi(
    method: str,
    path: str,
    clove_schema: Any,
    org: Org,
    session_factory: sessionmaker[Session],
) -> None:
    operation = clove_schema[path][method]
    seen = fuzz(operation, path.removeprefix(compat.API_PREFIX), org, session_factory)
    assert_enough(operation, seen)
    if "{" not in path and method == "GET":
        assert 200 in seen, f"never a 200: {seen}"


# -- (b) Close's spec, narrowed to what Clove implements ----------------------------------------


def _close_operations() -> list[Any]:
    if not SPEC.is_file():
        return [pytest.param("", "", marks=pytest.mark.skip(reason=NO_SPEC), id="no-spec")]
    result = compat.coverage(compat.load_spec(SPEC))
    return [
        pytest.param(op.method, op.path, id=f"{op.method} {op.path}")
        for op in result.implemented_operations()
    ]


def narrowed_spec(spec: dict[str, Any], operations: list[compat.Operation]) -> dict[str, Any]:
    """The spec with only `operations`, minus the `Authorization` header parameter (the
    fuzzer sends a real credential instead of a generated one)."""
    paths: dict[str, Any] = {}
    for op in operations:
        definition = copy.deepcopy(compat.find_operation(spec, op))
        definition["parameters"] = [
            p
            for p in definition.get("parameters", [])
            if not (p.get("in") == "header" and p.get("name", "").lower() == "authorization")
        ]
        paths.setdefault(op.path, {})[op.method.lower()] = definition
    return {**spec, "paths": paths}


@pytest.fixture(scope="module")
def close_schema(app: FastAPI) -> Any:
    if not SPEC.is_file():
        pytest.skip(NO_SPEC)
    spec = compat.load_spec(SPEC)
    implemented = compat.coverage(spec, app).implemented_operations()
    return schemathesis.from_dict(narrowed_spec(spec, implemented), app=app)


@pytest.mark.parametrize(("method", "path"), _close_operations())
def test_fuzz_close_spec(
    method: str,
    path: str,
    close_schema: Any,
    org: Org,
    session_factory: sessionmaker[Session],
) -> None:
    operation = close_schema[path][method]
    seen = fuzz(operation, path, org, session_factory)
    assert_enough(operation, seen)
    if method == "GET":
        assert 200 in seen, f"never a 200: {seen}"


# -- what a fuzzer cannot generate, and the document itself ------------------------------------

ORG = "{org}"
MEMB = "{memb}"
Hostile = tuple[str, str, bytes | None, dict[str, str]]
JSON_TYPE = {"Content-Type": "application/json"}
OVERRIDE = {"Content-Type": "application/json", "X-HTTP-Method-Override": "GET"}

# (method, path, raw body, headers) -> must be a 4xx in Close's shape and change nothing.
HOSTILE: dict[str, Hostile] = {
    # Lone UTF-16 surrogates are valid JSON escapes but cannot be encoded as UTF-8.
    "surrogate-in-org-name": ("PUT", f"/organization/{ORG}/", rb'{"name": "\ud800"}', JSON_TYPE),
    "surrogate-in-api-key-name": ("POST", "/api_key/", rb'{"name": "\ud800"}', JSON_TYPE),
    "surrogate-in-pinned-views": (
        "PUT",
        f"/membership/{MEMB}/pinned_views/",
        rb'{"saved_view_ids": ["\ud800"]}',
        JSON_TYPE,
    ),
    "surrogate-in-bulk-id-string": (
        "PUT",
        "/membership/",
        rb'{"_params": {"id__in": "\ud800"}, "track_email_opens": false}',
        JSON_TYPE,
    ),
    "surrogate-in-bulk-id-list": (
        "PUT",
        "/membership/",
        rb'{"_params": {"id__in": ["\udfff"]}, "track_email_opens": false}',
        JSON_TYPE,
    ),
    "surrogate-in-override-params": ("POST", "/user/", rb'{"_params": {"\ud800": "1"}}', OVERRIDE),
    "nul-in-path": ("GET", "/user/user_%00/", None, {}),
    "nul-in-query": ("GET", "/user/?_order_by=%00", None, {}),
    "nul-in-body": ("PUT", f"/organization/{ORG}/", rb'{"name": "a\u0000b"}', JSON_TYPE),
    "invalid-utf8-body": ("PUT", f"/organization/{ORG}/", b'{"name": "\xff"}', JSON_TYPE),
    "deeply-nested-body": (
        "PUT",
        f"/organization/{ORG}/",
        b"[" * 50_000 + b"]" * 50_000,
        JSON_TYPE,
    ),
    "huge-skip": ("GET", "/user/?_skip=" + "9" * 5000, None, {}),
    "non-ascii-currency": (
        "PUT",
        f"/organization/{ORG}/",
        '{"currency": "ÅBC"}'.encode(),
        JSON_TYPE,
    ),
    "json-array-body": ("PUT", f"/membership/{MEMB}/", b"[]", JSON_TYPE),
    "tz-offset-nan": ("GET", "/me/", None, {"X-TZ-Offset": "nan"}),
}


class CrashLog:
    """Stands in for `clove.app.log`: keeps what a 500 logged (its exception) for the
    assertion message, without the slow rich traceback rendering."""

    def __init__(self) -> None:
        self.crashes: list[str] = []

    def exception(self, event: str, **fields: Any) -> None:
        self.crashes.append(f"{event} {fields} {sys.exc_info()[1]!r}")

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_input_is_refused_cleanly(
    name: str,
    app: FastAPI,
    org: Org,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    method, path, body, headers = HOSTILE[name]
    url = compat.API_PREFIX + path.replace(ORG, org.id).replace(MEMB, org.membership_id)
    crash_log = CrashLog()
    monkeypatch.setattr(clove.app, "log", crash_log)
    before = snapshot(session_factory, org.id)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.request(method, url, content=body, headers=headers, auth=org.auth)
    assert 400 <= response.status_code < 500, (
        f"{method} {path} {body!r:.100} -> {response.status_code} {response.text[:300]}"
        f" {crash_log.crashes}"
    )
    assert error_shape_problem(response) is None, response.text[:300]
    assert snapshot(session_factory, org.id) == before


def test_clove_serves_its_openapi_document(app: FastAPI, client: TestClient, org: Org) -> None:
    response = client.get(app.openapi_url or "/api/v1/openapi.json", auth=org.auth)
    assert response.status_code == 200, response.text[:300]
    assert response.json() == app.openapi()


def test_docs_page_can_load_its_openapi_document(client: TestClient) -> None:
    """/docs is public; the document it loads (without credentials) must be reachable too."""
    page = client.get("/docs")
    assert page.status_code == 200
    match = re.search(r"url: '([^']+)'", page.text)
    assert match, page.text[:500]
    response = client.get(match[1])
    assert response.status_code == 200, (
        f"{match[1]} -> {response.status_code} {response.text[:200]}"
    )


def test_snapshot_sees_every_kind_of_write(
    org: Org, session_factory: sessionmaker[Session]
) -> None:
    """The partial-write check can fail: each table it watches shows up in the snapshot."""
    before = snapshot(session_factory, org.id)
    with session_factory.begin() as session:
        row = session.get(Organization, org.id)
        assert row is not None
        row.currency = "JPY"
    after_org = snapshot(session_factory, org.id)
    assert after_org != before
    with session_factory.begin() as session:
        membership = session.get(Membership, org.membership_id)
        assert membership is not None
        membership.pinned_views = ["save_z"]
    after_membership = snapshot(session_factory, org.id)
    assert after_membership["memberships"] != after_org["memberships"]
    real_ids(session_factory, org)  # issues a spare key
    assert snapshot(session_factory, org.id)["api_keys"] != after_membership["api_keys"]


def test_checks_catch_bad_responses() -> None:
    """The shape check used above rejects what Close's clients could not parse."""

    class Fake:
        def __init__(self, status: int, body: Any) -> None:
            self.status_code = status
            self.text = body if isinstance(body, str) else json.dumps(body)

        def json(self) -> Any:
            return json.loads(self.text)

    assert error_shape_problem(Fake(400, {"errors": [], "field-errors": {}})) is None
    assert error_shape_problem(Fake(404, {"error": "Not found"})) is None
    assert error_shape_problem(Fake(429, {"error": {"rate_reset": 1}})) is None
    assert error_shape_problem(Fake(422, {"detail": [{"loc": ["body"]}]}))
    assert error_shape_problem(Fake(400, {"errors": "x", "field-errors": {}}))
    assert error_shape_problem(Fake(400, "<html>oops</html>"))
    assert error_shape_problem(Fake(400, {"error": ""}))
