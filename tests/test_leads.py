"""`/lead/`: Close's lead objects, nested contacts, statuses, merging, events, tenancy, and a
fixed number of queries per list page."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from clove import compat
from clove.kit.ids import new_id
from clove.models import (
    Contact,
    ContactEmail,
    ContactPhone,
    ContactUrl,
    CustomField,
    Event,
    Lead,
    LeadAddress,
)
from tests.compat.test_spec_schemas import schema_errors
from tests.conftest import SPEC, Org

URL = "/api/v1/lead/"
NO_SPEC = f"Close's OpenAPI spec is not at {SPEC}: bodies are not checked against it"

GOB = {
    "name": "Gob",
    "title": "Sr. Vice President",
    "emails": [{"type": "office", "email": "gob@example.com"}],
    "phones": [{"type": "office", "phone": "8004445555"}],
    "urls": [{"url": "https://bluth.example.com/gob"}],
}
LUCILLE = {"name": "Lucille", "emails": [{"email": "Lucille@Example.com", "type": "home"}]}
BUSTER = {"name": "Buster"}
ADDRESS = {
    "label": "business",
    "address_1": "747 Howard St",
    "address_2": "Room 3",
    "city": "San Francisco",
    "state": "CA",
    "zipcode": "94103",
    "country": "US",
}


# --- Helpers shared with tests/test_contacts.py --------------------------------------------------


def create_lead(client: TestClient, org: Org, **body: Any) -> dict[str, Any]:
    response = client.post(URL, json={"name": "Bluth Company", **body}, auth=org.auth)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def events_of(session_factory: sessionmaker[Session], **where: Any) -> list[Event]:
    """Events matching column values, oldest first."""
    with session_factory() as session:
        query = select(Event).filter_by(**where).order_by(Event.date_created, Event.id)
        return list(session.scalars(query))


def count_rows(session_factory: sessionmaker[Session], model: Any, organization_id: str) -> int:
    with session_factory() as session:
        query = select(func.count()).select_from(model).filter_by(organization_id=organization_id)
        return session.scalar(query) or 0


def crm_rows(session_factory: sessionmaker[Session], organization_id: str) -> dict[str, int]:
    """How many rows of each CRM table (and events) the organization has."""
    models = (Lead, LeadAddress, Contact, ContactEmail, ContactPhone, ContactUrl, Event)
    return {m.__name__: count_rows(session_factory, m, organization_id) for m in models}


@contextmanager
def counting_queries(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement sent through the engine while the block runs."""
    statements: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


def close_spec() -> dict[str, Any]:
    """Close's OpenAPI spec; skips the calling test when the file is absent."""
    if not SPEC.is_file():
        pytest.skip(NO_SPEC)
    return compat.load_spec(SPEC)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return close_spec()


def assert_close_schema(spec: dict[str, Any], name: str, body: Any) -> None:
    assert schema_errors(spec, {"$ref": f"#/components/schemas/{name}"}, body) == []


def statuses(client: TestClient, org: Org) -> dict[str, str]:
    """Label -> id of the organization's lead statuses."""
    data = client.get("/api/v1/status/lead/", auth=org.auth).json()["data"]
    return {s["label"]: s["id"] for s in data}


# --- Create and read -----------------------------------------------------------------------------


def test_nested_contacts_come_back_in_order_with_new_ids(client: TestClient, org: Org) -> None:
    lead = create_lead(client, org, contacts=[GOB, LUCILLE, BUSTER], addresses=[ADDRESS])
    assert lead["id"].startswith("lead_") and len(lead["id"]) == 5 + 43
    assert [c["name"] for c in lead["contacts"]] == ["Gob", "Lucille", "Buster"]
    assert lead["contact_ids"] == [c["id"] for c in lead["contacts"]]
    assert all(c["id"].startswith("cont_") and c["lead_id"] == lead["id"] for c in lead["contacts"])
    gob = lead["contacts"][0]
    assert gob["phones"] == [
        {
            "phone": "+18004445555",
            "phone_formatted": "+1 800-444-5555",
            "type": "office",
            "country": "US",
        }
    ]
    assert gob["emails"] == [
        {"email": "gob@example.com", "type": "office", "is_unsubscribed": False}
    ]
    assert gob["urls"] == [{"url": "https://bluth.example.com/gob", "type": "url"}]
    assert lead["addresses"] == [{**ADDRESS, "tz_ids": []}]
    assert lead["primary_email"] == gob["emails"][0]
    assert lead["primary_phone"] == gob["phones"][0]
    # The same order on every later read.
    again = client.get(f"{URL}{lead['id']}/", auth=org.auth).json()
    assert again == lead


