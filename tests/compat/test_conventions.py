"""Close's API conventions at Clove's edge (close-api.md §2): auth, ids, dates, paths, bodies,
paging, `_fields`, method override and `X-TZ-Offset`."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.app import create_app
from clove.errors import UNAUTHORIZED_MESSAGE
from clove.kit.http import MAX_LIMIT
from clove.models import ApiKey, Membership, Organization, User
from tests.conftest import Org
from tests.conftest import test_settings as settings_for
from tests.test_membership import add_member

UNAUTHORIZED = {"error": UNAUTHORIZED_MESSAGE}
CORE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00")


def basic(credentials: bytes | str) -> dict[str, str]:
    raw = credentials.encode() if isinstance(credentials, str) else credentials
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def key_id(client: TestClient, auth: tuple[str, str]) -> str:
    response = client.get(f"/api/v1/api_key/{auth[0]}/", auth=auth)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def api_operations(app: FastAPI) -> list[tuple[str, str]]:
    """(METHOD, path template) of every API operation, from the app's own OpenAPI document."""
    paths = app.openapi()["paths"]
    return [
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/api/v1/")
        for method in operations
    ]


@pytest.fixture(scope="module")
def probe_app(database_url: str, engine: Engine) -> FastAPI:
    """A separate app with one test-only route that shows what the edge put in request.state."""
    app = create_app(settings_for(database_url), engine)

    @app.get("/api/v1/_probe/")
    def probe(request: Request) -> dict[str, Any]:
        return {"tz_offset": request.state.tz_offset, "request_id": request.state.request_id}

    return app


@pytest.fixture
def probe(probe_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(probe_app) as client:
        yield client


# --- Authentication (§2.1) ---------------------------------------------------------------------


def test_basic_key_with_empty_password(client: TestClient, org: Org) -> None:
    response = client.get("/api/v1/me/", headers=basic(f"{org.key}:"))
    assert response.status_code == 200
    assert response.json()["id"] == org.user_id


@pytest.mark.parametrize("password", ["x", "the-wrong-password", ":"])
def test_password_given_with_the_key_is_ignored(
    client: TestClient, org: Org, password: str
) -> None:
    # Close authenticates by the user name alone; clients that fill the password still work.
    response = client.get("/api/v1/me/", headers=basic(f"{org.key}:{password}"))
    assert response.status_code == 200
    assert response.json()["id"] == org.user_id


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Basic"},
        {"Authorization": "Basic "},
        {"Authorization": "Basic !!!not-base64!!!"},
        {"Authorization": "Basic dGVzdA"},  # bad padding
        basic(b"\xff\xfe\xfd:"),  # not UTF-8
        basic(":"),  # empty user name
        basic(":secret"),
        basic("no-such-key:"),
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer no-such-token"},
        {"Authorization": "Token abc"},
        {"Authorization": "Digest username=x"},
    ],
    ids=lambda h: repr(h.get("Authorization")),
)
def test_missing_or_garbled_credentials_are_401(
    client: TestClient, org: Org, headers: dict[str, str]
) -> None:
    response = client.get("/api/v1/me/", headers=headers)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert response.headers["content-type"].startswith("application/json")


def test_raw_key_without_base64_is_401(client: TestClient, org: Org) -> None:
    response = client.get("/api/v1/me/", headers={"Authorization": f"Basic {org.key}:"})
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_unauthenticated_requests_are_401_before_anything_else(client: TestClient) -> None:
    # Unknown paths, wrong methods and bad bodies alike: no credentials, no information.
    assert client.get("/api/v1/no-such-thing/").json() == UNAUTHORIZED
    assert client.delete("/api/v1/me/").status_code == 401
    assert client.post("/api/v1/api_key/", content=b"{bad").status_code == 401


