"""`/webhook/` subscriptions: Close's object, validation, limits and who sees what."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clove.models import Webhook
from clove.webhook.service import MAX_PER_ORGANIZATION
from tests.compat.test_spec_schemas import WEBHOOK
from tests.conftest import Org
from tests.test_membership import add_member

PATH = "/api/v1/webhook/"
BODY = {
    "url": "https://hooks.example.com/close",
    "events": [
        {"object_type": "lead", "action": "created"},
        {
            "object_type": "activity.email",
            "action": "sent",
            "extra_filter": {
                "type": "field_accessor",
                "field": "data",
                "filter": {"type": "non_null"},
            },
        },
    ],
}


def create(client: TestClient, org: Org, **changes: Any) -> Any:
    return client.post(PATH, json=BODY | changes, auth=org.auth)


def test_create_returns_closes_object_with_a_fresh_signature_key(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    response = create(client, org)
    assert response.status_code == 201, response.text
    hook = response.json()
    assert set(hook) == WEBHOOK
    assert hook["id"].startswith("whsub_") and len(hook["id"]) == 6 + 22
    assert re.fullmatch(r"[0-9a-f]{64}", hook["signature_key"])
    assert (hook["status"], hook["verify_ssl"], hook["pause_reason"]) == ("active", True, None)
    assert hook["events"][0] == {"object_type": "lead", "action": "created", "extra_filter": None}
    assert hook["created_by"] == org.user_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", hook["date_created"])
    other = create(client, org).json()
    assert other["signature_key"] != hook["signature_key"]
    with session_factory() as session:
        stored = session.scalar(select(Webhook.signature_key).where(Webhook.id == hook["id"]))
    assert stored is not None and hook["signature_key"] not in stored  # encrypted at rest
    assert client.get(f"{PATH}{hook['id']}/", auth=org.auth).json() == hook


def test_list_get_pause_resume_and_delete(client: TestClient, org: Org) -> None:
    hook = create(client, org).json()
    listed = client.get(PATH, auth=org.auth).json()
    assert hook["id"] in [h["id"] for h in listed["data"]]
    path = f"{PATH}{hook['id']}/"
    paused = client.put(path, json={"status": "paused"}, auth=org.auth).json()
    assert (paused["status"], paused["pause_reason"]) == ("paused", "api")
    changed = client.put(
        path,
        json={"status": "active", "url": "http://other.example.com/x", "verify_ssl": False},
        auth=org.auth,
    ).json()
    assert (changed["status"], changed["pause_reason"]) == ("active", None)
    assert (changed["url"], changed["verify_ssl"]) == ("http://other.example.com/x", False)
    assert changed["signature_key"] == hook["signature_key"]
    assert client.delete(path, auth=org.auth).json() == {}
    assert client.get(path, auth=org.auth).status_code == 404


INVALID = [
    ({"url": "ftp://example.com/x"}, "url"),
    ({"url": "not a url"}, "url"),
    ({"events": []}, "events"),
    ({"events": [{"object_type": "spaceship", "action": "created"}]}, "events[0].object_type"),
    ({"events": [{"object_type": "lead", "action": "sent"}]}, "events[0].action"),
    ({"events": [{"object_type": "lead"}]}, "events"),
    ({"verify_ssl": "yes"}, "verify_ssl"),
    ({"colour": "blue"}, "colour"),
]


@pytest.mark.parametrize(("change", "field"), INVALID, ids=[f for _, f in INVALID])
def test_invalid_bodies_are_400_naming_the_field(
    client: TestClient, org: Org, change: dict[str, Any], field: str
) -> None:
    before = len(client.get(PATH, auth=org.auth).json()["data"])
    response = create(client, org, **change)
    assert response.status_code == 400, response.text
    assert any(k.startswith(field) for k in response.json()["field-errors"]), response.json()
    assert len(client.get(PATH, auth=org.auth).json()["data"]) == before


def test_task_subtypes_are_accepted(client: TestClient, org: Org) -> None:
    events = [{"object_type": "task.lead", "action": "completed"}]
    assert create(client, org, events=events).status_code == 201


def test_an_organization_has_at_most_forty(client: TestClient, org: Org) -> None:
    for _ in range(MAX_PER_ORGANIZATION):
        assert create(client, org).status_code == 201
    refused = create(client, org)
    assert refused.status_code == 400
    assert "at most 40" in refused.json()["errors"][0]


def test_members_who_are_not_admins_see_only_their_own(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    admins = create(client, org).json()
    member = add_member(session_factory, org, "user")
    mine = client.post(PATH, json=BODY, auth=member.auth).json()
    listed = client.get(PATH, auth=member.auth).json()["data"]
    assert [h["id"] for h in listed] == [mine["id"]]
    assert client.get(f"{PATH}{admins['id']}/", auth=member.auth).status_code == 404
    assert client.delete(f"{PATH}{admins['id']}/", auth=member.auth).status_code == 404
    everything = [h["id"] for h in client.get(PATH, auth=org.auth).json()["data"]]
    assert {admins["id"], mine["id"]} <= set(everything)