def test_many_nested_contacts_keep_their_order(client: TestClient, org: Org) -> None:
    names = [f"Contact {i}" for i in range(8)]  # 1 in 40320 to pass by luck
    lead = create_lead(client, org, contacts=[{"name": n} for n in names])
    assert [c["name"] for c in lead["contacts"]] == names
    again = client.get(f"{URL}{lead['id']}/", auth=org.auth).json()
    assert [c["name"] for c in again["contacts"]] == names


def test_lead_object_fields(client: TestClient, org: Org, app: Any) -> None:
    lead = create_lead(client, org, description="Banana stand", url="https://bluth.example.com")
    assert lead["organization_id"] == org.id
    assert (lead["name"], lead["display_name"]) == ("Bluth Company", "Bluth Company")
    assert (lead["description"], lead["url"]) == ("Banana stand", "https://bluth.example.com")
    assert lead["status_label"] == "Potential"  # the organization's first status
    assert lead["status_id"] == statuses(client, org)["Potential"]
    assert lead["html_url"] == f"{app.state.settings.public_url}/lead/{lead['id']}/"
    assert lead["created_by"] == lead["updated_by"] == org.user_id
    assert lead["created_by_name"] == lead["updated_by_name"] == "Ada Admin"
    assert lead["date_created"] == lead["date_updated"]
    assert lead["date_created"].endswith("+00:00")
    for empty in ("contacts", "contact_ids", "addresses", "opportunities", "tasks"):
        assert lead[empty] == []
    assert lead["integration_links"] == []
    assert lead["primary_email"] is None and lead["primary_phone"] is None


@pytest.mark.parametrize(
    ("name", "contacts", "display_name"),
    [(None, [BUSTER, GOB], "Buster"), ("", [GOB], "Gob"), (None, [], "")],
)
def test_display_name_falls_back_to_the_first_contact(
    client: TestClient, org: Org, name: str | None, contacts: list[Any], display_name: str
) -> None:
    lead = create_lead(client, org, name=name, contacts=contacts)
    assert lead["name"] == name
    assert lead["display_name"] == display_name


def test_responses_match_closes_spec(client: TestClient, org: Org, spec: dict[str, Any]) -> None:
    lead = create_lead(client, org, contacts=[GOB, LUCILLE], addresses=[ADDRESS])
    assert_close_schema(spec, "Lead", lead)
    assert_close_schema(spec, "Lead", client.get(f"{URL}{lead['id']}/", auth=org.auth).json())
    updated = client.put(f"{URL}{lead['id']}/", json={"name": "Renamed"}, auth=org.auth)
    assert_close_schema(spec, "Lead", updated.json())
    listed = client.get(URL, auth=org.auth).json()
    assert_close_schema(spec, "leads_list_Response_200", listed)
    assert listed["data"], "an empty list proves nothing"


def test_status_by_label_or_id(client: TestClient, org: Org) -> None:
    ids = statuses(client, org)
    by_label = create_lead(client, org, status="qualified")  # labels match case-insensitively
    assert (by_label["status_id"], by_label["status_label"]) == (ids["Qualified"], "Qualified")
    by_id = create_lead(client, org, status_id=ids["Customer"])
    assert by_id["status_label"] == "Customer"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "Nonexistent"}, "status"),
        ({"status_id": "stat_unknown"}, "status_id"),
    ],
)
def test_unknown_status_is_a_field_error(
    client: TestClient,
    org: Org,
    session_factory: sessionmaker[Session],
    body: dict[str, Any],
    field: str,
) -> None:
    response = client.post(URL, json={"name": "X", **body}, auth=org.auth)
    assert response.status_code == 400
    assert field in response.json()["field-errors"]
    assert count_rows(session_factory, Lead, org.id) == 0


