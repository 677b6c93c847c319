"""Many requests at once: none may wait on another for a database connection forever."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import Engine

from clove.app import create_app
from clove.db import make_engine
from tests.conftest import LiveServer, Org
from tests.conftest import test_settings as settings_for


def test_more_concurrent_requests_than_threads_and_connections(database_url: str, org: Org) -> None:
    """Two worker threads and ONE pooled connection, 12 requests at once. A request used to
    give its connection back in a second thread hop: with both threads taken by requests
    waiting for the connection, that hop never came and they all timed out."""
    engine = make_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=3)
    app = create_app(settings_for(database_url, threads=2), engine)

    def call(url: str) -> int:
        return httpx.get(f"{url}/api/v1/me/", auth=org.auth, timeout=30).status_code

    with LiveServer(app) as server, ThreadPoolExecutor(max_workers=12) as pool:
        started = time.monotonic()
        statuses = list(pool.map(call, [server.url] * 36))
    engine.dispose()
    assert statuses == [200] * 36
    assert time.monotonic() - started < 10


def test_a_revoked_key_is_refused_by_the_next_request(
    database_url: str, engine: Engine, org: Org
) -> None:
    """With credentials cached for a second, revoking a key still takes effect at once in the
    process that revoked it."""
    app = create_app(settings_for(database_url, auth_cache_seconds=1.0), engine)
    with LiveServer(app) as server:
        created = httpx.post(
            f"{server.url}/api/v1/api_key/", json={"name": "short-lived"}, auth=org.auth
        ).json()
        auth = (created["key"], "")
        assert httpx.get(f"{server.url}/api/v1/me/", auth=auth).status_code == 200
        revoked = httpx.delete(f"{server.url}/api/v1/api_key/{created['id']}/", auth=org.auth)
        assert revoked.status_code == 200
        assert httpx.get(f"{server.url}/api/v1/me/", auth=auth).status_code == 401


def test_concurrent_writers_queue_instead_of_failing(
    database_url: str, engine: Engine, org: Org
) -> None:
    """Eight clients creating and updating leads at once. On SQLite in WAL mode a deferred
    transaction that read before another writer committed could not write: most requests
    failed with "database is locked" (bench/crud.py found it); writes now begin IMMEDIATE."""
    app = create_app(settings_for(database_url), engine)

    def create_and_update(url: str) -> list[int]:
        statuses = []
        with httpx.Client(base_url=f"{url}/api/v1", auth=org.auth, timeout=60) as client:
            for _ in range(5):
                body = {"name": "Busy", "contacts": [{"name": "A"}, {"name": "B"}]}
                created = client.post("/lead/", json=body)
                statuses.append(created.status_code)
                if created.status_code == 200:
                    lead_id = created.json()["id"]
                    changed = client.put(f"/lead/{lead_id}/", json={"description": "x"})
                    statuses.append(changed.status_code)
        return statuses

    with LiveServer(app) as server, ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(create_and_update, [server.url] * 8))
    assert [status for statuses in results for status in statuses] == [200] * 80
