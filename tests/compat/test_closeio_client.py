"""The official Python client (`closeio_api`, PyPI `closeio` 2.1) against a real Clove server.

Only the base URL changes: the client builds URLs, sends auth and `X-TZ-Offset`, parses errors
and retries 429s exactly as it does against api.close.com.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from closeio_api import API, APIError, ValidationError
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from clove.api_key.service import create_api_key
from clove.app import create_app
from clove.kit.ids import new_id
from clove.models import Membership, Organization
from clove.organization.service import get_or_create_user
from tests.conftest import LiveServer, Org
from tests.conftest import test_settings as settings_for

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")
RATELIMIT = re.compile(r"limit=(\d+), remaining=(\d+), reset=(\d+)")  # the client's own parser


def client_for(server: LiveServer, key: str, **kwargs: Any) -> API:
    return API(base_url=server.url + "/api/v1/", api_key=key, **kwargs)


def record_responses(api: API) -> list[requests.Response]:
    """Every response the client's session receives, retries included."""
    seen: list[requests.Response] = []
    api.session.hooks["response"].append(lambda r, *args, **kwargs: seen.append(r))
    return seen


def add_users(session_factory: sessionmaker[Session], org: Org, count: int) -> list[str]:
    ids = []
    with session_factory.begin() as session:
        for n in range(count):
            email = f"pager-{n}-{secrets.token_hex(4)}@example.com"
            user = get_or_create_user(session, email, f"First{n}", f"Last{n}")
            session.add(Membership(id=new_id("memb"), organization_id=org.id, user_id=user.id))
            ids.append(user.id)
    return ids


@pytest.fixture
def api(live_server: LiveServer, org: Org) -> API:
    return client_for(live_server, org.key)


def test_me(api: API, org: Org) -> None:
    me = api.get("me")
    assert me["id"] == org.user_id
    assert me["organizations"][0]["id"] == org.id
    assert me["organizations"][0]["name"] == "Org A"
    assert me["memberships"][0]["id"] == org.membership_id
    assert me["memberships"][0]["role_id"] == "admin"
    assert ISO_UTC.match(me["date_created"]), me["date_created"]


def test_users_list_and_get(api: API, org: Org) -> None:
    listed = api.get("user")
    assert [u["id"] for u in listed["data"]] == [org.user_id]
    assert listed["has_more"] is False
    one = api.get(f"user/{org.user_id}")
    assert one["id"] == org.user_id and one["organizations"] == [org.id]
    with pytest.raises(APIError) as missing:
        api.get("user/user_doesnotexist")
    assert missing.value.response.status_code == 404
    assert not isinstance(missing.value, ValidationError)


def test_organization_with_fields(api: API, org: Org) -> None:
    body = api.get(f"organization/{org.id}", params={"_fields": "memberships,name"})
    assert set(body) == {"memberships", "name"}
    assert body["name"] == "Org A"
    (member,) = body["memberships"]
    # What close-api-scripts read from each membership.
    assert member["id"] == org.membership_id and member["user_id"] == org.user_id
    assert member["user_full_name"] == "Ada Admin" and "@" in member["user_email"]


def test_organization_put_is_a_partial_update(
    api: API, org: Org, session_factory: sessionmaker[Session]
) -> None:
    updated = api.put(f"organization/{org.id}", data={"name": "Renamed", "currency": "EUR"})
    assert updated["name"] == "Renamed" and updated["currency_symbol"] == "€"
    again = api.put(f"organization/{org.id}", data={"require_unsubscribe_link": True})
    assert again["name"] == "Renamed" and again["currency"] == "EUR"
    assert again["require_unsubscribe_link"] is True
    with session_factory() as session:
        row = session.get(Organization, org.id)
        assert row is not None and (row.name, row.currency) == ("Renamed", "EUR")


def test_roles(api: API) -> None:
    roles = api.get("role")
    assert roles["has_more"] is False
    assert {r["id"] for r in roles["data"]} >= {"admin", "user"}
    admin = api.get("role/admin")
    assert admin["name"] == "Admin" and "manage_organization" in admin["permissions"]


def test_membership_put_bulk_put_and_pinned_views(api: API, org: Org) -> None:
    one = api.put(
        f"membership/{org.membership_id}",
        data={"track_email_opens": False, "auto_record_calls": "enabled"},
    )
    assert one["id"] == org.membership_id
    assert (one["track_email_opens"], one["auto_record_calls"]) == (False, "enabled")
    bulk = api.put(
        "membership",
        data={"_params": {"id__in": org.membership_id}, "may_workflows_impersonate": True},
    )
    assert bulk == {"count": 1}
    pinned = api.put(
        f"membership/{org.membership_id}/pinned_views", data={"saved_view_ids": ["save_1"]}
    )
    assert pinned == {"saved_view_ids": ["save_1"]}
    assert api.get(f"membership/{org.membership_id}/pinned_views") == pinned