def test_status_of_another_organization_is_refused(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    foreign = statuses(client, other_org)["Customer"]
    response = client.post(URL, json={"name": "X", "status_id": foreign}, auth=org.auth)
    assert response.status_code == 400
    assert response.json()["field-errors"] == {"status_id": "Object does not exist."}
    assert count_rows(session_factory, Lead, org.id) == 0


def test_status_and_status_id_together_are_refused(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    ids = statuses(client, org)
    body = {"name": "X", "status": "Potential", "status_id": ids["Potential"]}
    response = client.post(URL, json=body, auth=org.auth)
    assert response.status_code == 400
    assert "not both" in response.json()["errors"][0]
    assert count_rows(session_factory, Lead, org.id) == 0


def test_whole_returned_objects_can_be_posted_again(client: TestClient, org: Org) -> None:
    """Restore scripts POST leads they fetched earlier, read-only fields and all."""
    original = create_lead(client, org, contacts=[GOB, LUCILLE], addresses=[ADDRESS])
    copy = client.post(URL, json=original, auth=org.auth)
    assert copy.status_code == 200, copy.text
    restored = copy.json()
    assert restored["id"] != original["id"]
    assert restored["date_created"] != original["date_created"]
    assert [c["name"] for c in restored["contacts"]] == ["Gob", "Lucille"]
    assert not set(restored["contact_ids"]) & set(original["contact_ids"])
    assert all(c["lead_id"] == restored["id"] for c in restored["contacts"])
    assert restored["contacts"][0]["phones"] == original["contacts"][0]["phones"]
    assert restored["addresses"] == original["addresses"]


def add_text_field(session_factory: sessionmaker[Session], org: Org, object_type: str) -> str:
    """A text custom field defined straight in the table (its endpoints are another module's)."""
    field_id = new_id("cf")
    with session_factory.begin() as session:
        session.add(
            CustomField(
                id=field_id,
                organization_id=org.id,
                object_type=object_type,
                name=f"Source {field_id[-6:]}",
                type="text",
            )
        )
    return field_id


def test_custom_values_are_written_and_returned_flat(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead_field = add_text_field(session_factory, org, "lead")
    contact_field = add_text_field(session_factory, org, "contact")
    contact = {**BUSTER, f"custom.{contact_field}": "Referral"}
    lead = create_lead(client, org, **{f"custom.{lead_field}": "Web"}, contacts=[contact])
    assert lead[f"custom.{lead_field}"] == "Web"
    assert lead["contacts"][0][f"custom.{contact_field}"] == "Referral"

    path = f"{URL}{lead['id']}/"
    same = client.put(path, json={f"custom.{lead_field}": "Web"}, auth=org.auth).json()
    assert same == lead
    changed = client.put(path, json={f"custom.{lead_field}": "Fair"}, auth=org.auth).json()
    assert changed[f"custom.{lead_field}"] == "Fair"
    [ev] = events_of(session_factory, object_id=lead["id"], action="updated")
    assert ev.changed_fields == [f"custom.{lead_field}", "date_updated"]
    assert ev.previous_data[f"custom.{lead_field}"] == "Web"
    # A contact field is not a lead field.
    response = client.put(path, json={f"custom.{contact_field}": "x"}, auth=org.auth)
    assert response.status_code == 400
    assert f"custom.{contact_field}" in response.json()["field-errors"]


# --- Bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "X", "colour": "red"}, "colour"),
        ({"name": 7}, "name"),
        ({"name": "x" * 1001}, "name"),
        ({"name": "Nul\x00"}, "name"),
        ({"contacts": [{"phones": [{"phone": "123"}]}]}, "contacts.0.phones"),
        ({"contacts": [{"emails": [{"email": "not-an-email"}]}]}, "contacts.0.emails"),
        ({"contacts": [GOB, {"name": "X", "shoe_size": 9}]}, "contacts.1.shoe_size"),
        ({"contacts": {"name": "X"}}, "contacts"),
        ({"addresses": [{"country": "USA"}]}, "addresses.0.country"),
        ({"addresses": [{"city": "SF", "planet": "Earth"}]}, "addresses.0.planet"),
        ({"custom.cf_doesnotexist": "x"}, "custom.cf_doesnotexist"),
        ({"custom.cf_x": "Nul\x00"}, "custom.cf_x"),
    ],
)
def test_bad_input_is_a_400_field_error_and_writes_nothing(
    client: TestClient,
    org: Org,
    session_factory: sessionmaker[Session],
    body: dict[str, Any],
    field: str,
) -> None:
    response = client.post(URL, json={"contacts": [GOB], **body}, auth=org.auth)
    assert response.status_code == 400, response.text
    assert field in response.json()["field-errors"], response.json()
    assert set(crm_rows(session_factory, org.id).values()) == {0}


@pytest.mark.parametrize("content", [b"[]", b"null", b'"x"', b"{bad", b"\xff"])
def test_malformed_bodies_are_400(client: TestClient, org: Org, content: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    for method, path in [("POST", URL), ("POST", f"{URL}merge/")]:
        response = client.request(method, path, content=content, headers=headers, auth=org.auth)
        assert response.status_code == 400, (method, path, response.text)
        body = response.json()
        assert body.get("errors") or body.get("field-errors") or body.get("error")


# --- Update --------------------------------------------------------------------------------------


def test_put_is_a_partial_update(client: TestClient, org: Org) -> None:
    lead = create_lead(client, org, description="Banana stand", contacts=[GOB])
    response = client.put(f"{URL}{lead['id']}/", json={"name": "Bluth Co."}, auth=org.auth)
    assert response.status_code == 200
    updated = response.json()
    assert updated["name"] == "Bluth Co." and updated["description"] == "Banana stand"
    assert updated["contacts"] == lead["contacts"]
    assert updated["date_updated"] > lead["date_updated"]
    assert updated["date_created"] == lead["date_created"]
    assert client.get(f"{URL}{lead['id']}/", auth=org.auth).json() == updated


def test_put_changes_status_addresses_and_nullable_fields(client: TestClient, org: Org) -> None:
    lead = create_lead(client, org, url="https://x.example.com", addresses=[ADDRESS])
    second = {"label": "mailing", "city": "Newport Beach", "country": "us"}
    body = {"status": "Bad Fit", "url": None, "addresses": [second, ADDRESS]}
    updated = client.put(f"{URL}{lead['id']}/", json=body, auth=org.auth).json()
    assert updated["status_label"] == "Bad Fit"
    assert updated["status_id"] == statuses(client, org)["Bad Fit"]
    assert updated["url"] is None
    assert [a["city"] for a in updated["addresses"]] == ["Newport Beach", "San Francisco"]
    assert updated["addresses"][0]["country"] == "US"
    cleared = client.put(f"{URL}{lead['id']}/", json={"addresses": []}, auth=org.auth).json()
    assert cleared["addresses"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"contacts": [GOB]}, "contacts"),
        ({"status_id": None}, "status_id"),
        ({"addresses": None}, "addresses"),
        ({"status": "Nonexistent"}, "status"),
        ({"name": "Ok", "colour": "red"}, "colour"),
        ({"custom.cf_doesnotexist": 1}, "custom.cf_doesnotexist"),
    ],
)
def test_bad_updates_are_400_and_change_nothing(
    client: TestClient,
    org: Org,
    session_factory: sessionmaker[Session],
    body: dict[str, Any],
    field: str,
) -> None:
    lead = create_lead(client, org, contacts=[GOB], addresses=[ADDRESS])
    before_rows = crm_rows(session_factory, org.id)
    response = client.put(f"{URL}{lead['id']}/", json=body, auth=org.auth)
    assert response.status_code == 400, response.text
    assert field in response.json()["field-errors"]
    assert client.get(f"{URL}{lead['id']}/", auth=org.auth).json() == lead
    assert crm_rows(session_factory, org.id) == before_rows