def test_revoked_key_is_401(client: TestClient, org: Org) -> None:
    spare = client.post("/api/v1/api_key/", json={"name": "spare"}, auth=org.auth).json()
    spare_auth = (spare["key"], "")
    assert client.get("/api/v1/me/", auth=spare_auth).status_code == 200

    revoked = client.delete(f"/api/v1/api_key/{spare['id']}/", auth=org.auth)
    assert revoked.status_code == 200, revoked.text

    response = client.get("/api/v1/me/", auth=spare_auth)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert client.get("/api/v1/me/", auth=org.auth).status_code == 200  # the other key lives


def test_deactivated_membership_is_401(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user")
    assert client.get("/api/v1/me/", auth=member.auth).status_code == 200
    with session_factory.begin() as session:
        row = session.get(Membership, member.membership_id)
        assert row is not None
        row.is_active = False
    response = client.get("/api/v1/user/", auth=member.auth)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_revocation_in_another_process_applies_within_a_second(
    database_url: str, engine: Engine, org: Org
) -> None:
    cached_app = create_app(settings_for(database_url, auth_cache_seconds=0.5), engine)
    other_process = create_app(settings_for(database_url), engine)  # its own authenticator
    with TestClient(cached_app) as cached, TestClient(other_process) as other:
        spare = other.post("/api/v1/api_key/", json={}, auth=org.auth).json()
        spare_auth = (spare["key"], "")
        assert cached.get("/api/v1/me/", auth=spare_auth).status_code == 200  # now cached

        assert other.delete(f"/api/v1/api_key/{spare['id']}/", auth=org.auth).status_code == 200
        revoked_at = time.monotonic()
        while True:
            response = cached.get("/api/v1/me/", auth=spare_auth)
            elapsed = time.monotonic() - revoked_at
            if response.status_code == 401:
                break
            assert response.status_code == 200
            assert elapsed <= 1.0, "a revoked key still worked more than 1 s after revocation"
            time.sleep(0.05)
        assert elapsed <= 1.0
        assert response.json() == UNAUTHORIZED


# --- Ids (§2.2) and dates (§2.3) -----------------------------------------------------------------


def assert_id(value: Any, prefix: str, length: int) -> None:
    assert isinstance(value, str)
    assert re.fullmatch(rf"{prefix}_[A-Za-z0-9]{{{length}}}", value), value


def test_id_formats(client: TestClient, org: Org, probe: TestClient) -> None:
    me = client.get("/api/v1/me/", auth=org.auth).json()
    assert_id(me["id"], "user", 43)
    assert_id(me["organizations"][0]["id"], "orga", 43)
    assert_id(me["memberships"][0]["id"], "memb", 43)
    assert_id(me["memberships"][0]["user_id"], "user", 43)
    assert_id(me["memberships"][0]["organization_id"], "orga", 43)
    assert_id(key_id(client, org.auth), "api", 43)

    request_ids = {probe.get("/api/v1/_probe/", auth=org.auth).json()["request_id"] for _ in "ab"}
    assert len(request_ids) == 2  # one per request
    for request_id in request_ids:
        assert_id(request_id, "req", 22)


def test_core_objects_carry_utc_offset_and_microseconds(client: TestClient, org: Org) -> None:
    me = client.get("/api/v1/me/", auth=org.auth).json()
    organization = client.get(f"/api/v1/organization/{org.id}/", auth=org.auth).json()
    user = client.get(f"/api/v1/user/{org.user_id}/", auth=org.auth).json()
    key = client.get(f"/api/v1/api_key/{org.key}/", auth=org.auth).json()
    objects = [me, me["memberships"][0], organization, organization["memberships"][0], user, key]
    for obj in objects:
        for field in ("date_created", "date_updated"):
            assert CORE_DATE.fullmatch(obj[field]), (field, obj[field])


# --- Paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["/", ""])
def test_list_and_item_paths_with_and_without_trailing_slash(
    client: TestClient, org: Org, slash: str
) -> None:
    listed = client.get(f"/api/v1/user{slash}", auth=org.auth)
    assert listed.status_code == 200
    assert [u["id"] for u in listed.json()["data"]] == [org.user_id]

    item = client.get(f"/api/v1/user/{org.user_id}{slash}", auth=org.auth)
    assert item.status_code == 200
    assert item.json()["id"] == org.user_id

    narrowed = client.get(f"/api/v1/organization/{org.id}{slash}?_fields=id,name", auth=org.auth)
    assert narrowed.json() == {"id": org.id, "name": "Org A"}

    put = client.put(f"/api/v1/organization/{org.id}{slash}", json={"name": "Re"}, auth=org.auth)
    assert put.status_code == 200
    assert put.json()["name"] == "Re"
    assert not listed.history and not item.history  # served in place, not redirected


@pytest.mark.parametrize(
    "path", ["/api/v1/no-such-thing/", "/api/v1/user/x/y/z/", "/api/v1", "/api/v1/me/extra"]
)
def test_unknown_path_is_404_with_an_error_body(client: TestClient, org: Org, path: str) -> None:
    response = client.get(path, auth=org.auth)
    assert response.status_code == 404
    assert set(response.json()) == {"error"}


def test_unknown_path_outside_the_api_is_404_json(client: TestClient) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/v1/me/"),
        ("POST", "/api/v1/user/"),
        ("PATCH", "/api/v1/organization/{org}/"),
        ("DELETE", "/api/v1/organization/{org}"),
        ("PUT", "/api/v1/role/"),
    ],
)
def test_wrong_method_is_405_with_an_error_body(
    client: TestClient, org: Org, method: str, path: str
) -> None:
    response = client.request(method, path.format(org=org.id), json={}, auth=org.auth)
    assert response.status_code == 405
    assert set(response.json()) == {"error"}


