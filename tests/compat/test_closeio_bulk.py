"""A bulk sequence subscription driven by the official Python client (`closeio_api`), as a
script written for api.close.com would drive it, against a real Clove server and worker."""

from __future__ import annotations

import pytest
from closeio_api import API, ValidationError
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.bulk_world import ALL_LEADS, SENDER, BulkWorld, make_world
from tests.conftest import LiveServer, Org

PATH = "bulk_action/sequence_subscription"  # the client adds the trailing slash


@pytest.fixture
def world(client: TestClient, org: Org, engine: Engine, database_url: str) -> BulkWorld:
    return make_world(client, org, engine, database_url)


@pytest.fixture
def api(live_server: LiveServer, org: Org) -> API:
    return API(base_url=live_server.url + "/api/v1/", api_key=org.key)


def test_the_client_starts_follows_pauses_and_lists_a_bulk_subscription(
    api: API, world: BulkWorld
) -> None:
    seq = world.sequence()
    for i in range(5):
        world.lead(f"Client {i}", [[f"c{i}@x.test"]])
    body = {
        "action_type": "subscribe",
        "sequence_id": seq,
        "sender_account_id": world.account_id,
        "contact_preference": "lead",
        "s_query": ALL_LEADS,
        "send_done_email": False,
        **SENDER,
    }
    created = api.post(PATH, data=body)
    assert created["status"] == "created" and created["n_leads"] is None

    paused = api.put(f"{PATH}/{created['id']}", data={"status": "paused"})
    assert paused["status"] == "paused"
    world.run_jobs()
    assert api.get(f"{PATH}/{created['id']}")["n_leads_processed"] == 0

    api.put(f"{PATH}/{created['id']}", data={"status": "resuming"})
    world.run_jobs()
    done = api.get(f"{PATH}/{created['id']}", params={"_fields": "id,status,n_leads,n_objects"})
    assert done == {"id": created["id"], "status": "done", "n_leads": 5, "n_objects": 5}
    listed = api.get(PATH, params={"_limit": 1})
    assert [a["id"] for a in listed["data"]] == [created["id"]]


def test_the_client_raises_its_validation_error_with_field_errors(
    api: API, world: BulkWorld
) -> None:
    with pytest.raises(ValidationError) as raised:
        api.post(PATH, data={"action_type": "subscribe", "s_query": ALL_LEADS})
    assert {"sequence_id", "sender_account_id", "contact_preference"} <= set(
        raised.value.field_errors
    )
