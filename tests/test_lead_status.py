from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove.kit.ids import new_id
from clove.models import Event, Lead
from tests.conftest import Org
from tests.test_membership import add_member

URL = "/api/v1/status/lead/"


def labels(client: TestClient, org: Org) -> list[str]:
    return [s["label"] for s in client.get(URL, auth=org.auth).json()["data"]]


def events(session_factory: sessionmaker[Session], object_id: str) -> list[Event]:
    with session_factory() as session:
        query = select(Event).where(Event.object_id == object_id).order_by(Event.date_created)
        return list(session.scalars(query))


def test_new_organizations_get_closes_default_statuses(client: TestClient, org: Org) -> None:
    assert labels(client, org) == ["Potential", "Bad Fit", "Qualified", "Customer"]
    body = client.get(f"/api/v1/organization/{org.id}/", auth=org.auth).json()
    assert [s["label"] for s in body["lead_statuses"]] == labels(client, org)


def test_create_rename_delete_each_record_an_event(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    created = client.post(URL, json={"label": "Won back"}, auth=org.auth).json()
    assert created["id"].startswith("stat_") and created["label"] == "Won back"
    assert labels(client, org)[-1] == "Won back"

    renamed = client.put(f"{URL}{created['id']}/", json={"label": "Returning"}, auth=org.auth)
    assert renamed.status_code == 200 and renamed.json()["label"] == "Returning"

    assert client.delete(f"{URL}{created['id']}/", auth=org.auth).json() == {}
    assert "Returning" not in labels(client, org)

    created_ev, updated_ev, deleted_ev = events(session_factory, created["id"])
    assert (created_ev.object_type, created_ev.action) == ("status.lead", "created")
    assert created_ev.data == {"id": created["id"], "label": "Won back"}
    assert created_ev.api_key_id is not None and created_ev.request_id.startswith("req_")
    assert updated_ev.changed_fields == ["label"]
    assert updated_ev.previous_data == {"label": "Won back"}
    assert updated_ev.data == {"id": created["id"], "label": "Returning"}
    assert deleted_ev.action == "deleted" and deleted_ev.data is None
    assert deleted_ev.previous_data == {"id": created["id"], "label": "Returning"}
    assert deleted_ev.meta["request_method"] == "DELETE"


def test_duplicate_label_is_a_field_error(client: TestClient, org: Org) -> None:
    response = client.post(URL, json={"label": "potential"}, auth=org.auth)
    assert response.status_code == 400
    assert "label" in response.json()["field-errors"]
    assert labels(client, org).count("Potential") == 1


def test_a_status_in_use_cannot_be_deleted(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    status_id = client.get(URL, auth=org.auth).json()["data"][0]["id"]
    with session_factory.begin() as session:
        session.add(
            Lead(id=new_id("lead"), organization_id=org.id, name="Acme", status_id=status_id)
        )
    response = client.delete(f"{URL}{status_id}/", auth=org.auth)
    assert response.status_code == 400
    assert "used by 1 lead" in response.json()["error"]
    assert len(labels(client, org)) == 4


def test_the_last_status_cannot_be_deleted(client: TestClient, org: Org) -> None:
    ids = [s["id"] for s in client.get(URL, auth=org.auth).json()["data"]]
    for status_id in ids[:-1]:
        assert client.delete(f"{URL}{status_id}/", auth=org.auth).status_code == 200
    response = client.delete(f"{URL}{ids[-1]}/", auth=org.auth)
    assert response.status_code == 400
    assert labels(client, org) == ["Customer"]


def test_members_without_admin_rights_cannot_change_statuses(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    member = add_member(session_factory, org, "user")
    response = client.post(URL, json={"label": "Mine"}, auth=(member.key, ""))
    assert response.status_code == 403
    assert "Mine" not in labels(client, org)
    assert client.get(URL, auth=(member.key, "")).status_code == 200