# --- Request bodies ------------------------------------------------------------------------------


def count_keys(session_factory: sessionmaker[Session], org: Org) -> int:
    with session_factory() as session:
        query = select(func.count()).select_from(ApiKey).where(ApiKey.organization_id == org.id)
        return int(session.scalar(query) or 0)


def org_row(session_factory: sessionmaker[Session], org: Org) -> tuple[Any, ...]:
    with session_factory() as session:
        row = session.get(Organization, org.id)
        assert row is not None
        return (row.name, row.currency, row.date_updated, row.updated_by)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/json",
    ],
)
def test_non_json_content_type_is_415(
    client: TestClient, org: Org, session_factory: sessionmaker[Session], content_type: str
) -> None:
    keys_before, org_before = count_keys(session_factory, org), org_row(session_factory, org)
    body = b'{"name": "x"}'
    headers = {"Content-Type": content_type}
    post = client.post("/api/v1/api_key/", content=body, headers=headers, auth=org.auth)
    put = client.put(
        f"/api/v1/organization/{org.id}/", content=body, headers=headers, auth=org.auth
    )
    for response in (post, put):
        assert response.status_code == 415
        assert set(response.json()) == {"error"}
    assert count_keys(session_factory, org) == keys_before
    assert org_row(session_factory, org) == org_before


def test_json_with_charset_is_accepted(client: TestClient, org: Org) -> None:
    response = client.put(
        f"/api/v1/organization/{org.id}/",
        content=b'{"name": "Charset"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
        auth=org.auth,
    )
    assert response.status_code == 200
    assert response.json()["name"] == "Charset"