def test_delete_returns_an_empty_object(api: API, org: Org) -> None:
    created = api.post("api_key", data={"name": "throwaway"})
    assert created["key"] and created["id"].startswith("api_")
    assert api.delete(f"api_key/{created['id']}") == {}


def test_400_is_a_validation_error_with_errors_and_field_errors(
    api: API, org: Org, session_factory: sessionmaker[Session]
) -> None:
    with pytest.raises(ValidationError) as bad:
        api.put(f"organization/{org.id}", data={"name": "Not applied", "currency": "usd"})
    assert bad.value.response.status_code == 400
    assert bad.value.errors == []
    assert set(bad.value.field_errors) == {"currency"}
    with pytest.raises(ValidationError) as unknown:
        api.put(f"organization/{org.id}", data={"bogus": 1})
    assert unknown.value.field_errors == {"bogus": "Unknown field."}
    with pytest.raises(ValidationError) as paging:
        api.get("user", params={"_limit": 1000})
    assert "less than or equal to" in paging.value.response.json()["error"]
    with session_factory() as session:
        row = session.get(Organization, org.id)
        assert row is not None and row.name == "Org A"  # the refused PUT changed nothing


def test_bad_key_is_an_api_error_401(live_server: LiveServer) -> None:
    api = client_for(live_server, "not-a-real-key")
    with pytest.raises(APIError) as failed:
        api.get("me")
    assert failed.value.response.status_code == 401
    assert not isinstance(failed.value, ValidationError)
    assert failed.value.response.json()["error"].startswith("The server could not verify")


@pytest.mark.parametrize("offset", [None, "-0.0", 5.5, -4, "1.0"])
def test_the_clients_tz_offset_header_is_accepted(
    live_server: LiveServer, org: Org, offset: Any
) -> None:
    api = client_for(live_server, org.key, tz_offset=offset)
    seen = record_responses(api)
    assert api.get("me")["id"] == org.user_id
    sent = seen[-1].request.headers["X-TZ-Offset"]
    assert sent == api.tz_offset and float(sent) == float(api.tz_offset)


def test_an_invalid_tz_offset_is_refused(live_server: LiveServer, org: Org) -> None:
    """Proof that the header is read at all: garbage is a 400, not silently ignored."""
    api = client_for(live_server, org.key, tz_offset="half past four")
    with pytest.raises(ValidationError) as bad:
        api.get("me")
    assert "X-TZ-Offset" in bad.value.response.json()["error"]


def test_skip_limit_paging_loop_terminates(
    api: API, org: Org, session_factory: sessionmaker[Session]
) -> None:
    """The close-api-scripts loop: advance `_skip` by the page length until `has_more` is false."""
    expected = {org.user_id, *add_users(session_factory, org, 6)}
    seen: list[str] = []
    skip, pages = 0, 0
    while True:
        page = api.get("user", params={"_skip": skip, "_limit": 3})
        pages += 1
        assert pages <= 10, "paging does not terminate"
        seen += [u["id"] for u in page["data"]]
        skip += len(page["data"])
        if not page["has_more"]:
            break
    assert pages == 3  # 3 + 3 + 1
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == expected


@pytest.fixture
def limited_server(engine: Engine, database_url: str) -> Iterator[LiveServer]:
    """A second app on the same database, allowing 2 requests per key per second."""
    app = create_app(
        settings_for(database_url, rate_limit_per_key=2, rate_limit_window=1.0), engine
    )
    with LiveServer(app) as server:
        yield server


def test_client_retries_after_429_and_succeeds(
    limited_server: LiveServer, org: Org, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        _key, secret = create_api_key(session, org.id, org.user_id, "rate limited")
    api = client_for(limited_server, secret)
    seen = record_responses(api)
    started = time.monotonic()
    results = [api.get("me") for _ in range(5)]
    elapsed = time.monotonic() - started
    assert all(r["id"] == org.user_id for r in results)  # every call eventually succeeded
    limited = [r for r in seen if r.status_code == 429]
    assert limited, "the tiny limit was never hit"
    assert len(seen) == 5 + len(limited)  # each 429 was retried once more
    for response in limited:
        match = RATELIMIT.fullmatch(response.headers["RateLimit"])
        assert match and int(match[1]) == 2 and int(match[2]) == 0
        assert int(response.headers["Retry-After"]) >= 1
        body = response.json()
        assert body["error"]["rate_reset"] == body["rate_reset"] >= 0
    assert elapsed < 10


def test_rate_limit_header_on_success_is_parseable_by_the_client(
    limited_server: LiveServer, org: Org
) -> None:
    api = client_for(limited_server, org.key)
    seen = record_responses(api)
    api.get("role")
    match = RATELIMIT.fullmatch(seen[-1].headers["RateLimit"])
    assert match and int(match[1]) == 2 and int(match[2]) <= 1