def test_read_only_fields_are_ignored_on_update(client: TestClient, org: Org) -> None:
    lead = create_lead(client, org)
    body = {k: v for k, v in lead.items() if k != "contacts"}
    body |= {"name": "Renamed", "id": "lead_forged", "date_created": "2001-01-01T00:00:00+00:00"}
    updated = client.put(f"{URL}{lead['id']}/", json=body, auth=org.auth).json()
    assert updated["name"] == "Renamed"
    assert (updated["id"], updated["date_created"]) == (lead["id"], lead["date_created"])


def test_update_event_holds_only_the_changed_fields(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead = create_lead(client, org, description="Banana stand")
    body = {"name": "Bluth Co.", "description": "Banana stand", "status": "Customer"}
    updated = client.put(f"{URL}{lead['id']}/", json=body, auth=org.auth).json()
    [ev] = events_of(session_factory, object_id=lead["id"], action="updated")
    assert (ev.object_type, ev.lead_id) == ("lead", lead["id"])
    changed = ["date_updated", "display_name", "name", "status_id", "status_label"]
    assert ev.changed_fields == changed
    assert ev.previous_data == {
        "date_updated": lead["date_updated"],
        "display_name": "Bluth Company",
        "name": "Bluth Company",
        "status_id": lead["status_id"],
        "status_label": "Potential",
    }
    assert ev.data == updated
    assert ev.meta["request_method"] == "PUT"


def test_an_update_that_changes_nothing_records_nothing(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead = create_lead(client, org, description="Banana stand", addresses=[ADDRESS])
    body = {"name": lead["name"], "description": "Banana stand", "addresses": [ADDRESS]}
    same = client.put(f"{URL}{lead['id']}/", json=body, auth=org.auth).json()
    assert same == lead
    assert events_of(session_factory, object_id=lead["id"], action="updated") == []


# --- Events on create and delete -----------------------------------------------------------------


def test_create_records_the_lead_and_each_contact(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead = create_lead(client, org, contacts=[GOB, LUCILLE])
    evs = events_of(session_factory, lead_id=lead["id"])
    assert [(e.object_type, e.action, e.object_id) for e in evs] == [
        ("lead", "created", lead["id"]),
        ("contact", "created", lead["contact_ids"][0]),
        ("contact", "created", lead["contact_ids"][1]),
    ]
    assert evs[0].data == lead
    assert [e.data for e in evs[1:]] == lead["contacts"]
    assert all(e.previous_data == {} and e.api_key_id for e in evs)
    assert len({e.request_id for e in evs}) == 1


def test_delete_cascades_to_contacts_with_an_event_for_each(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead = create_lead(client, org, contacts=[GOB, LUCILLE], addresses=[ADDRESS])
    keep = create_lead(client, org, name="Sitwell", contacts=[BUSTER])
    response = client.delete(f"{URL}{lead['id']}/", auth=org.auth)
    assert (response.status_code, response.json()) == (200, {})
    assert client.get(f"{URL}{lead['id']}/", auth=org.auth).status_code == 404
    for contact_id in lead["contact_ids"]:
        assert client.get(f"/api/v1/contact/{contact_id}/", auth=org.auth).status_code == 404
    rows = crm_rows(session_factory, org.id)
    assert rows | {"Event": 0} == {
        "Lead": 1,
        "LeadAddress": 0,
        "Contact": 1,
        "ContactEmail": 0,
        "ContactPhone": 0,
        "ContactUrl": 0,
        "Event": 0,
    }
    assert client.get(f"{URL}{keep['id']}/", auth=org.auth).json() == keep

    deleted = events_of(session_factory, lead_id=lead["id"], action="deleted")
    assert [(e.object_type, e.object_id) for e in deleted] == [
        ("contact", lead["contact_ids"][0]),
        ("contact", lead["contact_ids"][1]),
        ("lead", lead["id"]),
    ]
    assert all(e.data is None for e in deleted)
    assert [e.previous_data for e in deleted] == [*lead["contacts"], lead]


def test_unknown_lead_is_404_in_closes_words(client: TestClient, org: Org) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = client.request(method, f"{URL}lead_nope/", json={}, auth=org.auth)
        assert response.status_code == 404
        assert response.json() == {"error": "Empty query: Lead matching query does not exist."}


# --- Merge ---------------------------------------------------------------------------------------


def set_custom(
    session_factory: sessionmaker[Session], lead_id: str, values: dict[str, Any]
) -> None:
    """Custom values written straight to the row (field definitions are another module's)."""
    with session_factory.begin() as session:
        lead = session.get(Lead, lead_id)
        assert lead is not None
        lead.custom = values


def test_merge_moves_everything_to_the_destination(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    source = create_lead(client, org, name="Source", contacts=[GOB, LUCILLE], addresses=[ADDRESS])
    second = {"city": "Newport Beach", "label": "mailing"}
    destination = create_lead(client, org, name="Dest", contacts=[BUSTER], addresses=[second])
    set_custom(session_factory, source["id"], {"cf_a": "lose", "cf_b": "fill", "cf_c": 3})
    set_custom(session_factory, destination["id"], {"cf_a": "keep", "cf_b": None})

    body = {"source": source["id"], "destination": destination["id"]}
    response = client.post(f"{URL}merge/", json=body, auth=org.auth)
    assert (response.status_code, response.json()) == (200, {})

    assert client.get(f"{URL}{source['id']}/", auth=org.auth).status_code == 404
    merged = client.get(f"{URL}{destination['id']}/", auth=org.auth).json()
    assert merged["name"] == "Dest" and merged["status_id"] == destination["status_id"]
    assert sorted(merged["contact_ids"]) == sorted(
        source["contact_ids"] + destination["contact_ids"]
    )
    assert all(c["lead_id"] == destination["id"] for c in merged["contacts"])
    assert [a["city"] for a in merged["addresses"]] == ["Newport Beach", "San Francisco"]
    assert (merged["custom.cf_a"], merged["custom.cf_b"], merged["custom.cf_c"]) == (
        "keep",
        "fill",
        3,
    )
    for contact_id in source["contact_ids"]:
        contact = client.get(f"/api/v1/contact/{contact_id}/", auth=org.auth).json()
        assert contact["lead_id"] == destination["id"]
    with session_factory() as session:
        for model in (ContactEmail, ContactPhone, ContactUrl, LeadAddress):
            orphans = session.scalar(
                select(func.count()).select_from(model).filter_by(lead_id=source["id"])
            )
            assert orphans == 0, model


def test_merge_events(client: TestClient, org: Org, session_factory: sessionmaker[Session]) -> None:
    source = create_lead(client, org, name="Source", contacts=[GOB])
    destination = create_lead(client, org, name="Dest")
    body = {"source": source["id"], "destination": destination["id"]}
    client.post(f"{URL}merge/", json=body, auth=org.auth)
    merged = client.get(f"{URL}{destination['id']}/", auth=org.auth).json()
    meta = {"merge_source_lead_id": source["id"], "merge_destination_lead_id": destination["id"]}

    [merge_ev] = events_of(session_factory, object_id=destination["id"], action="merged")
    assert (merge_ev.object_type, merge_ev.lead_id) == ("lead", destination["id"])
    assert merge_ev.data == merged
    assert merge_ev.meta | meta == merge_ev.meta

    [deleted] = events_of(session_factory, object_id=source["id"], action="deleted")
    assert deleted.data is None and deleted.previous_data == source
    assert deleted.meta | meta == deleted.meta

    [moved] = events_of(session_factory, object_id=source["contact_ids"][0], action="updated")
    assert moved.lead_id == destination["id"]
    assert moved.previous_data["lead_id"] == source["id"]
    assert moved.data["lead_id"] == destination["id"]
    assert "lead_id" in moved.changed_fields
    assert moved.meta | meta == moved.meta

    [dest_updated] = events_of(session_factory, object_id=destination["id"], action="updated")
    assert "contact_ids" in dest_updated.changed_fields
    assert dest_updated.previous_data["contact_ids"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"source": "lead_nope", "destination": "DEST"}, "source"),
        ({"source": "DEST", "destination": "lead_nope"}, "destination"),
        ({"destination": "DEST"}, "source"),
        ({"source": "DEST", "destination": "DEST", "extra": 1}, "extra"),
    ],
)
def test_merge_refuses_bad_ids(
    client: TestClient,
    org: Org,
    session_factory: sessionmaker[Session],
    body: dict[str, Any],
    field: str,
) -> None:
    lead = create_lead(client, org, contacts=[GOB])
    body = {k: lead["id"] if v == "DEST" else v for k, v in body.items()}
    rows = crm_rows(session_factory, org.id)
    response = client.post(f"{URL}merge/", json=body, auth=org.auth)
    assert response.status_code == 400
    assert field in response.json()["field-errors"]
    assert crm_rows(session_factory, org.id) == rows


def test_merging_a_lead_into_itself_is_refused(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead = create_lead(client, org, contacts=[GOB])
    body = {"source": lead["id"], "destination": lead["id"]}
    response = client.post(f"{URL}merge/", json=body, auth=org.auth)
    assert response.status_code == 400
    assert response.json()["errors"]
    assert client.get(f"{URL}{lead['id']}/", auth=org.auth).json() == lead
    assert events_of(session_factory, lead_id=lead["id"], action="merged") == []


# --- Tenancy -------------------------------------------------------------------------------------


def test_another_organization_cannot_reach_a_lead(
    client: TestClient, org: Org, other_org: Org, session_factory: sessionmaker[Session]
) -> None:
    lead = create_lead(client, org, contacts=[GOB], addresses=[ADDRESS])
    theirs = create_lead(client, other_org, name="Theirs")
    rows = crm_rows(session_factory, org.id)
    path = f"{URL}{lead['id']}/"
    for method, body in [("GET", None), ("PUT", {"name": "Taken"}), ("DELETE", None)]:
        response = client.request(method, path, json=body, auth=other_org.auth)
        assert response.status_code == 404, method
        assert response.json() == {"error": "Empty query: Lead matching query does not exist."}
    for body in [
        {"source": lead["id"], "destination": theirs["id"]},
        {"source": theirs["id"], "destination": lead["id"]},
    ]:
        response = client.post(f"{URL}merge/", json=body, auth=other_org.auth)
        assert response.status_code == 400
        assert response.json()["field-errors"] == {
            next(k for k, v in body.items() if v == lead["id"]): "Object does not exist."
        }
    listed = client.get(URL, auth=other_org.auth).json()
    assert [item["id"] for item in listed["data"]] == [theirs["id"]]
    assert client.get(path, auth=org.auth).json() == lead
    assert crm_rows(session_factory, org.id) == rows


# --- Lists ---------------------------------------------------------------------------------------


def test_list_is_newest_first_with_paging(client: TestClient, org: Org) -> None:
    ids = [create_lead(client, org, name=f"Lead {i}")["id"] for i in range(5)]
    full = client.get(URL, auth=org.auth).json()
    assert [item["id"] for item in full["data"]] == ids[::-1]
    assert (full["has_more"], full["total_results"]) == (False, 5)

    first = client.get(URL, params={"_limit": 2}, auth=org.auth).json()
    assert [item["id"] for item in first["data"]] == ids[:2:-1]
    assert first["has_more"] is True
    last = client.get(URL, params={"_skip": 4, "_limit": 2}, auth=org.auth).json()
    assert [item["id"] for item in last["data"]] == [ids[0]]
    assert last["has_more"] is False

    count_only = client.get(URL, params={"_limit": 0}, auth=org.auth).json()
    assert count_only == {"data": [], "has_more": True, "total_results": 5}

    narrow = client.get(URL, params={"_fields": "id,display_name"}, auth=org.auth).json()
    assert narrow["data"][0] == {"id": ids[-1], "display_name": "Lead 4"}
    single = client.get(f"{URL}{ids[0]}/", params={"_fields": "name,status_label"}, auth=org.auth)
    assert single.json() == {"name": "Lead 0", "status_label": "Potential"}


@pytest.mark.parametrize("params", [{"_limit": "101"}, {"_skip": "-1"}, {"_limit": "x"}])
def test_bad_paging_is_400(client: TestClient, org: Org, params: dict[str, str]) -> None:
    response = client.get(URL, params=params, auth=org.auth)
    assert response.status_code == 400
    assert "error" in response.json()


def test_query_selects_and_sorts_the_list(client: TestClient, org: Org) -> None:
    for name in ("Bluth Company", "Sitwell Enterprises", "Bluth Banana Stand"):
        client.post(URL, json={"name": name}, auth=org.auth)

    def names(query: str) -> list[str]:
        response = client.get(URL, params={"query": query}, auth=org.auth)
        assert response.status_code == 200, response.text
        assert response.json()["total_results"] == len(response.json()["data"])
        return [lead["name"] for lead in response.json()["data"]]

    assert names('name:"Bluth" sort:name') == ["Bluth Banana Stand", "Bluth Company"]
    assert names("not bluth sort:-created") == ["Sitwell Enterprises"]
    assert len(names("")) == len(names("*")) == 3
    response = client.get(URL, params={"query": "calls > 0"}, auth=org.auth)
    assert response.status_code == 400
    assert "calls" in response.json()["field-errors"]["query"]


def test_a_list_page_costs_the_same_queries_whatever_its_size(
    client: TestClient, org: Org, engine: Engine
) -> None:
    for i in range(50):
        create_lead(client, org, name=f"Lead {i}", contacts=[GOB, LUCILLE], addresses=[ADDRESS])
    with counting_queries(engine) as one:
        small = client.get(URL, params={"_limit": 1}, auth=org.auth).json()
    with counting_queries(engine) as fifty:
        large = client.get(URL, params={"_limit": 50}, auth=org.auth).json()
    assert (len(small["data"]), len(large["data"])) == (1, 50)
    assert all(len(item["contacts"]) == 2 for item in large["data"])
    assert len(one) == len(fifty), (one, fifty)
    assert len(fifty) <= 15, fifty


def test_creating_more_contacts_costs_no_more_queries(
    client: TestClient, org: Org, engine: Engine
) -> None:
    with counting_queries(engine) as few:
        create_lead(client, org, contacts=[GOB], addresses=[ADDRESS])
    with counting_queries(engine) as many:
        lead = create_lead(client, org, contacts=[GOB] * 20, addresses=[ADDRESS] * 5)
    assert len(lead["contacts"]) == 20
    assert len(few) == len(many), (few, many)


def test_fields_custom_and_all(
    client: TestClient, org: Org, session_factory: sessionmaker[Session]
) -> None:
    field = client.post(
        "/api/v1/custom_field/lead/", json={"name": "Tier", "type": "text"}, auth=org.auth
    ).json()
    lead = client.post(
        "/api/v1/lead/", json={"name": "Acme", f"custom.{field['id']}": "gold"}, auth=org.auth
    ).json()
    url = f"/api/v1/lead/{lead['id']}/"
    narrowed = client.get(url, params={"_fields": "id,custom"}, auth=org.auth).json()
    assert narrowed == {"id": lead["id"], f"custom.{field['id']}": "gold"}
    everything = client.get(url, params={"_fields": "_all"}, auth=org.auth).json()
    assert everything == client.get(url, auth=org.auth).json()