def test_json_without_content_type_is_read_as_json(client: TestClient, org: Org) -> None:
    response = client.put(
        f"/api/v1/organization/{org.id}/", content=b'{"name": "Untyped"}', auth=org.auth
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Untyped"


@pytest.mark.parametrize("value", ["yes", "true", 1, "1"])
def test_booleans_are_not_coerced(client: TestClient, org: Org, value: object) -> None:
    response = client.put(
        f"/api/v1/organization/{org.id}/",
        json={"enable_unsubscribe_link": value},
        auth=org.auth,
    )
    assert response.status_code == 400
    assert "enable_unsubscribe_link" in response.json()["field-errors"]


BAD_BODIES = [
    pytest.param(b"{bad json", "application/json", id="malformed"),
    pytest.param(b'{"name": "x"', "application/json", id="truncated"),
    pytest.param(b"[1, 2]", "application/json", id="array"),
    pytest.param(b'"a string"', "application/json", id="string"),
    pytest.param(b"42", "application/json", id="number"),
    pytest.param(b"null", "application/json", id="null"),
    pytest.param(b"", "application/json", id="empty"),
    pytest.param(b'{"name": "a"}\xff', "application/json", id="not-utf8"),
]


@pytest.mark.parametrize(("body", "content_type"), BAD_BODIES)
def test_bad_json_is_400_and_writes_nothing(
    client: TestClient,
    org: Org,
    session_factory: sessionmaker[Session],
    body: bytes,
    content_type: str,
) -> None:
    keys_before, org_before = count_keys(session_factory, org), org_row(session_factory, org)
    headers = {"Content-Type": content_type}
    put = client.put(
        f"/api/v1/organization/{org.id}/", content=body, headers=headers, auth=org.auth
    )
    post = client.post("/api/v1/api_key/", content=body, headers=headers, auth=org.auth)
    for response in (put, post):
        assert response.status_code == 400, response.text
        payload = response.json()
        assert isinstance(payload["errors"], list) and payload["errors"]
        assert isinstance(payload["field-errors"], dict)
    assert count_keys(session_factory, org) == keys_before
    assert org_row(session_factory, org) == org_before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Ok", "colour": "red"}, "colour"),
        ({"name": None}, "name"),
        ({"currency": None}, "currency"),
        ({"enable_unsubscribe_link": None}, "enable_unsubscribe_link"),
        ({"name": "Nul\x00Name"}, "name"),
        ({"name": "Ok", "currency": "DOLLARS"}, "currency"),
        ({"name": ""}, "name"),
        ({"name": 7}, "name"),
    ],
)
def test_invalid_fields_are_400_field_errors_and_write_nothing(
    client: TestClient,
    org: Org,
    session_factory: sessionmaker[Session],
    body: dict[str, Any],
    field: str,
) -> None:
    before = org_row(session_factory, org)
    response = client.put(f"/api/v1/organization/{org.id}/", json=body, auth=org.auth)
    assert response.status_code == 400, response.text
    assert field in response.json()["field-errors"]
    assert org_row(session_factory, org) == before
    assert client.get(f"/api/v1/organization/{org.id}/", auth=org.auth).json()["name"] == "Org A"


