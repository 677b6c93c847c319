"""A webhook subscription managed by the official Python client (`closeio_api`) against a real
Clove server, receiving what the client's own changes cause, signed as Close signs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from closeio_api import API
from sqlalchemy import Engine

from clove.db import writing_session_factory
from clove.webhook.delivery import Dispatcher
from tests.conftest import LiveServer, Org
from tests.conftest import test_settings as settings_for
from tests.webhook_receiver import Receiver


@pytest.fixture
def api(live_server: LiveServer, org: Org) -> API:
    return API(base_url=live_server.url + "/api/v1/", api_key=org.key)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_the_client_subscribes_receives_signed_events_and_pauses(
    api: API, org: Org, receiver: Receiver, engine: Engine, database_url: str
) -> None:
    events = [{"object_type": "lead", "action": "created"}]
    hook = api.post("webhook", data={"url": receiver.url, "events": events})
    assert hook["status"] == "active" and len(hook["signature_key"]) == 64
    receiver.keys[hook["id"]] = hook["signature_key"]
    lead = api.post("lead", data={"name": "Through the client"})

    dispatcher = Dispatcher(
        writing_session_factory(engine), settings_for(database_url), organization_id=org.id
    )
    try:
        dispatcher.run_until_idle()
    finally:
        dispatcher.close()

    [received] = receiver.received
    assert received.signature_ok
    assert received.payload["subscription_id"] == hook["id"]
    assert received.event["object_id"] == lead["id"]
    assert received.event["data"]["name"] == "Through the client"

    paused = api.put(f"webhook/{hook['id']}", data={"status": "paused"})
    assert (paused["status"], paused["pause_reason"]) == ("paused", "api")
    assert [w["id"] for w in api.get("webhook")["data"]] == [hook["id"]]
    history = api.get(f"webhook/{hook['id']}/delivery")["data"]
    assert [(d["event_id"], d["status"]) for d in history] == [(received.event["id"], "delivered")]
