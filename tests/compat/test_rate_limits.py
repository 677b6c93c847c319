"""Rate limits as Close applies them (close-api.md §2.10): per endpoint group, per key and per
organization (3x), the `RateLimit` header, 429 bodies, and a budget shared through Redis."""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.app import create_app
from clove.ratelimit import endpoint_group, group_hash
from tests.conftest import Org, free_port
from tests.conftest import test_settings as settings_for
from tests.test_membership import Member, add_member

LIMIT = 3
WINDOW = 2.0  # seconds; long enough that a test's few requests never straddle two windows
HEADER = re.compile(r"limit=(\d+), remaining=(\d+), reset=(\d+)")
REDIS_URL = os.environ.get("CLOVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def start_of_window(window: float = WINDOW, need: float = 1.2) -> None:
    """Sleep until at least `need` seconds of the current fixed window remain."""
    left = window - time.time() % window
    if left < need:
        time.sleep(left + 0.02)


def limited_app(database_url: str, engine: Engine, **overrides: Any) -> FastAPI:
    settings = settings_for(
        database_url, rate_limit_per_key=LIMIT, rate_limit_window=WINDOW, **overrides
    )
    return create_app(settings, engine)


@pytest.fixture
def limited(database_url: str, engine: Engine) -> Iterator[TestClient]:
    """A client of an app with fresh counters and a budget of 3 requests per key per window."""
    with TestClient(limited_app(database_url, engine)) as client:
        start_of_window()
        yield client


def rate(response: httpx.Response) -> tuple[int, int, int]:
    match = HEADER.fullmatch(response.headers["RateLimit"])
    assert match, response.headers["RateLimit"]
    limit, remaining, reset = (int(g) for g in match.groups())
    return limit, remaining, reset


def assert_429(response: httpx.Response, limit: int, limit_type: str, group: str) -> None:
    assert response.status_code == 429, response.text
    header_limit, remaining, reset = rate(response)
    assert (header_limit, remaining) == (limit, 0)
    assert 1 <= reset <= math.ceil(WINDOW)
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= math.ceil(WINDOW) + 1
    body = response.json()
    for fields in (body, body["error"]):
        assert fields["message"] == "API call count exceeded for this period"
        assert 0 < fields["rate_reset"] <= WINDOW
        assert fields["rate_limit"] == limit
        assert fields["rate_window"] == WINDOW
        assert fields["rate_limit_type"] == limit_type
        assert fields["rate_endpoint_group"] == group_hash(group)
        assert re.fullmatch(r"[0-9a-f]{40}", fields["rate_endpoint_group"])


def test_every_api_response_carries_the_header(limited: TestClient, org: Org) -> None:
    responses = [
        limited.get("/api/v1/me/", auth=org.auth),  # 200
        limited.get("/api/v1/user/nope/", auth=org.auth),  # 404 from a route
        limited.get("/api/v1/no-such-thing/", auth=org.auth),  # 404 from routing
        limited.delete("/api/v1/role/", auth=org.auth),  # 405
        limited.put(f"/api/v1/organization/{org.id}/", content=b"{", auth=org.auth),  # 400 body
        limited.post(  # 415, refused at the edge
            "/api/v1/api_key/", content=b"x", headers={"Content-Type": "text/plain"}, auth=org.auth
        ),
        limited.post(  # 400 from a bad method override, refused at the edge
            "/api/v1/user/",
            json={"_params": 1},
            headers={"X-HTTP-Method-Override": "GET"},
            auth=org.auth,
        ),
        limited.get("/api/v1/user/%00/", auth=org.auth),  # 400 NUL, refused at the edge
    ]
    assert [r.status_code for r in responses] == [200, 404, 404, 405, 400, 415, 400, 400]
    for response in responses:
        limit, remaining, reset = rate(response)
        assert limit == LIMIT
        assert 0 <= remaining < LIMIT
        assert 0 <= reset <= math.ceil(WINDOW)

    first, second = (
        rate(limited.get("/api/v1/role/", auth=org.auth)),
        rate(limited.get("/api/v1/role/", auth=org.auth)),
    )
    assert (first[1], second[1]) == (LIMIT - 1, LIMIT - 2)  # `remaining` counts down


def test_the_fourth_request_in_a_window_is_429(limited: TestClient, org: Org) -> None:
    for n in range(LIMIT):
        response = limited.get("/api/v1/me/", auth=org.auth)
        assert response.status_code == 200
        assert rate(response)[:2] == (LIMIT, LIMIT - 1 - n)
    refused = limited.get("/api/v1/me/", auth=org.auth)
    assert_429(refused, LIMIT, "key", endpoint_group("GET", "/api/v1/me/"))

    # The next window brings a fresh budget.
    time.sleep(float(refused.json()["rate_reset"]) + 0.05)
    assert limited.get("/api/v1/me/", auth=org.auth).status_code == 200


def test_reads_and_writes_are_separate_groups(limited: TestClient, org: Org) -> None:
    url = f"/api/v1/organization/{org.id}/"
    for _ in range(LIMIT):
        assert limited.get(url, auth=org.auth).status_code == 200
    assert limited.get(url, auth=org.auth).status_code == 429
    for _ in range(LIMIT):
        assert limited.put(url, json={"name": "Busy"}, auth=org.auth).status_code == 200
    assert_429(limited.put(url, json={}, auth=org.auth), LIMIT, "key", endpoint_group("PUT", url))
    # Another resource is another group.
    assert limited.get("/api/v1/user/", auth=org.auth).status_code == 200


def test_method_override_counts_as_the_read_it_stands_for(limited: TestClient, org: Org) -> None:
    headers = {"X-HTTP-Method-Override": "GET"}
    for _ in range(LIMIT):
        response = limited.post(
            "/api/v1/user/", json={"_params": {}}, headers=headers, auth=org.auth
        )
        assert response.status_code == 200
    assert limited.get("/api/v1/user/", auth=org.auth).status_code == 429
    assert limited.post("/api/v1/api_key/", json={}, auth=org.auth).status_code == 200  # a write


def test_keys_have_their_own_budgets_and_the_organization_three_times_one(
    limited: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    members: list[Member] = [add_member(session_factory, org, "user") for _ in range(3)]
    keys = [org.auth, *(m.auth for m in members)]
    group = endpoint_group("GET", "/api/v1/me/")
    start_of_window()  # again: creating the members took time

    # Key 1 spends its budget; key 2 is unaffected.
    for _ in range(LIMIT):
        assert limited.get("/api/v1/me/", auth=keys[0]).status_code == 200
    assert_429(limited.get("/api/v1/me/", auth=keys[0]), LIMIT, "key", group)
    # (the refused request still counts against the organization: 4 of 9 spent)
    for _ in range(LIMIT):
        assert limited.get("/api/v1/me/", auth=keys[1]).status_code == 200
    assert limited.get("/api/v1/me/", auth=keys[1]).status_code == 429
    # 8 of 9 spent: key 3 gets one request, then the organization budget is gone.
    allowed = limited.get("/api/v1/me/", auth=keys[2])
    assert allowed.status_code == 200
    assert rate(allowed)[:2] == (3 * LIMIT, 0)  # the header shows the tightest budget
    assert_429(limited.get("/api/v1/me/", auth=keys[2]), 3 * LIMIT, "organization", group)
    assert_429(limited.get("/api/v1/me/", auth=keys[3]), 3 * LIMIT, "organization", group)

    # Another organization has budgets of its own.
    for _ in range(LIMIT):
        assert limited.get("/api/v1/me/", auth=other_org.auth).status_code == 200


def test_organization_budget_is_three_times_the_key_budget(
    limited: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    members = [add_member(session_factory, org, "user") for _ in range(3)]
    keys = [org.auth, *(m.auth for m in members)]
    start_of_window()
    for auth in keys[:3]:
        for _ in range(LIMIT):
            assert limited.get("/api/v1/user/", auth=auth).status_code == 200
    refused = limited.get("/api/v1/user/", auth=keys[3])  # the fourth key's first request
    assert_429(refused, 3 * LIMIT, "organization", endpoint_group("GET", "/api/v1/user/"))


def test_rate_limits_can_be_disabled(database_url: str, engine: Engine, org: Org) -> None:
    app = limited_app(database_url, engine, rate_limit_enabled=False)
    with TestClient(app) as client:
        for _ in range(LIMIT + 2):
            response = client.get("/api/v1/me/", auth=org.auth)
            assert response.status_code == 200
            assert "RateLimit" not in response.headers


# --- Redis: one budget for every process ---------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc}); set CLOVE_TEST_REDIS_URL")
    return REDIS_URL


def test_processes_share_one_budget_through_redis(
    database_url: str, engine: Engine, org: Org, redis_url: str
) -> None:
    first = limited_app(database_url, engine, redis_url=redis_url)
    second = limited_app(database_url, engine, redis_url=redis_url)
    with TestClient(first) as one, TestClient(second) as two:
        start_of_window()
        assert one.get("/api/v1/me/", auth=org.auth).status_code == 200
        assert two.get("/api/v1/me/", auth=org.auth).status_code == 200
        third = one.get("/api/v1/me/", auth=org.auth)
        assert third.status_code == 200
        assert rate(third)[:2] == (LIMIT, 0)
        assert_429(
            two.get("/api/v1/me/", auth=org.auth),
            LIMIT,
            "key",
            endpoint_group("GET", "/api/v1/me/"),
        )


def test_unreachable_redis_fails_open(database_url: str, engine: Engine, org: Org) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with TestClient(limited_app(database_url, engine, redis_url=closed)) as client:
        for _ in range(LIMIT + 2):
            response = client.get("/api/v1/me/", auth=org.auth)
            assert response.status_code == 200
            assert rate(response)[0] == LIMIT