def test_nul_characters_are_400_in_bodies_paths_and_queries(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    keys_before = count_keys(session_factory, org)
    bodies = [
        ("POST", "/api/v1/api_key/", {"name": "a\x00b"}),
        (
            "PUT",
            f"/api/v1/membership/{org.membership_id}/pinned_views/",
            {"saved_view_ids": ["\x00"]},
        ),
        ("PUT", "/api/v1/membership/", {"_params": {"id__in": "memb_\x00"}, "role_id": "user"}),
    ]
    for method, path, body in bodies:
        response = client.request(method, path, json=body, auth=org.auth)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["field-errors"], path
    urls = [
        "/api/v1/user/user_%00x/",
        "/api/v1/membership/memb_%00/pinned_views/",
        "/api/v1/api_key/api_%00/",
        "/api/v1/api_key/raw%00secret/",
        f"/api/v1/organization/{org.id}%00/",
        "/api/v1/role/ad%00min/",
        "/api/v1/user/?_order_by=last_name%00",
        "/api/v1/user/?_fields=id%00",
    ]
    for url in urls:
        response = client.get(url, auth=org.auth)
        assert response.status_code == 400, (url, response.text)
        assert "error" in response.json()
    assert count_keys(session_factory, org) == keys_before
    pinned = client.get(f"/api/v1/membership/{org.membership_id}/pinned_views/", auth=org.auth)
    assert pinned.json() == {"saved_view_ids": []}


def test_lone_surrogates_are_400_and_write_nothing(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    """`"\\ud800"` is a valid JSON escape but not text: no database can store it."""
    keys_before, org_before = count_keys(session_factory, org), org_row(session_factory, org)
    json_type = {"Content-Type": "application/json"}
    cases = [
        ("PUT", f"/api/v1/organization/{org.id}/", rb'{"name": "a\ud800"}', "name"),
        ("POST", "/api/v1/api_key/", rb'{"name": "\udfff"}', "name"),
        (
            "PUT",
            f"/api/v1/membership/{org.membership_id}/pinned_views/",
            rb'{"saved_view_ids": ["\ud800"]}',
            "saved_view_ids",
        ),
        ("PUT", "/api/v1/membership/", rb'{"_params": {"id__in": "\ud800"}}', "_params.id__in"),
        ("PUT", f"/api/v1/organization/{org.id}/", rb'{"\ud800": 1}', None),  # echoed key
    ]
    for method, path, body, field in cases:
        response = client.request(method, path, content=body, headers=json_type, auth=org.auth)
        assert response.status_code == 400, (path, body, response.text)
        errors = response.json()
        if field is None:  # the bad text is a field name: reported either way, never a 500
            assert errors["errors"] or errors["field-errors"], (path, errors)
        else:
            assert field in errors["field-errors"], (path, errors)
    override = client.post(
        "/api/v1/user/",
        content=rb'{"_params": {"\ud800": "1"}}',
        headers={**json_type, "X-HTTP-Method-Override": "GET"},
        auth=org.auth,
    )
    assert override.status_code == 400
    assert "error" in override.json()
    assert count_keys(session_factory, org) == keys_before
    assert org_row(session_factory, org) == org_before
    pinned = client.get(f"/api/v1/membership/{org.membership_id}/pinned_views/", auth=org.auth)
    assert pinned.json() == {"saved_view_ids": []}


def test_no_route_answers_422_or_500_to_bad_input(
    client: TestClient, app: FastAPI, org: Org
) -> None:
    """Every route, whatever it is, turns garbage into Close's 4xx bodies (never FastAPI's 422)."""
    bad_bodies = [
        b"{bad",
        b"[]",
        b'"x"',
        b'{"\\u0000": 1}',
        b'{"\\ud800": 1}',
        b'{"unknown_field_xyz": 1}',
        b"null",
        b"\xff",
    ]
    checked = 0
    for method, template in api_operations(app):
        path = re.sub(r"{[^}]+}", "bogus_id", template)
        requests: list[dict[str, Any]] = [{"params": {"_limit": "x", "_skip": "-"}}]
        if method in ("POST", "PUT", "PATCH"):
            requests += [
                {"content": b, "headers": {"Content-Type": "application/json"}} for b in bad_bodies
            ]
        elif method == "DELETE" and path == template:
            continue  # a DELETE without an id could succeed: not garbage input
        for kwargs in requests:
            response = client.request(method, path, auth=org.auth, **kwargs)
            checked += 1
            where = f"{method} {template} {kwargs}"
            assert response.status_code != 422, where
            assert response.status_code < 500, (where, response.text)
            if "content" in kwargs or "{" in template:
                assert response.status_code >= 400, (where, response.text)
            if response.status_code >= 400:
                body = response.json()
                assert "error" in body or ("errors" in body and "field-errors" in body), where
    assert checked > 20


# --- Lists: paging, `_fields` --------------------------------------------------------------------


def add_users(session_factory: sessionmaker[Session], org: Org, count: int) -> list[str]:
    """`count` members named so that `_order_by=last_name,first_name` sorts them by number."""
    from clove.kit.ids import new_id

    ids = []
    with session_factory.begin() as session:
        for n in range(count):
            user_id = new_id("user")
            email = f"{user_id.lower()}@example.com"
            session.add(
                User(
                    id=user_id, email=email, email_lower=email, first_name="P", last_name=f"{n:04}"
                )
            )
            session.flush()
            session.add(Membership(id=new_id("memb"), organization_id=org.id, user_id=user_id))
            ids.append(user_id)
    return ids


def test_list_defaults_and_limits(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    add_users(session_factory, org, MAX_LIMIT)  # with the admin: MAX_LIMIT + 1 users

    first = client.get("/api/v1/user/", auth=org.auth).json()
    assert len(first["data"]) == 100  # default _limit
    assert first["has_more"] is True
    rest = client.get("/api/v1/user/?_skip=100", auth=org.auth).json()
    assert len(rest["data"]) == 1
    assert rest["has_more"] is False
    every = {u["id"] for u in first["data"]} | {u["id"] for u in rest["data"]}
    assert len(every) == 101

    at_max = client.get(f"/api/v1/user/?_limit={MAX_LIMIT}&_skip=1", auth=org.auth).json()
    assert len(at_max["data"]) == 100 and at_max["has_more"] is False

    too_many = client.get(f"/api/v1/user/?_limit={MAX_LIMIT + 1}", auth=org.auth)
    assert too_many.status_code == 400
    assert set(too_many.json()) == {"error"}
    assert str(MAX_LIMIT) in too_many.json()["error"]
    assert "_limit" in too_many.json()["error"]


@pytest.mark.parametrize(
    "query", ["_limit=-1", "_skip=-1", "_limit=abc", "_skip=1.5", "_limit=1e2", "_skip=ten"]
)
def test_bad_paging_parameters_are_400(client: TestClient, org: Org, query: str) -> None:
    response = client.get(f"/api/v1/user/?{query}", auth=org.auth)
    assert response.status_code == 400
    assert set(response.json()) == {"error"}
    assert query.split("=")[0] in response.json()["error"]


def test_has_more_across_pages(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    add_users(session_factory, org, 4)
    seen: list[str] = []
    flags = []
    skip = 0
    while True:
        page = client.get(f"/api/v1/user/?_skip={skip}&_limit=2", auth=org.auth).json()
        seen += [u["id"] for u in page["data"]]
        flags.append(page["has_more"])
        skip += len(page["data"])
        if not page["has_more"]:
            break
    assert flags == [True, True, False]
    assert len(seen) == len(set(seen)) == 5

    exact = client.get("/api/v1/user/?_limit=5", auth=org.auth).json()
    assert len(exact["data"]) == 5 and exact["has_more"] is False
    past_end = client.get("/api/v1/user/?_skip=50", auth=org.auth).json()
    assert past_end == {"data": [], "has_more": False}


def test_every_paged_list_validates_limit(client: TestClient, app: FastAPI, org: Org) -> None:
    """Each GET list answering `{data, has_more}` honours `_limit` and refuses bad values."""
    lists = 0
    for method, path in api_operations(app):
        if method != "GET" or "{" in path:
            continue
        plain = client.get(path, auth=org.auth)
        if plain.status_code != 200 or "has_more" not in plain.json():
            continue
        lists += 1
        one = client.get(path, params={"_limit": 1}, auth=org.auth).json()
        assert len(one["data"]) <= 1, path
        assert one["has_more"] == (len(plain.json()["data"]) > 1), path
        for bad in ("-1", "x", "1000000"):
            response = client.get(path, params={"_limit": bad}, auth=org.auth)
            assert response.status_code == 400, (path, bad)
            assert "error" in response.json()
    assert lists >= 3  # /user/, /role/, /api_key/ at least


def test_fields_on_list_and_single(client: TestClient, org: Org) -> None:
    listed = client.get("/api/v1/user/?_fields=id,email", auth=org.auth).json()
    assert set(listed) == {"data", "has_more"}
    assert [set(u) for u in listed["data"]] == [{"id", "email"}]

    single = client.get(f"/api/v1/user/{org.user_id}/?_fields=first_name,nope", auth=org.auth)
    assert single.json() == {"first_name": "Ada"}

    spaced = client.get(f"/api/v1/organization/{org.id}/?_fields=name, currency", auth=org.auth)
    assert spaced.json() == {"name": "Org A", "currency": "USD"}


# --- Method override (§2.6) ----------------------------------------------------------------------


def override(client: TestClient, path: str, body: Any, org: Org, method: str = "GET") -> Any:
    return client.post(path, json=body, headers={"X-HTTP-Method-Override": method}, auth=org.auth)


def test_method_override_behaves_like_the_get(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    add_users(session_factory, org, 3)
    params: dict[str, str | int] = {
        "_limit": 2,
        "_skip": 1,
        "_fields": "id,last_name",
        "_order_by": "last_name,first_name",
    }
    expected = client.get("/api/v1/user/", params=params, auth=org.auth)
    overridden = override(client, "/api/v1/user/", {"_params": params}, org)
    assert overridden.status_code == 200, overridden.text
    assert overridden.json() == expected.json()
    assert len(overridden.json()["data"]) == 2
    assert overridden.json()["has_more"] is True

    as_list = override(
        client, "/api/v1/user", {"_params": {"_fields": ["id", "email"]}}, org, "get"
    )
    assert [set(u) for u in as_list.json()["data"]] == [{"id", "email"}] * 4

    single = override(
        client, f"/api/v1/organization/{org.id}/", {"_params": {"_fields": "name"}}, org
    )
    assert single.json() == {"name": "Org A"}

    no_params = override(client, "/api/v1/role/", {}, org)
    assert no_params.json() == client.get("/api/v1/role/", auth=org.auth).json()


@pytest.mark.parametrize(
    ("body", "method"),
    [
        (b'{"_params": "x"}', "GET"),
        (b'{"_params": [1, 2]}', "GET"),
        (b'{"_params": {"_limit": "many"}}', "GET"),
        (b'{"_params": {"_limit": 1000}}', "GET"),
        (b'{"_params": {"_order_by": "shoe_size"}}', "GET"),
        (b"[1]", "GET"),
        (b"{bad", "GET"),
        (b'{"_params": {}}', "DELETE"),
    ],
)
def test_bad_method_override_is_400(client: TestClient, org: Org, body: bytes, method: str) -> None:
    response = client.post(
        "/api/v1/user/",
        content=body,
        headers={"X-HTTP-Method-Override": method, "Content-Type": "application/json"},
        auth=org.auth,
    )
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}


# --- X-TZ-Offset (§2.4) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "hours"),
    [
        (None, 0.0),
        ("-0.0", 0.0),
        ("5.5", 5.5),
        ("-4", -4.0),
        ("-2.5", -2.5),
        (" 1.0 ", 1.0),
        ("14", 14),
    ],
)
def test_tz_offset_is_parsed(probe: TestClient, org: Org, header: str | None, hours: float) -> None:
    headers = {} if header is None else {"X-TZ-Offset": header}
    response = probe.get("/api/v1/_probe/", headers=headers, auth=org.auth)
    assert response.status_code == 200
    assert response.json()["tz_offset"] == hours


@pytest.mark.parametrize(
    "header", ["abc", "nan", "inf", "-inf", "15", "-14.5", "5,5", "0x1", "1e3"]
)
def test_bad_tz_offset_is_400(probe: TestClient, client: TestClient, org: Org, header: str) -> None:
    for c, path in ((probe, "/api/v1/_probe/"), (client, "/api/v1/me/")):
        response = c.get(path, headers={"X-TZ-Offset": header}, auth=org.auth)
        assert response.status_code == 400
        assert set(response.json()) == {"error"}
        assert "X-TZ-Offset" in response.json()["error"]


def test_openapi_document_and_docs_are_public(client: TestClient) -> None:
    schema = client.get("/api/v1/openapi.json")
    assert schema.status_code == 200
    assert "/api/v1/me/" in schema.json()["paths"]
    assert "RateLimit" not in schema.headers
    assert client.get("/docs").status_code == 200
